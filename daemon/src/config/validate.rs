//! The file as written ([`raw`](super::raw)) into settings that cannot hold bad values: one
//! function per section, every problem collected (naming the key) rather than the first only.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::raw::{RawAdmin, RawBinding, RawBroker, RawConfig, RawExchange, RawQueue};
use super::{
    AdminSettings, AdminToken, ArgValue, Arguments, BindingSettings, BrokerSettings, BrokerUrl,
    CacheSetting, Config, DEAD_LETTER_SUFFIX, DEFAULT_BROKER_URL, DEFAULT_SHUTDOWN_GRACE_MS,
    DEFAULT_STARTUP_TIMEOUT_MS, ExchangeSettings, QUEUE_NAME_MAX, QueueSettings,
};

/// The longest name AMQP carries (exchange, routing key).
const SHORT_STRING_MAX: usize = 255;

/// Problems found so far, each naming its key.
pub(super) type Problems = Vec<String>;

/// Validates the whole file read from `path` (relative paths resolve against `base`).
pub(super) fn config(raw: RawConfig, path: &Path, base: &Path, problems: &mut Problems) -> Config {
    let broker = broker(raw.broker, base, problems);
    let admin = raw.admin.and_then(|a| admin(a, base, problems));
    let telemetry = raw
        .telemetry
        .and_then(|t| super::telemetry::telemetry(t, problems));
    let cache = cache_dir(raw.cache_dir, base, problems);
    let plugins = raw
        .plugins
        .into_iter()
        .map(|(name, p)| {
            (
                name.clone(),
                super::plugin::plugin(name, p, path, base, problems),
            )
        })
        .collect();
    let mut queues = queues(raw.queues, problems);
    let exchanges = exchanges(raw.exchanges, problems);
    let bindings = bindings(raw.bindings, &queues, &exchanges, problems);
    let pipelines = super::pipelines::validate(raw.pipelines, &plugins, &mut queues, problems);
    Config {
        path: path.to_path_buf(),
        broker,
        admin,
        telemetry,
        shutdown_grace: Duration::from_millis(
            raw.shutdown_grace_ms.unwrap_or(DEFAULT_SHUTDOWN_GRACE_MS),
        ),
        cache,
        plugins,
        queues,
        exchanges,
        bindings,
        pipelines,
    }
}

fn broker(raw: RawBroker, base: &Path, problems: &mut Problems) -> BrokerSettings {
    let from_file = raw.url_file.map(|file| {
        let file = base.join(file);
        match std::fs::read_to_string(&file) {
            Ok(text) => text.trim().to_owned(),
            Err(e) => {
                problems.push(format!(
                    "broker.url_file: cannot read {}: {e}",
                    file.display()
                ));
                DEFAULT_BROKER_URL.to_owned()
            }
        }
    });
    let url = match (raw.url, from_file) {
        (Some(_), Some(_)) => {
            problems.push("broker.url_file: give either url or url_file, not both".to_owned());
            None
        }
        (url, from_file) => url.or(from_file),
    };
    let urls: Vec<(String, String)> = match (url, raw.urls) {
        (Some(_), Some(_)) => {
            problems
                .push("broker.urls: give either url (or url_file) or urls, not both".to_owned());
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
    let urls: Vec<BrokerUrl> = urls
        .into_iter()
        .filter_map(|(key, text)| {
            BrokerUrl::parse(&text)
                .map_err(|e| problems.push(format!("{key}: {e}")))
                .ok()
        })
        .collect();
    let tls = raw
        .tls
        .and_then(|tls| super::tls::validate(tls, &urls, base, problems));
    let startup_timeout = positive(
        raw.startup_timeout_ms,
        DEFAULT_STARTUP_TIMEOUT_MS,
        "broker.startup_timeout_ms",
        problems,
    );
    BrokerSettings {
        urls,
        connection_name: raw
            .connection_name
            .unwrap_or_else(|| format!("warren@{}", super::hostname())),
        startup_timeout: Duration::from_millis(startup_timeout),
        tls,
    }
}

fn admin(raw: RawAdmin, base: &Path, problems: &mut Problems) -> Option<AdminSettings> {
    let text = match (raw.token, raw.token_file) {
        (Some(_), Some(_)) => {
            problems.push("admin.token_file: give either token or token_file, not both".into());
            None
        }
        (Some(token), None) => Some(("admin.token", token)),
        (None, Some(file)) => {
            let file = base.join(file);
            match std::fs::read_to_string(&file) {
                Ok(text) => Some(("admin.token_file", text)),
                Err(e) => {
                    problems.push(format!(
                        "admin.token_file: cannot read {}: {e}",
                        file.display()
                    ));
                    None
                }
            }
        }
        (None, None) => None,
    };
    let token = text.and_then(|(key, text)| {
        let token = AdminToken::new(&text);
        if token.is_none() {
            problems.push(format!(
                "{key}: the token must be printable ASCII without spaces, and not empty"
            ));
        }
        token
    });
    match raw.listen.parse() {
        Ok(listen) => Some(AdminSettings { listen, token }),
        Err(_) => {
            problems.push(format!(
                "admin.listen: {:?} is not an address; write host:port, e.g. \"127.0.0.1:9090\"",
                raw.listen
            ));
            None
        }
    }
}

/// `cache_dir`: a directory (relative to the config file), or `false`; absent, the default.
fn cache_dir(raw: Option<toml::Value>, base: &Path, problems: &mut Problems) -> CacheSetting {
    const FIX: &str = "give a directory (cache_dir = \"/var/cache/warren\"), false to turn the \
                       compile cache off, or leave cache_dir out for the default location";
    match raw {
        None => CacheSetting::Default,
        Some(toml::Value::Boolean(false)) => CacheSetting::Off,
        Some(toml::Value::String(dir)) if !dir.is_empty() => CacheSetting::Dir(base.join(dir)),
        Some(toml::Value::String(_)) => {
            problems.push(format!("cache_dir: empty; {FIX}"));
            CacheSetting::Default
        }
        Some(other) => {
            problems.push(format!("cache_dir: {other} is not a directory; {FIX}"));
            CacheSetting::Default
        }
    }
}

fn queues(raw: Vec<RawQueue>, problems: &mut Problems) -> Vec<QueueSettings> {
    let mut names = BTreeSet::new();
    let mut queues = Vec::new();
    for (i, q) in raw.into_iter().enumerate() {
        let key = format!("queues[{i}]");
        if q.name.is_empty() {
            problems.push(format!("{key}.name: a declared queue needs a name"));
        }
        if !names.insert(q.name.clone()) {
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
    queues
}

fn exchanges(raw: Vec<RawExchange>, problems: &mut Problems) -> Vec<ExchangeSettings> {
    let mut names = BTreeSet::new();
    let mut exchanges = Vec::new();
    for (i, e) in raw.into_iter().enumerate() {
        let key = format!("exchanges[{i}]");
        if e.name.is_empty() || e.name.starts_with("amq.") {
            problems.push(format!(
                "{key}.name: {:?} cannot be declared (empty and amq.* names belong to the broker)",
                e.name
            ));
        }
        too_long(&e.name, &format!("{key}.name"), problems);
        if !names.insert(e.name.clone()) {
            problems.push(format!(
                "{key}.name: exchange {:?} is declared twice",
                e.name
            ));
        }
        exchanges.push(ExchangeSettings {
            name: e.name,
            kind: e.kind.unwrap_or_default(),
            durable: e.durable.unwrap_or(true),
            auto_delete: e.auto_delete,
            arguments: arguments(e.arguments, &format!("{key}.arguments"), problems),
        });
    }
    exchanges
}

fn bindings(
    raw: Vec<RawBinding>,
    queues: &[QueueSettings],
    exchanges: &[ExchangeSettings],
    problems: &mut Problems,
) -> Vec<BindingSettings> {
    let mut bindings = Vec::new();
    for (i, b) in raw.into_iter().enumerate() {
        let key = format!("bindings[{i}]");
        too_long(&b.routing_key, &format!("{key}.routing_key"), problems);
        if !queues.iter().any(|q| q.name == b.queue) {
            problems.push(format!(
                "{key}.queue: {:?} is not a declared queue; add it under [[queues]]",
                b.queue
            ));
        }
        if !exchanges.iter().any(|e| e.name == b.exchange) && !b.exchange.starts_with("amq.") {
            problems.push(format!(
                "{key}.exchange: {:?} is not a declared exchange; add it under [[exchanges]]",
                b.exchange
            ));
        }
        bindings.push(BindingSettings {
            exchange: b.exchange,
            queue: b.queue,
            routing_key: b.routing_key,
            arguments: arguments(b.arguments, &format!("{key}.arguments"), problems),
        });
    }
    bindings
}

fn too_long(name: &str, key: &str, problems: &mut Problems) {
    if name.len() > SHORT_STRING_MAX {
        problems.push(format!(
            "{key}: {} bytes long; AMQP allows at most {SHORT_STRING_MAX}",
            name.len()
        ));
    }
}

/// The path with its directory made absolute and free of `..` (the file name itself is kept,
/// so a symlinked plugin file is still followed anew on reload).
pub(super) fn tidy_path(path: PathBuf) -> PathBuf {
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

pub(super) fn positive(
    value: Option<u64>,
    default: u64,
    key: &str,
    problems: &mut Problems,
) -> u64 {
    match value {
        Some(0) => {
            problems.push(format!("{key}: must be at least 1"));
            default
        }
        Some(v) => v,
        None => default,
    }
}

fn arguments(table: toml::Table, key: &str, problems: &mut Problems) -> Arguments {
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
