//! One pipeline is one failure domain: a pipeline whose channel the broker closes is restarted
//! alone, and the others go on as if nothing happened.

use crate::support::{
    Broker, PATIENCE, TestConfig, collect_ids, drain_ids, eventually, queue_counts, sample, start,
    unique, with_id,
};

/// Two pipelines under load; one's queue is deleted in the middle. That pipeline alone is
/// restarted (warren declares its queue again) and takes new messages; the other handles
/// every one of its messages exactly once, and warren never reconnects.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_restarts_its_pipeline_alone() {
    /// Messages of the untouched pipeline.
    const N: usize = 1_000;
    /// Messages of the pipeline whose queue is deleted (when half the others are out).
    const HIT: usize = 100;
    let broker = Broker::connect().await;
    let (hit, calm) = (unique("domain-hit"), unique("domain-calm"));
    let (hit_out, calm_out) = (unique("domain-hit-out"), unique("domain-calm-out"));
    broker.queue(&hit_out).await;
    broker.queue(&calm_out).await;
    broker.forget_later_queue(&hit);
    broker.forget_later_queue(&calm);
    let config = TestConfig::new()
        .tagged("hit", &hit, &hit_out, "prefetch = 20")
        .tagged("calm", &calm, &calm_out, "prefetch = 20")
        .build();
    let daemon = start(&config).await;
    let id = |what: &str, i: usize| with_id(format!("{what}-{i}"));
    for i in 0..N {
        broker.publish(&calm, b"x", id("calm", i)).await;
        if i < HIT {
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
    // Older messages of the pipeline come first: take them all until that one.
    let handled_after = || async {
        while let Some(message) = broker.get(&hit_out).await {
            let id = message.delivery.properties.message_id().clone();
            if id.is_some_and(|id| id.as_str() == "hit-after-0") {
                return Some(());
            }
        }
        None
    };
    eventually(
        "the message after the restart handled",
        PATIENCE,
        handled_after,
    )
    .await;

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
        sample(&scrape, "warren_broker_reconnects_total", &[]),
        0.0,
        "warren reconnected everything"
    );
    assert_eq!(queue_counts(&calm).await, (0, 0));
    broker.cleanup().await;
}
