//! The broker's `consumer_timeout` closes the channel of a pipeline whose delivery stays
//! unacked; that pipeline alone restarts, and another one under load is not disturbed.

use std::time::Duration;

use lapin::BasicProperties;

use super::bounded;
use crate::support::{
    Broker, Node, NodeSpec, TestConfig, collect_ids, sample, start, test_plugin, unique, with_id,
};

/// The node's `consumer_timeout` (RabbitMQ's default is 30 min).
const SHORT_CONSUMER_TIMEOUT_MS: u32 = 2_000;

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
    let spec = NodeSpec::plain().conf(&format!("consumer_timeout = {SHORT_CONSUMER_TIMEOUT_MS}"));
    let node = Node::start("consumer-timeout", &spec).await;
    let broker = Broker::connect_to(&node.url()).await;
    let queue = unique("consumer-timeout");
    let calm = unique("consumer-timeout-calm");
    let calm_out = unique("consumer-timeout-calm-out");
    broker.queue(&calm_out).await;
    // The slow plugin may take far longer than the consumer timeout.
    let config = TestConfig::with_url(&node.url())
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
        let (calm, loading, url) = (calm.clone(), loading.clone(), node.url());
        tokio::spawn(async move {
            let producer = Broker::connect_to(&url).await;
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
}
