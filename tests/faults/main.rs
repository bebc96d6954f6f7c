//! Fault tests that disturb the whole broker (stop it, trip its memory alarm). They run one at
//! a time, in their own test binary (cargo runs test binaries one after another, so nothing
//! else is talking to the broker meanwhile), and each restores the broker when it ends, even
//! when it fails. Every test publishes messages with unique ids and accounts for each one.

#[path = "../support/mod.rs"]
mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use lapin::BasicProperties;

use support::{
    Broker, PATIENCE, TestConfig, broker_url, collect_ids, eventually, queue_counts, sample, start,
    test_plugin, unique, with_id,
};

/// The broker's memory high watermark, as it is outside these tests.
const NORMAL_WATERMARK: &str = "0.4";

/// The broker's `consumer_timeout` outside these tests (its default, 30 min), and the one
/// the consumer-timeout test sets.
const NORMAL_CONSUMER_TIMEOUT_MS: u32 = 1_800_000;
const SHORT_CONSUMER_TIMEOUT_MS: u32 = 2_000;

/// How long a restarted broker may take to accept connections again.
const BROKER_RESTART: Duration = Duration::from_secs(60);

/// Time for quorum queues to elect new leaders after a node stops.
const QUORUM_ELECTION: Duration = Duration::from_secs(10);

/// The longest a fault test may take; past it the test fails instead of hanging the run.
const TEST_LIMIT: Duration = Duration::from_secs(200);

/// Runs a test body within [`TEST_LIMIT`], taking the lock that keeps fault tests apart.
async fn bounded(body: impl Future<Output = ()>) {
    let _serial = SERIAL.lock().await;
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("the fault test did not finish within {TEST_LIMIT:?}");
    }
}

/// One fault test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn rabbitmqctl(args: &[&str]) -> bool {
    Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Puts the broker back as it was when dropped: running, with its normal memory watermark.
struct Restore;

impl Drop for Restore {
    fn drop(&mut self) {
        rabbitmqctl(&["start_app"]);
        rabbitmqctl(&["set_vm_memory_high_watermark", NORMAL_WATERMARK]);
        set_consumer_timeout(NORMAL_CONSUMER_TIMEOUT_MS);
        rabbitmqctl(&["await_startup"]);
    }
}

/// Sets the broker's `consumer_timeout`; whether `rabbitmqctl` succeeded.
fn set_consumer_timeout(ms: u32) -> bool {
    let eval = format!("application:set_env(rabbit, consumer_timeout, {ms}).");
    rabbitmqctl(&["eval", &eval])
}

/// Connects to the broker, waiting (up to [`BROKER_RESTART`]) while it starts.
async fn connect_patiently() -> Broker {
    let url = broker_url();
    let accepts = || async {
        let properties = lapin::ConnectionProperties::default();
        lapin::Connection::connect(&url, properties).await.ok()
    };
    let probe = eventually("the broker back", BROKER_RESTART, accepts).await;
    let _ = probe.close(200, "probed".into()).await;
    Broker::connect().await
}

/// The pipeline `faults` from `queue` to `out` through the tagging plugin, at prefetch 50 and
/// `concurrency`, with a grace period of `grace_ms`.
fn republish_config(queue: &str, out: &str, grace_ms: u64, concurrency: usize) -> TestConfig {
    let window = format!("prefetch = 50\nconcurrency = {concurrency}");
    TestConfig::new()
        .grace_ms(grace_ms)
        .tagged("faults", queue, out, &window)
}

/// How long the broker stays stopped in the restart test.
const BROKER_DOWN: Duration = Duration::from_secs(2);

/// `stop_app` / `start_app` under load, with a durable queue and persistent messages: warren
/// reconnects and finishes; no message is lost, duplicates only from redelivery (reported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_loses_nothing() {
    bounded(broker_restart()).await;
}

async fn broker_restart() {
    let _restore = Restore;
    let broker = Broker::connect().await;
    let queue = unique("restart");
    let out = unique("restart-out");
    broker.queue(&out).await;
    broker.queue(&queue).await;
    const N: usize = 3000;
    for i in 0..N {
        broker
            .publish(
                &queue,
                b"persistent",
                with_id(format!("p{i}")).with_delivery_mode(2),
            )
            .await;
    }
    // Two at a time (each republish waits for its persistent confirm), so that most of the
    // work is still to do when the broker stops.
    let daemon = start(&republish_config(&queue, &out, 5000, 2).build()).await;
    // Let a third through, then restart the broker under load.
    let under_way = || async { (broker.ready(&queue).await <= (N as u32) * 2 / 3).then_some(()) };
    eventually("a third handled", PATIENCE, under_way).await;
    assert!(rabbitmqctl(&["stop_app"]), "rabbitmqctl stop_app");
    tokio::time::sleep(BROKER_DOWN).await;
    assert!(rabbitmqctl(&["start_app"]), "rabbitmqctl start_app");
    let broker = connect_patiently().await;
    let seen = collect_ids(&broker, &out, N).await;
    // Either way is right: lapin recovers if the broker is back within its retries, else
    // warren reconnects itself after RECOVERY_LIMIT.
    let back = || async {
        let scrape = daemon.scrape();
        let consume = [("connection", "consume")];
        let recovered = sample(&scrape, "warren_broker_recoveries_total", &consume);
        let reconnects = sample(&scrape, "warren_broker_reconnects_total", &[]);
        (recovered + reconnects >= 1.0).then_some((recovered, reconnects))
    };
    let (recovered, reconnects) = eventually("a recovery or a reconnect", PATIENCE, back).await;
    daemon.stop().await.expect("clean stop");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "broker restart: {N} messages, 0 lost, {duplicates} duplicates; lapin recoveries {recovered}, warren reconnects {reconnects}"
    );

    assert_eq!(seen.len(), N, "lost messages");
    assert_eq!(broker.ready(&queue).await, 0);
    let _ = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", "delete_queue", &queue])
        .status()
        .await;
    let _ = tokio::process::Command::new("rabbitmqctl")
        .args(["-q", "delete_queue", &out])
        .status()
        .await;
}

/// How long the memory-alarm test lets the daemon work under the alarm.
const UNDER_ALARM: Duration = Duration::from_secs(3);

/// A broker memory alarm while the plugin republishes: publishes block, so nothing is acked
/// (all stay unacknowledged), while a pipeline that only acks goes on; once the alarm clears
/// every message is republished and acked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_alarm_blocks_publishes_and_nothing_is_acked_early() {
    bounded(memory_alarm()).await;
}

async fn memory_alarm() {
    let _restore = Restore;
    let broker = Broker::connect().await;
    let queue = unique("alarm");
    let out = unique("alarm-out");
    let plain = unique("alarm-plain");
    broker.queue(&out).await;
    broker.queue(&queue).await;
    broker.queue(&plain).await;
    const N: usize = 40;
    for i in 0..N {
        broker
            .publish(&queue, b"blocked", with_id(format!("a{i}")))
            .await;
        broker
            .publish(&plain, b"ack", BasicProperties::default())
            .await;
    }
    assert!(rabbitmqctl(&["set_vm_memory_high_watermark", "0"]));
    // Beside the republishing pipeline, one whose plugin only acks: its acks go out on the
    // consuming connection, which the alarm does not block.
    let config = republish_config(&queue, &out, 5000, 50)
        .plugin("plain", &test_plugin("scripted"), "mode = \"ack\"", "")
        .queue(&plain, "")
        .pipeline("plain", &plain, "plain", "");
    let daemon = start(&config.build()).await;
    tokio::time::sleep(UNDER_ALARM).await;
    let (_, unacked) = queue_counts(&queue).await;
    assert_eq!(
        unacked, N,
        "under the alarm every republished message stays unacked"
    );
    assert_eq!(
        queue_counts(&plain).await,
        (0, 0),
        "acks are not blocked by the alarm: the plain pipeline finished"
    );
    assert!(
        broker.get(&out).await.is_none(),
        "nothing was published under the alarm"
    );
    assert!(rabbitmqctl(&[
        "set_vm_memory_high_watermark",
        NORMAL_WATERMARK
    ]));
    let seen = collect_ids(&broker, &out, N).await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(seen.len(), N);
    assert_eq!(
        broker.ready(&queue).await,
        0,
        "all acked after the alarm cleared"
    );
    broker.cleanup().await;
}

/// The cluster's node N listens on this port + N (`tests/cluster/cluster.sh`).
const CLUSTER_PORTS: u16 = 5700;

/// A three-node RabbitMQ cluster on this machine (`tests/cluster/cluster.sh`: nodes on ports
/// 5701-5703, the system broker untouched) with quorum queues: the node warren is connected to
/// stops under load; warren moves to a survivor from `[broker] urls`; nothing is lost.
///
/// Not in the default run (it boots three Erlang nodes, and once hung in CI where it had
/// passed alone): `cargo test --test faults -- --ignored cluster`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "boots a three-node cluster: cargo test --test faults -- --ignored cluster"]
async fn cluster_node_loss_moves_warren_to_a_survivor() {
    bounded(cluster_node_loss()).await;
}

async fn cluster_node_loss() {
    let script = support::repo_root().join("tests/cluster/cluster.sh");
    struct Down(std::path::PathBuf);
    impl Drop for Down {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).arg("down").status();
        }
    }
    let _down = Down(script.clone());
    let up = Command::new(&script)
        .arg("up")
        .output()
        .expect("cluster.sh up");
    assert!(
        up.status.success(),
        "cluster did not start: {}",
        String::from_utf8_lossy(&up.stderr)
    );
    let node = |n: u16| format!("amqp://guest:guest@127.0.0.1:{}/%2f", CLUSTER_PORTS + n);
    let queue = unique("cluster");
    let out = unique("cluster-out");
    let quorum = r#""x-queue-type" = "quorum""#;
    let config = TestConfig::with_urls(&[&node(1), &node(2), &node(3)])
        .plugin(
            "tagged",
            &test_plugin("tag_a"),
            &format!("to = \"{out}\""),
            "",
        )
        .queue_exact(&queue, quorum, "")
        .queue_exact(&out, quorum, "")
        .pipeline(
            "cluster",
            &queue,
            "tagged",
            "prefetch = 10\nconcurrency = 1",
        )
        .build();
    // The messages wait in the queue first, so that the node stops under load.
    let broker = Broker::connect_to(&node(2)).await;
    for name in [&queue, &out] {
        let mut args = lapin::types::FieldTable::default();
        args.insert(
            "x-queue-type".into(),
            lapin::types::AMQPValue::LongString("quorum".into()),
        );
        broker.queue_exact(name, args).await;
    }
    const N: usize = 2000;
    for i in 0..N {
        broker
            .publish(
                &queue,
                b"replicated",
                with_id(format!("c{i}")).with_delivery_mode(2),
            )
            .await;
    }
    // One message at a time (each republish waits for its quorum confirm): the node stops
    // with most of the work still to do.
    let daemon = start(&config).await; // connects to node 1, the first URL
    let under_way = || async { (broker.ready(&queue).await <= (N as u32) * 9 / 10).then_some(()) };
    eventually("a tenth handled", PATIENCE, under_way).await;
    let stopped_at = Instant::now();
    let stopped = Command::new(&script)
        .args(["stop-node", "1"])
        .status()
        .expect("stop node 1");
    assert!(stopped.success());
    // The quorum queues whose leader was on node 1 elect a new one; the test's own client
    // reads from node 2 once that is done (a get during the election is a hard error).
    tokio::time::sleep(QUORUM_ELECTION).await;
    let broker = Broker::connect_to(&node(2)).await;
    let seen = collect_ids(&broker, &out, N).await;
    let moved = Instant::now();
    let scrape = daemon.scrape();
    daemon.stop().await.expect("clean stop");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "cluster node loss: {N} messages, 0 lost, {duplicates} duplicates, all collected {:.1} s after the stop",
        (moved - stopped_at).as_secs_f64()
    );
    assert_eq!(seen.len(), N, "lost messages");
    assert!(
        sample(&scrape, "warren_broker_reconnects_total", &[]) >= 1.0,
        "warren moved to another node itself (lapin only retries the node it knew)"
    );
    assert_eq!(broker.ready(&queue).await, 0);
}

/// How long the broker may take to close a channel past its consumer timeout (it checks
/// about once a minute), and warren to notice it.
const TIMEOUT_NOTICED: Duration = Duration::from_secs(150);
/// The calm pipeline gets a message this often meanwhile.
const CALM_EVERY: Duration = Duration::from_millis(20);

/// RabbitMQ closes a channel whose delivery stays unacked past `consumer_timeout` (here 2 s;
/// the broker checks about once a minute): warren notices the closed channel, restarts that
/// pipeline alone, and the message is redelivered — not silently stuck. Another pipeline,
/// under load all along, handles each of its messages exactly once, and warren never
/// reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_consumer_timeout_is_detected() {
    bounded(consumer_timeout()).await;
}

async fn consumer_timeout() {
    let _restore = Restore;
    assert!(set_consumer_timeout(SHORT_CONSUMER_TIMEOUT_MS));
    let broker = Broker::connect().await;
    let queue = unique("consumer-timeout");
    let calm = unique("consumer-timeout-calm");
    let calm_out = unique("consumer-timeout-calm-out");
    broker.queue(&calm_out).await;
    broker.forget_later_queue(&queue);
    broker.forget_later_queue(&calm);
    // The slow plugin may take far longer than the consumer timeout.
    let config = TestConfig::new()
        .grace_ms(100)
        .plugin(
            "slow",
            &test_plugin("scripted"),
            "mode = \"body\"",
            "timeout_ms = 300000",
        )
        .queue(&queue, "")
        .pipeline("slow", &queue, "slow", "")
        .tagged("calm", &calm, &calm_out, "");
    let daemon = start(&config.build()).await;
    broker
        .publish(&queue, b"sleep:250000", BasicProperties::default())
        .await;
    // The calm pipeline's load, all the while.
    let loading = tokio_util::sync::CancellationToken::new();
    let load = {
        let (calm, loading) = (calm.clone(), loading.clone());
        tokio::spawn(async move {
            let producer = Broker::connect().await;
            let mut sent = 0usize;
            while !loading.is_cancelled() {
                let id = with_id(format!("calm-{sent}"));
                producer.publish(&calm, b"x", id).await;
                sent += 1;
                tokio::time::sleep(CALM_EVERY).await;
            }
            sent
        })
    };
    // Redelivered once the channel closed by consumer_timeout was noticed.
    let slow = [("pipeline", "slow")];
    daemon
        .wait_metric_for("warren_redeliveries_total", &slow, 1.0, TIMEOUT_NOTICED)
        .await;
    loading.cancel();
    let sent = load.await.expect("producer");
    let seen = collect_ids(&broker, &calm_out, sent).await;
    let scrape = daemon.scrape();
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        broker.ready(&queue).await,
        1,
        "the message is back in the queue"
    );
    assert_eq!(seen.len(), sent, "the calm pipeline lost messages");
    // Dropping the consumer of the channel the broker closed once made lapin recover the
    // whole consuming connection (its cancel-on-drop failing on the removed channel), and the
    // calm pipeline's deliveries in flight were redelivered; such consumers are now parked
    // (broker/consume.rs, `Retired`). So: each calm message exactly once, and no recovery.
    let twice: usize = seen.values().map(|n| n - 1).sum();
    assert_eq!(twice, 0, "the calm pipeline handled {twice} messages twice");
    assert_eq!(
        sample(
            &scrape,
            "warren_broker_recoveries_total",
            &[("connection", "consume")]
        ),
        0.0,
        "lapin recovered the consuming connection for one pipeline's channel"
    );
    assert!(sample(&scrape, "warren_pipeline_restarts_total", &slow) >= 1.0);
    assert_eq!(
        sample(&scrape, "warren_broker_reconnects_total", &[]),
        0.0,
        "warren reconnected everything for one pipeline's channel"
    );
    eprintln!(
        "consumer timeout: the calm pipeline handled {sent} messages meanwhile, {twice} twice"
    );
    broker.cleanup().await;
}
