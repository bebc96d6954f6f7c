//! `warren plugin run`: runs a plugin on one message without a broker and reports the outcome as JSON.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::message::{
    Field, Header, HeaderValue, Message, Outgoing, Properties, Verdict, empty_properties, resolve,
    text_header,
};
use crate::plugin::cache::CacheSetting;
use crate::plugin::spec::{HttpLimits, Limits, PluginSettings, PublishRules};
use crate::plugin::{Outcome, Runtime};

/// A plugin to run and how.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The `.wasm` component.
    pub path: PathBuf,
    /// Its `config` table.
    pub config: Vec<(String, String)>,
    /// Hosts it may send HTTP requests to (`--allow-host`).
    pub allowed_hosts: Vec<String>,
    /// Its HTTP limits.
    pub http: HttpLimits,
    /// Its limits.
    pub limits: Limits,
}

/// Loads the plugin, hands it `message`, and describes the verdict and publishes as JSON.
/// A plugin failure (trap, timeout) is an error.
pub async fn run(trial: Trial, message: Message) -> anyhow::Result<Value> {
    let name = trial
        .path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "plugin".into());
    let settings = PluginSettings::new(
        name.clone(),
        trial.path,
        trial.config,
        trial.limits,
        trial.allowed_hosts,
        trial.http,
        PublishRules::default(),
    )
    .map_err(|bad| anyhow::anyhow!("--allow-host: {}", bad.error))?;
    // No config here: the default cache location ($CACHE_DIRECTORY, $XDG_CACHE_HOME, ~/.cache).
    let runtime = Runtime::new(&CacheSetting::Default)?;
    let plugin = runtime.load(&settings).await?;
    let outcome = plugin
        .handle(&Arc::from(name.as_str()), &mut Box::new(message))
        .await?;
    let mut report = outcome_json(&outcome);
    report["plugin"] = json!({ "name": name, "version": plugin.version() });
    Ok(report)
}

/// A plugin's verdict and publishes as JSON, as `warren plugin run` prints them:
/// `{"verdict": ..., "publishes": [...]}`.
pub fn outcome_json(outcome: &Outcome) -> Value {
    json!({
        "verdict": verdict_json(&outcome.verdict),
        "publishes": outcome.publishes.iter().map(outgoing_json).collect::<Vec<_>>(),
    })
}

fn body_json(body: &[u8]) -> (&'static str, Value) {
    match std::str::from_utf8(body) {
        Ok(text) => ("body", json!(text)),
        Err(_) => (
            "body_hex",
            json!(body.iter().map(|b| format!("{b:02x}")).collect::<String>()),
        ),
    }
}

/// Headers as a JSON object: each value as plain JSON (numbers, strings, arrays, objects;
/// bytes as text if UTF-8, else hex; a decimal as its digits, `"12.34"`; void as `null`).
/// A header whose flat encoding is broken shows `{"invalid": why}`.
fn header_json(headers: &[Header]) -> Value {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|h| {
            let value = match resolve(h) {
                Ok(field) => field_json(&field),
                Err(e) => json!({ "invalid": e }),
            };
            (h.key.clone(), value)
        })
        .collect();
    Value::Object(map)
}

fn field_json(field: &Field<'_>) -> Value {
    match field {
        Field::Scalar(v) => scalar_json(v),
        Field::Array(values) => values.iter().map(field_json).collect(),
        Field::Table(entries) => Value::Object(
            entries
                .iter()
                .map(|(k, v)| ((*k).to_owned(), field_json(v)))
                .collect(),
        ),
    }
}

fn scalar_json(value: &HeaderValue) -> Value {
    match value {
        HeaderValue::Text(s) => json!(s),
        HeaderValue::TextBytes(b) | HeaderValue::Bytes(b) => body_json(b).1,
        HeaderValue::Boolean(b) => json!(b),
        HeaderValue::Int8(i) => json!(i),
        HeaderValue::Uint8(i) => json!(i),
        HeaderValue::Int16(i) => json!(i),
        HeaderValue::Uint16(i) => json!(i),
        HeaderValue::Int32(i) => json!(i),
        HeaderValue::Uint32(i) => json!(i),
        HeaderValue::Int64(i) => json!(i),
        HeaderValue::Float32(f) => json!(f),
        HeaderValue::Float64(f) => json!(f),
        HeaderValue::Decimal(d) => json!(decimal_text(d.scale, d.value)),
        HeaderValue::Timestamp(t) => json!(t),
        HeaderValue::Void | HeaderValue::Array(_) | HeaderValue::Table(_) => Value::Null,
    }
}

/// `value` / 10^`scale` in decimal digits: (2, 1234) is `12.34`, (3, 5) is `0.005`.
fn decimal_text(scale: u8, value: u32) -> String {
    let digits = value.to_string();
    let scale = usize::from(scale);
    if scale == 0 {
        return digits;
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    format!("{whole}.{fraction}")
}

fn properties_json(p: &Properties) -> Value {
    json!({
        "content_type": p.content_type, "content_encoding": p.content_encoding,
        "headers": header_json(&p.headers), "priority": p.priority,
        "correlation_id": p.correlation_id, "reply_to": p.reply_to, "expiration": p.expiration,
        "message_id": p.message_id, "timestamp": p.timestamp, "type": p.kind,
        "user_id": p.user_id, "app_id": p.app_id, "delivery_mode": p.delivery_mode,
    })
}

fn verdict_json(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Ack => json!("ack"),
        Verdict::Reject => json!("reject"),
        Verdict::Requeue => json!("requeue"),
        Verdict::Republish(r) => {
            let mut out = json!({
                "republish": {
                    "exchange": r.exchange,
                    "routing_key": r.routing_key,
                    "priority": r.priority,
                    "headers": r.headers.as_deref().map(header_json),
                }
            });
            if let Some(body) = &r.body {
                let (key, value) = body_json(body);
                out["republish"][key] = value;
            }
            out
        }
    }
}

fn outgoing_json(o: &Outgoing) -> Value {
    let (key, value) = body_json(&o.body);
    let mut out = json!({
        "exchange": o.exchange,
        "routing_key": o.routing_key,
        "properties": properties_json(&o.properties),
    });
    out[key] = value;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{Container, text_header};

    #[test]
    fn decimals_are_written_with_their_scale() {
        assert_eq!(decimal_text(0, 7), "7");
        assert_eq!(decimal_text(2, 1234), "12.34");
        assert_eq!(decimal_text(3, 5), "0.005");
    }

    #[test]
    fn nested_headers_are_json_trees() {
        let cc = Header {
            key: "CC".into(),
            value: HeaderValue::Array(0),
            nested: vec![Container::Array(vec![
                HeaderValue::Text("a".into()),
                HeaderValue::Table(1),
            ])],
        };
        let json = header_json(&[text_header("t", "x"), cc]);
        assert_eq!(json["t"], "x");
        assert!(
            json["CC"]["invalid"]
                .as_str()
                .is_some_and(|e| e.contains("out of range")),
            "{json}"
        );
    }
}

/// `warren plugin run`: its command-line arguments.
#[derive(Debug, clap::Args)]
pub struct PluginRunArgs {
    /// The plugin's .wasm component.
    pub file: PathBuf,
    /// The message body; read from standard input when absent.
    #[arg(long, short)]
    pub body: Option<String>,
    /// A plugin config entry, KEY=VALUE (repeatable).
    #[arg(long = "config", short = 'c', value_parser = key_value)]
    pub config: Vec<(String, String)>,
    /// A message header, KEY=VALUE, as text (repeatable).
    #[arg(long = "header", short = 'H', value_parser = key_value)]
    pub headers: Vec<(String, String)>,
    /// Message priority.
    #[arg(long)]
    pub priority: Option<u8>,
    /// reply-to property.
    #[arg(long)]
    pub reply_to: Option<String>,
    /// correlation-id property.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// message-id property.
    #[arg(long)]
    pub message_id: Option<String>,
    /// content-type property.
    #[arg(long)]
    pub content_type: Option<String>,
    /// Mark the message as redelivered.
    #[arg(long)]
    pub redelivered: bool,
    /// The broker's delivery count (as on quorum queues).
    #[arg(long)]
    pub delivery_count: Option<u32>,
    /// Exchange the message came through.
    #[arg(long, default_value = "")]
    pub exchange: String,
    /// Routing key (default: the queue).
    #[arg(long)]
    pub routing_key: Option<String>,
    /// Queue the message came from.
    #[arg(long, default_value = "local")]
    pub queue: String,
    /// A host the plugin may reach over HTTP (repeatable), as in allowed_hosts.
    #[arg(long = "allow-host")]
    pub allowed_hosts: Vec<String>,
    /// Wall-clock limit of handle, in ms.
    #[arg(long, default_value_t = crate::plugin::spec::DEFAULT_TIMEOUT_MS)]
    pub timeout_ms: u64,
}

fn key_value(text: &str) -> Result<(String, String), String> {
    text.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{text:?} is not KEY=VALUE"))
}

/// `warren plugin run`: runs the plugin on the message `args` describe and prints the report.
pub async fn command(args: PluginRunArgs) -> anyhow::Result<()> {
    use tokio::io::AsyncReadExt;

    let body = match args.body {
        Some(body) => body.into_bytes(),
        None => {
            let mut body = Vec::new();
            tokio::io::stdin().read_to_end(&mut body).await?;
            body
        }
    };
    let mut properties = empty_properties();
    properties.headers = args
        .headers
        .into_iter()
        .map(|(key, value)| text_header(&key, &value))
        .collect();
    properties.priority = args.priority;
    properties.reply_to = args.reply_to;
    properties.correlation_id = args.correlation_id;
    properties.message_id = args.message_id;
    properties.content_type = args.content_type;
    let message = Message {
        body,
        exchange: args.exchange,
        routing_key: args.routing_key.unwrap_or_else(|| args.queue.clone()),
        queue: args.queue,
        redelivered: args.redelivered,
        delivery_count: args.delivery_count,
        properties,
    };
    let limits = Limits {
        timeout: std::time::Duration::from_millis(args.timeout_ms),
        ..Default::default()
    };
    let trial = Trial {
        path: args.file,
        config: args.config,
        allowed_hosts: args.allowed_hosts,
        http: Default::default(),
        limits,
    };
    let report = run(trial, message).await?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
