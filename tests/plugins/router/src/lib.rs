//! `router`: a test-only plugin that republishes each message where its body says, so that a
//! producer can make it ask for anything: a name too long for AMQP, an exchange that does not
//! exist, a bad `expiration`, too many bytes. The delivery-hardening tests use it.
//!
//! Config: `to` (routing key, required) and `exchange` (default `""`): where a message goes
//! when its body says nothing else.
//!
//! A body that is a JSON object may hold (all optional):
//!
//! | key | effect |
//! |---|---|
//! | `verdict` | `"requeue"`, `"reject"` or `"ack"` instead of republishing |
//! | `exchange`, `routing_key` | where to republish |
//! | `message_id`, `expiration`, `user_id` | set on the republished message |
//! | `header_key` | a header with this key (value `true`) added to it |
//! | `extra_bytes` | first publish an extra message of this many bytes to `to` |
//!
//! Any other body is republished unchanged (headers and properties kept) to `to`.

use serde_json::Value;
use warren_plugin::{Config, Header, Message, Outgoing, Plugin, Verdict, publish};

struct Router {
    exchange: String,
    to: String,
}

impl Plugin for Router {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Router {
            exchange: config.get_or("exchange", ""),
            to: config.require("to")?.to_owned(),
        })
    }

    fn handle(&mut self, message: Message) -> Verdict {
        let Ok(Value::Object(asked)) = serde_json::from_slice::<Value>(message.body()) else {
            return Verdict::republish(self.exchange.clone(), self.to.clone());
        };
        let text = |key: &str| asked.get(key).and_then(Value::as_str).map(str::to_owned);
        match text("verdict").as_deref() {
            Some("requeue") => return Verdict::Requeue,
            Some("reject") => return Verdict::Reject,
            Some("ack") => return Verdict::Ack,
            _ => {}
        }
        if let Some(n) = asked.get("extra_bytes").and_then(Value::as_u64) {
            publish(Outgoing::new("", self.to.clone(), vec![b'x'; n as usize]));
        }
        let exchange = text("exchange").unwrap_or_else(|| self.exchange.clone());
        let routing_key = text("routing_key").unwrap_or_else(|| self.to.clone());
        let mut properties = message.properties().clone();
        if let Some(id) = text("message_id") {
            properties.message_id = Some(id);
        }
        if let Some(expiration) = text("expiration") {
            properties.expiration = Some(expiration);
        }
        if let Some(user) = text("user_id") {
            properties.user_id = Some(user);
        }
        if let Some(key) = text("header_key") {
            properties.headers.push(Header::new(key, true));
        }
        // Republish with the changed properties: an extra publish of the same body, then ack
        // (the republish verdict keeps the source's properties; only headers can be replaced).
        publish(Outgoing {
            exchange,
            routing_key,
            body: message.body().to_vec(),
            properties,
        });
        Verdict::Ack
    }
}

warren_plugin::export!(Router);
