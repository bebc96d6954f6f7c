//! What becomes of a message: the plugin's outcome, or its failure under `on_error`, as publishes then one settlement.

use std::num::NonZeroU32;

use crate::config::OnError;
use crate::message::{Message, Outgoing, Verdict, header_int, int_header};
use crate::plugin::{Outcome, PluginError};

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

/// Why a message is dead-lettered: the text of its `x-warren-reason` header, and a short
/// code for metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The plugin's verdict was `reject`.
    Rejected,
    /// It was delivered `max_deliveries` times.
    DeliveryLimit {
        /// Which delivery this was.
        delivery: u32,
        /// The pipeline's `max_deliveries`.
        max: u32,
    },
    /// The plugin failed (trap, timeout, limit) and `on_error` is `reject`.
    Plugin(String),
    /// A message the plugin asked to publish is invalid; `on_error` is `reject`.
    InvalidPublish(String),
    /// The broker definitively refused a publish (unroutable, nacked, channel closed for
    /// it); `on_error` is `reject`.
    PublishRefused(String),
    /// warren itself failed on the message (a bug: a panic), and `on_error` is `reject`.
    Panic(String),
}

impl Reason {
    /// A short code, for metric labels.
    pub fn code(&self) -> &'static str {
        match self {
            Reason::Rejected => "rejected",
            Reason::DeliveryLimit { .. } => "delivery_limit",
            Reason::Plugin(_) => "plugin_error",
            Reason::InvalidPublish(_) => "invalid_publish",
            Reason::PublishRefused(_) => "publish_refused",
            Reason::Panic(_) => "panic",
        }
    }

    /// Every code, in a fixed order (the index of [`Reason::index`]).
    pub const CODES: [&'static str; 6] = [
        "rejected",
        "delivery_limit",
        "plugin_error",
        "invalid_publish",
        "publish_refused",
        "panic",
    ];

    /// The position of this reason's code in [`Reason::CODES`].
    pub fn index(&self) -> usize {
        match self {
            Reason::Rejected => 0,
            Reason::DeliveryLimit { .. } => 1,
            Reason::Plugin(_) => 2,
            Reason::InvalidPublish(_) => 3,
            Reason::PublishRefused(_) => 4,
            Reason::Panic(_) => 5,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Reason::Rejected => f.write_str("rejected by the plugin"),
            Reason::DeliveryLimit { delivery, max } => {
                write!(
                    f,
                    "delivery limit: delivery {delivery} of max_deliveries {max}"
                )
            }
            Reason::Plugin(e) => write!(f, "plugin failed: {e}"),
            Reason::InvalidPublish(e) => write!(f, "invalid publish: {e}"),
            Reason::PublishRefused(e) => write!(f, "publish refused: {e}"),
            Reason::Panic(e) => write!(f, "warren failed on the message (panic): {e}"),
        }
    }
}

/// What finally becomes of a delivery, once every publish made for it is confirmed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fate {
    /// `basic.ack`.
    Ack,
    /// Back to the queue: `basic.reject(requeue = true)`.
    Requeue,
    /// Rejected for good: to the pipeline's dead-letter queue or exchange (or dropped, if the
    /// pipeline opted out).
    DeadLetter(Reason),
}

impl Fate {
    /// The fate a pipeline's `on_error` policy calls for, for a failure described by `reason`.
    pub fn on_error(policy: OnError, reason: Reason) -> Self {
        match policy {
            OnError::Requeue => Fate::Requeue,
            OnError::Reject => Fate::DeadLetter(reason),
        }
    }
}

/// Messages to publish (all confirmed before settling), then what becomes of the delivery.
#[derive(Debug)]
pub struct Decision {
    /// Publishes, in order: the plugin's extra publishes, then a republished message.
    pub publishes: Vec<Outgoing>,
    /// How many of `publishes` are the plugin's (the rest are warren's own retry publish).
    pub from_plugin: usize,
    /// What becomes of the delivery once every publish is confirmed.
    pub fate: Fate,
    /// What the plugin said.
    pub kind: Kind,
}

/// Delivery mode of a persistent message.
pub const PERSISTENT: u8 = 2;

/// The header in which warren counts deliveries of a message it requeued by republishing.
pub const DELIVERIES_HEADER: &str = "x-warren-deliveries";

/// The header in which quorum queues count earlier deliveries.
pub const BROKER_COUNT_HEADER: &str = "x-delivery-count";

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

    /// The reason a message on its `delivery`-th delivery may not be requeued again, if so.
    fn spent(&self, delivery: u32) -> Option<Reason> {
        let max = self.max_deliveries?.get();
        (delivery >= max).then_some(Reason::DeliveryLimit { delivery, max })
    }

    /// The reason a message on its `delivery`-th delivery may not even reach the plugin: it
    /// is past `max_deliveries`.
    pub fn exceeded(&self, delivery: u32) -> Option<Reason> {
        let max = self.max_deliveries?.get();
        (delivery > max).then_some(Reason::DeliveryLimit { delivery, max })
    }
}

/// Which delivery of the message this is, 1 for the first: the broker's count
/// (`x-delivery-count`, read only from quorum queues) plus warren's own
/// (`x-warren-deliveries`) from requeues by republish.
pub fn attempt(message: &Message) -> u32 {
    let republished = header_int(&message.properties.headers, DELIVERIES_HEADER)
        .and_then(|n| u32::try_from(n).ok())
        .unwrap_or(0);
    republished
        .saturating_add(message.delivery_count.unwrap_or(0))
        .saturating_add(1)
}

/// A copy of `message` for its own queue, with `deliveries` (deliveries made so far) in
/// [`DELIVERIES_HEADER`]: how a requeue is counted where the broker does not count.
pub fn counted_copy(message: &Message, routing_key: String, deliveries: u32) -> Outgoing {
    let mut properties = message.properties.clone();
    properties.headers.retain(|h| h.key != DELIVERIES_HEADER);
    properties
        .headers
        .push(int_header(DELIVERIES_HEADER, i64::from(deliveries)));
    Outgoing {
        exchange: String::new(),
        routing_key,
        body: message.body.clone(),
        properties,
    }
}

/// Turns a plugin's result into a decision.
///
/// The message is only borrowed: it stays whole until the delivery is settled, so that it
/// can be dead-lettered unchanged if a publish made for it fails. A republish therefore
/// copies what it takes from it.
///
/// Counter headers (`x-warren-deliveries`, `x-delivery-count`) are removed from what the
/// plugin publishes: retries counted in this pipeline do not count against the next one.
///
/// A requeue (by verdict or by `on_error`) follows `retry`: at `max_deliveries` it becomes a
/// dead-letter; when it must be counted or delayed it becomes a republish, with the delivery
/// count in [`DELIVERIES_HEADER`], to the retry queue for this attempt (or the pipeline's own
/// queue), and an ack.
pub fn decide(
    result: Result<Outcome, PluginError>,
    message: &Message,
    on_error: OnError,
    retry: &RetryPolicy,
) -> Decision {
    let Outcome {
        verdict,
        mut publishes,
    } = match result {
        Ok(outcome) => outcome,
        Err(error) => {
            let decision = Decision {
                publishes: Vec::new(),
                from_plugin: 0,
                fate: Fate::on_error(on_error, Reason::Plugin(error.to_string())),
                kind: Kind::Error,
            };
            return apply_retry(decision, message, retry);
        }
    };
    for p in &mut publishes {
        strip_counters(&mut p.properties.headers);
    }
    let (fate, kind) = match verdict {
        Verdict::Ack => (Fate::Ack, Kind::Ack),
        Verdict::Reject => (Fate::DeadLetter(Reason::Rejected), Kind::Reject),
        Verdict::Requeue => (Fate::Requeue, Kind::Requeue),
        Verdict::Republish(to) => {
            let mut properties = message.properties.clone();
            if to.priority.is_some() {
                properties.priority = to.priority;
            }
            if let Some(headers) = to.headers {
                properties.headers = headers;
            }
            strip_counters(&mut properties.headers);
            properties.delivery_mode = Some(PERSISTENT);
            publishes.push(Outgoing {
                exchange: to.exchange,
                routing_key: to.routing_key,
                body: to.body.unwrap_or_else(|| message.body.clone()),
                properties,
            });
            return Decision {
                from_plugin: publishes.len(),
                publishes,
                fate: Fate::Ack,
                kind: Kind::Republish,
            };
        }
    };
    let decision = Decision {
        from_plugin: publishes.len(),
        publishes,
        fate,
        kind,
    };
    apply_retry(decision, message, retry)
}

fn strip_counters(headers: &mut Vec<crate::message::Header>) {
    headers.retain(|h| h.key != DELIVERIES_HEADER && h.key != BROKER_COUNT_HEADER);
}

fn apply_retry(mut decision: Decision, message: &Message, retry: &RetryPolicy) -> Decision {
    if decision.fate != Fate::Requeue {
        return decision;
    }
    let attempt = attempt(message);
    if let Some(reason) = retry.spent(attempt) {
        decision.fate = Fate::DeadLetter(reason);
        return decision;
    }
    if !retry.republishes(message) {
        return decision;
    }
    let step = usize::try_from(attempt.saturating_sub(1)).unwrap_or(usize::MAX);
    let routing_key = match retry.retry_queues.as_slice() {
        [] => retry.queue.clone(),
        queues => queues[step.min(queues.len() - 1)].clone(),
    };
    decision
        .publishes
        .push(counted_copy(message, routing_key, attempt));
    decision.fate = Fate::Ack;
    decision
}

#[cfg(test)]
#[path = "decision_tests.rs"]
mod tests;
