//! Reads `warren.toml`: serde structs that mirror the file, validated into settings that cannot hold bad values.
//!
//! Every error names the file and the key (`pipelines[0].plugin`), and says what would fix it.
//! Relative paths are resolved against the directory of the config file.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::num::{NonZeroU16, NonZeroU32, NonZeroUsize};
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use anyhow::{Context, bail};
use serde::Deserialize;

use crate::plugin::egress::EgressPolicy;
pub use crate::plugin::egress::{DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_MAX_RESPONSE_BYTES};

/// Where `warren run` looks for its configuration when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/warren/warren.toml";
/// The broker URL when `[broker] url` is not given.
pub const DEFAULT_BROKER_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// `prefetch` when a pipeline does not set it.
pub const DEFAULT_PREFETCH: u16 = 10;
/// `timeout_ms` when a plugin does not set it: the wall-clock limit of one `handle`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// `memory_mb` when a plugin does not set it: the cap on each linear memory.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// `max_body_bytes` when a plugin does not set it: larger messages go to `on_error` unread.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// RabbitMQ's default `consumer_timeout`: a delivery unacked for longer closes its channel.
pub const BROKER_CONSUMER_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// `shutdown_grace_ms` when not set: how long in-flight messages may take to finish on stop.
pub const DEFAULT_SHUTDOWN_GRACE_MS: u64 = 30_000;
/// `max_publish_bytes` when a plugin does not set it: the bytes (bodies) that all the publishes
/// made for one message may carry together.
pub const DEFAULT_MAX_PUBLISH_BYTES: usize = 16 * 1024 * 1024;
/// The longest queue name: AMQP's 255 bytes less room for the longest suffix warren adds
/// (`.warren-retry.<20 digits>ms`).
pub const QUEUE_NAME_MAX: usize = 255 - 36;
/// The suffix of the dead-letter queue warren declares for a queue without a dead-letter exchange.
pub const DEAD_LETTER_SUFFIX: &str = ".dead";

// ---------------------------------------------------------------------------------------------
// The file, as written.
// ---------------------------------------------------------------------------------------------

/// The TOML file as written. Field docs give the defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    /// `[broker]`: where to connect. Default: the local broker as guest.
    #[serde(default)]
    broker: RawBroker,
    /// `[admin]`: the admin HTTP endpoint. Default: none.
    admin: Option<RawAdmin>,
    /// `shutdown_grace_ms`: time for in-flight messages on stop. Default 30000.
    shutdown_grace_ms: Option<u64>,
    /// `[plugins.NAME]`: the plugins, by name.
    #[serde(default)]
    plugins: BTreeMap<String, RawPlugin>,
    /// `[[queues]]`: queues declared at start-up.
    #[serde(default)]
    queues: Vec<RawQueue>,
    /// `[[exchanges]]`: exchanges declared at start-up.
    #[serde(default)]
    exchanges: Vec<RawExchange>,
    /// `[[bindings]]`: bindings declared at start-up, after queues and exchanges.
    #[serde(default)]
    bindings: Vec<RawBinding>,
    /// `[[pipelines]]`: one queue consumed by one plugin.
    #[serde(default)]
    pipelines: Vec<RawPipeline>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBroker {
    /// `amqp://user:password@host:port/vhost` (or `amqps://`). Default: [`DEFAULT_BROKER_URL`].
    url: Option<String>,
    /// Several URLs, for the nodes of a cluster, tried in turn. Instead of `url`.
    urls: Option<Vec<String>>,
    /// The connection name shown in the management UI. Default: `warren`.
    connection_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    /// `host:port` to serve `/metrics`, `/healthz`, `/readyz`, `/plugins` on.
    listen: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugin {
    /// The `.wasm` component; relative to the config file.
    path: PathBuf,
    /// Handed to the plugin's `init`, every value as a string. Default: empty.
    #[serde(default)]
    config: toml::Table,
    /// Wall-clock limit of one `handle`, in ms. Default [`DEFAULT_TIMEOUT_MS`].
    timeout_ms: Option<u64>,
    /// Cap on each linear memory, in MiB. Default [`DEFAULT_MEMORY_MB`].
    memory_mb: Option<u64>,
    /// Largest body handed to the plugin. Default [`DEFAULT_MAX_BODY_BYTES`].
    max_body_bytes: Option<usize>,
    /// Hosts (`host:port`, `*.example.com:443`) the plugin may send HTTP requests to. Default: none.
    #[serde(default)]
    allowed_hosts: Vec<String>,
    /// Clamp on HTTP connect / first-byte / between-bytes timeouts, in ms. Default [`DEFAULT_HTTP_TIMEOUT_MS`].
    http_timeout_ms: Option<u64>,
    /// Largest HTTP response body the plugin may read. Default [`DEFAULT_MAX_RESPONSE_BYTES`].
    max_response_bytes: Option<usize>,
    /// PEM file of CA certificates its `https://` requests trust besides the OS trust store;
    /// relative to the config file. Default: none.
    ca_file: Option<PathBuf>,
    /// Bytes all the publishes made for one message may carry together. Default [`DEFAULT_MAX_PUBLISH_BYTES`].
    max_publish_bytes: Option<usize>,
    /// Exchanges the plugin may publish to. Default: any (unless `allowed_queues` is set).
    allowed_exchanges: Option<Vec<String>>,
    /// Queues the plugin may publish to through the default exchange. Default: any (unless
    /// `allowed_exchanges` is set).
    allowed_queues: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: String,
    /// Survives a broker restart. Default true.
    durable: Option<bool>,
    /// Deleted when the last consumer goes. Default false.
    #[serde(default)]
    auto_delete: bool,
    /// `x-max-priority`, 1 to 255. Default: not a priority queue.
    max_priority: Option<u8>,
    /// `x-dead-letter-exchange`. Default: none (a pipeline on the queue then moves rejected
    /// messages to `<queue>.dead`).
    dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`. Default: the message's own routing key.
    dead_letter_routing_key: Option<String>,
    /// Any other queue arguments, e.g. `{ "x-queue-type" = "quorum" }`.
    #[serde(default)]
    arguments: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExchange {
    name: String,
    /// `direct`, `fanout`, `topic` or `headers`. Default `direct`.
    #[serde(rename = "type")]
    kind: Option<String>,
    /// Default true.
    durable: Option<bool>,
    /// Default false.
    #[serde(default)]
    auto_delete: bool,
    #[serde(default)]
    arguments: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBinding {
    exchange: String,
    queue: String,
    /// Default: empty.
    #[serde(default)]
    routing_key: String,
    #[serde(default)]
    arguments: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPipeline {
    name: String,
    queue: String,
    plugin: String,
    /// `basic.qos` prefetch count. Default [`DEFAULT_PREFETCH`].
    prefetch: Option<u16>,
    /// Messages inside the plugin at once. Default: `prefetch`.
    concurrency: Option<usize>,
    /// `requeue` or `reject`. Default `reject`, so a poison message cannot loop forever.
    on_error: Option<String>,
    /// Deliveries after which a requeued message is rejected (dead-lettered) instead. Default: no limit.
    max_deliveries: Option<u32>,
    /// Delay before a requeued message comes back, doubled per delivery (4 steps). Default: none.
    retry_delay_ms: Option<u64>,
    /// Coalesce acks into `multiple` acks. Default true.
    coalesce_acks: Option<bool>,
    /// For a queue without a dead-letter exchange: declare `<queue>.dead` and move rejected
    /// messages there (true), or let the broker drop them (false). Default true.
    dead_letter_queue: Option<bool>,
}

// ---------------------------------------------------------------------------------------------
// The settings, validated.
// ---------------------------------------------------------------------------------------------

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub path: PathBuf,
    /// Broker connection.
    pub broker: BrokerSettings,
    /// Admin endpoint, if any.
    pub admin: Option<AdminSettings>,
    /// How long in-flight messages may take to finish on stop.
    pub shutdown_grace: Duration,
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
}

/// An AMQP URL whose password never reaches a log or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl(String);

impl BrokerUrl {
    /// Parses and checks the scheme; the error does not quote the URL.
    pub fn parse(raw: &str) -> Result<Self, String> {
        let parsed = url::Url::parse(raw).map_err(|e| format!("not a valid URL ({e})"))?;
        match parsed.scheme() {
            "amqp" | "amqps" => Ok(Self(raw.to_owned())),
            other => Err(format!(
                "scheme must be amqp:// or amqps://, not {other}://"
            )),
        }
    }

    /// The full URL, for the client library only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.password().is_some() {
                    // Cannot fail: the URL has a password, so it has a host.
                    let _ = url.set_password(Some("***"));
                }
                f.write_str(url.as_str())
            }
            Err(_) => f.write_str("<invalid url>"),
        }
    }
}

/// `text` with the password of every `scheme://user:password@` in it replaced by `***`.
fn hide_passwords(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find("://") {
        let (before, after) = rest.split_at(at + 3);
        out.push_str(before);
        // The authority ends at the first character a URL's user info cannot hold.
        let end = after
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '/' | '`'))
            .unwrap_or(after.len());
        let authority = &after[..end];
        match authority.rfind('@').map(|at| &authority[..at]) {
            Some(user_info) if user_info.contains(':') => {
                let user = &user_info[..user_info.find(':').unwrap_or(0)];
                out.push_str(user);
                out.push_str(":***");
                out.push_str(&authority[user_info.len()..]);
            }
            _ => out.push_str(authority),
        }
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

impl BrokerSettings {
    /// The URLs, passwords hidden, for logs.
    pub fn shown(&self) -> String {
        let urls: Vec<String> = self.urls.iter().map(ToString::to_string).collect();
        urls.join(", ")
    }
}

impl fmt::Debug for BrokerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({self})")
    }
}

/// The admin endpoint.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Address to listen on.
    pub listen: SocketAddr,
}

/// One plugin.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Its name in the config.
    pub name: String,
    /// Absolute path of the `.wasm` component.
    pub path: PathBuf,
    /// The `config` table, values as strings, in key order.
    pub config: Vec<(String, String)>,
    /// Sandbox limits.
    pub limits: Limits,
    /// Hosts it may reach over HTTP, as written.
    pub allowed_hosts: Vec<String>,
    /// The HTTP egress policy built from `allowed_hosts` and the HTTP limits.
    pub egress: Arc<EgressPolicy>,
    /// Where and how much the plugin may publish.
    pub publish: PublishRules,
}

/// What a plugin may publish: checked on every message it publishes, before the broker sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRules {
    /// Bytes (bodies) that all the publishes made for one message may carry together.
    pub max_bytes: usize,
    /// Named exchanges it may publish to; `None`: any.
    pub exchanges: Option<BTreeSet<String>>,
    /// Queues it may publish to through the default exchange; `None`: any.
    pub queues: Option<BTreeSet<String>>,
}

impl Default for PublishRules {
    fn default() -> Self {
        Self {
            max_bytes: DEFAULT_MAX_PUBLISH_BYTES,
            exchanges: None,
            queues: None,
        }
    }
}

impl PublishRules {
    fn new(max_bytes: usize, exchanges: Option<Vec<String>>, queues: Option<Vec<String>>) -> Self {
        let restricted = exchanges.is_some() || queues.is_some();
        let set = |list: Option<Vec<String>>| {
            list.map(|l| l.into_iter().collect())
                .or_else(|| restricted.then(BTreeSet::new))
        };
        Self {
            max_bytes,
            exchanges: set(exchanges),
            queues: set(queues),
        }
    }
}

/// The sandbox limits of one plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock limit of one `handle`.
    pub timeout: Duration,
    /// Cap on each linear memory, in bytes.
    pub memory_bytes: usize,
    /// Largest body handed to the plugin.
    pub max_body_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            memory_bytes: mib(DEFAULT_MEMORY_MB),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    /// Routes by exact routing key.
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Give it back to the queue.
    Requeue,
    /// Reject it without requeue: to the dead-letter exchange if the queue has one.
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
        // A TOML error quotes the offending line and value: hide any password in it.
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            anyhow::anyhow!(
                "{}: {}",
                path.display(),
                hide_passwords(e.to_string().trim_end())
            )
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        let mut problems = Vec::new();
        let config = validate(raw, path, &base, &mut problems);
        if !problems.is_empty() {
            bail!("{}:\n  {}", path.display(), problems.join("\n  "));
        }
        Ok(config)
    }

    /// The settings of the plugin a pipeline names (validated to exist).
    pub fn plugin_of(&self, pipeline: &PipelineSettings) -> Option<&PluginSettings> {
        self.plugins.get(&pipeline.plugin)
    }
}

fn validate(raw: RawConfig, path: &Path, base: &Path, problems: &mut Vec<String>) -> Config {
    let urls: Vec<(String, String)> = match (raw.broker.url, raw.broker.urls) {
        (Some(_), Some(_)) => {
            problems.push("broker.urls: give either url or urls, not both".to_owned());
            Vec::new()
        }
        (None, Some(urls)) if urls.is_empty() => {
            problems.push("broker.urls: list at least one URL".to_owned());
            Vec::new()
        }
        (None, Some(urls)) => urls
            .into_iter()
            .enumerate()
            .map(|(i, u)| (format!("broker.urls[{i}]"), u))
            .collect(),
        (Some(url), None) => vec![("broker.url".to_owned(), url)],
        (None, None) => vec![("broker.url".to_owned(), DEFAULT_BROKER_URL.to_owned())],
    };
    let urls = urls
        .into_iter()
        .filter_map(|(key, text)| {
            BrokerUrl::parse(&text)
                .map_err(|e| problems.push(format!("{key}: {e}")))
                .ok()
        })
        .collect();
    let broker = BrokerSettings {
        urls,
        connection_name: raw
            .broker
            .connection_name
            .unwrap_or_else(|| "warren".to_owned()),
    };

    let admin = raw.admin.and_then(|a| match a.listen.parse() {
        Ok(listen) => Some(AdminSettings { listen }),
        Err(_) => {
            problems.push(format!(
                "admin.listen: {:?} is not an address; write host:port, e.g. \"127.0.0.1:9090\"",
                a.listen
            ));
            None
        }
    });

    let mut plugins = BTreeMap::new();
    for (name, p) in raw.plugins {
        let key = format!("plugins.{name}");
        let resolved = base.join(&p.path);
        if !resolved.is_file() {
            problems.push(format!(
                "{key}.path: no plugin file at {} (relative paths are relative to {}); build it or fix the path",
                resolved.display(),
                path.display()
            ));
        }
        let limits = Limits {
            timeout: Duration::from_millis(positive(
                p.timeout_ms,
                DEFAULT_TIMEOUT_MS,
                &format!("{key}.timeout_ms"),
                problems,
            )),
            memory_bytes: mib(positive(
                p.memory_mb,
                DEFAULT_MEMORY_MB,
                &format!("{key}.memory_mb"),
                problems,
            )),
            max_body_bytes: positive(
                p.max_body_bytes.map(|n| n as u64),
                DEFAULT_MAX_BODY_BYTES as u64,
                &format!("{key}.max_body_bytes"),
                problems,
            ) as usize,
        };
        let config = p
            .config
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    toml::Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, v)
            })
            .collect();
        let egress = EgressPolicy::new(
            &p.allowed_hosts,
            Duration::from_millis(positive(
                p.http_timeout_ms,
                DEFAULT_HTTP_TIMEOUT_MS,
                &format!("{key}.http_timeout_ms"),
                problems,
            )),
            positive(
                p.max_response_bytes.map(|n| n as u64),
                DEFAULT_MAX_RESPONSE_BYTES as u64,
                &format!("{key}.max_response_bytes"),
                problems,
            ) as usize,
        )
        .unwrap_or_else(|e| {
            problems.push(format!("{key}.allowed_hosts: {e}"));
            EgressPolicy::deny_all()
        });
        let egress = match &p.ca_file {
            None => egress,
            Some(file) => egress.with_ca_file(&base.join(file)).unwrap_or_else(|e| {
                problems.push(format!("{key}.ca_file: {e}"));
                EgressPolicy::deny_all()
            }),
        };
        if limits.timeout > BROKER_CONSUMER_TIMEOUT {
            tracing::warn!(
                "{}: {key}.timeout_ms ({} ms) is longer than RabbitMQ's default consumer_timeout (30 min): \
                 the broker may close the channel of a message still in the plugin",
                path.display(),
                limits.timeout.as_millis()
            );
        }
        let publish = PublishRules::new(
            positive(
                p.max_publish_bytes.map(|n| n as u64),
                DEFAULT_MAX_PUBLISH_BYTES as u64,
                &format!("{key}.max_publish_bytes"),
                problems,
            ) as usize,
            p.allowed_exchanges,
            p.allowed_queues,
        );
        plugins.insert(
            name.clone(),
            PluginSettings {
                name,
                path: tidy_path(resolved),
                config,
                limits,
                allowed_hosts: p.allowed_hosts,
                egress: Arc::new(egress),
                publish,
            },
        );
    }

    let mut queue_names = BTreeSet::new();
    let mut queues = Vec::new();
    for (i, q) in raw.queues.into_iter().enumerate() {
        let key = format!("queues[{i}]");
        if q.name.is_empty() {
            problems.push(format!("{key}.name: a declared queue needs a name"));
        }
        if !queue_names.insert(q.name.clone()) {
            problems.push(format!("{key}.name: queue {:?} is declared twice", q.name));
        }
        // Room for the names warren derives from it (`.dead`, `.warren-retry.<N>ms`).
        if q.name.len() > QUEUE_NAME_MAX {
            problems.push(format!(
                "{key}.name: {} bytes long; at most {QUEUE_NAME_MAX} (AMQP allows 255, and warren adds suffixes such as {DEAD_LETTER_SUFFIX:?} to it)",
                q.name.len()
            ));
        }
        let mut arguments = arguments(q.arguments, &format!("{key}.arguments"), problems);
        if let Some(p) = q.max_priority {
            if p == 0 {
                problems.push(format!(
                    "{key}.max_priority: must be 1 to 255 (RabbitMQ recommends at most 10)"
                ));
            }
            arguments.insert("x-max-priority".into(), ArgValue::Int(i64::from(p)));
        }
        if let Some(dlx) = q.dead_letter_exchange {
            arguments.insert("x-dead-letter-exchange".into(), ArgValue::Text(dlx));
        }
        if let Some(rk) = q.dead_letter_routing_key {
            arguments.insert("x-dead-letter-routing-key".into(), ArgValue::Text(rk));
        }
        queues.push(QueueSettings {
            name: q.name,
            durable: q.durable.unwrap_or(true),
            auto_delete: q.auto_delete,
            arguments,
        });
    }

    let mut exchange_names = BTreeSet::new();
    let mut exchanges = Vec::new();
    for (i, e) in raw.exchanges.into_iter().enumerate() {
        let key = format!("exchanges[{i}]");
        if e.name.is_empty() || e.name.starts_with("amq.") {
            problems.push(format!(
                "{key}.name: {:?} cannot be declared (empty and amq.* names belong to the broker)",
                e.name
            ));
        }
        if e.name.len() > 255 {
            problems.push(format!(
                "{key}.name: {} bytes long; AMQP allows at most 255",
                e.name.len()
            ));
        }
        if !exchange_names.insert(e.name.clone()) {
            problems.push(format!(
                "{key}.name: exchange {:?} is declared twice",
                e.name
            ));
        }
        let kind = match e.kind.as_deref().unwrap_or("direct") {
            "direct" => ExchangeKind::Direct,
            "fanout" => ExchangeKind::Fanout,
            "topic" => ExchangeKind::Topic,
            "headers" => ExchangeKind::Headers,
            other => {
                problems.push(format!(
                    "{key}.type: {other:?} is not an exchange type; use direct, fanout, topic or headers"
                ));
                ExchangeKind::Direct
            }
        };
        exchanges.push(ExchangeSettings {
            name: e.name,
            kind,
            durable: e.durable.unwrap_or(true),
            auto_delete: e.auto_delete,
            arguments: arguments(e.arguments, &format!("{key}.arguments"), problems),
        });
    }

    let bindings = raw
        .bindings
        .into_iter()
        .enumerate()
        .map(|(i, b)| {
            let key = format!("bindings[{i}]");
            if b.routing_key.len() > 255 {
                problems.push(format!(
                    "{key}.routing_key: {} bytes long; AMQP allows at most 255",
                    b.routing_key.len()
                ));
            }
            if !queue_names.contains(&b.queue) {
                problems.push(format!(
                    "{key}.queue: {:?} is not a declared queue; add it under [[queues]]",
                    b.queue
                ));
            }
            if !exchange_names.contains(&b.exchange) && !b.exchange.starts_with("amq.") {
                problems.push(format!(
                    "{key}.exchange: {:?} is not a declared exchange; add it under [[exchanges]]",
                    b.exchange
                ));
            }
            BindingSettings {
                exchange: b.exchange,
                queue: b.queue,
                routing_key: b.routing_key,
                arguments: arguments(b.arguments, &format!("{key}.arguments"), problems),
            }
        })
        .collect();

    let mut pipeline_names = BTreeSet::new();
    let mut pipelines = Vec::new();
    for (i, p) in raw.pipelines.into_iter().enumerate() {
        let key = format!("pipelines[{i}]");
        if !pipeline_names.insert(p.name.clone()) {
            problems.push(format!(
                "{key}.name: pipeline {:?} is defined twice",
                p.name
            ));
        }
        if !queue_names.contains(&p.queue) {
            problems.push(format!(
                "{key}.queue: {:?} is not a declared queue; add a [[queues]] entry with name = {:?}",
                p.queue, p.queue
            ));
        }
        if !plugins.contains_key(&p.plugin) {
            let known: Vec<&str> = plugins.keys().map(String::as_str).collect();
            problems.push(format!(
                "{key}.plugin: no plugin named {:?}; defined plugins: [{}]",
                p.plugin,
                known.join(", ")
            ));
        }
        let prefetch =
            NonZeroU16::new(p.prefetch.unwrap_or(DEFAULT_PREFETCH)).unwrap_or_else(|| {
                problems.push(format!(
                    "{key}.prefetch: must be at least 1 (0 would mean unlimited unacked messages)"
                ));
                NonZeroU16::MIN
            });
        let concurrency = match p.concurrency {
            None => NonZeroUsize::from(prefetch),
            Some(c) => NonZeroUsize::new(c).unwrap_or_else(|| {
                problems.push(format!("{key}.concurrency: must be at least 1"));
                NonZeroUsize::MIN
            }),
        };
        let on_error = match p.on_error.as_deref().unwrap_or("reject") {
            "reject" => OnError::Reject,
            "requeue" => OnError::Requeue,
            other => {
                problems.push(format!(
                    "{key}.on_error: {other:?} is not a policy; use \"reject\" (dead-letter) or \"requeue\""
                ));
                OnError::Reject
            }
        };
        let max_deliveries = p.max_deliveries.map(|n| {
            NonZeroU32::new(n).unwrap_or_else(|| {
                problems.push(format!("{key}.max_deliveries: must be at least 1"));
                NonZeroU32::MIN
            })
        });
        let source = queues.iter().find(|q| q.name == p.queue).cloned();
        let durable = source.as_ref().is_none_or(|q| q.durable);
        let quorum = source.as_ref().is_some_and(QueueSettings::is_quorum);
        let same_type = source
            .as_ref()
            .map(QueueSettings::same_type_arguments)
            .unwrap_or_default();
        let mut retry_queues = Vec::new();
        if let Some(delay) = p.retry_delay_ms {
            if delay == 0 {
                problems.push(format!("{key}.retry_delay_ms: must be at least 1"));
            }
            for step in 0..RETRY_STEPS {
                let delay_ms = delay.saturating_mul(1 << step);
                let name = retry_queue_name(&p.queue, delay_ms);
                let mut arguments = same_type.clone();
                arguments.insert(
                    "x-message-ttl".into(),
                    ArgValue::Int(i64::try_from(delay_ms).unwrap_or(i64::MAX)),
                );
                arguments.insert(
                    "x-dead-letter-exchange".into(),
                    ArgValue::Text(String::new()),
                );
                arguments.insert(
                    "x-dead-letter-routing-key".into(),
                    ArgValue::Text(p.queue.clone()),
                );
                if quorum {
                    // A delayed retry must survive a node loss: dead-lettered back at least
                    // once, and a full source queue refuses rather than drops.
                    arguments.insert(
                        "x-dead-letter-strategy".into(),
                        ArgValue::Text("at-least-once".into()),
                    );
                    arguments.insert("x-overflow".into(), ArgValue::Text("reject-publish".into()));
                }
                if !queues.iter().any(|q| q.name == name) {
                    queues.push(QueueSettings {
                        name: name.clone(),
                        durable,
                        auto_delete: false,
                        arguments,
                    });
                }
                retry_queues.push(name);
            }
        }
        let dead_letter = if source
            .as_ref()
            .is_some_and(QueueSettings::has_dead_letter_exchange)
        {
            if p.dead_letter_queue == Some(false) {
                problems.push(format!(
                    "{key}.dead_letter_queue: queue {:?} has a dead_letter_exchange, which takes its rejected messages; remove dead_letter_queue = false",
                    p.queue
                ));
            }
            DeadLetter::Broker
        } else if p.dead_letter_queue == Some(false) {
            DeadLetter::Drop
        } else {
            let name = format!("{}{DEAD_LETTER_SUFFIX}", p.queue);
            if !queues.iter().any(|q| q.name == name) {
                queues.push(QueueSettings {
                    name: name.clone(),
                    durable,
                    auto_delete: false,
                    arguments: same_type.clone(),
                });
            }
            DeadLetter::Queue(name)
        };
        pipelines.push(PipelineSettings {
            name: p.name,
            queue: p.queue,
            plugin: p.plugin,
            prefetch,
            concurrency,
            on_error,
            max_deliveries,
            retry_queues,
            coalesce_acks: p.coalesce_acks.unwrap_or(true),
            dead_letter,
            quorum,
        });
    }

    Config {
        path: path.to_path_buf(),
        broker,
        admin,
        shutdown_grace: Duration::from_millis(
            raw.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS),
        ),
        plugins,
        queues,
        exchanges,
        bindings,
        pipelines,
    }
}

/// The path with its directory made absolute and free of `..` (the file name itself is kept,
/// so a symlinked plugin file is still followed anew on reload).
fn tidy_path(path: PathBuf) -> PathBuf {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => match std::fs::canonicalize(if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        }) {
            Ok(dir) => dir.join(name),
            Err(_) => path,
        },
        _ => path,
    }
}

fn positive(value: Option<u64>, default: u64, key: &str, problems: &mut Vec<String>) -> u64 {
    match value {
        Some(0) => {
            problems.push(format!("{key}: must be at least 1"));
            default
        }
        Some(v) => v,
        None => default,
    }
}

fn arguments(table: toml::Table, key: &str, problems: &mut Vec<String>) -> Arguments {
    table
        .into_iter()
        .filter_map(|(k, v)| {
            let value = match v {
                toml::Value::String(s) => ArgValue::Text(s),
                toml::Value::Integer(i) => ArgValue::Int(i),
                toml::Value::Float(f) => ArgValue::Float(f),
                toml::Value::Boolean(b) => ArgValue::Bool(b),
                other => {
                    problems.push(format!(
                        "{key}.{k}: {} values are not supported; use a string, integer, float or boolean",
                        other.type_str()
                    ));
                    return None;
                }
            };
            Some((k, value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Config> {
        Config::parse(text, Path::new("/nonexistent/warren.toml"))
    }

    fn error_of(text: &str) -> String {
        format!("{:#}", parse(text).expect_err("config should be refused"))
    }

    const QUEUE_AND_PIPELINE: &str = r#"
[[queues]]
name = "q"
[[pipelines]]
name = "p"
queue = "q"
plugin = "missing"
"#;

    #[test]
    fn unknown_key_names_key_line_and_file() {
        let err = error_of("[broker]\nurl = \"amqp://localhost\"\nprefetchx = 3\n");
        assert!(err.contains("/nonexistent/warren.toml"), "{err}");
        assert!(err.contains("prefetchx"), "{err}");
        assert!(err.contains("line 3"), "{err}");
    }

    #[test]
    fn wrong_type_is_refused() {
        let err = error_of("[[queues]]\nname = \"q\"\ndurable = \"yes\"\n");
        assert!(err.contains("durable") || err.contains("line 3"), "{err}");
    }

    #[test]
    fn missing_plugin_and_plugin_file_are_named() {
        let err = error_of(QUEUE_AND_PIPELINE);
        assert!(err.contains("pipelines[0].plugin"), "{err}");
        let err = error_of("[plugins.x]\npath = \"x.wasm\"\n");
        assert!(err.contains("plugins.x.path"), "{err}");
        assert!(err.contains("/nonexistent/x.wasm"), "{err}");
    }

    #[test]
    fn zero_prefetch_and_bad_on_error_are_refused() {
        let text = QUEUE_AND_PIPELINE.replace(
            "plugin = \"missing\"",
            "plugin = \"missing\"\nprefetch = 0\non_error = \"drop\"",
        );
        let err = error_of(&text);
        assert!(err.contains("pipelines[0].prefetch"), "{err}");
        assert!(err.contains("pipelines[0].on_error"), "{err}");
    }

    #[test]
    fn password_never_shown() {
        let url = BrokerUrl::parse("amqp://user:s3cret@host:5672/%2f").expect("valid");
        assert!(!url.to_string().contains("s3cret"));
        assert!(!format!("{url:?}").contains("s3cret"));
        let err = error_of("[broker]\nurl = \"http://user:s3cret@host\"\n");
        assert!(err.contains("broker.url"), "{err}");
        assert!(!err.contains("s3cret"), "{err}");
        // TOML's own errors quote the line: a URL where a list belongs, a stray key.
        for text in [
            "[broker]\nurls = \"amqp://user:s3cret@host/%2f\"\n",
            "[broker]\nurl = \"amqp://user:s3cret@host/%2f\"\nurl2 = 1\n",
            "[broker]\nurl = amqp://user:s3cret@host\n",
        ] {
            let err = error_of(text);
            assert!(!err.contains("s3cret"), "{err}");
        }
    }

    #[test]
    fn passwords_are_hidden_in_any_text() {
        assert_eq!(
            hide_passwords("bad: \"amqp://u:p@h:5672/%2f\" and amqps://x:y@z, amqp://h/v"),
            "bad: \"amqp://u:***@h:5672/%2f\" and amqps://x:***@z, amqp://h/v"
        );
        assert_eq!(hide_passwords("no url here"), "no url here");
    }

    #[test]
    fn queue_arguments_collected() {
        let config = parse(
            r#"
[[queues]]
name = "q"
max_priority = 10
dead_letter_exchange = "dlx"
arguments = { "x-queue-type" = "quorum" }
"#,
        )
        .expect("valid");
        let args = &config.queues[0].arguments;
        assert_eq!(args.get("x-max-priority"), Some(&ArgValue::Int(10)));
        assert_eq!(
            args.get("x-dead-letter-exchange"),
            Some(&ArgValue::Text("dlx".into()))
        );
        assert_eq!(
            args.get("x-queue-type"),
            Some(&ArgValue::Text("quorum".into()))
        );
        assert!(config.queues[0].durable);
    }

    #[test]
    fn derived_queues_take_the_source_queue_type() {
        let text = r#"
[[queues]]
name = "q"
arguments = { "x-queue-type" = "quorum" }
[[queues]]
name = "c"
[[queues]]
name = "d"
dead_letter_exchange = "dlx"
[[pipelines]]
name = "p"
queue = "q"
plugin = "x"
retry_delay_ms = 100
[[pipelines]]
name = "pc"
queue = "c"
plugin = "x"
dead_letter_queue = false
[[pipelines]]
name = "pd"
queue = "d"
plugin = "x"
[plugins.x]
path = "x.wasm"
"#;
        let mut problems = Vec::new();
        let raw: RawConfig = toml::from_str(text).expect("toml");
        let config = validate(
            raw,
            Path::new("/w/warren.toml"),
            Path::new("/w"),
            &mut problems,
        );
        assert_eq!(
            problems.len(),
            1,
            "only the missing plugin file: {problems:?}"
        );
        let queue = |name: &str| {
            config
                .queues
                .iter()
                .find(|q| q.name == name)
                .unwrap_or_else(|| panic!("{name} declared"))
        };
        let retry = queue("q.warren-retry.100ms");
        assert!(retry.is_quorum());
        assert_eq!(
            retry.arguments.get("x-dead-letter-strategy"),
            Some(&ArgValue::Text("at-least-once".into()))
        );
        assert_eq!(
            retry.arguments.get("x-overflow"),
            Some(&ArgValue::Text("reject-publish".into()))
        );
        assert!(queue("q.dead").is_quorum() && queue("q.dead").durable);
        let by_name = |name: &str| {
            config
                .pipelines
                .iter()
                .find(|p| p.name == name)
                .expect("pipeline")
        };
        assert!(by_name("p").quorum);
        assert_eq!(by_name("p").dead_letter, DeadLetter::Queue("q.dead".into()));
        assert_eq!(by_name("pc").dead_letter, DeadLetter::Drop);
        assert_eq!(by_name("pd").dead_letter, DeadLetter::Broker);
        assert!(
            !config
                .queues
                .iter()
                .any(|q| q.name == "c.dead" || q.name == "d.dead")
        );
    }

    #[test]
    fn publish_allowlists_restrict_once_either_is_set() {
        let open = PublishRules::new(10, None, None);
        assert_eq!((open.exchanges, open.queues), (None, None));
        let rules = PublishRules::new(10, None, Some(vec!["replies".into()]));
        assert_eq!(rules.exchanges, Some(BTreeSet::new()), "no exchange then");
        assert_eq!(rules.queues, Some(BTreeSet::from(["replies".to_owned()])));
    }

    #[test]
    fn names_too_long_for_amqp_are_refused() {
        let long = "q".repeat(QUEUE_NAME_MAX + 1);
        let err = error_of(&format!("[[queues]]\nname = \"{long}\"\n"));
        assert!(
            err.contains("queues[0].name: 220 bytes long; at most 219"),
            "{err}"
        );
        let err = error_of(&format!("[[exchanges]]\nname = \"{}\"\n", "e".repeat(256)));
        assert!(err.contains("exchanges[0].name: 256 bytes long"), "{err}");
    }
}
