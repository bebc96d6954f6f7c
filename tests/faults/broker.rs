//! The broker stopped and started under load, stopped until lapin gives up its recovery,
//! and a memory alarm while the plugin republishes, each on a node of the test's own.

use std::time::{Duration, Instant};

use lapin::BasicProperties;
use warren::app::RECOVERY_LIMIT;

use super::bounded;
use crate::support::{
    Broker, Node, NodeSpec, PATIENCE, Running, TestConfig, collect_ids, eventually, sample, start,
    test_plugin, unique, with_id,
};

/// How long the broker stays stopped in the restart test.
const BROKER_DOWN: Duration = Duration::from_secs(2);

/// The pipeline `faults` from `queue` to `out` through the tagging plugin on the broker at
/// `url`, at prefetch 50 and `concurrency`, with a grace period of `grace_ms`.
fn republish_config(
    url: &str,
    queue: &str,
    out: &str,
    grace_ms: u64,
    concurrency: usize,
) -> TestConfig {
    let window = format!("prefetch = 50\nconcurrency = {concurrency}");
    TestConfig::with_url(url)
        .grace_ms(grace_ms)
        .tagged("faults", queue, out, &window)
}

/// A node of the test's own named `name`, with `n` persistent messages (ids `<name>-<i>`) in
/// a durable queue, and warren republishing them to another, two at a time (each republish
/// waits for its persistent confirm, so that most of the work is still to do when the test
/// disturbs the broker); returns once a third is handled, with the queue and the output queue.
async fn under_load(name: &str, n: usize) -> (Node, Running, String, String) {
    let node = Node::start(name, &NodeSpec::plain()).await;
    let broker = Broker::connect_to(&node.url()).await;
    let queue = unique(name);
    let out = unique(&format!("{name}-out"));
    broker.queue(&out).await;
    broker.queue(&queue).await;
    for i in 0..n {
        let persistent = with_id(format!("{name}-{i}")).with_delivery_mode(2);
        broker.publish(&queue, b"persistent", persistent).await;
    }
    let config = republish_config(&node.url(), &queue, &out, 5000, 2);
    let daemon = start(&config.build()).await;
    let under_way = || async { (broker.ready(&queue).await <= (n as u32) * 2 / 3).then_some(()) };
    eventually("a third handled", PATIENCE, under_way).await;
    (node, daemon, queue, out)
}

/// `stop_app` / `start_app` under load, with a durable queue and persistent messages: warren
/// reconnects and finishes; no message is lost, duplicates only from redelivery (reported).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_under_load_loses_nothing() {
    bounded(broker_restart()).await;
}

async fn broker_restart() {
    const N: usize = 3000;
    let (node, daemon, queue, out) = under_load("restart", N).await;
    node.stop_app().await;
    tokio::time::sleep(BROKER_DOWN).await;
    node.start_app().await;
    let broker = Broker::connect_to(&node.url()).await;
    let seen = collect_ids(&broker, &out, N).await;
    // Either way is right: lapin recovers if the broker is back within its retries, else
    // warren reconnects itself once lapin gives up.
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
        "broker restart: {N} messages, {} lost, {duplicates} duplicates; lapin recoveries {recovered}, warren reconnects {reconnects}",
        N - seen.len()
    );
    assert_eq!(seen.len(), N, "lost messages");
    assert_eq!(broker.ready(&queue).await, 0);
}

/// The broker stays down: lapin's recovery is refused until it gives up (1 +
/// `RECOVERY_ATTEMPTS` connects, about 2–4 s), which leaves its connection "reconnecting" for
/// ever. warren sees that and reconnects itself, well before `RECOVERY_LIMIT` (which is there
/// for recoveries stuck some other way); once the node is back, every message is handled.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recovery_lapin_gave_up_is_taken_over_at_once() {
    bounded(lapin_gave_up()).await;
}

async fn lapin_gave_up() {
    const N: usize = 600;
    let (node, daemon, queue, out) = under_load("gave-up", N).await;
    // Timed from before `stop_app`, which closes the connections first: a warren that waited
    // for RECOVERY_LIMIT would reconnect only after this deadline.
    let stopping = Instant::now();
    node.stop_app().await;
    let reconnected = || async {
        let reconnects = sample(&daemon.scrape(), "warren_broker_reconnects_total", &[]);
        (reconnects >= 1.0).then_some(())
    };
    let deadline = RECOVERY_LIMIT - Duration::from_secs(2);
    eventually(
        "warren reconnecting once lapin gave up (not waiting for RECOVERY_LIMIT)",
        deadline.saturating_sub(stopping.elapsed()),
        reconnected,
    )
    .await;
    let took = stopping.elapsed();
    node.start_app().await;
    let broker = Broker::connect_to(&node.url()).await;
    let seen = collect_ids(&broker, &out, N).await;
    daemon.stop().await.expect("clean stop");
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "lapin gave up: warren reconnecting {:.1} s after stop_app began; {N} messages, {} lost, {duplicates} duplicates",
        took.as_secs_f64(),
        N - seen.len()
    );
    assert_eq!(seen.len(), N, "lost messages");
    assert_eq!(broker.ready(&queue).await, 0);
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
    let node = Node::start("alarm", &NodeSpec::plain()).await;
    let broker = Broker::connect_to(&node.url()).await;
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
    node.ctl(&["set_vm_memory_high_watermark", "0"]).await;
    // Beside the republishing pipeline, one whose plugin only acks: its acks go out on the
    // consuming connection, which the alarm does not block.
    let config = republish_config(&node.url(), &queue, &out, 5000, 50)
        .plugin("plain", &test_plugin("scripted"), "mode = \"ack\"", "")
        .queue(&plain, "")
        .pipeline("plain", &plain, "plain", "");
    let daemon = start(&config.build()).await;
    tokio::time::sleep(UNDER_ALARM).await;
    let (_, unacked) = node.queue_counts(&queue).await;
    assert_eq!(
        unacked, N,
        "under the alarm every republished message stays unacked"
    );
    assert_eq!(
        node.queue_counts(&plain).await,
        (0, 0),
        "acks are not blocked by the alarm: the plain pipeline finished"
    );
    assert!(
        broker.get(&out).await.is_none(),
        "nothing was published under the alarm"
    );
    node.ctl(&["set_vm_memory_high_watermark", "0.4"]).await;
    let seen = collect_ids(&broker, &out, N).await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(seen.len(), N);
    assert_eq!(
        broker.ready(&queue).await,
        0,
        "all acked after the alarm cleared"
    );
}
