//! The types that cross the plugin boundary, and small helpers on them.

pub use crate::__bindings::warren::plugin::types::{
    Container, Decimal, Header, HeaderValue, Level, Message, Outgoing, Properties, Republish,
    Verdict,
};

use crate::Value;

impl Message {
    /// The body as text, if it is valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(&self.body).ok()
    }

    /// The value of the first header named `key`, arrays and tables included. (Headers
    /// warren gives are always well formed, so this is `None` only when there is no such
    /// header.)
    pub fn header(&self, key: &str) -> Option<Value> {
        self.raw_header(key)?.value().ok()
    }

    /// The value of the first header named `key`, if it is an integer of any width.
    pub fn header_int(&self, key: &str) -> Option<i64> {
        self.raw_header(key)?.value.as_int()
    }

    /// The value of the first header named `key`, if it is UTF-8 text.
    pub fn header_str(&self, key: &str) -> Option<&str> {
        match &self.raw_header(key)?.value {
            HeaderValue::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The first header named `key`, in the contract's flat form.
    pub fn raw_header(&self, key: &str) -> Option<&Header> {
        self.properties
            .headers
            .iter()
            .find(|header| header.key == key)
    }
}

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

    fn message(headers: Vec<Header>, body: &[u8]) -> Message {
        Message {
            body: body.to_vec(),
            exchange: String::new(),
            routing_key: "q".into(),
            queue: "q".into(),
            redelivered: false,
            delivery_count: None,
            properties: Properties {
                headers,
                ..Properties::default()
            },
        }
    }

    #[test]
    fn header_finds_the_first_with_that_key() {
        let message = message(
            vec![
                Header::new("a", 1i32),
                Header::new("b", true),
                Header::new("a", 2i64),
                Header::text("t", "x"),
                Header::new("cc", vec![Value::from("q1"), Value::from("q2")]),
            ],
            b"",
        );
        assert_eq!(message.header("a"), Some(Value::Int32(1)));
        assert_eq!(message.header_int("a"), Some(1));
        assert_eq!(message.header("b"), Some(Value::Boolean(true)));
        assert_eq!(message.header_int("b"), None);
        assert_eq!(message.header_str("t"), Some("x"));
        assert_eq!(
            message.header("cc"),
            Some(Value::Array(vec!["q1".into(), "q2".into()]))
        );
        assert_eq!(message.header("c"), None);
    }

    #[test]
    fn body_str_is_none_for_invalid_utf8() {
        assert_eq!(message(vec![], b"hi").body_str(), Some("hi"));
        assert_eq!(message(vec![], &[0xff, 0xfe]).body_str(), None);
    }

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
