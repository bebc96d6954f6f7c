//! One pipeline is one failure domain: a pipeline whose channel the broker closes is restarted
//! alone, and the others go on as if nothing happened.

use lapin::BasicProperties;

use crate::harness::{
    Broker, TestConfig, collect_ids, drain_ids, queue_counts, start, test_plugin, unique,
};

/// Two pipelines under load; one's queue is deleted in the middle. That pipeline alone is
/// restarted (warren declares its queue again) and takes new messages; the other handles
/// every one of its messages exactly once, and warren never reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_restarts_its_pipeline_alone() {
    const N: usize = 1_000;
    let broker = Broker::connect().await;
    let (hit, calm) = (unique("domain-hit"), unique("domain-calm"));
    let (hit_out, calm_out) = (unique("domain-hit-out"), unique("domain-calm-out"));
    broker.queue(&hit_out).await;
    broker.queue(&calm_out).await;
    broker.forget_later_queue(&hit);
    broker.forget_later_queue(&calm);
    let tagged = test_plugin("tag_a");
    let config = TestConfig::new()
        .plugin("hit", &tagged, &format!("to = \"{hit_out}\""), "")
        .plugin("calm", &tagged, &format!("to = \"{calm_out}\""), "")
        .queue(&hit, "")
        .queue(&calm, "")
        .pipeline("hit", &hit, "hit", "prefetch = 20")
        .pipeline("calm", &calm, "calm", "prefetch = 20")
        .build();
    let daemon = start(&config).await;
    let id = |what: &str, i: usize| {
        BasicProperties::default().with_message_id(format!("{what}-{i}").into())
    };
    for i in 0..N {
        broker.publish(&calm, b"x", id("calm", i)).await;
        if i < 100 {
            broker.publish(&hit, b"x", id("hit", i)).await;
        }
        if i == N / 2 {
            broker.delete_queue(&hit).await;
        }
    }
    daemon
        .wait_metric(
            "warren_pipeline_restarts_total",
            &[("pipeline", "hit")],
            1.0,
        )
        .await;
    // The restarted pipeline declared its queue again and consumes it.
    broker.wait_consumers(&hit, 1).await;
    broker.publish(&hit, b"x", id("hit-after", 0)).await;
    let after = broker.next(&hit_out).await;
    let mut seen_after = after
        .delivery
        .properties
        .message_id()
        .clone()
        .map(|s| s.to_string());
    while seen_after.as_deref() != Some("hit-after-0") {
        seen_after = broker
            .next(&hit_out)
            .await
            .delivery
            .properties
            .message_id()
            .clone()
            .map(|s| s.to_string());
    }

    let mut calm_seen = collect_ids(&broker, &calm_out, N).await;
    let scrape = daemon.scrape();
    daemon.stop().await.expect("clean stop");
    drain_ids(&broker, &calm_out, &mut calm_seen).await;
    assert_eq!(calm_seen.len(), N, "the untouched pipeline lost messages");
    let twice: Vec<_> = calm_seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        twice.is_empty(),
        "the untouched pipeline handled some twice: {twice:?}"
    );
    let restarted = |pipeline: &str| {
        scrape
            .samples
            .iter()
            .filter(|s| s.metric == "warren_pipeline_restarts_total")
            .any(|s| s.labels.get("pipeline") == Some(pipeline))
    };
    assert!(!restarted("calm"), "the untouched pipeline was restarted");
    assert_eq!(
        crate::harness::sample(&scrape, "warren_broker_reconnects_total", &[]),
        0.0,
        "warren reconnected everything"
    );
    assert_eq!(queue_counts(&calm).await, (0, 0));
    broker.cleanup().await;
}
