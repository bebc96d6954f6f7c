//! A case's message, as the plugin gets it: the body, the properties, and headers built
//! from TOML values in the contract's flat form.

use super::cases::{Case, CaseProperties, PluginSection};
use crate::message::{Container, Header, HeaderValue, Message, Properties};

impl Case {
    pub(super) fn body_bytes(&self) -> Result<Vec<u8>, String> {
        if let Some(body) = &self.body {
            return Ok(body.clone().into_bytes());
        }
        if let Some(json) = &self.body_json {
            return serde_json::to_vec(json).map_err(|e| format!("body_json: {e}"));
        }
        if let Some(hex) = &self.body_hex {
            return from_hex(hex)
                .ok_or_else(|| "body_hex: not an even number of hex digits (0-9, a-f)".to_owned());
        }
        Ok(Vec::new())
    }

    /// The message the case describes.
    pub fn message(&self) -> Message {
        let queue = self.queue.clone().unwrap_or_else(|| "cases".into());
        Message {
            body: self.body_bytes().unwrap_or_default(),
            exchange: self.exchange.clone().unwrap_or_default(),
            routing_key: self.routing_key.clone().unwrap_or_else(|| queue.clone()),
            queue,
            redelivered: self.redelivered,
            delivery_count: self.delivery_count,
            properties: self.properties.to_properties(&self.headers),
        }
    }

    /// The plugin config of this case: its own, or the file's.
    pub fn plugin_config(&self, file: &PluginSection) -> Vec<(String, String)> {
        config_strings(self.config.as_ref().unwrap_or(&file.config))
    }
}

/// A config table as `init` gets it: every value a string (as warren.toml does).
fn config_strings(table: &toml::Table) -> Vec<(String, String)> {
    table
        .iter()
        .map(|(key, value)| match value {
            toml::Value::String(text) => (key.clone(), text.clone()),
            other => (key.clone(), other.to_string()),
        })
        .collect()
}

impl CaseProperties {
    fn to_properties(&self, headers: &toml::Table) -> Properties {
        Properties {
            content_type: self.content_type.clone(),
            content_encoding: self.content_encoding.clone(),
            headers: headers.iter().map(|(k, v)| header(k, v)).collect(),
            priority: self.priority,
            correlation_id: self.correlation_id.clone(),
            reply_to: self.reply_to.clone(),
            expiration: self.expiration.clone(),
            message_id: self.message_id.clone(),
            timestamp: self.timestamp,
            kind: self.kind.clone(),
            user_id: self.user_id.clone(),
            app_id: self.app_id.clone(),
            delivery_mode: self.delivery_mode,
        }
    }
}

/// A header from a TOML value, in the contract's flat form (containers parent first).
fn header(key: &str, value: &toml::Value) -> Header {
    let mut nested = Vec::new();
    let value = flatten(value, &mut nested);
    Header {
        key: key.to_owned(),
        value,
        nested,
    }
}

fn flatten(value: &toml::Value, nested: &mut Vec<Container>) -> HeaderValue {
    let index = u32::try_from(nested.len()).unwrap_or(u32::MAX);
    match value {
        toml::Value::String(text) => HeaderValue::Text(text.clone()),
        toml::Value::Integer(i) => HeaderValue::Int64(*i),
        toml::Value::Float(f) => HeaderValue::Float64(*f),
        toml::Value::Boolean(b) => HeaderValue::Boolean(*b),
        toml::Value::Datetime(d) => HeaderValue::Text(d.to_string()),
        toml::Value::Array(items) => {
            nested.push(Container::Array(Vec::new()));
            let values = items.iter().map(|item| flatten(item, nested)).collect();
            nested[index as usize] = Container::Array(values);
            HeaderValue::Array(index)
        }
        toml::Value::Table(table) => {
            nested.push(Container::Table(Vec::new()));
            let entries = table
                .iter()
                .map(|(k, v)| (k.clone(), flatten(v, nested)))
                .collect();
            nested[index as usize] = Container::Table(entries);
            HeaderValue::Table(index)
        }
    }
}

fn from_hex(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use crate::authoring::cases::CasesFile;
    use crate::message::resolve;

    fn parse(text: &str) -> CasesFile {
        toml::from_str(text).expect("a valid cases file")
    }

    #[test]
    fn a_case_becomes_a_message() {
        let file = parse(
            r#"
            [plugin]
            config = { to = "out", n = 3 }
            [[case]]
            name = "one"
            body_json = { route = "x" }
            headers = { tenant = "acme", n = 2, cc = ["a", { b = true }] }
            properties = { priority = 5, reply_to = "r", type = "t" }
            delivery_count = 2
            queue = "in"
            expect = { verdict = "ack" }
            "#,
        );
        let case = &file.cases[0];
        let message = case.message();
        assert_eq!(message.body, br#"{"route":"x"}"#);
        assert_eq!(
            (message.queue.as_str(), message.routing_key.as_str()),
            ("in", "in")
        );
        assert_eq!(message.delivery_count, Some(2));
        assert_eq!(message.properties.priority, Some(5));
        assert_eq!(message.properties.kind.as_deref(), Some("t"));
        let cc = message
            .properties
            .headers
            .iter()
            .find(|h| h.key == "cc")
            .expect("cc");
        assert!(
            resolve(cc).is_ok(),
            "nested headers follow the contract's rules"
        );
        assert_eq!(
            case.plugin_config(&file.plugin),
            vec![
                ("n".to_owned(), "3".to_owned()),
                ("to".into(), "out".into())
            ]
        );
    }
}
