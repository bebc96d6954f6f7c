//! What becomes of a message: the plugin's outcome, or its failure under `on_error`, as publishes then one settlement.

use std::num::NonZeroU32;

use crate::config::OnError;
use crate::message::{Message, Outgoing, Verdict, header_int, int_header};
use crate::plugin::{Outcome, PluginError};

/// How a delivery is finally settled on the broker. Exactly one per delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// `basic.ack`.
    Ack,
    /// `basic.reject(requeue = false)`: dead-lettered if the queue has a dead-letter exchange.
    Reject,
    /// `basic.nack(requeue = true)`.
    Requeue,
}

impl Settlement {
    /// The settlement a pipeline's `on_error` policy calls for.
    pub fn on_error(policy: OnError) -> Self {
        match policy {
            OnError::Requeue => Settlement::Requeue,
            OnError::Reject => Settlement::Reject,
        }
    }
}

/// What the plugin said, as counted in metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Verdict `ack`.
    Ack,
    /// Verdict `reject`.
    Reject,
    /// Verdict `requeue`.
    Requeue,
    /// Verdict `republish`.
    Republish,
    /// No verdict: the plugin failed, `on_error` decided.
    Error,
}

impl Kind {
    /// Lower-case name, for logs and metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Ack => "ack",
            Kind::Reject => "reject",
            Kind::Requeue => "requeue",
            Kind::Republish => "republish",
            Kind::Error => "error",
        }
    }
}

/// Messages to publish (all confirmed before settling), then how to settle the delivery.
#[derive(Debug)]
pub struct Decision {
    /// Publishes, in order: the plugin's extra publishes, then a republished message.
    pub publishes: Vec<Outgoing>,
    /// How to settle once every publish is confirmed.
    pub settlement: Settlement,
    /// What the plugin said.
    pub kind: Kind,
}

/// Delivery mode of a persistent message.
pub const PERSISTENT: u8 = 2;

/// The header in which warren counts deliveries of a message it requeued by republishing.
pub const DELIVERIES_HEADER: &str = "x-warren-deliveries";

/// How a pipeline requeues: plainly, or counted and possibly delayed.
#[derive(Debug, Clone, Default)]
pub struct RetryPolicy {
    /// Deliveries after which a requeue becomes a reject.
    pub max_deliveries: Option<NonZeroU32>,
    /// The pipeline's queue (a counted requeue republishes there).
    pub queue: String,
    /// Delayed-retry queues, shortest delay first; empty for no delay.
    pub retry_queues: Vec<String>,
}

impl RetryPolicy {
    /// True if a requeue must be republished to count it or delay it.
    fn republishes(&self, message: &Message) -> bool {
        !self.retry_queues.is_empty()
            || (self.max_deliveries.is_some() && message.delivery_count.is_none())
    }
}

/// Which delivery of the message this is, 1 for the first: the broker's count
/// (`x-delivery-count`) plus warren's own (`x-warren-deliveries`) from requeues by republish.
/// A classic queue's redelivery after a crash is not counted (only `redelivered` shows it).
pub fn attempt(message: &Message) -> u32 {
    let republished = header_int(&message.properties.headers, DELIVERIES_HEADER)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    republished
        .saturating_add(message.delivery_count.unwrap_or(0))
        .saturating_add(1)
}

/// The decision for a message that has already been delivered more than `max_deliveries`
/// times: rejected (dead-lettered) without reaching the plugin.
pub fn over_limit(policy: &RetryPolicy, message: &Message) -> Option<Decision> {
    let max = policy.max_deliveries?;
    (attempt(message) > max.get()).then(|| Decision {
        publishes: Vec::new(),
        settlement: Settlement::Reject,
        kind: Kind::Error,
    })
}

/// Turns a plugin's result into a decision. Takes the message by value so a republish
/// moves its body and properties instead of copying them.
///
/// A requeue (by verdict or by `on_error`) follows `retry`: past `max_deliveries` it becomes a
/// reject; when it must be counted or delayed it becomes a republish, with the delivery count in
/// [`DELIVERIES_HEADER`], to the retry queue for this attempt (or the pipeline's own queue),
/// and an ack.
pub fn decide(
    result: Result<Outcome, PluginError>,
    message: Message,
    on_error: OnError,
    retry: &RetryPolicy,
) -> Decision {
    let Outcome {
        verdict,
        mut publishes,
    } = match result {
        Ok(outcome) => outcome,
        Err(_) => {
            let decision = Decision {
                publishes: Vec::new(),
                settlement: Settlement::on_error(on_error),
                kind: Kind::Error,
            };
            return apply_retry(decision, message, retry);
        }
    };
    let (settlement, kind) = match verdict {
        Verdict::Ack => (Settlement::Ack, Kind::Ack),
        Verdict::Reject => (Settlement::Reject, Kind::Reject),
        Verdict::Requeue => (Settlement::Requeue, Kind::Requeue),
        Verdict::Republish(to) => {
            let mut properties = message.properties;
            if to.priority.is_some() {
                properties.priority = to.priority;
            }
            if let Some(headers) = to.headers {
                properties.headers = headers;
            }
            properties.delivery_mode = Some(PERSISTENT);
            publishes.push(Outgoing {
                exchange: to.exchange,
                routing_key: to.routing_key,
                body: to.body.unwrap_or(message.body),
                properties,
            });
            return Decision {
                publishes,
                settlement: Settlement::Ack,
                kind: Kind::Republish,
            };
        }
    };
    let decision = Decision {
        publishes,
        settlement,
        kind,
    };
    apply_retry(decision, message, retry)
}

fn apply_retry(mut decision: Decision, message: Message, retry: &RetryPolicy) -> Decision {
    if decision.settlement != Settlement::Requeue {
        return decision;
    }
    let attempt = attempt(&message);
    if retry.max_deliveries.is_some_and(|max| attempt >= max.get()) {
        decision.settlement = Settlement::Reject;
        return decision;
    }
    if !retry.republishes(&message) {
        return decision;
    }
    let step = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    let routing_key = match retry.retry_queues.as_slice() {
        [] => retry.queue.clone(),
        queues => queues[step.min(queues.len() - 1)].clone(),
    };
    let mut properties = message.properties;
    properties.headers.retain(|h| h.key != DELIVERIES_HEADER);
    properties
        .headers
        .push(int_header(DELIVERIES_HEADER, i64::from(attempt)));
    decision.publishes.push(Outgoing {
        exchange: String::new(),
        routing_key,
        body: message.body,
        properties,
    });
    decision.settlement = Settlement::Ack;
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limited(max: u32, retry_queues: &[&str]) -> RetryPolicy {
        RetryPolicy {
            max_deliveries: NonZeroU32::new(max),
            queue: "in".into(),
            retry_queues: retry_queues.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn counted_requeue_republishes_with_the_count_then_rejects_at_the_limit() {
        let policy = limited(3, &[]);
        let mut m = message();
        for expected in 1..3 {
            let d = decide(outcome(Verdict::Requeue), m, OnError::Reject, &policy);
            assert_eq!(d.settlement, Settlement::Ack);
            let out = d.publishes.into_iter().next().expect("republished");
            assert_eq!(out.routing_key, "in");
            m = message();
            m.properties.headers = out.properties.headers;
            assert_eq!(attempt(&m), expected + 1);
        }
        let d = decide(outcome(Verdict::Requeue), m, OnError::Reject, &policy);
        assert_eq!(
            d.settlement,
            Settlement::Reject,
            "the third delivery is the last"
        );
    }

    #[test]
    fn quorum_count_is_used_and_requeue_stays_a_nack() {
        let policy = limited(5, &[]);
        let mut m = message();
        m.delivery_count = Some(2);
        assert_eq!(attempt(&m), 3);
        let d = decide(outcome(Verdict::Requeue), m, OnError::Reject, &policy);
        assert_eq!(d.settlement, Settlement::Requeue);
        let mut m = message();
        m.delivery_count = Some(5);
        assert!(over_limit(&policy, &m).is_some());
    }

    #[test]
    fn delayed_retry_steps_through_the_retry_queues() {
        let policy = limited(10, &["d1", "d2"]);
        let mut m = message();
        m.delivery_count = Some(0);
        let d = decide(
            Err(PluginError::Trap("x".into())),
            m,
            OnError::Requeue,
            &policy,
        );
        assert_eq!(d.publishes[0].routing_key, "d1");
        let mut m = message();
        m.delivery_count = Some(4);
        let d = decide(outcome(Verdict::Requeue), m, OnError::Reject, &policy);
        assert_eq!(
            d.publishes[0].routing_key, "d2",
            "the longest delay is the last step"
        );
        assert_eq!(d.settlement, Settlement::Ack);
    }
    use crate::message::{Republish, empty_properties};

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
    fn failure_follows_on_error() {
        let d = decide(
            Err(PluginError::Timeout(5)),
            message(),
            OnError::Requeue,
            &RetryPolicy::default(),
        );
        assert_eq!(d.settlement, Settlement::Requeue);
        assert_eq!(d.kind, Kind::Error);
        let d = decide(
            Err(PluginError::Trap("x".into())),
            message(),
            OnError::Reject,
            &RetryPolicy::default(),
        );
        assert_eq!(d.settlement, Settlement::Reject);
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
        let d = decide(
            outcome(verdict),
            message(),
            OnError::Reject,
            &RetryPolicy::default(),
        );
        assert_eq!(d.settlement, Settlement::Ack);
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
            message(),
            OnError::Requeue,
            &RetryPolicy::default(),
        );
        assert_eq!(d.settlement, Settlement::Reject);
        assert_eq!(d.publishes.len(), 1);
    }
}
