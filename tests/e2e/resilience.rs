//! Resilience without disturbing other tests: lost connections (closed by the broker, only
//! ours; a silent network; a node gone for good), `kill -9` under load, several broker URLs
//! (one refusing, one never answering, one silent after the connect), graceful stop within
//! and beyond the grace period, and poison messages.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use tokio_util::sync::CancellationToken;

use crate::operations::{free_port, http_get};
use crate::support::{
    Broker, KillOnDrop, PATIENCE, TEST_GRACE_MS, TestConfig, broker_url, collect_ids,
    dead_letters_to, drain_ids, eventually, queue_counts, rabbitmqctl_output, sample, start,
    test_plugin, unique, warren_run, with_id, write_config,
};

/// Closes every broker connection whose client-given name starts with `prefix` (`rabbitmqctl`).
async fn close_connections(prefix: &str) -> usize {
    let listing = rabbitmqctl_output(&[
        "list_connections",
        "pid",
        "client_properties",
        "--no-table-headers",
    ])
    .await;
    let mut closed = 0;
    for line in listing.lines() {
        let Some((pid, properties)) = line.split_once('\t') else {
            continue;
        };
        if properties.contains(&format!("{{\"connection_name\",\"{prefix}")) {
            rabbitmqctl_output(&["close_connection", pid, "closed by warren's tests"]).await;
            closed += 1;
        }
    }
    closed
}

/// The broker closes warren's connections under load: `/readyz` turns 503, warren reconnects,
/// declares again, resumes, and every message is handled (duplicates only from redelivery,
/// counted), nothing lost; then `/readyz` is 200 again.
#[tokio::test]
async fn reconnects_after_the_broker_closes_its_connections() {
    let broker = Broker::connect().await;
    let queue = unique("reconnect");
    let out = unique("reconnect-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let name = unique("conn");
    let port = free_port();
    let config = TestConfig::new()
        .default_grace()
        .connection_name(&name)
        .admin(port)
        .tagged("reconnect", &queue, &out, &format!("prefetch = {PREFETCH}"))
        .build();
    let daemon = start(&config).await;
    assert_eq!(http_get(port, "/readyz").await.0, 200);
    /// Messages published while the connections are closed.
    const N: usize = 1500;
    /// The daemon's prefetch: what may be in flight, and so redelivered, at the close.
    const PREFETCH: usize = 20;
    /// The producer pauses [`PAUSE`] every this many messages, so the close comes under load.
    const BURST: usize = 20;
    const PAUSE: Duration = Duration::from_millis(5);
    /// Time for the load to get going before the close.
    const UNDER_WAY: Duration = Duration::from_millis(300);
    let producer = {
        let queue = queue.clone();
        tokio::spawn(async move {
            let broker = Broker::connect().await;
            for i in 0..N {
                broker.publish(&queue, b"x", with_id(format!("r{i}"))).await;
                if i % BURST == 0 {
                    tokio::time::sleep(PAUSE).await;
                }
            }
        })
    };
    tokio::time::sleep(UNDER_WAY).await;
    // Poll /readyz while rabbitmqctl closes the connections (it takes about a second).
    let closing = tokio::spawn({
        let name = name.clone();
        async move { close_connections(&name).await }
    });
    let saw_unready = Cell::new(false);
    let back = || async {
        let ready = http_get(port, "/readyz").await.0 == 200;
        saw_unready.set(saw_unready.get() || !ready);
        (saw_unready.get() && ready).then_some(())
    };
    eventually(
        "/readyz reporting the lost connection (503), then 200 again",
        PATIENCE,
        back,
    )
    .await;
    assert_eq!(
        closing.await.expect("closer"),
        2,
        "both of warren's connections"
    );
    producer.await.expect("producer");

    let mut seen = collect_ids(&broker, &out, N).await;
    daemon.stop().await.expect("clean stop");
    drain_ids(&broker, &out, &mut seen).await;
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "reconnect: {N} messages, 0 lost, {duplicates} duplicates (redelivered after the close)"
    );
    assert_eq!(seen.len(), N, "lost messages");
    assert!(
        duplicates <= 2 * PREFETCH,
        "duplicates bounded by what was in flight (prefetch, on each of the two closes): {duplicates}"
    );
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// lapin's connection recovery, tested rather than assumed. The broker closes warren's
/// connections while a message is inside the plugin: lapin reconnects both and restores the
/// consumer by itself (warren rebuilds nothing: `warren_broker_reconnects_total` stays 0).
/// The old delivery's ack is refused — never sent on the new channel, where its tag would
/// name another delivery or close the channel with 406 — and the broker redelivers that
/// message. Deliveries on the recovered channel are numbered from 1 again, and every one of
/// them is acked (the coalescing watermark starts over with them): nothing stays unacked.
#[tokio::test]
async fn lapin_recovery_never_acks_an_old_delivery_on_the_new_channel() {
    let broker = Broker::connect().await;
    let queue = unique("recover");
    broker.forget_later_queue(&queue);
    let name = unique("conn");
    let config = TestConfig::new()
        .connection_name(&name)
        .plugin("scripted", &test_plugin("scripted"), "mode = \"body\"", "")
        .queue(&queue, "")
        .pipeline(
            "recover",
            &queue,
            "scripted",
            "prefetch = 10\nconcurrency = 4",
        );
    let daemon = start(&config.build()).await;
    /// Quick messages before the close: the old channel's delivery tags reach this, above
    /// every tag the recovered channel will use here.
    const BEFORE: u32 = 30;
    /// Quick messages on the recovered channel.
    const AFTER: u32 = 20;
    let pipeline = ("pipeline", "recover");
    let acks = [pipeline, ("verdict", "ack")];
    let publish = |body: &'static [u8]| broker.publish(&queue, body, BasicProperties::default());
    // Quick ones first (a watermark kept across the recovery would skip the new channel's).
    for _ in 0..BEFORE {
        publish(b"sleep:1").await;
    }
    daemon
        .wait_metric("warren_messages_total", &acks, f64::from(BEFORE))
        .await;
    // Long enough that `rabbitmqctl` (a second or two to start) closes while it sleeps.
    publish(b"sleep:6000").await;
    daemon
        .wait_metric("warren_messages_in_flight", &[pipeline], 1.0)
        .await;
    assert_eq!(close_connections(&name).await, 2, "both connections closed");
    // Still inside the plugin (and perhaps, redelivered, once more on the new channel).
    assert!(
        sample(&daemon.scrape(), "warren_messages_in_flight", &[pipeline]) >= 1.0,
        "the connections closed while the slow message was inside the plugin"
    );
    for connection in ["consume", "publish"] {
        daemon
            .wait_metric(
                "warren_broker_recoveries_total",
                &[("connection", connection)],
                1.0,
            )
            .await;
    }
    // On the recovered channel: the slow message again (redelivered) and the new ones.
    for _ in 0..AFTER {
        publish(b"sleep:1").await;
    }
    // The quick ones, and the slow one twice (its first ack refused).
    let handled = f64::from(BEFORE + 2 + AFTER);
    daemon
        .wait_metric("warren_messages_total", &acks, handled)
        .await;
    daemon
        .wait_metric("warren_stale_settlements_total", &[pipeline], 1.0)
        .await;
    let scrape = daemon.scrape();
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        sample(&scrape, "warren_messages_total", &acks),
        handled,
        "every message handled once, the interrupted one twice"
    );
    assert_eq!(
        sample(&scrape, "warren_stale_settlements_total", &[pipeline]),
        1.0,
        "only the delivery of the lost channel was not settled"
    );
    assert_eq!(
        sample(&scrape, "warren_redeliveries_total", &[pipeline]),
        1.0,
        "the interrupted message came back, flagged redelivered"
    );
    assert_eq!(
        sample(&scrape, "warren_broker_reconnects_total", &[]),
        0.0,
        "lapin recovered the connections; warren did not rebuild (no channel was closed by a stale ack)"
    );
    assert_eq!(
        broker.ready(&queue).await,
        0,
        "every delivery of the recovered channel was acked (unacked ones return to the queue at stop)"
    );
    broker.cleanup().await;
}

/// How long a `warren run` may take to start and handle its first messages.
const GETTING_GOING: Duration = Duration::from_secs(30);

/// `kill -9` of the daemon process under load, then a restart: every message (by id) comes
/// out; duplicates only from what was published but not yet acked at the kill (at most the
/// prefetch), counted and reported.
#[tokio::test]
async fn kill_9_under_load_then_restart_loses_nothing() {
    let broker = Broker::connect().await;
    let queue = unique("kill9");
    let out = unique("kill9-out");
    broker.queue(&out).await;
    broker.queue(&queue).await;
    const N: usize = 3000;
    const PREFETCH: usize = 50;
    for i in 0..N {
        broker.publish(&queue, b"x", with_id(format!("k{i}"))).await;
    }
    let extra = format!("prefetch = {PREFETCH}\nconcurrency = 4");
    let config = TestConfig::new()
        .default_grace()
        .tagged("kill9", &queue, &out, &extra)
        .build();
    let (_dir, path) = write_config(&config);
    let spawn = || {
        KillOnDrop::spawn(
            warren_run(&path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null()),
        )
    };
    let mut daemon = spawn();
    // Kill it with most of the work still to do: a fifth done.
    let going = || async { (broker.ready(&out).await >= (N / 5) as u32).then_some(()) };
    eventually("warren getting going", GETTING_GOING, going).await;
    daemon.kill().expect("kill -9");
    daemon.wait().expect("reaped");
    let left = broker.ready(&queue).await as usize;
    assert!(left > 0, "killed under load: messages were still waiting");
    let mut again = spawn();
    let mut seen = collect_ids(&broker, &out, N).await;
    assert!(again.terminate().success(), "exit 0 on SIGTERM");
    drain_ids(&broker, &out, &mut seen).await;
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "kill -9: {N} messages, 0 lost, {duplicates} duplicates ({left} still queued at the kill)"
    );
    assert_eq!(seen.len(), N, "lost messages");
    assert!(
        duplicates <= PREFETCH,
        "duplicates only from unacked deliveries (at most the prefetch): {duplicates}"
    );
    assert_eq!(broker.ready(&queue).await, 0, "all acked after the restart");
    broker.cleanup().await;
}

/// With several broker URLs, a node that is down is skipped and the next one used.
#[tokio::test]
async fn several_urls_are_tried_in_turn() {
    let dead = format!("amqp://guest:guest@127.0.0.1:{}/%2f", free_port());
    starts_on_the_second_url("urls", &dead).await;
}

/// A node whose host drops connection attempts without an answer (a machine powered off, a
/// firewall) is passed over after the URL's `connection_timeout`: lapin sets no limit of its
/// own, and each of its attempts would wait out the kernel's SYN retries (2 minutes).
#[tokio::test]
async fn a_url_that_never_answers_is_passed_over() {
    let silent = Silent::start();
    let silent_url = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f?connection_timeout=300",
        silent.port
    );
    starts_on_the_second_url("silent", &silent_url).await;
}

/// A node that takes the connection but never answers the AMQP handshake (a hung node, a
/// proxy with nothing behind it) is passed over after the URL's `connection_timeout`: lapin
/// waits for `connection.start` with no limit of its own.
#[tokio::test]
async fn a_url_that_takes_the_connection_and_never_answers_is_passed_over() {
    let mute = Mute::start().await;
    let mute_url = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f?connection_timeout=300",
        mute.port
    );
    starts_on_the_second_url("mute", &mute_url).await;
}

/// With `[broker] urls = [first, the broker]`, warren starts (within [`PATIENCE`]) and acks a
/// message in the pipeline `name`.
async fn starts_on_the_second_url(name: &str, first: &str) {
    let broker = Broker::connect().await;
    let queue = unique(name);
    broker.forget_later_queue(&queue);
    let config = TestConfig::with_urls(&[first, &broker_url()])
        .default_grace()
        .plugin("p", &test_plugin("scripted"), "mode = \"ack\"", "")
        .queue(&queue, "")
        .pipeline(name, &queue, "p", "");
    let daemon = tokio::time::timeout(PATIENCE, start(&config.build()))
        .await
        .expect("started on the second URL");
    broker
        .publish(&queue, b"m", BasicProperties::default())
        .await;
    daemon
        .wait_metric(
            "warren_messages_total",
            &[("pipeline", name), ("verdict", "ack")],
            1.0,
        )
        .await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// A port on loopback that takes connections and never sends a byte.
struct Mute {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl Mute {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = listener.accept().await {
                held.push(stream);
            }
        });
        Self { port, task }
    }
}

impl Drop for Mute {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A port on loopback whose connection attempts get no answer: its listener's accept queue
/// (backlog 0) is filled and never drained, so the kernel drops every further SYN.
struct Silent {
    port: u16,
    _listener: std::net::TcpListener,
    _queued: Vec<std::net::TcpStream>,
}

impl Silent {
    fn start() -> Self {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
        socket.bind(loopback).expect("bind");
        let listener = socket.listen(0).expect("listen");
        let address = listener.local_addr().expect("address");
        let listener = listener.into_std().expect("std listener");
        // Connect until one attempt gets no answer: the queue is full from then on.
        let mut queued = Vec::new();
        loop {
            match std::net::TcpStream::connect_timeout(&address, Duration::from_millis(300)) {
                Ok(stream) => queued.push(stream),
                Err(e) if e.kind() == std::io::ErrorKind::TimedOut => break,
                Err(e) => panic!("filling the accept queue: {e}"),
            }
            assert!(queued.len() < 64, "the accept queue never filled");
        }
        Self {
            port: address.port(),
            _listener: listener,
            _queued: queued,
        }
    }
}

/// A TCP proxy on loopback in front of the broker, standing for a cluster node or a network
/// path that can fail.
struct Proxy {
    port: u16,
    task: tokio::task::JoinHandle<()>,
    /// Cancelled to freeze the connections open at that moment.
    freeze: Arc<Mutex<CancellationToken>>,
    /// Frozen connections: kept open, never read or written again.
    frozen: Arc<Mutex<Vec<tokio::net::TcpStream>>>,
}

impl Proxy {
    async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let freeze = Arc::new(Mutex::new(CancellationToken::new()));
        let frozen = Arc::new(Mutex::new(Vec::new()));
        let task = tokio::spawn({
            let freeze = freeze.clone();
            let frozen = frozen.clone();
            async move {
                // Dropped with the task: every proxied connection is cut with it.
                let mut links = tokio::task::JoinSet::new();
                while let Ok((mut client, _)) = listener.accept().await {
                    let freeze = freeze.lock().expect("freeze").clone();
                    let frozen = frozen.clone();
                    links.spawn(async move {
                        let Ok(mut broker) = tokio::net::TcpStream::connect("127.0.0.1:5672").await
                        else {
                            return;
                        };
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut broker) => {}
                            () = freeze.cancelled() => {
                                frozen.lock().expect("frozen").extend([client, broker]);
                            }
                        }
                    });
                }
            }
        });
        Self {
            port,
            task,
            freeze,
            frozen,
        }
    }

    /// The AMQP URL of the broker through this proxy.
    fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// The network path goes silent: open connections stay open but carry nothing more (no
    /// FIN, no RST: only missing heartbeats tell). New connections go through.
    fn freeze(&self) {
        let mut freeze = self.freeze.lock().expect("freeze");
        freeze.cancel();
        *freeze = CancellationToken::new();
    }

    /// The node dies for good: its connections are cut and its port refuses new ones.
    async fn kill(self) {
        self.task.abort();
        let _ = self.task.await;
        self.frozen.lock().expect("frozen").clear();
    }
}

/// A network path that goes silent (no FIN, no RST) is noticed by heartbeats (`?heartbeat=2`
/// in the URL): lapin declares the connection dead, recovers it by itself, and every
/// message is handled; nothing lost.
#[tokio::test]
async fn a_silent_network_is_noticed_by_heartbeats_and_recovered() {
    let broker = Broker::connect().await;
    let queue = unique("heartbeat");
    let out = unique("heartbeat-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let proxy = Proxy::start().await;
    let url = format!("{}?heartbeat=2", proxy.url());
    let config = TestConfig::with_url(&url).default_grace().tagged(
        "heartbeat",
        &queue,
        &out,
        "prefetch = 10",
    );
    let daemon = start(&config.build()).await;
    /// Messages: half before the path goes silent, half after.
    const N: usize = 100;
    let publish = |i: usize| broker.publish(&queue, b"x", with_id(format!("h{i}")));
    for i in 0..N / 2 {
        publish(i).await;
    }
    let republished = [("pipeline", "heartbeat"), ("verdict", "republish")];
    daemon
        .wait_metric("warren_messages_total", &republished, (N / 2) as f64)
        .await;
    let started = Instant::now();
    proxy.freeze();
    for i in N / 2..N {
        publish(i).await;
    }
    for connection in ["consume", "publish"] {
        daemon
            .wait_metric(
                "warren_broker_recoveries_total",
                &[("connection", connection)],
                1.0,
            )
            .await;
    }
    let recovered = started.elapsed();
    let seen = collect_ids(&broker, &out, N).await;
    eprintln!(
        "heartbeat: silent path noticed and recovered after {:.1} s; {N} messages, 0 lost",
        recovered.as_secs_f64()
    );
    // The deliveries in flight on the frozen connection return to the queue only once the
    // broker gives that connection up (its own heartbeat check): wait for them to be handled.
    let emptied = || async { (queue_counts(&queue).await == (0, 0)).then_some(()) };
    eventually("the queue emptied after the recovery", PATIENCE, emptied).await;
    let scrape = daemon.scrape();
    daemon.stop().await.expect("clean stop");
    proxy.kill().await;
    assert_eq!(seen.len(), N, "lost messages");
    assert_eq!(
        sample(&scrape, "warren_broker_reconnects_total", &[]),
        0.0,
        "lapin's recovery did it"
    );
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// How long warren may take to give up on a dead node and reconnect to the next URL: lapin's
/// recovery attempts first (warren takes over when lapin gives up, or at `RECOVERY_LIMIT`).
const FAILOVER: Duration = Duration::from_secs(40);

/// lapin only ever reconnects to the URL it was connected to. When that node is gone for good
/// (a proxy in front of the broker that dies: connections cut, port refused), lapin's
/// recovery gets nowhere; warren notices once lapin gives up, reconnects itself to the
/// next URL of `[broker] urls`, and finishes the work: nothing lost.
#[tokio::test]
async fn a_node_gone_for_good_moves_warren_to_the_next_url() {
    let broker = Broker::connect().await;
    let queue = unique("failover");
    let out = unique("failover-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let proxy = Proxy::start().await;
    let config = TestConfig::with_urls(&[&proxy.url(), &broker_url()])
        .default_grace()
        .tagged("failover", &queue, &out, "prefetch = 10");
    let daemon = start(&config.build()).await; // through the proxy: the first URL
    /// Messages: half before the node dies, half after.
    const N: usize = 100;
    let publish = |i: usize| broker.publish(&queue, b"x", with_id(format!("f{i}")));
    for i in 0..N / 2 {
        publish(i).await;
    }
    let republished = [("pipeline", "failover"), ("verdict", "republish")];
    daemon
        .wait_metric("warren_messages_total", &republished, (N / 2) as f64)
        .await;
    proxy.kill().await;
    for i in N / 2..N {
        publish(i).await;
    }
    let started = Instant::now();
    daemon
        .wait_metric_for("warren_broker_reconnects_total", &[], 1.0, FAILOVER)
        .await;
    let seen = collect_ids(&broker, &out, N).await;
    eprintln!(
        "failover: moved to the next URL and finished {:.1} s after the node died",
        started.elapsed().as_secs_f64()
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(seen.len(), N, "lost messages");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// A pipeline named `poison` on `queue` (with `queue_extra` lines) running the `scripted`
/// plugin in `mode`, with `pipeline_extra` lines, and a grace period of `grace_ms`.
fn poison_config(
    queue: &str,
    queue_extra: &str,
    mode: &str,
    pipeline_extra: &str,
    grace_ms: u64,
) -> String {
    let mode = format!("mode = \"{mode}\"");
    TestConfig::new()
        .grace_ms(grace_ms)
        .plugin("scripted", &test_plugin("scripted"), &mode, "")
        .queue(queue, queue_extra)
        .pipeline("poison", queue, "scripted", pipeline_extra)
        .build()
}

/// The delivery limit of the poison test.
const MAX_DELIVERIES: u32 = 5;

/// A plugin that always requeues, with `max_deliveries = 5`: the message is handed to the
/// plugin exactly five times, then dead-lettered.
#[tokio::test]
async fn always_requeued_message_ends_in_the_dlq_after_max_deliveries() {
    let broker = Broker::connect().await;
    let queue = unique("poison");
    let dlq = unique("poison-dlq");
    let dlx = unique("poison-dlx");
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&queue);
    let daemon = start(&poison_config(
        &queue,
        &dead_letters_to(&dlx),
        "requeue",
        &format!("max_deliveries = {MAX_DELIVERIES}"),
        TEST_GRACE_MS,
    ))
    .await;
    broker
        .publish(&queue, b"poison", BasicProperties::default())
        .await;
    let dead = broker.next(&dlq).await;
    assert_eq!(dead.delivery.data, b"poison");
    let requeued = [("pipeline", "poison"), ("verdict", "requeue")];
    let seen = daemon.metric("warren_messages_total", &requeued);
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        seen,
        f64::from(MAX_DELIVERIES),
        "the plugin saw it exactly max_deliveries times"
    );
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// `retry_delay_ms` requeues through warren's TTL + dead-letter retry queues, with backoff:
/// deliveries at about 0, +200 ms and +400 ms more; the third is the last (max_deliveries 3).
#[tokio::test]
async fn delayed_retries_back_off_then_dead_letter() {
    let broker = Broker::connect().await;
    let queue = unique("retry");
    let dlq = unique("retry-dlq");
    let dlx = unique("retry-dlx");
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&queue);
    for step in [200, 400, 800, 1600] {
        broker.forget_later_queue(&warren::config::retry_queue_name(&queue, step));
    }
    let daemon = start(&poison_config(
        &queue,
        &dead_letters_to(&dlx),
        "requeue",
        "max_deliveries = 3\nretry_delay_ms = 200",
        TEST_GRACE_MS,
    ))
    .await;
    let sent = Instant::now();
    broker
        .publish(&queue, b"later", BasicProperties::default())
        .await;
    let dead = broker.next(&dlq).await;
    let took = sent.elapsed();
    assert_eq!(dead.delivery.data, b"later");
    assert!(
        took >= Duration::from_millis(600),
        "two delays of 200 and 400 ms: {took:?}"
    );
    assert_eq!(
        crate::support::header(&dead.delivery.properties, "x-warren-deliveries"),
        Some(&lapin::types::AMQPValue::LongLongInt(2)),
        "warren counted the two requeues"
    );
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// Messages inside the plugin when the graceful-stop test stops the daemon.
const IN_FLIGHT: u32 = 5;
/// The grace period of the second daemon, far shorter than its messages' 10 s sleep.
const SHORT_GRACE_MS: u64 = 300;
/// A stop that respects [`SHORT_GRACE_MS`] is over well within this.
const STOPPED_SOON: Duration = Duration::from_secs(5);

/// SIGTERM-style stop: in-flight work shorter than the grace period finishes and is acked;
/// work longer than it is left unacked and returns to the queue, and the stop does not wait.
#[tokio::test]
async fn graceful_stop_drains_within_the_grace_period_only() {
    let broker = Broker::connect().await;
    let short = unique("grace-short");
    let long = unique("grace-long");
    broker.forget_later_queue(&short);
    broker.forget_later_queue(&long);

    let daemon = start(&poison_config(
        &short,
        "",
        "body",
        &format!("prefetch = {IN_FLIGHT}"),
        TEST_GRACE_MS,
    ))
    .await;
    for _ in 0..IN_FLIGHT {
        broker
            .publish(&short, b"sleep:500", BasicProperties::default())
            .await;
    }
    // All inside the plugin (not merely delivered) when the stop comes.
    let in_flight = [("pipeline", "poison")];
    daemon
        .wait_metric(
            "warren_messages_in_flight",
            &in_flight,
            f64::from(IN_FLIGHT),
        )
        .await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        broker.ready(&short).await,
        0,
        "in-flight work within the grace period was acked"
    );

    let daemon = start(&poison_config(
        &long,
        "",
        "body",
        &format!("prefetch = {IN_FLIGHT}"),
        SHORT_GRACE_MS,
    ))
    .await;
    for _ in 0..IN_FLIGHT {
        broker
            .publish(&long, b"sleep:10000", BasicProperties::default())
            .await;
    }
    daemon
        .wait_metric(
            "warren_messages_in_flight",
            &in_flight,
            f64::from(IN_FLIGHT),
        )
        .await;
    let stopping = Instant::now();
    daemon.stop().await.expect("clean stop");
    assert!(
        stopping.elapsed() < STOPPED_SOON,
        "the stop waited past the grace period"
    );
    assert_eq!(
        broker.ready(&long).await,
        IN_FLIGHT,
        "unfinished work returns to the queue"
    );
    broker.cleanup().await;
}
