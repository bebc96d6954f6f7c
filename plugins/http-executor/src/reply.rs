//! The JSON replies: a response, or an error, addressed to `reply_to`.

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Serialize;
use warren_plugin::{Message, Outgoing, Properties};

use crate::client::Response;

/// `{"status", "headers", "body" | "body_base64"}`.
#[derive(Serialize)]
struct ResponseReply<'a> {
    status: u16,
    headers: BTreeMap<&'a str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body_base64: Option<String>,
}

/// `{"error", "attempts"}`.
#[derive(Serialize)]
struct ErrorReply<'a> {
    error: &'a str,
    attempts: u32,
}

/// The reply for a response. Header names are lower-case as the host gives
/// them; repeated headers are joined with `, `; values that are not UTF-8
/// are decoded lossily.
pub fn response(response: &Response) -> Vec<u8> {
    let mut headers: BTreeMap<&str, String> = BTreeMap::new();
    for (name, value) in &response.headers {
        let value = String::from_utf8_lossy(value);
        headers
            .entry(name)
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    let text = std::str::from_utf8(&response.body).ok();
    to_json(&ResponseReply {
        status: response.status,
        headers,
        body: text,
        body_base64: text.is_none().then(|| BASE64.encode(&response.body)),
    })
}

/// The reply for a failure after `attempts` attempts.
pub fn error(reason: &str, attempts: u32) -> Vec<u8> {
    to_json(&ErrorReply {
        error: reason,
        attempts,
    })
}

/// `body` as a reply to `message`: to the default exchange with routing key
/// `reply_to` and the message's correlation id; `None` if it has no `reply_to`.
pub fn to(message: &Message, body: Vec<u8>) -> Option<Outgoing> {
    let reply_to = message.properties().reply_to.as_deref()?;
    if reply_to.is_empty() {
        return None;
    }
    let mut outgoing = Outgoing::new("", reply_to, body);
    outgoing.properties = Properties {
        content_type: Some("application/json".into()),
        correlation_id: message.properties().correlation_id.clone(),
        ..Properties::default()
    };
    Some(outgoing)
}

/// Serialises a reply; these types always serialise.
fn to_json(reply: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(reply).unwrap_or_else(|_| br#"{"error":"cannot encode the reply"}"#.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(bytes: &[u8]) -> serde_json::Value {
        serde_json::from_slice(bytes).unwrap_or_else(|error| panic!("not JSON: {error}"))
    }

    #[test]
    fn text_and_binary_responses() {
        let text = Response {
            status: 302,
            headers: vec![
                ("location".into(), b"/b".to_vec()),
                ("set-cookie".into(), b"a=1".to_vec()),
                ("set-cookie".into(), b"b=2".to_vec()),
            ],
            body: b"moved".to_vec(),
        };
        assert_eq!(
            json(&response(&text)),
            serde_json::json!({"status": 302, "body": "moved",
                "headers": {"location": "/b", "set-cookie": "a=1, b=2"}})
        );
        let binary = Response {
            status: 200,
            headers: vec![],
            body: vec![0xff, 0x00],
        };
        assert_eq!(
            json(&response(&binary)),
            serde_json::json!({"status": 200, "headers": {}, "body_base64": "/wA="})
        );
    }

    #[test]
    fn error_reply() {
        assert_eq!(
            json(&error("connection refused", 3)),
            serde_json::json!({"error": "connection refused", "attempts": 3})
        );
    }
}
