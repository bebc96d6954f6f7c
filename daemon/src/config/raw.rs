//! The TOML file as written: serde structs that mirror it, every field documented with its
//! default. `validate` turns them into settings.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::{ExchangeKind, OnError};

/// The TOML file as written. Field docs give the defaults.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConfig {
    /// `[broker]`: where to connect. Default: the local broker as guest.
    #[serde(default)]
    pub(super) broker: RawBroker,
    /// `[admin]`: the admin HTTP endpoint. Default: none.
    pub(super) admin: Option<RawAdmin>,
    /// `[telemetry]`: where message traces are exported. Default: none (no traces).
    pub(super) telemetry: Option<super::telemetry::RawTelemetry>,
    /// `shutdown_grace_ms`: time for in-flight messages on stop. Default 30000.
    pub(super) shutdown_grace_ms: Option<u64>,
    /// `cache_dir`: where compiled plugins are kept between starts, relative to the config
    /// file, or `false` for no cache. Default: `$CACHE_DIRECTORY` (systemd), else
    /// `$XDG_CACHE_HOME/warren`, else `~/.cache/warren`. A string or `false`, checked by
    /// `validate` (so that a wrong type names the key).
    pub(super) cache_dir: Option<toml::Value>,
    /// `[plugins.NAME]`: the plugins, by name.
    #[serde(default)]
    pub(super) plugins: BTreeMap<String, RawPlugin>,
    /// `[[queues]]`: queues declared at start-up.
    #[serde(default)]
    pub(super) queues: Vec<RawQueue>,
    /// `[[exchanges]]`: exchanges declared at start-up.
    #[serde(default)]
    pub(super) exchanges: Vec<RawExchange>,
    /// `[[bindings]]`: bindings declared at start-up, after queues and exchanges.
    #[serde(default)]
    pub(super) bindings: Vec<RawBinding>,
    /// `[[pipelines]]`: one queue consumed by one plugin.
    #[serde(default)]
    pub(super) pipelines: Vec<RawPipeline>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBroker {
    /// `amqp://user:password@host:port/vhost` (or `amqps://`). Default: [`DEFAULT_BROKER_URL`].
    pub(super) url: Option<String>,
    /// Several URLs, for the nodes of a cluster, tried in turn. Instead of `url`.
    pub(super) urls: Option<Vec<String>>,
    /// A file holding the URL (systemd's `LoadCredential=`), read at start and on reload.
    /// Instead of `url`.
    pub(super) url_file: Option<PathBuf>,
    /// The connection name shown in the management UI. Default: `warren@<hostname>`.
    pub(super) connection_name: Option<String>,
    /// How long start-up may keep trying to reach the broker before warren gives up (exit
    /// code 69). Default 60000.
    pub(super) startup_timeout_ms: Option<u64>,
    /// `[broker.tls]`: TLS settings for `amqps://` URLs. Default: the OS trust store, no
    /// client certificate.
    pub(super) tls: Option<RawTls>,
}

/// `[broker.tls]`; files are relative to the config file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTls {
    /// PEM file of the CA certificates the broker's certificate must be signed by, instead
    /// of the OS trust store. Default: the OS trust store.
    pub(super) ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain) warren presents: mutual TLS; with
    /// no password in the URL, warren logs in with EXTERNAL. Default: none.
    pub(super) cert_file: Option<PathBuf>,
    /// PEM file of that certificate's private key (PKCS#8, PKCS#1 or SEC1, unencrypted).
    pub(super) key_file: Option<PathBuf>,
    /// The name the broker's certificate is checked against (and sent as SNI). Default: the
    /// URL's host.
    pub(super) server_name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
    /// `host:port` to serve `/metrics`, `/healthz`, `/readyz`, `/plugins` on.
    pub(super) listen: String,
    /// A bearer token every endpoint but `/healthz` then requires. Default: none.
    pub(super) token: Option<String>,
    /// A file holding that token (systemd `LoadCredential=`). Instead of `token`.
    pub(super) token_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPlugin {
    /// The `.wasm` component; relative to the config file.
    pub(super) path: PathBuf,
    /// Handed to the plugin's `init`, every value as a string. Default: empty.
    #[serde(default)]
    pub(super) config: toml::Table,
    /// Handed to `init` with `config`, but never shown (`warren check`, `/plugins`, the
    /// status page): tokens, passwords. A key may not be in both. Default: empty.
    #[serde(default)]
    pub(super) secret_config: toml::Table,
    /// Wall-clock limit of one `handle`, in ms. Default [`DEFAULT_TIMEOUT_MS`].
    pub(super) timeout_ms: Option<u64>,
    /// Cap on each linear memory, in MiB. Default [`DEFAULT_MEMORY_MB`].
    pub(super) memory_mb: Option<u64>,
    /// Largest body handed to the plugin. Default [`DEFAULT_MAX_BODY_BYTES`].
    pub(super) max_body_bytes: Option<usize>,
    /// Instances of the plugin that may exist at once; more messages wait for one. Default:
    /// no cap of its own (as many as the concurrency of the pipelines using it).
    pub(super) max_instances: Option<usize>,
    /// Hosts (`host:port`, `*.example.com:443`) the plugin may send HTTP requests to. Default: none.
    #[serde(default)]
    pub(super) allowed_hosts: Vec<String>,
    /// Clamp on HTTP connect / first-byte / between-bytes timeouts, in ms. Default [`DEFAULT_HTTP_TIMEOUT_MS`].
    pub(super) http_timeout_ms: Option<u64>,
    /// Largest HTTP response body the plugin may read. Default [`DEFAULT_MAX_RESPONSE_BYTES`].
    pub(super) max_response_bytes: Option<usize>,
    /// PEM file of CA certificates its `https://` requests trust besides the OS trust store;
    /// relative to the config file. Default: none.
    pub(super) ca_file: Option<PathBuf>,
    /// Bytes all the publishes made for one message may carry together. Default [`DEFAULT_MAX_PUBLISH_BYTES`].
    pub(super) max_publish_bytes: Option<usize>,
    /// Exchanges the plugin may publish to. Default: any (unless `allowed_queues` is set).
    pub(super) allowed_exchanges: Option<Vec<String>>,
    /// Queues the plugin may publish to through the default exchange. Default: any (unless
    /// `allowed_exchanges` is set).
    pub(super) allowed_queues: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawQueue {
    pub(super) name: String,
    /// Survives a broker restart. Default true.
    pub(super) durable: Option<bool>,
    /// Deleted when the last consumer goes. Default false.
    #[serde(default)]
    pub(super) auto_delete: bool,
    /// `x-max-priority`, 1 to 255. Default: not a priority queue.
    pub(super) max_priority: Option<u8>,
    /// `x-dead-letter-exchange`. Default: none (a pipeline on the queue then moves rejected
    /// messages to `<queue>.dead`).
    pub(super) dead_letter_exchange: Option<String>,
    /// `x-dead-letter-routing-key`. Default: the message's own routing key.
    pub(super) dead_letter_routing_key: Option<String>,
    /// Any other queue arguments, e.g. `{ "x-queue-type" = "quorum" }`.
    #[serde(default)]
    pub(super) arguments: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExchange {
    pub(super) name: String,
    /// `direct`, `fanout`, `topic` or `headers`. Default `direct`.
    #[serde(rename = "type")]
    pub(super) kind: Option<ExchangeKind>,
    /// Default true.
    pub(super) durable: Option<bool>,
    /// Default false.
    #[serde(default)]
    pub(super) auto_delete: bool,
    #[serde(default)]
    pub(super) arguments: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawBinding {
    pub(super) exchange: String,
    pub(super) queue: String,
    /// Default: empty.
    #[serde(default)]
    pub(super) routing_key: String,
    #[serde(default)]
    pub(super) arguments: toml::Table,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPipeline {
    pub(super) name: String,
    pub(super) queue: String,
    pub(super) plugin: String,
    /// `basic.qos` prefetch count. Default [`DEFAULT_PREFETCH`].
    pub(super) prefetch: Option<u16>,
    /// Messages inside the plugin at once. Default: `prefetch`.
    pub(super) concurrency: Option<usize>,
    /// `requeue` or `reject`. Default `reject`, so a poison message cannot loop forever.
    pub(super) on_error: Option<OnError>,
    /// Deliveries after which a requeued message is rejected (dead-lettered) instead. Default: no limit.
    pub(super) max_deliveries: Option<u32>,
    /// Delay before a requeued message comes back, doubled per delivery (4 steps). Default: none.
    pub(super) retry_delay_ms: Option<u64>,
    /// Coalesce acks into `multiple` acks. Default true.
    pub(super) coalesce_acks: Option<bool>,
    /// For a queue without a dead-letter exchange: declare `<queue>.dead` and move rejected
    /// messages there (true), or let the broker drop them (false). Default true.
    pub(super) dead_letter_queue: Option<bool>,
}
