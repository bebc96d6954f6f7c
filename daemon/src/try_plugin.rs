//! `warren plugin run`: runs a plugin on one message without a broker and reports the outcome as JSON.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::config::{Limits, PluginSettings};
use crate::message::{Header, HeaderValue, Message, Outgoing, Properties, Verdict};
use crate::plugin::Runtime;
use crate::plugin::egress::EgressPolicy;

/// A plugin to run and how.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The `.wasm` component.
    pub path: PathBuf,
    /// Its `config` table.
    pub config: Vec<(String, String)>,
    /// Its HTTP egress policy.
    pub egress: EgressPolicy,
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
    let settings = PluginSettings {
        name: name.clone(),
        path: trial.path,
        config: trial.config,
        limits: trial.limits,
        allowed_hosts: Vec::new(),
        egress: Arc::new(trial.egress),
        publish: Default::default(),
    };
    let runtime = Runtime::new()?;
    let plugin = runtime.load(&settings).await?;
    let outcome = plugin
        .handle(&Arc::from(name.as_str()), &message)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(json!({
        "plugin": { "name": name, "version": plugin.version() },
        "verdict": verdict_json(&outcome.verdict),
        "publishes": outcome.publishes.iter().map(outgoing_json).collect::<Vec<_>>(),
    }))
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

fn header_json(headers: &[Header]) -> Value {
    let map: serde_json::Map<String, Value> = headers
        .iter()
        .map(|h| {
            let value = match &h.value {
                HeaderValue::Text(s) => json!(s),
                HeaderValue::Integer(i) => json!(i),
                HeaderValue::Float(f) => json!(f),
                HeaderValue::Boolean(b) => json!(b),
                HeaderValue::Timestamp(t) => json!(t),
                HeaderValue::Bytes(b) => body_json(b).1,
                HeaderValue::Void => Value::Null,
            };
            (h.key.clone(), value)
        })
        .collect();
    Value::Object(map)
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
