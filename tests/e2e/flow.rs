//! Flow control and what a plugin sees: prefetch, priority order, message fields.

use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use crate::support::{
    Broker, TestConfig, dead_letters_to, scripted, scripted_config, start, test_plugin, unique,
};

/// The prefetch of the prefetch test: at most this many messages out at once.
const PREFETCH: u32 = 3;
/// Messages queued for the prefetch test, more than [`PREFETCH`] and each asleep in the plugin.
const QUEUED: u32 = 12;
/// How often, and how far apart, the prefetch test looks at the queue.
const LOOKS: u32 = 5;
const LOOK_EVERY: Duration = Duration::from_millis(200);

/// The highest priority of the priority queue.
const MAX_PRIORITY: u8 = 10;

/// With prefetch 3 and concurrency 10, the broker never has more than 3 messages out:
/// while every delivered message sleeps in the plugin, exactly 9 of 12 stay ready.
#[tokio::test]
async fn prefetch_bounds_unacked_messages() {
    let broker = Broker::connect().await;
    let queue = unique("prefetch");
    broker.queue(&queue).await;
    for _ in 0..QUEUED {
        broker
            .publish(&queue, b"sleep:3000", BasicProperties::default())
            .await;
    }
    let daemon = start(&scripted_config(
        &queue,
        "mode = \"body\"",
        &format!("prefetch = {PREFETCH}\nconcurrency = 10"),
    ))
    .await;
    for _ in 0..LOOKS {
        tokio::time::sleep(LOOK_EVERY).await;
        let ready = broker.ready(&queue).await;
        assert_eq!(
            ready,
            QUEUED - PREFETCH,
            "prefetch {PREFETCH} should leave {} of {QUEUED} messages ready",
            QUEUED - PREFETCH
        );
    }
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// A priority queue filled before warren starts is processed highest priority first at prefetch 1.
#[tokio::test]
async fn priority_queue_is_processed_highest_first() {
    let broker = Broker::connect().await;
    let queue = unique("priority");
    let out = unique("priority-out");
    broker.queue(&out).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-max-priority".into(),
        AMQPValue::LongInt(MAX_PRIORITY.into()),
    );
    broker.queue_with(&queue, args).await;
    for priority in [3u8, 9, 0, 5, 7, 1, 8, 2, 6, 4] {
        broker
            .publish(
                &queue,
                format!("p{priority}").as_bytes(),
                BasicProperties::default().with_priority(priority),
            )
            .await;
    }
    let config = scripted(
        &queue,
        &format!("mode = \"republish\", to = \"{out}\""),
        &format!("max_priority = {MAX_PRIORITY}"),
        "prefetch = 1",
    );
    let daemon = start(&config.build()).await;
    let mut order = Vec::new();
    for _ in 0..10 {
        let m = broker.next(&out).await;
        order.push(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        order,
        ["p9", "p8", "p7", "p6", "p5", "p4", "p3", "p2", "p1", "p0"]
    );
    broker.cleanup().await;
}

/// The plugin sees the body, routing, flags and every AMQP property the producer set.
#[tokio::test]
async fn plugin_sees_every_message_field() {
    let broker = Broker::connect().await;
    let queue = unique("fields");
    let out = unique("fields-out");
    broker.queue(&queue).await;
    broker.queue(&out).await;
    let daemon = start(&scripted_config(
        &queue,
        &format!("mode = \"echo\", to = \"{out}\""),
        "",
    ))
    .await;
    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
    headers.insert("attempt".into(), AMQPValue::LongInt(3));
    headers.insert("urgent".into(), AMQPValue::Boolean(true));
    broker
        .publish(
            &queue,
            b"{\"hello\":1}",
            BasicProperties::default()
                .with_content_type("application/json".into())
                .with_content_encoding("identity".into())
                .with_headers(headers)
                .with_priority(4)
                .with_correlation_id("corr".into())
                .with_reply_to("replies".into())
                .with_expiration("60000".into())
                .with_message_id("id-1".into())
                .with_timestamp(1_700_000_000)
                .with_type("greeting".into())
                .with_app_id("tests".into())
                .with_delivery_mode(2),
        )
        .await;
    let echo = broker.next(&out).await;
    daemon.stop().await.expect("clean stop");
    let seen: serde_json::Value =
        serde_json::from_slice(&echo.delivery.data).expect("echo is JSON");
    assert_eq!(seen["body"], "{\"hello\":1}");
    assert_eq!(seen["exchange"], "");
    assert_eq!(seen["routing_key"], queue.as_str());
    assert_eq!(seen["queue"], queue.as_str());
    assert_eq!(seen["redelivered"], false);
    assert_eq!(seen["delivery_count"], serde_json::Value::Null);
    assert_eq!(seen["properties"]["content_type"], "application/json");
    assert_eq!(seen["properties"]["content_encoding"], "identity");
    assert_eq!(seen["properties"]["headers"]["tenant"], "acme");
    assert_eq!(seen["properties"]["headers"]["attempt"], 3);
    assert_eq!(seen["properties"]["headers"]["urgent"], true);
    assert_eq!(seen["properties"]["priority"], 4);
    assert_eq!(seen["properties"]["correlation_id"], "corr");
    assert_eq!(seen["properties"]["reply_to"], "replies");
    assert_eq!(seen["properties"]["expiration"], "60000");
    assert_eq!(seen["properties"]["message_id"], "id-1");
    assert_eq!(seen["properties"]["timestamp"], 1_700_000_000u64);
    assert_eq!(seen["properties"]["kind"], "greeting");
    assert_eq!(seen["properties"]["app_id"], "tests");
    assert_eq!(seen["properties"]["delivery_mode"], 2);
    broker.cleanup().await;
}

/// How long the requeuing daemon of the quorum test runs: long enough to requeue the message.
const REQUEUE_LOOP: Duration = Duration::from_millis(300);

/// On a quorum queue the broker's delivery count reaches the plugin.
#[tokio::test]
async fn quorum_queue_delivery_count_reaches_the_plugin() {
    let broker = Broker::connect().await;
    let queue = unique("quorum");
    let out = unique("quorum-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    // requeue-once requeues the first delivery and echoes nothing; use echo after a requeue:
    // first a daemon that requeues, then one that echoes.
    let quorum = |mode: &str| {
        TestConfig::new()
            .plugin("scripted", &test_plugin("scripted"), mode, "")
            .queue_exact(&queue, r#""x-queue-type" = "quorum""#, "")
            .pipeline(&queue, &queue, "scripted", "prefetch = 1")
            .build()
    };
    let requeuer = start(&quorum("mode = \"body\"")).await;
    broker
        .publish(&queue, b"requeue", BasicProperties::default())
        .await;
    tokio::time::sleep(REQUEUE_LOOP).await;
    requeuer.stop().await.expect("clean stop");
    let echo = start(&quorum(&format!("mode = \"echo\", to = \"{out}\""))).await;
    let seen = broker.next(&out).await;
    echo.stop().await.expect("clean stop");
    let seen: serde_json::Value = serde_json::from_slice(&seen.delivery.data).expect("JSON");
    assert_eq!(seen["redelivered"], true);
    assert!(
        seen["delivery_count"].as_u64().is_some_and(|n| n >= 1),
        "x-delivery-count should be passed on: {seen}"
    );
    broker.cleanup().await;
}

/// Prefetch and concurrency of the coalescing test: its window of messages out at once.
const COALESCED: u32 = 50;
/// Messages of the coalescing test's first part, finishing out of order.
const OUT_OF_ORDER: u64 = 60;
/// One message in this many (the fourth of each) is rejected between acks.
const REJECT_EVERY: u64 = 7;
/// The longest sleep of the out-of-order messages, in ms.
const MAX_SLEEP_MS: u64 = 90;
/// Quick messages behind the slow one in the coalescing test's second part.
const QUICK: u32 = 20;

/// Ack coalescing (on by default): out-of-order completions with rejects between acks all
/// settle correctly, and a slow message at the head of the window is never covered by a
/// `multiple` ack — stopping while it sleeps returns exactly it to the queue.
#[tokio::test]
async fn coalesced_acks_never_cover_unfinished_or_rejected_messages() {
    let broker = Broker::connect().await;
    let queue = unique("coalesce");
    let dlq = unique("coalesce-dlq");
    let dlx = unique("coalesce-dlx");
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&queue);
    let window = format!("prefetch = {COALESCED}\nconcurrency = {COALESCED}");
    // With a grace period of 0, the stop's flush is what sends the acks still held.
    let config = scripted(&queue, "mode = \"body\"", &dead_letters_to(&dlx), &window)
        .grace_ms(0)
        .build();

    // Out of order, with rejects between acks.
    let daemon = start(&config).await;
    let mut rejects = 0;
    for i in 0..OUT_OF_ORDER {
        let body = if i % REJECT_EVERY == 3 {
            rejects += 1;
            "reject".to_owned()
        } else {
            format!("sleep:{}", (i * 37) % MAX_SLEEP_MS)
        };
        broker
            .publish(&queue, body.as_bytes(), BasicProperties::default())
            .await;
    }
    let mut dead = 0;
    while dead < rejects {
        broker.next(&dlq).await;
        dead += 1;
    }
    // Every sleep done and its ack handed over.
    let acks = [("pipeline", queue.as_str()), ("verdict", "ack")];
    let in_flight = [("pipeline", queue.as_str())];
    let acked = OUT_OF_ORDER - rejects;
    daemon
        .wait_metric("warren_messages_total", &acks, acked as f64)
        .await;
    daemon
        .wait_metric_down_to("warren_messages_in_flight", &in_flight, 0.0)
        .await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        broker.ready(&queue).await,
        0,
        "every ack reached the broker"
    );
    assert!(
        broker.get(&dlq).await.is_none(),
        "only the rejects were dead-lettered"
    );

    // A slow message first, then quick ones: stop while it still sleeps.
    let daemon = start(&config).await;
    broker
        .publish(&queue, b"sleep:5000", BasicProperties::default())
        .await;
    for _ in 0..QUICK {
        broker
            .publish(&queue, b"ack", BasicProperties::default())
            .await;
    }
    daemon
        .wait_metric("warren_messages_total", &acks, f64::from(QUICK))
        .await;
    // The quick ones are settled; the slow one is still inside the plugin.
    daemon
        .wait_metric_down_to("warren_messages_in_flight", &in_flight, 1.0)
        .await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        broker.ready(&queue).await,
        1,
        "only the unfinished message returns: the quick acks were sent, the slow one was not covered"
    );
    broker.cleanup().await;
}
