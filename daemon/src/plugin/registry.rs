//! The loaded plugins, by name: loaded at start (for `run` and `check` alike), reloaded when
//! their file or their settings change, listed for the admin endpoint.
//!
//! Each plugin sits in a slot ([`PluginSlot`]) that pipelines read its current version from;
//! a reload swaps the slot's content, and calls in flight keep the version they started with.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use arc_swap::ArcSwap;

use super::spec::PluginSettings;
use super::{Plugin, Runtime, content_hash};

/// The current version of a plugin. A reload swaps it; calls in flight keep their `Arc`.
pub type PluginSlot = Arc<ArcSwap<Plugin>>;

/// One loaded plugin: its settings and its slot.
struct Loaded {
    settings: PluginSettings,
    slot: PluginSlot,
    /// Hash of the last file content that failed to load, so a bad file is reported once.
    last_failed: Option<String>,
}

/// A plugin swapped (or not) for another version: which, and why not if it failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Swap {
    /// The plugin's name.
    pub plugin: String,
    /// The version serving before.
    pub from: String,
    /// The version loaded, or that failed to load.
    pub to: String,
    /// Why it failed; `None` if it serves now.
    pub error: Option<String>,
}

/// Every loaded plugin.
pub struct Registry {
    runtime: Runtime,
    plugins: BTreeMap<String, Loaded>,
}

/// Compiles and initialises one plugin, naming it (and the config file) in any error.
async fn load_one(
    runtime: &Runtime,
    config_path: &Path,
    settings: &PluginSettings,
) -> anyhow::Result<Arc<Plugin>> {
    let plugin = runtime
        .load(settings)
        .await
        .with_context(|| format!("{}: plugins.{}", config_path.display(), settings.name))?;
    let compilation = plugin.compilation();
    tracing::info!(
        plugin = plugin.name(),
        version = plugin.version(),
        path = %plugin.path().display(),
        code = compilation.source.as_str(),
        compile_ms = compilation.took.as_millis() as u64,
        "plugin loaded"
    );
    Ok(plugin)
}

impl Registry {
    /// Compiles and initialises every plugin of the config; the first failure is returned,
    /// naming it.
    pub async fn load<'a>(
        runtime: Runtime,
        config_path: &Path,
        plugins: impl IntoIterator<Item = &'a PluginSettings>,
    ) -> anyhow::Result<Self> {
        let mut loaded = BTreeMap::new();
        for settings in plugins {
            let plugin = load_one(&runtime, config_path, settings).await?;
            loaded.insert(
                settings.name.clone(),
                Loaded {
                    settings: settings.clone(),
                    slot: Arc::new(ArcSwap::new(plugin)),
                    last_failed: None,
                },
            );
        }
        Ok(Self {
            runtime,
            plugins: loaded,
        })
    }

    /// The slot of the plugin named `name`.
    pub fn slot(&self, name: &str) -> Option<PluginSlot> {
        self.plugins.get(name).map(|p| p.slot.clone())
    }

    /// Every plugin's settings.
    pub fn settings(&self) -> impl Iterator<Item = &PluginSettings> {
        self.plugins.values().map(|p| &p.settings)
    }

    /// Every plugin's name and slot.
    pub fn slots(&self) -> impl Iterator<Item = (&String, &PluginSlot)> {
        self.plugins.iter().map(|(name, p)| (name, &p.slot))
    }

    /// The names of the plugins whose file is one of `changed`.
    pub fn using_files(&self, changed: &[&Path]) -> Vec<String> {
        self.plugins
            .iter()
            .filter(|(_, p)| changed.iter().any(|c| same_file(c, &p.settings.path)))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The names of every plugin.
    pub fn names(&self) -> Vec<String> {
        self.plugins.keys().cloned().collect()
    }

    /// Compiles and initialises the plugin's file anew, off the hot path, and swaps it in if
    /// its content changed. On failure the old version keeps serving. A file that failed is
    /// not tried again until its content changes — unless `again` (an explicit request: a
    /// SIGHUP), since an `init` may fail for reasons outside the file.
    ///
    /// Returns what was tried (a failure with its error), or `None` if nothing was (same
    /// content, file gone or being written).
    pub async fn reload_file(&mut self, name: &str, again: bool) -> Option<Swap> {
        let entry = self.plugins.get_mut(name)?;
        let path = entry.settings.path.clone();
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::warn!(
                    plugin = name,
                    path = %path.display(),
                    version = entry.slot.load().version(),
                    "plugin file removed; the loaded version keeps serving"
                );
                return None;
            }
            Err(e) => {
                tracing::warn!(plugin = name, path = %path.display(), error = %e, "cannot read plugin file");
                return None;
            }
        };
        let hash = content_hash(&bytes);
        let failed_before = entry.last_failed.as_deref() == Some(&hash);
        if hash == entry.slot.load().version() || (failed_before && !again) {
            return None;
        }
        let started = Instant::now();
        let mut swap = Swap {
            plugin: name.to_owned(),
            from: entry.slot.load().version().to_owned(),
            to: hash.clone(),
            error: None,
        };
        match self.runtime.load_bytes(&entry.settings, bytes).await {
            Ok(plugin) => {
                let compilation = plugin.compilation();
                let old = entry.slot.swap(plugin);
                entry.last_failed = None;
                tracing::info!(
                    plugin = name,
                    from = old.version(),
                    to = hash,
                    code = compilation.source.as_str(),
                    compile_ms = compilation.took.as_millis() as u64,
                    took_ms = started.elapsed().as_millis() as u64,
                    "plugin reloaded"
                );
                Some(swap)
            }
            Err(e) => {
                // A file that changed since it was read is still being written (a slow copy):
                // not a failure; the rest of the write brings another change event.
                let now = tokio::fs::read(&path).await;
                if now.is_ok_and(|now| content_hash(&now) != hash) {
                    tracing::debug!(plugin = name, path = %path.display(), "plugin file still being written; waiting for it");
                    return None;
                }
                entry.last_failed = Some(hash);
                let error = format!("{e:#}");
                tracing::error!(
                    plugin = name,
                    path = %path.display(),
                    version = entry.slot.load().version(),
                    error = %error,
                    "plugin reload failed; the loaded version keeps serving"
                );
                swap.error = Some(error);
                Some(swap)
            }
        }
    }

    /// Brings the registry to `plugins` (a new config's): every new or changed plugin is
    /// loaded first, and any failure refuses them all, leaving the registry as it was. Then
    /// changed plugins are swapped in place, new ones added and unused ones dropped. Returns
    /// the plugins swapped in place, and what changed, in words.
    pub async fn apply(
        &mut self,
        config_path: &Path,
        plugins: &BTreeMap<String, PluginSettings>,
    ) -> anyhow::Result<(Vec<Swap>, Vec<String>)> {
        let mut fresh = BTreeMap::new();
        for (name, settings) in plugins {
            let unchanged = self
                .plugins
                .get(name)
                .is_some_and(|p| p.settings.same_as(settings));
            if !unchanged {
                let plugin = load_one(&self.runtime, config_path, settings).await?;
                fresh.insert(name.clone(), plugin);
            }
        }
        let mut summary = Vec::new();
        let mut swapped = Vec::new();
        for (name, plugin) in fresh {
            let settings = plugins[&name].clone();
            match self.plugins.get_mut(&name) {
                Some(entry) => {
                    let to = plugin.version().to_owned();
                    let old = entry.slot.swap(plugin);
                    entry.settings = settings;
                    entry.last_failed = None;
                    summary.push(format!("plugin {name} reloaded"));
                    swapped.push(Swap {
                        plugin: name,
                        from: old.version().to_owned(),
                        to,
                        error: None,
                    });
                }
                None => {
                    self.plugins.insert(
                        name.clone(),
                        Loaded {
                            settings,
                            slot: Arc::new(ArcSwap::new(plugin)),
                            last_failed: None,
                        },
                    );
                    summary.push(format!("plugin {name} added"));
                }
            }
        }
        self.plugins.retain(|name, _| plugins.contains_key(name));
        Ok((swapped, summary))
    }

    /// The version currently serving for each plugin.
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.plugins
            .iter()
            .map(|(name, p)| (name.clone(), p.slot.load().version().to_owned()))
            .collect()
    }
}

/// True if the two paths name the same file (same directory and file name).
pub fn same_file(a: &Path, b: &Path) -> bool {
    a == b || (a.file_name() == b.file_name() && dir_of(a) == dir_of(b))
}

fn dir_of(path: &Path) -> Option<std::path::PathBuf> {
    path.parent().and_then(|d| std::fs::canonicalize(d).ok())
}
