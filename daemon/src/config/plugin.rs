//! One `[plugins.NAME]` table into the [`PluginSettings`] the plugin runs with: its limits,
//! its egress policy and its publish allowlist.

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::Duration;

use super::BROKER_CONSUMER_TIMEOUT;
use super::raw::RawPlugin;
use super::validate::{Problems, positive, tidy_path};
use crate::plugin::spec::{
    DEFAULT_HTTP_TIMEOUT_MS, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_PUBLISH_BYTES,
    DEFAULT_MAX_RESPONSE_BYTES, DEFAULT_MEMORY_MB, DEFAULT_TIMEOUT_MS, HttpLimits, Limits,
    PluginConfig, PluginSettings, PublishRules, mib,
};

pub(super) fn plugin(
    name: String,
    mut p: RawPlugin,
    path: &Path,
    base: &Path,
    problems: &mut Problems,
) -> PluginSettings {
    let key = format!("plugins.{name}");
    let resolved = base.join(&p.path);
    if !resolved.is_file() {
        problems.push(format!(
            "{key}.path: no plugin file at {} (relative paths are relative to {}); build it or fix the path",
            resolved.display(),
            path.display()
        ));
    }
    let (limits, http, publish) = limits(&key, &mut p, base, problems);
    if limits.timeout > BROKER_CONSUMER_TIMEOUT {
        tracing::warn!(
            "{}: {key}.timeout_ms ({} ms) is longer than RabbitMQ's default consumer_timeout (30 min): \
             the broker may close the channel of a message still in the plugin",
            path.display(),
            limits.timeout.as_millis()
        );
    }
    let as_strings = |table: toml::Table| -> Vec<(String, String)> {
        table
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => (k, s),
                other => (k, other.to_string()),
            })
            .collect()
    };
    let config = PluginConfig::new(as_strings(p.config), as_strings(p.secret_config))
        .unwrap_or_else(|both| {
            problems.push(format!(
                "{key}.secret_config.{both}: {both} is in {key}.config too; keep it in one of them (secret_config for a value never to be shown)"
            ));
            PluginConfig::default()
        });
    PluginSettings::new(
        name,
        tidy_path(resolved),
        config,
        limits,
        p.allowed_hosts,
        http,
        publish,
    )
    .unwrap_or_else(|bad| {
        problems.push(format!("{key}.{}: {}", bad.key, bad.error));
        bad.settings
    })
}

/// The plugin's limits: its call, its HTTP requests and its publishes.
fn limits(
    key: &str,
    p: &mut RawPlugin,
    base: &Path,
    problems: &mut Problems,
) -> (Limits, HttpLimits, PublishRules) {
    let max_instances = match p.max_instances {
        Some(0) => {
            problems.push(format!(
                "{key}.max_instances: must be at least 1 (leave it out for no cap of its own)"
            ));
            None
        }
        n => n.and_then(NonZeroUsize::new),
    };
    let mut number = |value: Option<u64>, default: u64, field: &str| {
        positive(value, default, &format!("{key}.{field}"), problems)
    };
    let bytes = |n: Option<usize>| n.map(|n| n as u64);
    let limits = Limits {
        timeout: Duration::from_millis(number(p.timeout_ms, DEFAULT_TIMEOUT_MS, "timeout_ms")),
        memory_bytes: mib(number(p.memory_mb, DEFAULT_MEMORY_MB, "memory_mb")),
        max_body_bytes: number(
            bytes(p.max_body_bytes),
            DEFAULT_MAX_BODY_BYTES as u64,
            "max_body_bytes",
        ) as usize,
        max_instances,
    };
    let http = HttpLimits {
        timeout: Duration::from_millis(number(
            p.http_timeout_ms,
            DEFAULT_HTTP_TIMEOUT_MS,
            "http_timeout_ms",
        )),
        max_response_bytes: number(
            bytes(p.max_response_bytes),
            DEFAULT_MAX_RESPONSE_BYTES as u64,
            "max_response_bytes",
        ) as usize,
        ca_file: p.ca_file.take().map(|file| base.join(file)),
    };
    let publish = PublishRules::new(
        number(
            bytes(p.max_publish_bytes),
            DEFAULT_MAX_PUBLISH_BYTES as u64,
            "max_publish_bytes",
        ) as usize,
        std::mem::take(&mut p.allowed_exchanges),
        std::mem::take(&mut p.allowed_queues),
    );
    (limits, http, publish)
}
