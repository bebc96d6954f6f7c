//! Each verdict, and a plugin trap under both `on_error` policies, observed on the broker.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use crate::support::{Broker, dead_letters_to, header, scripted, scripted_config, start, unique};

/// Messages the `ack` test publishes.
const ACKED: u32 = 25;

/// How long a trapping message is left to be delivered, trap and be requeued a few times.
const REQUEUE_LOOP: std::time::Duration = std::time::Duration::from_millis(500);

/// The priority the `republish` test asks for, on an output queue that allows up to 10.
const PRIORITY: u8 = 7;

/// `ack`: every message is consumed and acked; after a graceful stop nothing returns to the queue.
#[tokio::test]
async fn ack_empties_the_queue_and_leaves_nothing_unacked() {
    let broker = Broker::connect().await;
    let queue = unique("ack");
    broker.queue(&queue).await;
    for i in 0..ACKED {
        broker
            .publish(
                &queue,
                format!("m{i}").as_bytes(),
                BasicProperties::default(),
            )
            .await;
    }
    let daemon = start(&scripted_config(&queue, "mode = \"ack\"", "prefetch = 5")).await;
    daemon
        .wait_metric(
            "warren_messages_total",
            &[("pipeline", queue.as_str()), ("verdict", "ack")],
            f64::from(ACKED),
        )
        .await;
    daemon.stop().await.expect("clean stop");
    // Unacked messages would be requeued when the daemon's channel closed.
    assert_eq!(broker.ready(&queue).await, 0, "a message was left unacked");
    broker.cleanup().await;
}

/// `reject`: the message goes to the queue's dead-letter exchange, not back to the queue.
#[tokio::test]
async fn reject_dead_letters() {
    let broker = Broker::connect().await;
    let queue = unique("reject");
    let dlq = unique("reject-dlq");
    let dlx = unique("reject-dlx");
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    let mut args = FieldTable::default();
    args.insert(
        "x-dead-letter-exchange".into(),
        AMQPValue::LongString(dlx.as_str().into()),
    );
    broker.queue_with(&queue, args).await;
    let config = scripted(&queue, "mode = \"reject\"", &dead_letters_to(&dlx), "");
    let daemon = start(&config.build()).await;
    broker
        .publish(&queue, b"poison", BasicProperties::default())
        .await;
    let dead = broker.next(&dlq).await;
    assert_eq!(dead.delivery.data, b"poison");
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// `requeue`: the message comes back, and the next `handle` sees `redelivered = true`.
#[tokio::test]
async fn requeue_redelivers_with_redelivered_flag() {
    let broker = Broker::connect().await;
    let queue = unique("requeue");
    let out = unique("requeue-out");
    broker.queue(&queue).await;
    broker.queue(&out).await;
    let daemon = start(&scripted_config(
        &queue,
        &format!("mode = \"requeue-once\", to = \"{out}\""),
        "",
    ))
    .await;
    broker
        .publish(&queue, b"again", BasicProperties::default())
        .await;
    let seen = broker.next(&out).await;
    assert_eq!(seen.delivery.data, b"again");
    assert_eq!(
        header(&seen.delivery.properties, "seen-redelivered"),
        Some(&AMQPValue::Boolean(true)),
        "the plugin only republishes once it sees redelivered = true"
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// `republish` with [`PRIORITY`]: arrives on the other queue with that priority, persistent,
/// with the original's other properties, and the source is acked.
#[tokio::test]
async fn republish_sets_priority_and_persistence() {
    let broker = Broker::connect().await;
    let queue = unique("republish");
    let out = unique("republish-out");
    broker.queue(&queue).await;
    let mut args = FieldTable::default();
    args.insert("x-max-priority".into(), AMQPValue::LongInt(10));
    broker.queue_with(&out, args).await;
    let daemon = start(&scripted_config(
        &queue,
        &format!("mode = \"republish\", to = \"{out}\", priority = \"{PRIORITY}\""),
        "",
    ))
    .await;
    broker
        .publish(
            &queue,
            b"forward me",
            BasicProperties::default()
                .with_delivery_mode(1)
                .with_correlation_id("corr-9".into())
                .with_content_type("text/plain".into()),
        )
        .await;
    let got = broker.next(&out).await;
    let p = &got.delivery.properties;
    assert_eq!(got.delivery.data, b"forward me");
    assert_eq!(*p.priority(), Some(PRIORITY));
    assert_eq!(
        *p.delivery_mode(),
        Some(2),
        "republished messages are persistent"
    );
    assert_eq!(
        p.correlation_id().as_ref().map(|s| s.as_str()),
        Some("corr-9")
    );
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("text/plain")
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0, "the source was acked");
    broker.cleanup().await;
}

/// An extra `publish` during `handle` is delivered, then the source is acked.
#[tokio::test]
async fn extra_publish_then_ack() {
    let broker = Broker::connect().await;
    let queue = unique("publish");
    let out = unique("publish-out");
    broker.queue(&queue).await;
    broker.queue(&out).await;
    let daemon = start(&scripted_config(
        &queue,
        &format!("mode = \"publish-ack\", to = \"{out}\""),
        "",
    ))
    .await;
    broker
        .publish(
            &queue,
            b"ping",
            BasicProperties::default().with_correlation_id("c-42".into()),
        )
        .await;
    let reply = broker.next(&out).await;
    assert_eq!(reply.delivery.data, b"extra:ping");
    assert_eq!(
        reply
            .delivery
            .properties
            .correlation_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("c-42")
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// A trap with `on_error = "reject"` dead-letters the message, and the publishes made
/// before the trap are discarded.
#[tokio::test]
async fn trap_with_on_error_reject_dead_letters_and_discards_publishes() {
    let broker = Broker::connect().await;
    let queue = unique("trap-reject");
    let out = unique("trap-reject-out");
    let dlq = unique("trap-reject-dlq");
    let dlx = unique("trap-reject-dlx");
    broker.queue(&out).await;
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&queue);
    let config = scripted(
        &queue,
        &format!("mode = \"publish-then-trap\", to = \"{out}\""),
        &dead_letters_to(&dlx),
        "on_error = \"reject\"",
    );
    let daemon = start(&config.build()).await;
    broker
        .publish(&queue, b"boom", BasicProperties::default())
        .await;
    let dead = broker.next(&dlq).await;
    assert_eq!(dead.delivery.data, b"boom");
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        broker.ready(&out).await,
        0,
        "a trapped handle's publishes are discarded"
    );
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

/// A trap with `on_error = "requeue"` gives the message back: it stays in the queue, redelivered.
#[tokio::test]
async fn trap_with_on_error_requeue_keeps_the_message() {
    let broker = Broker::connect().await;
    let queue = unique("trap-requeue");
    broker.forget_later_queue(&queue);
    let daemon = start(&scripted_config(
        &queue,
        "mode = \"body\"",
        "on_error = \"requeue\"\nprefetch = 1",
    ))
    .await;
    broker
        .publish(&queue, b"trap", BasicProperties::default())
        .await;
    tokio::time::sleep(REQUEUE_LOOP).await;
    daemon.stop().await.expect("clean stop");
    let back = broker.next(&queue).await;
    assert_eq!(back.delivery.data, b"trap");
    assert!(
        back.delivery.redelivered,
        "it was delivered and requeued before"
    );
    broker.cleanup().await;
}

/// A republish that no queue takes (unroutable, returned by `mandatory`) is not acked: the
/// source goes to `on_error` (here: dead-lettered), and nothing is lost.
#[tokio::test]
async fn unroutable_republish_goes_to_on_error() {
    let broker = Broker::connect().await;
    let queue = unique("unroutable");
    let dlq = unique("unroutable-dlq");
    let dlx = unique("unroutable-dlx");
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&queue);
    let nowhere = unique("no-such-queue");
    let config = scripted(
        &queue,
        &format!("mode = \"republish\", to = \"{nowhere}\""),
        &dead_letters_to(&dlx),
        "on_error = \"reject\"",
    );
    let daemon = start(&config.build()).await;
    broker
        .publish(&queue, b"lost?", BasicProperties::default())
        .await;
    let dead = broker.next(&dlq).await;
    assert_eq!(dead.delivery.data, b"lost?");
    let failures = daemon.metric("warren_publish_failures_total", &[("pipeline", &queue)]);
    daemon.stop().await.expect("clean stop");
    assert_eq!(failures, 1.0, "the returned publish is counted");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}
