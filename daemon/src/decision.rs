//! What becomes of a message: the plugin's outcome, or its failure under `on_error`, as publishes then one settlement.

use crate::config::OnError;
use crate::message::{Message, Outgoing, Verdict};
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

/// Turns a plugin's result into a decision. Takes the message by value so a republish
/// moves its body and properties instead of copying them.
pub fn decide(
    result: Result<Outcome, PluginError>,
    message: Message,
    on_error: OnError,
) -> Decision {
    let Outcome {
        verdict,
        mut publishes,
    } = match result {
        Ok(outcome) => outcome,
        Err(_) => {
            return Decision {
                publishes: Vec::new(),
                settlement: Settlement::on_error(on_error),
                kind: Kind::Error,
            };
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
            (Settlement::Ack, Kind::Republish)
        }
    };
    Decision {
        publishes,
        settlement,
        kind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Header, HeaderValue, Republish, empty_properties};

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
        let d = decide(Err(PluginError::Timeout(5)), message(), OnError::Requeue);
        assert_eq!(d.settlement, Settlement::Requeue);
        assert_eq!(d.kind, Kind::Error);
        let d = decide(
            Err(PluginError::Trap("x".into())),
            message(),
            OnError::Reject,
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
            headers: Some(vec![Header {
                key: "k".into(),
                value: HeaderValue::Integer(3),
            }]),
        });
        let d = decide(outcome(verdict), message(), OnError::Reject);
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
        );
        assert_eq!(d.settlement, Settlement::Reject);
        assert_eq!(d.publishes.len(), 1);
    }
}
