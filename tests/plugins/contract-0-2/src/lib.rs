//! Test-only plugin built against `warren:plugin@0.2.0` (the frozen copy in
//! `daemon/wit/contract-0.2.0/`), where `handle` takes the whole message as a record: a
//! plugin built before 0.3.0 and never rebuilt, which warren must still run.
//!
//! Config: `to`, a routing key. Each message is republished to `""` / `to` with its body
//! and headers, plus the header `seen` = `<queue>/<routing key>/<redelivered>`; an extra
//! message with the body `extra:<body>` is published to `<to>.extra`, and a line is logged.

/// The bindings of the 0.2.0 contract.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "../../../daemon/wit/contract-0.2.0",
        world: "plugin",
    });
}

use std::cell::RefCell;

use bindings::exports::warren::plugin::handler::{Guest, Message, Verdict};
use bindings::warren::plugin::host::{log, publish};
use bindings::warren::plugin::types::{
    Header, HeaderValue, Level, Outgoing, Properties, Republish,
};

thread_local! {
    /// The `to` of the config.
    static TO: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Republishes every message to `to`, as the module doc says.
struct Contract02;

impl Guest for Contract02 {
    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let to = config
            .into_iter()
            .find_map(|(key, value)| (key == "to").then_some(value))
            .ok_or("config needs `to`")?;
        TO.with_borrow_mut(|slot| *slot = to);
        Ok(())
    }

    fn handle(message: Message) -> Verdict {
        let to = TO.with_borrow(Clone::clone);
        let seen = format!(
            "{}/{}/{}",
            message.queue, message.routing_key, message.redelivered
        );
        log(Level::Info, &format!("contract 0.2.0 plugin: {seen}"));
        let mut extra_body = b"extra:".to_vec();
        extra_body.extend_from_slice(&message.body);
        publish(&Outgoing {
            exchange: String::new(),
            routing_key: format!("{to}.extra"),
            body: extra_body,
            properties: Properties {
                content_type: None,
                content_encoding: None,
                headers: Vec::new(),
                priority: None,
                correlation_id: message.properties.message_id.clone(),
                reply_to: None,
                expiration: None,
                message_id: None,
                timestamp: None,
                kind: None,
                user_id: None,
                app_id: None,
                delivery_mode: None,
            },
        });
        let mut headers = message.properties.headers;
        headers.push(Header {
            key: "seen".into(),
            value: HeaderValue::Text(seen),
            nested: Vec::new(),
        });
        Verdict::Republish(Republish {
            exchange: String::new(),
            routing_key: to,
            priority: None,
            body: Some(message.body),
            headers: Some(headers),
        })
    }
}

bindings::export!(Contract02 with_types_in bindings);
