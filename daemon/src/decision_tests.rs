//! Unit tests of the decision rules.

use super::*;
use crate::message::{Republish, empty_properties, text_header};

fn limited(max: u32, retry_queues: &[&str]) -> RetryPolicy {
    RetryPolicy {
        max_deliveries: NonZeroU32::new(max),
        queue: "in".into(),
        retry_queues: retry_queues.iter().map(|s| s.to_string()).collect(),
    }
}

fn message() -> Message {
    let mut properties = empty_properties();
    properties.priority = Some(1);
    properties.correlation_id = Some("c-1".into());
    properties.delivery_mode = Some(1);
    Message {
        body: b"hello".to_vec(),
        exchange: String::new(),
        routing_key: "in".into(),
        queue: "in".into(),
        redelivered: false,
        delivery_count: None,
        properties,
    }
}

fn outcome(verdict: Verdict) -> Result<Outcome, PluginError> {
    Ok(Outcome {
        verdict,
        publishes: Vec::new(),
    })
}

#[test]
fn counted_requeue_republishes_with_the_count_then_dead_letters_at_the_limit() {
    let policy = limited(3, &[]);
    let mut m = message();
    for expected in 1..3 {
        let d = decide(outcome(Verdict::Requeue), &m, OnError::Reject, &policy);
        assert_eq!(d.fate, Fate::Ack);
        assert_eq!(d.from_plugin, 0, "the retry publish is warren's own");
        let out = d.publishes.into_iter().next().expect("republished");
        assert_eq!(out.routing_key, "in");
        m = message();
        m.properties.headers = out.properties.headers;
        assert_eq!(attempt(&m), expected + 1);
    }
    let d = decide(outcome(Verdict::Requeue), &m, OnError::Reject, &policy);
    assert_eq!(
        d.fate,
        Fate::DeadLetter(Reason::DeliveryLimit {
            delivery: 3,
            max: 3
        }),
        "the third delivery is the last"
    );
}

#[test]
fn quorum_count_is_used_and_requeue_stays_a_requeue() {
    let policy = limited(5, &[]);
    let mut m = message();
    m.delivery_count = Some(2);
    assert_eq!(attempt(&m), 3);
    let d = decide(outcome(Verdict::Requeue), &m, OnError::Reject, &policy);
    assert_eq!(d.fate, Fate::Requeue);
    assert!(policy.exceeded(6).is_some());
    assert!(policy.exceeded(5).is_none());
}

#[test]
fn delayed_retry_steps_through_the_retry_queues() {
    let policy = limited(10, &["d1", "d2"]);
    let mut m = message();
    m.delivery_count = Some(0);
    let trap = PluginError::Trap("x".into());
    let d = decide(Err(trap), &m, OnError::Requeue, &policy);
    assert_eq!(d.publishes[0].routing_key, "d1");
    let mut m = message();
    m.delivery_count = Some(4);
    let d = decide(outcome(Verdict::Requeue), &m, OnError::Reject, &policy);
    assert_eq!(
        d.publishes[0].routing_key, "d2",
        "the longest delay is the last step"
    );
    assert_eq!(d.fate, Fate::Ack);
}

#[test]
fn failure_follows_on_error() {
    let timeout = PluginError::Timeout(5);
    let d = decide(
        Err(timeout),
        &message(),
        OnError::Requeue,
        &RetryPolicy::default(),
    );
    assert_eq!(d.fate, Fate::Requeue);
    assert_eq!(d.kind, Kind::Error);
    let trap = PluginError::Trap("x".into());
    let d = decide(
        Err(trap),
        &message(),
        OnError::Reject,
        &RetryPolicy::default(),
    );
    assert_eq!(
        d.fate,
        Fate::DeadLetter(Reason::Plugin("plugin trapped: x".into()))
    );
    assert!(d.publishes.is_empty());
}

#[test]
fn republish_keeps_properties_sets_priority_and_persistence() {
    let verdict = Verdict::Republish(Republish {
        exchange: "ex".into(),
        routing_key: "out".into(),
        priority: Some(7),
        body: None,
        headers: Some(vec![int_header("k", 3)]),
    });
    let m = message();
    let d = decide(
        outcome(verdict),
        &m,
        OnError::Reject,
        &RetryPolicy::default(),
    );
    assert_eq!(d.fate, Fate::Ack);
    assert_eq!(d.kind, Kind::Republish);
    let out = &d.publishes[0];
    assert_eq!(
        (out.exchange.as_str(), out.routing_key.as_str()),
        ("ex", "out")
    );
    assert_eq!(out.body, b"hello");
    assert_eq!(out.properties.priority, Some(7));
    assert_eq!(out.properties.delivery_mode, Some(PERSISTENT));
    assert_eq!(out.properties.correlation_id.as_deref(), Some("c-1"));
    assert_eq!(out.properties.headers.len(), 1);
    assert_eq!(m.body, b"hello", "the source message is kept whole");
}

#[test]
fn counters_do_not_follow_a_message_to_another_queue() {
    let mut m = message();
    m.properties.headers = vec![
        int_header(DELIVERIES_HEADER, 4),
        int_header(BROKER_COUNT_HEADER, 9),
        text_header("keep", "me"),
    ];
    let verdict = Verdict::Republish(Republish {
        exchange: "ex".into(),
        routing_key: "out".into(),
        priority: None,
        body: None,
        headers: None,
    });
    let d = decide(outcome(verdict), &m, OnError::Reject, &limited(5, &[]));
    let keys: Vec<&str> = d.publishes[0]
        .properties
        .headers
        .iter()
        .map(|h| h.key.as_str())
        .collect();
    assert_eq!(keys, ["keep"]);
}

#[test]
fn extra_publishes_come_before_the_settlement() {
    let extra = Outgoing {
        exchange: String::new(),
        routing_key: "reply".into(),
        body: b"r".to_vec(),
        properties: empty_properties(),
    };
    let d = decide(
        Ok(Outcome {
            verdict: Verdict::Reject,
            publishes: vec![extra],
        }),
        &message(),
        OnError::Requeue,
        &RetryPolicy::default(),
    );
    assert_eq!(d.fate, Fate::DeadLetter(Reason::Rejected));
    assert_eq!(d.publishes.len(), 1);
    assert_eq!(d.from_plugin, 1);
}
