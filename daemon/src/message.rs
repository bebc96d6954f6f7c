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
