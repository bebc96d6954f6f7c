//! What a config reload changes: a pure comparison of the running config with the new one.

use std::path::{Path, PathBuf};

use super::Daemon;
use crate::config::{Config, PipelineSettings};
use crate::metrics::{Metrics, Reload};
use crate::plugin::registry::same_file;
use crate::plugin::registry::{Registry, Swap};
use crate::systemd;

/// The difference between two configs, as a reload applies it.
#[derive(Debug, Default, PartialEq)]
pub struct ConfigDiff {
    /// Why the new config cannot be applied while running, if it cannot.
    pub refused: Option<String>,
    /// What changed that takes effect only later, in words.
    pub later: Vec<String>,
    /// Pipelines to stop (drained): removed, or changed.
    pub stop: Vec<String>,
    /// Pipelines to start: added, or changed (started again with their new settings).
    pub start: Vec<PipelineSettings>,
}

impl ConfigDiff {
    /// What going from `old` (the running config) to `new` takes. Plugins are compared by
    /// the registry when it loads them.
    pub fn between(old: &Config, new: &Config) -> Self {
        let mut diff = ConfigDiff::default();
        if new.broker.urls != old.broker.urls {
            diff.refused = Some("broker.url changed: restart warren to connect elsewhere".into());
            return diff;
        }
        if new.broker.tls != old.broker.tls {
            diff.refused = Some("broker.tls changed: restart warren to connect with it".into());
            return diff;
        }
        let listen = |c: &Config| c.admin.as_ref().map(|a| a.listen);
        if listen(new) != listen(old) {
            diff.later
                .push("admin.listen changed: it takes effect when warren restarts".into());
        }
        if new.cache != old.cache {
            diff.later
                .push("cache_dir changed: it takes effect when warren restarts".into());
        }
        if new.telemetry != old.telemetry {
            diff.later
                .push("[telemetry] changed: it takes effect when warren restarts".into());
        }
        if new.shutdown_grace != old.shutdown_grace {
            diff.later.push(
                "shutdown_grace_ms changed: pipelines started from now on use it; running ones keep theirs until restarted"
                    .into(),
            );
        }
        for p in &old.pipelines {
            if !new.pipelines.contains(p) {
                diff.stop.push(p.name.clone());
            }
        }
        for p in &new.pipelines {
            if !old.pipelines.contains(p) {
                diff.start.push(p.clone());
            }
        }
        diff
    }

    /// The change to pipelines in words: `added X`, `changed Y`, `removed Z`.
    pub fn summary(&self) -> Vec<String> {
        let started = |name: &String| self.start.iter().any(|p| &p.name == name);
        let mut words: Vec<String> = self
            .stop
            .iter()
            .map(|name| {
                if started(name) {
                    format!("changed {name}")
                } else {
                    format!("removed {name}")
                }
            })
            .collect();
        words.extend(
            self.start
                .iter()
                .filter(|p| !self.stop.contains(&p.name))
                .map(|p| format!("added {}", p.name)),
        );
        words
    }
}

/// Counts how each plugin loaded at start was compiled, and records the loads in the reload
/// history.
pub(super) fn count_start_loads(metrics: &Metrics, plugins: &Registry) {
    for (name, slot) in plugins.slots() {
        let plugin = slot.load();
        let compilation = plugin.compilation();
        metrics.compiled(name, compilation.source);
        metrics.record_reload(
            Reload::now(Some(name), "loaded")
                .versions(None, Some(plugin.version()))
                .detail(format_args!(
                    "at start ({}, {} ms)",
                    compilation.source.as_str(),
                    compilation.took.as_millis()
                )),
        );
    }
}

impl Daemon {
    /// Reloads a plugin from its file (see [`Registry::reload_file`]), counts the result and
    /// records it in the reload history.
    pub(super) async fn reload_plugin_file(&mut self, name: &str, again: bool) {
        if let Some(swap) = self.plugins.reload_file(name, again).await {
            let ok = swap.error.is_none();
            self.metrics.reload(name, ok);
            let why = if again { "SIGHUP" } else { "file changed" };
            self.record_swap(&swap, why);
            if ok {
                self.count_compile(name);
            }
        }
    }

    /// Records a plugin swap (or a failed one) in the reload history, `why` it was tried.
    fn record_swap(&self, swap: &Swap, why: &str) {
        let reload =
            Reload::now(Some(&swap.plugin), "reloaded").versions(Some(&swap.from), Some(&swap.to));
        self.metrics.record_reload(match &swap.error {
            None => reload.detail(why),
            Some(error) => Reload {
                result: "failed",
                ..reload.detail(format_args!(
                    "{why}: {error}; the old version keeps serving"
                ))
            },
        });
    }

    /// Counts how the plugin now serving under `name` was compiled (or came from the cache).
    fn count_compile(&self, name: &str) {
        if let Some(slot) = self.plugins.slot(name) {
            self.metrics
                .compiled(name, slot.load().compilation().source);
        }
    }

    pub(super) async fn on_files_changed(&mut self, paths: Vec<PathBuf>) {
        let changed: Vec<&Path> = paths.iter().map(PathBuf::as_path).collect();
        if changed.iter().any(|p| same_file(p, &self.config.path)) {
            self.reload_config().await;
        }
        // Plugin files that changed with it (or alone); unchanged content is not reloaded.
        for name in self.plugins.using_files(&changed) {
            self.reload_plugin_file(&name, false).await;
        }
        self.publish_plugin_table();
    }

    /// Re-reads the config file and applies it: plugins reloaded, topology declared,
    /// pipelines added, removed or restarted. An invalid config is refused as a whole.
    pub(super) async fn reload_config(&mut self) {
        systemd::reloading();
        match self.apply_config().await {
            Ok(summary) => {
                self.metrics.config_reload(true);
                tracing::info!(%summary, "config reloaded");
                self.metrics
                    .record_reload(Reload::now(None, "applied").detail(&summary));
            }
            Err(e) => {
                self.metrics.config_reload(false);
                let error = format!("{e:#}");
                tracing::error!(
                    error,
                    "config reload refused; the running configuration is unchanged"
                );
                self.metrics
                    .record_reload(Reload::now(None, "refused").detail(error));
            }
        }
        systemd::ready(&format!("{} pipelines consuming", self.pipelines.len()));
    }

    async fn apply_config(&mut self) -> anyhow::Result<String> {
        let new = Config::load(&self.config.path)?;
        let diff = ConfigDiff::between(&self.config, &new);
        if let Some(refused) = diff.refused {
            anyhow::bail!(refused);
        }
        for later in &diff.later {
            tracing::warn!("{later}");
        }
        // Every new or changed plugin is loaded first: a failure refuses the whole config.
        let (swapped, mut summary) = self.plugins.apply(&new.path, &new.plugins).await?;
        for swap in swapped {
            self.metrics.reload(&swap.plugin, true);
            self.record_swap(&swap, "config reloaded");
            self.count_compile(&swap.plugin);
        }
        self.links.consume.declare(&new).await?;
        // Pipelines that go away or change stop first (they drain).
        for name in &diff.stop {
            self.pipelines.stop(name).await;
        }
        summary.extend(diff.summary());
        self.config = new;
        // The new config is in force from here: a pipeline that cannot start (its channel
        // refused) is reported and left out, the others run.
        for settings in diff.start {
            let name = settings.name.clone();
            if let Err(e) = self.start_pipeline(settings).await {
                tracing::error!(pipeline = name, error = %format!("{e:#}"), "pipeline could not start");
                summary.push(format!("failed to start {name}"));
            }
        }
        self.watch_files();
        self.publish_plugin_table();
        Ok(if summary.is_empty() {
            "no changes".to_owned()
        } else {
            summary.join(", ")
        })
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn config(pipelines: &str, extra: &str) -> Config {
        let text = format!(
            "{extra}\n[plugins.p]\npath = \"{}\"\n[[queues]]\nname = \"q\"\n[[queues]]\nname = \"r\"\n{pipelines}",
            std::env::current_exe().expect("test binary").display()
        );
        Config::parse(&text, Path::new("/tmp/warren.toml")).expect("valid config")
    }

    const ONE: &str = "[[pipelines]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p\"\n";
    const TWO: &str = "[[pipelines]]\nname = \"a\"\nqueue = \"q\"\nplugin = \"p\"\n[[pipelines]]\nname = \"b\"\nqueue = \"r\"\nplugin = \"p\"\n";

    #[test]
    fn same_config_changes_nothing() {
        let diff = ConfigDiff::between(&config(TWO, ""), &config(TWO, ""));
        assert_eq!(diff, ConfigDiff::default());
        assert!(diff.summary().is_empty());
    }

    #[test]
    fn added_changed_and_removed_pipelines() {
        let old = config(TWO, "");
        let new = config(
            &TWO.replace("name = \"b\"\nqueue = \"r\"", "name = \"c\"\nqueue = \"r\"")
                .replace(
                    "queue = \"q\"\nplugin = \"p\"",
                    "queue = \"q\"\nplugin = \"p\"\nprefetch = 3",
                ),
            "",
        );
        let diff = ConfigDiff::between(&old, &new);
        assert_eq!(diff.stop, ["a", "b"]);
        let started: Vec<&str> = diff.start.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(started, ["a", "c"]);
        assert_eq!(diff.summary(), ["changed a", "removed b", "added c"]);
        let fewer = ConfigDiff::between(&old, &config(ONE, ""));
        assert_eq!(fewer.summary(), ["removed b"]);
    }

    #[test]
    fn broker_change_is_refused_and_admin_change_is_later() {
        let old = config(ONE, "");
        let moved = config(ONE, "[broker]\nurl = \"amqp://elsewhere/%2f\"");
        assert!(ConfigDiff::between(&old, &moved).refused.is_some());
        let admin = config(ONE, "[admin]\nlisten = \"127.0.0.1:1\"");
        let diff = ConfigDiff::between(&old, &admin);
        assert_eq!(diff.refused, None);
        assert_eq!(diff.later.len(), 1);
        assert!(diff.later[0].starts_with("admin.listen changed"));
    }

    #[test]
    fn a_cache_dir_change_is_later() {
        let old = config(ONE, "");
        let diff = ConfigDiff::between(&old, &config(ONE, "cache_dir = false"));
        assert_eq!(diff.refused, None);
        assert_eq!(
            diff.later,
            ["cache_dir changed: it takes effect when warren restarts"]
        );
        assert!(diff.stop.is_empty() && diff.start.is_empty());
    }

    #[test]
    fn a_telemetry_change_is_later() {
        let old = config(ONE, "");
        let traced = "[telemetry]\notlp_endpoint = \"http://127.0.0.1:4318\"";
        let diff = ConfigDiff::between(&old, &config(ONE, traced));
        assert_eq!(diff.refused, None);
        assert_eq!(
            diff.later,
            ["[telemetry] changed: it takes effect when warren restarts"]
        );
    }
}
