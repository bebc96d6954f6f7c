//! `rust-router`: the JSON router of `python-router` and `js-router`, in Rust,
//! so the three languages can be compared doing the same work.
//!
//! Each message body is JSON: `{"route": "<routing key>", "priority":
//! <0-255>, ...}`. A valid message is republished to the default exchange with
//! routing key `route` (so: to the queue of that name) and priority
//! `priority` (absent: the message keeps its own). When the config key
//! `audit` is set, an extra message `routed:<route>` goes to that queue too,
//! with the routed message's headers (unchanged: every type and nesting kept)
//! plus the text header `x-routed-to: <route>`. A
//! body that is not JSON, or has no usable `route` or `priority`, is rejected
//! (dead-lettered: to the queue's dead-letter exchange, or to `<queue>.dead`)
//! with a warning in warren's log.
//!
//! Config: `audit` (optional): the queue that gets one audit message per
//! routed message. Any other key refuses the config.

use serde_json::Value;
use warren_plugin::{Config, Header, Message, Outgoing, Plugin, Republish, Verdict, log, publish};

const KNOWN_KEYS: [&str; 1] = ["audit"];

/// The router: where audit messages go, if anywhere.
struct Router {
    audit: Option<String>,
}

impl Plugin for Router {
    fn init(config: Config) -> Result<Self, String> {
        if let Some((key, _)) = config.iter().find(|(key, _)| !KNOWN_KEYS.contains(key)) {
            return Err(format!(
                "rust-router: unknown config key '{key}' (known: {})",
                KNOWN_KEYS.join(", ")
            ));
        }
        Ok(Router {
            audit: config.get("audit").map(str::to_owned),
        })
    }

    fn handle(&mut self, message: Message) -> Verdict {
        let (route, priority) = match parse(message.body()) {
            Ok(parsed) => parsed,
            Err(reason) => {
                log::warn(format!("rejected: {reason}"));
                return Verdict::Reject;
            }
        };
        if let Some(audit) = &self.audit {
            let mut extra = Outgoing::new("", audit.as_str(), format!("routed:{route}"));
            extra.properties.headers = message.headers().to_vec().clone();
            extra
                .properties
                .headers
                .push(Header::text("x-routed-to", route.as_str()));
            publish(extra);
        }
        log::info(format!("routed to {route}"));
        let republish = Republish::to("", route);
        match priority {
            Some(priority) => republish.priority(priority).into(),
            None => republish.into(),
        }
    }
}

/// The route and priority of a body, or what is wrong with it.
fn parse(body: &[u8]) -> Result<(String, Option<u8>), String> {
    let request: Value =
        serde_json::from_slice(body).map_err(|e| format!("body is not JSON: {e}"))?;
    let Value::Object(mut request) = request else {
        return Err("body is not a JSON object".into());
    };
    let route = match request.remove("route") {
        Some(Value::String(route)) if !route.is_empty() => route,
        _ => return Err(r#"body has no "route" string"#.into()),
    };
    let priority = match request.get("priority") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .and_then(|p| u8::try_from(p).ok())
                .ok_or_else(|| {
                    format!(r#""priority" must be an integer from 0 to 255, not {value}"#)
                })?,
        ),
    };
    Ok((route, priority))
}

warren_plugin::export!(Router);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_route_and_priority() {
        assert_eq!(
            parse(br#"{"route": "out", "priority": 7, "x": 1}"#),
            Ok(("out".to_owned(), Some(7)))
        );
        assert_eq!(parse(br#"{"route": "out"}"#), Ok(("out".to_owned(), None)));
        for bad in [
            &b"not json {"[..],
            br#"[1]"#,
            br#"{"priority": 1}"#,
            br#"{"route": ""}"#,
            br#"{"route": "out", "priority": 256}"#,
            br#"{"route": "out", "priority": true}"#,
        ] {
            assert!(parse(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}
