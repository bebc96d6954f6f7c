//! What a plugin is configured with: its file, its `config` table, its sandbox limits, where
//! it may send HTTP requests and where it may publish. `config` builds it; the plugin host
//! reads it.

use std::collections::BTreeSet;
use std::num::NonZeroUsize;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::egress::EgressPolicy;

/// `timeout_ms` when a plugin does not set it: the wall-clock limit of one `handle`.
pub const DEFAULT_TIMEOUT_MS: u64 = 30_000;
/// `memory_mb` when a plugin does not set it: the cap on each linear memory.
pub const DEFAULT_MEMORY_MB: u64 = 64;
/// `max_body_bytes` when a plugin does not set it: larger messages go to `on_error` unread.
pub const DEFAULT_MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// `max_publish_bytes` when a plugin does not set it: the bytes (bodies) that all the publishes
/// made for one message may carry together.
pub const DEFAULT_MAX_PUBLISH_BYTES: usize = 16 * 1024 * 1024;
pub use super::egress::{DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_MAX_RESPONSE_BYTES};

/// One plugin, as configured.
#[derive(Debug, Clone)]
pub struct PluginSettings {
    /// Its name in the config.
    pub name: String,
    /// Absolute path of the `.wasm` component.
    pub path: PathBuf,
    /// The `config` and `secret_config` tables, values as strings, in key order.
    pub config: PluginConfig,
    /// Sandbox limits.
    pub limits: Limits,
    /// Where and how much the plugin may publish.
    pub publish: PublishRules,
    /// Hosts it may reach over HTTP, as written, and the policy built from them: set together
    /// by [`PluginSettings::new`], so they cannot disagree.
    allowed_hosts: Vec<String>,
    egress: Arc<EgressPolicy>,
}

/// An `allowed_hosts` entry that is not a host pattern, or a `ca_file` that cannot be used.
#[derive(Debug)]
pub struct BadHosts {
    /// The plugin's settings with no host allowed.
    pub settings: PluginSettings,
    /// The key at fault: `allowed_hosts` or `ca_file`.
    pub key: &'static str,
    /// Which entry, and why.
    pub error: String,
}

/// HTTP limits and trust of a plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpLimits {
    /// Clamp on connect, first-byte and between-bytes timeouts.
    pub timeout: Duration,
    /// Cap on a response body.
    pub max_response_bytes: usize,
    /// A PEM file of CA certificates trusted besides the OS trust store.
    pub ca_file: Option<PathBuf>,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(DEFAULT_HTTP_TIMEOUT_MS),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            ca_file: None,
        }
    }
}

impl PluginSettings {
    /// A plugin's settings. If an `allowed_hosts` entry is not a host pattern, the error
    /// says which, and carries the same settings with no host allowed (so that a config
    /// check can go on and report every problem).
    pub fn new(
        name: String,
        path: PathBuf,
        config: impl Into<PluginConfig>,
        limits: Limits,
        allowed_hosts: Vec<String>,
        http: HttpLimits,
        publish: PublishRules,
    ) -> Result<Self, Box<BadHosts>> {
        let policy = EgressPolicy::new(&allowed_hosts, http.timeout, http.max_response_bytes)
            .map_err(|e| ("allowed_hosts", e))
            .and_then(|policy| match &http.ca_file {
                None => Ok(policy),
                Some(file) => policy.with_ca_file(file).map_err(|e| ("ca_file", e)),
            });
        let mut settings = Self {
            name,
            path,
            config: config.into(),
            limits,
            publish,
            allowed_hosts,
            egress: Arc::new(EgressPolicy::deny_all()),
        };
        match policy {
            Ok(egress) => {
                settings.egress = Arc::new(egress);
                Ok(settings)
            }
            Err((key, error)) => {
                settings.allowed_hosts.clear();
                Err(Box::new(BadHosts {
                    settings,
                    key,
                    error,
                }))
            }
        }
    }

    /// Hosts it may reach over HTTP, as written.
    pub fn allowed_hosts(&self) -> &[String] {
        &self.allowed_hosts
    }

    /// The HTTP egress policy.
    pub fn egress(&self) -> &Arc<EgressPolicy> {
        &self.egress
    }

    /// True if loading `other` would give the same plugin (same file path, config, limits,
    /// hosts and publish rules): a config reload then keeps the loaded one.
    pub fn same_as(&self, other: &PluginSettings) -> bool {
        self.path == other.path
            && self.config == other.config
            && self.limits == other.limits
            && self.allowed_hosts == other.allowed_hosts
            && self.egress.timeout == other.egress.timeout
            && self.egress.max_response_bytes == other.egress.max_response_bytes
            && self.egress.trust == other.egress.trust
            && self.publish == other.publish
    }
}

/// A plugin's `config` and `secret_config` tables together: what its `init` gets (every
/// entry, in key order; it derefs to that list), and which keys came from `secret_config`.
/// Their values are never shown: not by `warren check`, `/plugins`, the status page, nor
/// `Debug`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PluginConfig {
    entries: Vec<(String, String)>,
    secret: BTreeSet<String>,
}

/// What a secret value is shown as.
pub const HIDDEN: &str = "(secret)";

impl PluginConfig {
    /// `plain` and `secret` entries merged, in key order. A key in both is an error naming it.
    pub fn new(
        plain: Vec<(String, String)>,
        secret: Vec<(String, String)>,
    ) -> Result<Self, String> {
        let mut entries = plain;
        let mut keys = BTreeSet::new();
        for (key, value) in secret {
            if entries.iter().any(|(k, _)| *k == key) {
                return Err(key);
            }
            keys.insert(key.clone());
            entries.push((key, value));
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            entries,
            secret: keys,
        })
    }

    /// Each entry as it may be shown: its key, and its value unless it is secret.
    pub fn shown(&self) -> impl Iterator<Item = (&str, Option<&str>)> {
        self.entries.iter().map(|(key, value)| {
            let value = (!self.secret.contains(key)).then_some(value.as_str());
            (key.as_str(), value)
        })
    }

    /// The entries that are not secret.
    pub fn plain(&self) -> impl Iterator<Item = (&str, &str)> {
        self.shown().filter_map(|(key, value)| Some((key, value?)))
    }

    /// The keys whose values are secret.
    pub fn secret_keys(&self) -> impl Iterator<Item = &str> {
        self.secret.iter().map(String::as_str)
    }
}

impl From<Vec<(String, String)>> for PluginConfig {
    /// Entries none of which is secret (`warren plugin run --config`).
    fn from(entries: Vec<(String, String)>) -> Self {
        Self {
            entries,
            secret: BTreeSet::new(),
        }
    }
}

impl std::ops::Deref for PluginConfig {
    type Target = [(String, String)];

    /// Every entry, secret ones included: what the plugin's `init` gets.
    fn deref(&self) -> &Self::Target {
        &self.entries
    }
}

impl std::fmt::Debug for PluginConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.shown().map(|(k, v)| (k, v.unwrap_or(HIDDEN))))
            .finish()
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
    /// Instances that may exist at once (`max_instances`); more messages wait for one. `None`:
    /// as many as messages are in the plugin at once (the concurrency of its pipelines).
    pub max_instances: Option<NonZeroUsize>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_millis(DEFAULT_TIMEOUT_MS),
            memory_bytes: mib(DEFAULT_MEMORY_MB),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_instances: None,
        }
    }
}

/// `n` MiB in bytes (saturating).
pub fn mib(n: u64) -> usize {
    usize::try_from(n.saturating_mul(1024 * 1024)).unwrap_or(usize::MAX)
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
    /// The rules from `max_publish_bytes`, `allowed_exchanges` and `allowed_queues`: once
    /// either list is given, what the other does not list is not allowed.
    pub fn new(
        max_bytes: usize,
        exchanges: Option<Vec<String>>,
        queues: Option<Vec<String>>,
    ) -> Self {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_allowlists_restrict_once_either_is_set() {
        let open = PublishRules::new(10, None, None);
        assert_eq!((open.exchanges, open.queues), (None, None));
        let rules = PublishRules::new(10, None, Some(vec!["replies".into()]));
        assert_eq!(rules.exchanges, Some(BTreeSet::new()), "no exchange then");
        assert_eq!(rules.queues, Some(BTreeSet::from(["replies".to_owned()])));
    }

    #[test]
    fn secret_config_reaches_init_but_is_never_shown() {
        let pair = |k: &str, v: &str| (k.to_owned(), v.to_owned());
        let config = PluginConfig::new(
            vec![pair("url", "https://api.example.com"), pair("b", "1")],
            vec![pair("token", "s3cr3t-value"), pair("a", "also-secret")],
        )
        .expect("no key in both");
        let keys: Vec<&str> = config.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            ["a", "b", "token", "url"],
            "init gets every entry, in key order"
        );
        assert_eq!(
            config
                .iter()
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.as_str()),
            Some("s3cr3t-value")
        );
        let plain: Vec<(&str, &str)> = config.plain().collect();
        assert_eq!(plain, [("b", "1"), ("url", "https://api.example.com")]);
        assert_eq!(config.secret_keys().collect::<Vec<_>>(), ["a", "token"]);
        let debug = format!("{config:?}");
        assert!(
            !debug.contains("s3cr3t") && !debug.contains("also-secret"),
            "{debug}"
        );
        assert!(
            debug.contains(HIDDEN) && debug.contains("https://api.example.com"),
            "{debug}"
        );
        let settings = PluginSettings::new(
            "p".into(),
            "p.wasm".into(),
            config,
            Limits::default(),
            Vec::new(),
            HttpLimits::default(),
            PublishRules::default(),
        )
        .expect("valid");
        assert!(!format!("{settings:?}").contains("s3cr3t"));

        let twice = PluginConfig::new(vec![pair("token", "a")], vec![pair("token", "b")]);
        assert_eq!(twice, Err("token".to_owned()));
    }

    #[test]
    fn written_hosts_and_policy_come_together() {
        let err = PluginSettings::new(
            "p".into(),
            "p.wasm".into(),
            Vec::new(),
            Limits::default(),
            vec!["a:b".into()],
            HttpLimits::default(),
            PublishRules::default(),
        )
        .expect_err("bad entry");
        assert!(err.error.contains("\"a:b\""), "{}", err.error);
        assert!(err.settings.allowed_hosts().is_empty());
        let ok = PluginSettings::new(
            "p".into(),
            "p.wasm".into(),
            Vec::new(),
            Limits::default(),
            vec!["example.com:443".into()],
            HttpLimits::default(),
            PublishRules::default(),
        )
        .expect("valid");
        assert_eq!(ok.allowed_hosts(), ["example.com:443"]);
        assert!(ok.same_as(&ok.clone()));
    }
}
