//! The message being handled: lent by warren, read part by part as the plugin needs it.

use std::cell::OnceCell;

use crate::__bindings::warren::plugin::delivery::Delivery;
use crate::{Header, HeaderValue, MessageRecord, Properties, Value};

/// The message a plugin is handling.
///
/// warren lends it to [`Plugin::handle`](crate::Plugin::handle) for the call: each part
/// (the body, the properties, the routing key, ...) is copied into the plugin the first time
/// it is read, and kept for later reads. A plugin pays only for the parts it reads: one that
/// acks every message reads nothing.
///
/// For tests, [`Message::new`] makes one from a [`MessageRecord`] with every part given.
pub struct Message<'a> {
    /// Where the parts not read yet come from; `None` if every part was given.
    delivery: Option<&'a Delivery>,
    body: OnceCell<Vec<u8>>,
    exchange: OnceCell<String>,
    routing_key: OnceCell<String>,
    queue: OnceCell<String>,
    redelivered: OnceCell<bool>,
    delivery_count: OnceCell<Option<u32>>,
    properties: OnceCell<Properties>,
}

impl<'a> Message<'a> {
    /// The message lent by warren for one call.
    pub(crate) fn lent(delivery: &'a Delivery) -> Self {
        Message {
            delivery: Some(delivery),
            body: OnceCell::new(),
            exchange: OnceCell::new(),
            routing_key: OnceCell::new(),
            queue: OnceCell::new(),
            redelivered: OnceCell::new(),
            delivery_count: OnceCell::new(),
            properties: OnceCell::new(),
        }
    }

    /// The delivery the parts not read yet come from.
    fn delivery(&self) -> &'a Delivery {
        // A message made by `new` has every part read already, so never gets here.
        self.delivery
            .expect("warren_plugin: a Message made by Message::new has every part")
    }
}

impl Message<'static> {
    /// A message with every part given, for tests of a plugin's `handle` outside warren.
    pub fn new(record: MessageRecord) -> Self {
        Message {
            delivery: None,
            body: record.body.into(),
            exchange: record.exchange.into(),
            routing_key: record.routing_key.into(),
            queue: record.queue.into(),
            redelivered: record.redelivered.into(),
            delivery_count: record.delivery_count.into(),
            properties: record.properties.into(),
        }
    }
}

impl Message<'_> {
    /// The body, as the producer sent it.
    pub fn body(&self) -> &[u8] {
        self.body.get_or_init(|| self.delivery().body())
    }

    /// The body as text, if it is valid UTF-8.
    pub fn body_str(&self) -> Option<&str> {
        std::str::from_utf8(self.body()).ok()
    }

    /// The exchange the message was published to (empty: the default exchange).
    pub fn exchange(&self) -> &str {
        self.exchange.get_or_init(|| self.delivery().exchange())
    }

    /// The routing key it was published with.
    pub fn routing_key(&self) -> &str {
        self.routing_key
            .get_or_init(|| self.delivery().routing_key())
    }

    /// The queue it was consumed from.
    pub fn queue(&self) -> &str {
        self.queue.get_or_init(|| self.delivery().queue())
    }

    /// True if the broker delivered this message before (to any consumer).
    pub fn redelivered(&self) -> bool {
        *self
            .redelivered
            .get_or_init(|| self.delivery().redelivered())
    }

    /// How many times the broker delivered it before, where the broker counts
    /// (`x-delivery-count` on quorum queues); `None` otherwise.
    pub fn delivery_count(&self) -> Option<u32> {
        *self
            .delivery_count
            .get_or_init(|| self.delivery().delivery_count())
    }

    /// The AMQP properties, headers included.
    pub fn properties(&self) -> &Properties {
        self.properties.get_or_init(|| self.delivery().properties())
    }

    /// The headers, in the contract's flat form (see [`Header`]). Reading a header (this and
    /// the `header*` methods) reads all the properties once.
    pub fn headers(&self) -> &[Header] {
        &self.properties().headers
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
        self.headers().iter().find(|header| header.key == key)
    }

    /// Every part of the message, as a record of its own (read whole from warren in one
    /// call, for the parts not read yet).
    pub fn to_record(&self) -> MessageRecord {
        if let (Some(delivery), None, None) =
            (self.delivery, self.body.get(), self.properties.get())
        {
            return delivery.message();
        }
        MessageRecord {
            body: self.body().to_vec(),
            exchange: self.exchange().to_owned(),
            routing_key: self.routing_key().to_owned(),
            queue: self.queue().to_owned(),
            redelivered: self.redelivered(),
            delivery_count: self.delivery_count(),
            properties: self.properties().clone(),
        }
    }
}

impl std::fmt::Debug for Message<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Message")
            .field("body", &self.body.get())
            .field("exchange", &self.exchange.get())
            .field("routing_key", &self.routing_key.get())
            .field("queue", &self.queue.get())
            .field("properties", &self.properties.get())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Header;

    fn message(headers: Vec<Header>, body: &[u8]) -> Message<'static> {
        Message::new(MessageRecord {
            body: body.to_vec(),
            exchange: "ex".into(),
            routing_key: "rk".into(),
            queue: "q".into(),
            redelivered: true,
            delivery_count: Some(2),
            properties: Properties {
                headers,
                ..Properties::default()
            },
        })
    }

    #[test]
    fn header_finds_the_first_with_that_key() {
        let message = message(
            vec![
                Header::new("a", 1i32),
                Header::new("b", true),
                Header::new("a", 2i64),
                Header::text("t", "x"),
                Header::new("cc", vec![Value::from("q")]),
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
            Some(Value::Array(vec![Value::from("q")]))
        );
        assert_eq!(message.header("c"), None);
    }

    #[test]
    fn body_str_is_none_for_invalid_utf8() {
        assert_eq!(message(vec![], b"hi").body_str(), Some("hi"));
        assert_eq!(message(vec![], &[0xff, 0xfe]).body_str(), None);
    }

    #[test]
    fn a_message_made_from_a_record_gives_every_part_back() {
        let message = message(vec![Header::new("a", 1i32)], b"body");
        assert_eq!(
            (message.exchange(), message.routing_key(), message.queue()),
            ("ex", "rk", "q")
        );
        assert!(message.redelivered());
        assert_eq!(message.delivery_count(), Some(2));
        let record = message.to_record();
        assert_eq!(record.body, b"body");
        assert_eq!(record.properties.headers, vec![Header::new("a", 1i32)]);
        assert_eq!(Message::new(record).to_record(), message.to_record());
    }
}
