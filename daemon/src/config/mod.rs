//! Reads `warren.toml`: serde structs that mirror the file ([`raw`]), validated ([`validate`])
//! into settings that cannot hold bad values.
//!
//! Every error names the file and the key (`pipelines[0].plugin`), and says what would fix it.
//! Relative paths are resolved against the directory of the config file.

mod pipelines;
mod plugin;
mod raw;
mod secret;
mod telemetry;
mod tls;
mod validate;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;

pub use crate::plugin::cache::CacheSetting;
pub use crate::plugin::spec::PluginSettings;
pub use secret::BrokerUrl;
pub use telemetry::TelemetrySettings;
pub use tls::{BrokerTls, default_client_config};

/// Where `warren run` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/warren/warren.toml";
/// The broker URL when `[broker] url` is not given.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// `prefetch` when a pipeline does not set it.
pub const DEFAULT_PREFETCH: u16 = 10;
/// RabbitMQ's default `consumer_timeout`: a delivery unacked for longer closes its channel.
pub const BROKER_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `shutdown_grace_ms` when not set: how long in-flight messages may take to finish on stop.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// `[broker] startup_timeout_ms` when not set: how long start-up keeps trying the broker.
pub const DEFAULT_STARTUP_TIMEOUT_MS: u64 = 60_000;

/// This machine's host name, for the names a broker operator sees (connection name, consumer
/// tags): `unknown` if it cannot be read.
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}
/// The longest queue name: AMQP's 255 bytes less room for the longest suffix warren adds
/// (`.warren-retry.<20 digits>ms`).
pub const QUEUE_NAME_MAX: usize = 255 - 36;
/// The suffix of the dead-letter queue warren declares for a queue without a dead-letter exchange.
pub const DEAD_LETTER_SUFFIX: &str = ".dead";

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Broker connection.
    pub broker: BrokerSettings,
    /// Admin endpoint, if any.
    pub admin: Option<AdminSettings>,
    /// Where message traces are exported, if they are (`[telemetry] otlp_endpoint`).
    pub telemetry: Option<TelemetrySettings>,
    /// How long in-flight messages may take to finish on stop.
    pub shutdown_grace: Duration,
    /// Where compiled plugins are cached between starts (`cache_dir`).
    pub cache: CacheSetting,
    /// Plugins by name.
    pub plugins: BTreeMap<String, PluginSettings>,
    /// Queues to declare.
    pub queues: Vec<QueueSettings>,
    /// Exchanges to declare.
    pub exchanges: Vec<ExchangeSettings>,
    /// Bindings to declare.
    pub bindings: Vec<BindingSettings>,
    /// Pipelines to run.
    pub pipelines: Vec<PipelineSettings>,
}

/// The broker connection.
#[derive(Debug, Clone)]
pub struct BrokerSettings {
    /// The AMQP URLs (one per cluster node), tried in turn; `Display`/`Debug` hide passwords.
    pub urls: Vec<BrokerUrl>,
    /// Connection name prefix shown by the broker.
    pub connection_name: String,
    /// How long start-up keeps trying to reach the broker before giving up.
    pub startup_timeout: Duration,
    /// `[broker.tls]`, if given.
    pub tls: Option<BrokerTls>,
}

impl BrokerSettings {
    /// The URLs, passwords hidden, for logs.
    pub fn shown(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(ToString::to_string).collect();
        urls.join(", ")
    }
}

/// The admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// The bearer token every endpoint but `/healthz` requires, if any. Never shown.
    pub token: Option<AdminToken>,
}

/// The admin endpoint's bearer token; `Debug` does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminToken(String);

impl AdminToken {
    /// A token, if `text` is a usable one (not empty, printable ASCII, no spaces).
    pub fn new(text: &str) -> Option<Self> {
        let text = text.trim();
        (!text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic()))
            .then(|| Self(text.to_owned()))
    }

    /// True if `offered` is this token; takes as long whichever bytes differ.
    pub fn matches(&self, offered: &str) -> bool {
        let (a, b) = (self.0.as_bytes(), offered.as_bytes());
        a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
    }
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(***)")
    }
}

/// A value in a queue, exchange or binding `arguments` table.
#[derive(Debug, Clone, PartialEq)]
pub enum ArgValue {
    /// A string.
    Text(String),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
}

/// Arguments of a declaration, by key.
pub type Arguments = BTreeMap<String, ArgValue>;

/// A queue to declare.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// Queue name.
    pub name: String,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last consumer goes.
    pub auto_delete: bool,
    /// All arguments, `x-max-priority` and `x-dead-letter-*` included.
    pub arguments: Arguments,
}

impl QueueSettings {
    /// True if declared as a quorum queue (`x-queue-type = "quorum"`).
    pub fn is_quorum(&self) -> bool {
        matches!(self.arguments.get("x-queue-type"), Some(ArgValue::Text(t)) if t == "quorum")
    }

    /// True if the queue has a dead-letter exchange.
    pub fn has_dead_letter_exchange(&self) -> bool {
        self.arguments.contains_key("x-dead-letter-exchange")
    }

    /// The arguments a queue derived from this one (retry, dead-letter) takes to be of the
    /// same type: `x-queue-type`, and for a quorum queue what makes its dead-lettering safe.
    fn same_type_arguments(&self) -> Arguments {
        let mut arguments = Arguments::new();
        if let Some(kind) = self.arguments.get("x-queue-type") {
            arguments.insert("x-queue-type".into(), kind.clone());
        }
        arguments
    }
}

/// The kind of an exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExchangeKind {
    /// Routes by exact routing key (the default).
    #[default]
    Direct,
    /// Routes to every bound queue.
    Fanout,
    /// Routes by routing-key pattern.
    Topic,
    /// Routes by headers.
    Headers,
}

/// An exchange to declare.
#[derive(Debug, Clone)]
pub struct ExchangeSettings {
    /// Exchange name.
    pub name: String,
    /// Its type.
    pub kind: ExchangeKind,
    /// Survives a broker restart.
    pub durable: bool,
    /// Deleted when its last binding goes.
    pub auto_delete: bool,
    /// Extra arguments.
    pub arguments: Arguments,
}

/// A binding to declare.
#[derive(Debug, Clone)]
pub struct BindingSettings {
    /// Source exchange.
    pub exchange: String,
    /// Destination queue.
    pub queue: String,
    /// Binding key.
    pub routing_key: String,
    /// Extra arguments.
    pub arguments: Arguments,
}

/// What happens to a message whose plugin failed (trap, timeout, limit) or whose publishes failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnError {
    /// Give it back to the queue.
    Requeue,
    /// Dead-letter it (the default, so that a poison message cannot loop).
    #[default]
    Reject,
}

/// Where a pipeline's rejected messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeadLetter {
    /// The queue has a dead-letter exchange: `basic.reject`, and the broker moves the message
    /// (with its `x-death` history).
    Broker,
    /// warren publishes the message, unchanged but for `x-warren-*` headers, to this queue
    /// (`<queue>.dead`), waits for the confirm, then acks.
    Queue(String),
    /// Opted out (`dead_letter_queue = false`): `basic.reject`, and the broker drops it.
    Drop,
}

/// One pipeline: a queue consumed by a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineSettings {
    /// Pipeline name.
    pub name: String,
    /// The queue consumed.
    pub queue: String,
    /// The plugin's name.
    pub plugin: String,
    /// `basic.qos` prefetch count.
    pub prefetch: NonZeroU16,
    /// Messages inside the plugin at once.
    pub concurrency: NonZeroUsize,
    /// What a failure becomes.
    pub on_error: OnError,
    /// Deliveries after which a requeue becomes a reject.
    pub max_deliveries: Option<NonZeroU32>,
    /// Delayed retry queues, shortest first, when `retry_delay_ms` is set.
    pub retry_queues: Vec<String>,
    /// Coalesce acks into `multiple` acks.
    pub coalesce_acks: bool,
    /// Where rejected messages go.
    pub dead_letter: DeadLetter,
    /// The queue is a quorum queue: its `x-delivery-count` header is the broker's and trusted.
    pub quorum: bool,
}

/// How many delay steps `retry_delay_ms` gets: the delay doubles at each (1×, 2×, 4×, 8×).
pub const RETRY_STEPS: u32 = 4;

/// The name of a pipeline's delayed-retry queue for one delay.
pub fn retry_queue_name(queue: &str, delay_ms: u64) -> String {
    format!("{queue}.warren-retry.{delay_ms}ms")
}

impl Config {
    /// Reads and validates the file at `path`.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read config file {}", path.display()))?;
        // Absolute, so that its directory can be watched even for `--config warren.toml`.
        let path = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        Self::parse(&text, &path)
    }

    /// Validates `text` as if read from `path` (relative paths resolve against its directory).
    pub fn parse(text: &str, path: &Path) -> anyhow::Result<Self> {
        // A TOML error quotes the offending line and value: hide any password in it, and
        // the whole of it in a secret_config.
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!("{}: {}", path.display(), secret::shown_toml_error(&e, text))
        })?;
        // The structure is checked above, with line numbers; then `${NAME}`s are filled in.
        drop(raw);
        let mut problems = Vec::new();
        let mut value: toml::Value = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                secret::hide_passwords(&e.to_string())
            )
        })?;
        secret::interpolate(&mut value, "", &mut problems);
        if !problems.is_empty() {
            bail!(refused(path, &problems));
        }
        let raw = raw::RawConfig::deserialize(value).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                secret::hide_passwords(e.to_string().trim_end())
            )
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let config = validate::config(raw, path, &base, &mut problems);
        if !problems.is_empty() {
            bail!(refused(path, &problems));
        }
        Ok(config)
    }

    /// The settings of the plugin a pipeline names (validated to exist).
    pub fn plugin_of(&self, pipeline: &PipelineSettings) -> Option<&PluginSettings> {
        self.plugins.get(&pipeline.plugin)
    }
}

/// The error for a refused config: the file, then each problem on a line of its own. A line
/// break inside a problem (a path or name quoted from the file) is written as `\n`, so that
/// every line starts with the key it is about (found by the `config` fuzz target).
fn refused(path: &Path, problems: &[String]) -> String {
    let lines: Vec<String> = problems
        .iter()
        .map(|p| p.replace('\n', "\\n").replace('\r', "\\r"))
        .collect();
    format!("{}:\n  {}", path.display(), lines.join("\n  "))
}

#[cfg(test)]
mod tests;
