//! The cases file of `warren plugin test`: messages to hand a plugin, and what it must do
//! with each, read from TOML and checked before anything runs.

use std::path::Path;

use anyhow::{Context, bail};
use serde::Deserialize;

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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<CasesFile, String> {
        let file: CasesFile = toml::from_str(text).map_err(|e| e.to_string())?;
        for case in &file.cases {
            case.validate()?;
        }
        Ok(file)
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
