//! The types that cross the plugin boundary, and small helpers on them.

pub use crate::__bindings::warren::plugin::types::{
    Container, Decimal, Header, HeaderValue, Level, Message as MessageRecord, Outgoing, Properties,
    Republish, Verdict,
};

impl HeaderValue {
    /// The value as an `i64`, if it is an integer of any width (a timestamp is not).
    pub fn as_int(&self) -> Option<i64> {
        Some(match *self {
            HeaderValue::Int8(i) => i64::from(i),
            HeaderValue::Uint8(i) => i64::from(i),
            HeaderValue::Int16(i) => i64::from(i),
            HeaderValue::Uint16(i) => i64::from(i),
            HeaderValue::Int32(i) => i64::from(i),
            HeaderValue::Uint32(i) => i64::from(i),
            HeaderValue::Int64(i) => i,
            _ => return None,
        })
    }
}

impl Outgoing {
    /// A message to `routing_key` on `exchange` (empty: the default exchange,
    /// where the routing key is a queue name), with no properties set: it is
    /// published persistent.
    pub fn new(
        exchange: impl Into<String>,
        routing_key: impl Into<String>,
        body: impl Into<Vec<u8>>,
    ) -> Outgoing {
        Outgoing {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            body: body.into(),
            properties: Properties::default(),
        }
    }
}

impl Republish {
    /// Republish to `routing_key` on `exchange`, keeping the message's own
    /// priority, body and headers. Change them with [`priority`](Self::priority),
    /// [`body`](Self::body) and [`headers`](Self::headers), then turn it into a
    /// [`Verdict`] with `.into()`:
    ///
    /// ```
    /// # use warren_plugin::{Republish, Verdict};
    /// let verdict: Verdict = Republish::to("", "urgent").priority(7).into();
    /// ```
    pub fn to(exchange: impl Into<String>, routing_key: impl Into<String>) -> Republish {
        Republish {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            priority: None,
            body: None,
            headers: None,
        }
    }

    /// Sets the new priority.
    pub fn priority(mut self, priority: u8) -> Republish {
        self.priority = Some(priority);
        self
    }

    /// Sets a new body.
    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Republish {
        self.body = Some(body.into());
        self
    }

    /// Sets new headers, replacing all of the message's own.
    pub fn headers(mut self, headers: Vec<Header>) -> Republish {
        self.headers = Some(headers);
        self
    }
}

impl From<Republish> for Verdict {
    fn from(republish: Republish) -> Verdict {
        Verdict::Republish(republish)
    }
}

impl Verdict {
    /// Republish the message unchanged to `routing_key` on `exchange`, then
    /// ack it. For a new priority, body or headers use [`Republish::to`].
    pub fn republish(exchange: impl Into<String>, routing_key: impl Into<String>) -> Verdict {
        Republish::to(exchange, routing_key).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn republish_builder_sets_only_what_is_asked() {
        let verdict: Verdict = Republish::to("ex", "rk").priority(7).into();
        assert_eq!(
            verdict,
            Verdict::Republish(Republish {
                exchange: "ex".into(),
                routing_key: "rk".into(),
                priority: Some(7),
                body: None,
                headers: None,
            })
        );
        assert_eq!(
            Verdict::republish("ex", "rk"),
            Republish::to("ex", "rk").into()
        );
    }
}
