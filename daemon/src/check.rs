//! `warren check`: validates the config and compiles and initialises every plugin, without a broker.

use std::fmt::Write as _;

use crate::config::{Config, DeadLetter};
use crate::plugin::Runtime;
use crate::plugin::registry::Registry;
use crate::plugin::spec::HIDDEN;

/// Checks everything that can be checked without the broker; returns a summary of what would run.
pub async fn check(config: &Config) -> anyhow::Result<String> {
    // The same cache as `run`'s (the same config): a check leaves every plugin compiled in it.
    let runtime = Runtime::new(&config.cache)?;
    let cache = runtime.cache().map(|c| c.dir().display().to_string());
    let plugins = Registry::load(runtime, &config.path, config.plugins.values()).await?;
    let mut out = String::new();
    let _ = writeln!(out, "config {} is valid", config.path.display());
    let _ = writeln!(out, "broker   {}", config.broker.shown());
    let _ = writeln!(
        out,
        "cache    {}",
        cache
            .as_deref()
            .unwrap_or("none: every start compiles every plugin")
    );
    let _ = match &config.telemetry {
        Some(t) => writeln!(
            out,
            "traces   exported over OTLP/HTTP to {} as service {:?}",
            t.endpoint, t.service_name
        ),
        None => writeln!(out, "traces   off (no [telemetry] otlp_endpoint)"),
    };
    describe_plugins(&mut out, config, &plugins);
    for q in &config.queues {
        let args: Vec<String> = q
            .arguments
            .iter()
            .map(|(k, v)| format!("{k}={v:?}"))
            .collect();
        let _ = writeln!(
            out,
            "queue    {} (durable {}{}{})",
            q.name,
            q.durable,
            if args.is_empty() { "" } else { ", " },
            args.join(", ")
        );
    }
    for p in &config.pipelines {
        let rejected = match &p.dead_letter {
            DeadLetter::Broker => "the queue's dead_letter_exchange".to_owned(),
            DeadLetter::Queue(name) => name.clone(),
            DeadLetter::Drop => "dropped".to_owned(),
        };
        let _ = writeln!(
            out,
            "pipeline {}: queue {} -> plugin {} (prefetch {}, concurrency {}, on_error {:?}, rejected -> {rejected})",
            p.name, p.queue, p.plugin, p.prefetch, p.concurrency, p.on_error
        );
        if p.dead_letter == DeadLetter::Drop {
            let _ = writeln!(
                out,
                "warning  pipeline {}: dead_letter_queue = false and queue {} has no dead_letter_exchange: rejected messages will be dropped",
                p.name, p.queue
            );
        }
        if p.max_deliveries.is_none() {
            let _ = writeln!(
                out,
                "note     pipeline {}: no max_deliveries: a message that is requeued, or that crashes warren, comes back for ever",
                p.name
            );
        }
    }
    Ok(out)
}

/// One line per plugin: file, version, how it was compiled, limits, hosts; and one line of its
/// config, the values of `secret_config` hidden.
fn describe_plugins(out: &mut String, config: &Config, plugins: &Registry) {
    for (name, slot) in plugins.slots() {
        let p = slot.load();
        let s = &config.plugins[name];
        let hosts = if s.allowed_hosts().is_empty() {
            "none".to_owned()
        } else {
            s.allowed_hosts().join(", ")
        };
        let _ = writeln!(
            out,
            "plugin   {name}: {} version {} ({} in {} ms; timeout {} ms, memory {} MiB, http hosts: {hosts})",
            p.path().display(),
            p.version(),
            p.compilation().source.as_str(),
            p.compilation().took.as_millis(),
            s.limits.timeout.as_millis(),
            s.limits.memory_bytes / (1024 * 1024),
        );
        if !s.config.is_empty() {
            let shown: Vec<String> = s
                .config
                .shown()
                .map(|(key, value)| {
                    format!(
                        "{key}={}",
                        value.map_or(HIDDEN.to_owned(), |v| format!("{v:?}"))
                    )
                })
                .collect();
            let _ = writeln!(out, "config   {name}: {}", shown.join(", "));
        }
    }
}
