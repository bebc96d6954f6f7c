//! The cases file of `warren plugin test`: messages to hand a plugin, and what it must do
//! with each, read from TOML and checked before anything runs.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::message::{Container, Header, HeaderValue, Message, Properties};

/// A cases file: settings for every case, then the cases.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CasesFile {
    /// The plugin's settings for every case.
    #[serde(default)]
    pub plugin: PluginSection,
    /// The cases, in order (`[[case]]`).
    #[serde(default, rename = "case")]
    pub cases: Vec<Case>,
}

/// `[plugin]`: what warren.toml would say about the plugin.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginSection {
    /// Its `config` table (values given to `init` as strings).
    #[serde(default)]
    pub config: toml::Table,
    /// Hosts it may reach over HTTP, as in warren.toml.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// The wall-clock limit of one `handle`, in ms (default: warren's `timeout_ms` default).
    pub timeout_ms: Option<u64>,
}

/// One case: a message, and what the plugin must make of it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Case {
    /// Shown in the report.
    pub name: String,
    /// The body as text.
    pub body: Option<String>,
    /// The body as JSON, written from a TOML value.
    pub body_json: Option<toml::Value>,
    /// The body as hex digits, for bytes that are not text.
    pub body_hex: Option<String>,
    /// Headers: strings are text, integers 64-bit, floats doubles, arrays and tables nest.
    #[serde(default)]
    pub headers: toml::Table,
    /// The AMQP properties other than headers.
    #[serde(default)]
    pub properties: CaseProperties,
    /// The broker delivered it before.
    #[serde(default)]
    pub redelivered: bool,
    /// The broker's delivery count (quorum queues).
    pub delivery_count: Option<u32>,
    /// The queue it came from (default `cases`).
    pub queue: Option<String>,
    /// The exchange it was published to (default: the default exchange).
    pub exchange: Option<String>,
    /// Its routing key (default: the queue).
    pub routing_key: Option<String>,
    /// The plugin's `config` for this case, instead of `[plugin] config`.
    pub config: Option<toml::Table>,
    /// What must happen.
    pub expect: Expect,
}

/// The AMQP properties of a case's message; absent ones are not set.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct CaseProperties {
    pub content_type: Option<String>,
    pub content_encoding: Option<String>,
    pub priority: Option<u8>,
    pub correlation_id: Option<String>,
    pub reply_to: Option<String>,
    pub expiration: Option<String>,
    pub message_id: Option<String>,
    pub timestamp: Option<u64>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub user_id: Option<String>,
    pub app_id: Option<String>,
    pub delivery_mode: Option<u8>,
}

/// What a case expects.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Expect {
    /// `ack`, `reject`, `requeue` or `republish`.
    pub verdict: Option<VerdictName>,
    /// For `republish`: where to and with what (each key optional).
    pub republish: Option<PublishExpect>,
    /// The extra messages, all of them, in order. Absent: none.
    #[serde(default)]
    pub publishes: Vec<PublishExpect>,
    /// Log lines that must appear, in this order (others may come between).
    pub logs: Option<Vec<LogExpect>>,
    /// Instead of a verdict: the plugin fails (init refuses its config, a trap, a timeout)
    /// with an error containing this text.
    pub error: Option<String>,
}

/// A verdict's name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum VerdictName {
    Ack,
    Reject,
    Requeue,
    Republish,
}

impl VerdictName {
    /// As in the cases file.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ack => "ack",
            Self::Reject => "reject",
            Self::Requeue => "requeue",
            Self::Republish => "republish",
        }
    }
}

/// An expected message: a republish or an extra publish. Absent keys are not checked.
#[derive(Debug, Default, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct PublishExpect {
    /// The exchange, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exchange: Option<String>,
    /// The routing key, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub routing_key: Option<String>,
    /// The priority, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<u8>,
    /// The body, exactly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Text the body contains.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_contains: Option<String>,
    /// JSON the body holds at least: every key given, with that value (recursively).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_json: Option<toml::Value>,
    /// Headers it has at least, as JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub headers: Option<toml::Table>,
    /// Properties it has at least (`correlation_id`, `content_type`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub properties: Option<toml::Table>,
}

/// An expected log line: text it contains, or a table with its level too.
#[derive(Debug, Deserialize)]
#[serde(
    untagged,
    expecting = "a string, or a table { level = \"info\", contains = \"...\" }"
)]
pub enum LogExpect {
    /// A line, at any level, containing this text.
    Contains(String),
    /// A line at `level` containing `contains`.
    Line {
        /// `trace`, `debug`, `info`, `warn` or `error`.
        level: String,
        /// Text the line contains.
        contains: String,
    },
}

/// The log levels a plugin writes at.
const LEVELS: [&str; 5] = ["trace", "debug", "info", "warn", "error"];

/// Reads and checks a cases file; the error names the file, the case and the key.
pub fn read(path: &Path) -> anyhow::Result<CasesFile> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the cases file {}", path.display()))?;
    let file: CasesFile = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "{}: {}",
            path.display(),
            e.to_string().trim_end().replace('\n', "\n  ")
        )
    })?;
    if file.cases.is_empty() {
        bail!(
            "{}: no cases: add one with [[case]] (name, body, and an [case.expect] table)",
            path.display()
        );
    }
    for case in &file.cases {
        case.validate()
            .map_err(|e| anyhow::anyhow!("{}: case {:?}: {e}", path.display(), case.name))?;
    }
    Ok(file)
}

impl Case {
    fn validate(&self) -> Result<(), String> {
        let bodies = [
            self.body.is_some(),
            self.body_json.is_some(),
            self.body_hex.is_some(),
        ];
        if bodies.iter().filter(|&&given| given).count() > 1 {
            return Err("give one of body, body_json and body_hex".into());
        }
        self.body_bytes()?;
        let expect = &self.expect;
        match (expect.verdict, &expect.error, &expect.republish) {
            (Some(_), Some(_), _) => {
                return Err("expect.verdict and expect.error exclude each other".into());
            }
            (None, None, None) => {
                return Err(
                    "expect.verdict is required (ack, reject, requeue or republish), \
                            or expect.error for a plugin that must fail"
                        .into(),
                );
            }
            (Some(v), None, Some(_)) if v != VerdictName::Republish => {
                return Err(format!(
                    "expect.republish is given, but expect.verdict is {:?}",
                    v.as_str()
                ));
            }
            _ => {}
        }
        for (i, publish) in expect.republish.iter().chain(&expect.publishes).enumerate() {
            let matchers = [
                publish.body.is_some(),
                publish.body_contains.is_some(),
                publish.body_json.is_some(),
            ];
            if matchers.iter().filter(|&&given| given).count() > 1 {
                return Err(format!(
                    "{}: give one of body, body_contains and body_json",
                    if i == 0 && expect.republish.is_some() {
                        "expect.republish".to_owned()
                    } else {
                        "expect.publishes".to_owned()
                    }
                ));
            }
        }
        for log in expect.logs.iter().flatten() {
            if let LogExpect::Line { level, .. } = log
                && !LEVELS.contains(&level.as_str())
            {
                return Err(format!(
                    "expect.logs: level {level:?} is not one of {}",
                    LEVELS.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The verdict the case expects, if it expects one.
    pub fn verdict(&self) -> Option<VerdictName> {
        match (self.expect.verdict, &self.expect.republish) {
            (Some(v), _) => Some(v),
            (None, Some(_)) => Some(VerdictName::Republish),
            (None, None) => None,
        }
    }

    fn body_bytes(&self) -> Result<Vec<u8>, String> {
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
    if digits.len() % 2 != 0 {
        return None;
    }
    digits
        .chunks(2)
        .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::resolve;

    fn parse(text: &str) -> Result<CasesFile, String> {
        let file: CasesFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for case in &file.cases {
            case.validate()?;
        }
        Ok(file)
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
        )
        .expect("valid");
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

    #[test]
    fn mistakes_name_the_key() {
        for (text, wanted) in [
            ("name = 'a'\nexpect = {}", "expect.verdict is required"),
            (
                "name = 'a'\nbody = 'x'\nbody_hex = '00'\nexpect = { verdict = 'ack' }",
                "one of body",
            ),
            (
                "name = 'a'\nbody_hex = 'zz'\nexpect = { verdict = 'ack' }",
                "body_hex",
            ),
            (
                "name = 'a'\nexpect = { verdict = 'ack', republish = { routing_key = 'x' } }",
                "expect.republish",
            ),
            (
                "name = 'a'\nexpect = { verdict = 'ack', logs = [{ level = 'loud', contains = 'x' }] }",
                "level \"loud\"",
            ),
            (
                "name = 'a'\nexpect = { verdict = 'maybe' }",
                "unknown variant `maybe`",
            ),
            (
                "name = 'a'\nbdy = 'x'\nexpect = { verdict = 'ack' }",
                "unknown field `bdy`",
            ),
        ] {
            let error = parse(&format!("[[case]]\n{text}")).expect_err(text);
            assert!(error.contains(wanted), "{text}: {error}");
        }
    }
}
