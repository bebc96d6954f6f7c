//! The plain message types that travel from the broker through plugins: those of the plugin contract.
//!
//! They are the types `bindgen!` generates from the WIT, so a delivery is lent to a plugin
//! without being converted or copied on the host side.

pub use crate::plugin::bindings::{
    Header, HeaderValue, Level, Message, Outgoing, Properties, Republish, Verdict,
};

/// Properties with every field absent.
pub fn empty_properties() -> Properties {
    Properties {
        content_type: None,
        content_encoding: None,
        headers: Vec::new(),
        priority: None,
        correlation_id: None,
        reply_to: None,
        expiration: None,
        message_id: None,
        timestamp: None,
        kind: None,
        user_id: None,
        app_id: None,
        delivery_mode: None,
    }
}

/// A header holding a UTF-8 text value.
pub fn text_header(key: &str, value: &str) -> Header {
    Header {
        key: key.to_owned(),
        value: HeaderValue::Text(value.to_owned()),
    }
}

/// A header holding a 64-bit integer.
pub fn int_header(key: &str, value: i64) -> Header {
    Header {
        key: key.to_owned(),
        value: HeaderValue::Integer(value),
    }
}

/// The integer value of the first header named `key`, of any integer width.
pub fn header_int(headers: &[Header], key: &str) -> Option<i64> {
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| match h.value {
            HeaderValue::Integer(n) => Some(n),
            _ => None,
        })
}
