//! The sandbox holds: a plugin that loops, allocates without end, recurses without end, traps
//! or gets an oversized message has that message handled by `on_error`, and every other
//! pipeline keeps flowing.

use std::collections::BTreeSet;

use lapin::BasicProperties;

use crate::support::{Broker, TestConfig, dead_letters_to, sample, start, test_plugin, unique};

/// The faulty plugin's limits: its `timeout_ms`, `memory_mb` and `max_body_bytes`.
const TIMEOUT_MS: u32 = 500;
const MEMORY_MB: u32 = 16;
const MAX_BODY_BYTES: usize = 1000;

/// Messages of the healthy pipeline, flowing while the faulty one fails.
const HEALTHY: u32 = 200;

/// Faulty messages end in the dead-letter queue while a healthy pipeline keeps acking, and the
/// faulty pipeline itself goes on with the next message.
#[tokio::test]
async fn faulty_plugins_are_contained() {
    let broker = Broker::connect().await;
    let faulty = unique("faulty");
    let healthy = unique("healthy");
    let dlq = unique("faulty-dlq");
    let dlx = unique("faulty-dlx");
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&faulty);
    broker.forget_later_queue(&healthy);
    let scripted = test_plugin("scripted");
    let limits = format!(
        "timeout_ms = {TIMEOUT_MS}\nmemory_mb = {MEMORY_MB}\nmax_body_bytes = {MAX_BODY_BYTES}"
    );
    let config = TestConfig::new()
        .grace_ms(2_000)
        .plugin("faulty", &scripted, "mode = \"body\"", &limits)
        .plugin("healthy", &scripted, "mode = \"ack\"", "")
        .queue(&faulty, &dead_letters_to(&dlx))
        .queue(&healthy, "")
        .pipeline(
            "faulty",
            &faulty,
            "faulty",
            "on_error = \"reject\"\nconcurrency = 4",
        )
        .pipeline("healthy", &healthy, "healthy", "");
    let daemon = start(&config.build()).await;
    let oversized = "x".repeat(2 * MAX_BODY_BYTES);
    // `sleep:` waits in a host call (WASI clocks), where epoch interruption cannot reach: the
    // async deadline ends it.
    let bodies = [
        "loop",
        "sleep:5000",
        "alloc",
        "recurse",
        "trap",
        oversized.as_str(),
    ];
    for body in bodies {
        broker
            .publish(&faulty, body.as_bytes(), BasicProperties::default())
            .await;
    }
    for i in 0..HEALTHY {
        broker
            .publish(
                &healthy,
                format!("ok {i}").as_bytes(),
                BasicProperties::default(),
            )
            .await;
    }
    broker.wait_ready(&healthy, 0).await;

    let mut dead = BTreeSet::new();
    for _ in bodies {
        let m = broker.next(&dlq).await;
        dead.insert(String::from_utf8_lossy(&m.delivery.data).into_owned());
    }
    let expected: BTreeSet<String> = bodies.into_iter().map(String::from).collect();
    assert_eq!(dead, expected);
    // Each for its own reason: the loop and the sleep hit timeout_ms; the allocation hits
    // memory_mb long before timeout_ms (a trap, not a timeout), as do the recursion and the
    // panic; the oversized body is refused unread.
    let scrape = daemon.scrape();
    let reason = |reason| {
        sample(
            &scrape,
            "warren_plugin_failures_total",
            &[("pipeline", "faulty"), ("reason", reason)],
        )
    };
    assert_eq!(reason("timeout"), 2.0, "loop and sleep");
    assert_eq!(reason("trap"), 3.0, "alloc, recurse, trap");
    assert_eq!(reason("too_large"), 1.0);

    // The faulty pipeline still works: its next message is handled normally.
    broker
        .publish(&faulty, b"ack", BasicProperties::default())
        .await;
    daemon
        .wait_metric(
            "warren_messages_total",
            &[("pipeline", "faulty"), ("verdict", "ack")],
            1.0,
        )
        .await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&faulty).await, 0, "the ack was acked");
    assert_eq!(broker.ready(&healthy).await, 0);
    assert!(
        broker.get(&dlq).await.is_none(),
        "nothing else was dead-lettered"
    );
    broker.cleanup().await;
}

/// Messages that wait in the plugin at once (each sleeps in a host call).
const SLEEPERS: u32 = 6;
/// The capped plugin's `max_instances`.
const CAP: u32 = 2;

/// `max_instances` caps a plugin's pool apart from `concurrency`: with six messages asleep in
/// each pipeline, the uncapped plugin has six instances and the capped one two, the other four
/// messages waiting for one; every message is still handled and acked.
#[tokio::test]
async fn max_instances_caps_the_pool_not_the_messages() {
    let broker = Broker::connect().await;
    let (capped, open) = (unique("capped"), unique("uncapped"));
    broker.forget_later_queue(&capped);
    broker.forget_later_queue(&open);
    let scripted = test_plugin("scripted");
    let at_once = format!("prefetch = {SLEEPERS}\nconcurrency = {SLEEPERS}");
    let config = TestConfig::new()
        .plugin(
            "capped",
            &scripted,
            "mode = \"body\"",
            &format!("max_instances = {CAP}"),
        )
        .plugin("open", &scripted, "mode = \"body\"", "")
        .queue(&capped, "")
        .queue(&open, "")
        .pipeline("capped", &capped, "capped", &at_once)
        .pipeline("open", &open, "open", &at_once);
    let daemon = start(&config.build()).await;
    for queue in [&capped, &open] {
        for _ in 0..SLEEPERS {
            broker
                .publish(queue, b"sleep:1500", BasicProperties::default())
                .await;
        }
    }
    let instances = |plugin| daemon.metric("warren_plugin_instances", &[("plugin", plugin)]);
    daemon
        .wait_metric(
            "warren_plugin_instances",
            &[("plugin", "open")],
            f64::from(SLEEPERS),
        )
        .await;
    daemon
        .wait_metric(
            "warren_messages_in_flight",
            &[("pipeline", "capped")],
            f64::from(SLEEPERS),
        )
        .await;
    assert_eq!(
        instances("capped"),
        f64::from(CAP),
        "six messages in the capped pipeline, two instances"
    );
    for pipeline in ["capped", "open"] {
        daemon
            .wait_metric(
                "warren_messages_total",
                &[("pipeline", pipeline), ("verdict", "ack")],
                f64::from(SLEEPERS),
            )
            .await;
    }
    assert_eq!(instances("capped"), f64::from(CAP));
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&capped).await, 0);
    assert_eq!(broker.ready(&open).await, 0);
    broker.cleanup().await;
}

/// A plugin that computes for a few milliseconds per message (longer than a message's first
/// step may take in the pipeline's loop, shorter than an epoch tick, so it never yields) still
/// has its messages run side by side, up to `concurrency`: the loop spawns them once it sees
/// that they are slow. (Run in the loop, one at a time, at most one more would be in flight
/// now and then: a message the epoch tick happened to interrupt.) Every message is handled
/// once. (The daemon runs in the test's runtime: as many workers as `concurrency`.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_of_a_computing_plugin_run_side_by_side() {
    const MESSAGES: u32 = 800;
    const CONCURRENCY: u32 = 4;
    let broker = Broker::connect().await;
    let queue = unique("computing");
    broker.forget_later_queue(&queue);
    let config = TestConfig::new()
        .plugin("spinner", &test_plugin("scripted"), "mode = \"body\"", "")
        .queue(&queue, "")
        .pipeline(
            "computing",
            &queue,
            "spinner",
            &format!("prefetch = 8\nconcurrency = {CONCURRENCY}"),
        );
    let daemon = start(&config.build()).await;
    // Published faster than they are handled, so the queue keeps a backlog: 4 s of work one
    // at a time, 1 s side by side. Watched from the first publish: on a loaded machine the
    // publishing can take a good part of that second.
    let bodies = (0..MESSAGES).map(|_| b"spin:5");
    tokio::join!(
        broker.publish_many(&queue, bodies, BasicProperties::default(), 200),
        daemon.wait_metric(
            "warren_messages_in_flight",
            &[("pipeline", "computing")],
            f64::from(CONCURRENCY),
        ),
    );
    daemon
        .wait_metric(
            "warren_messages_total",
            &[("pipeline", "computing"), ("verdict", "ack")],
            f64::from(MESSAGES),
        )
        .await;
    assert_eq!(
        daemon.total("warren_messages_total", &[("pipeline", "computing")]),
        f64::from(MESSAGES),
        "each message handled once"
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}
