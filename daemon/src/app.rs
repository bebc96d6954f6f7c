//! The daemon: load plugins, connect, declare, run every pipeline, reload, and stop gracefully.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::Publishers;
use crate::admin::{self, AdminState, PluginTable};
use crate::broker::{self, Connection, Role};
use crate::config::{Config, PipelineSettings, PluginSettings};
use crate::metrics::{Heartbeat, Metrics, SharedMetrics};
use crate::pipeline::{HEARTBEAT_INTERVAL, Pipeline, PluginSlot};
use crate::plugin::{Plugin, Runtime};
use crate::systemd;
use crate::watch::Watcher;

/// How often the systemd status line is refreshed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);
/// First wait before reconnecting to the broker; doubled after each failure.
pub const RECONNECT_MIN: Duration = Duration::from_millis(500);
/// How often the connections' state is checked (a lost publishing connection is seen here).
pub const CONNECTION_CHECK: Duration = Duration::from_millis(250);
/// Longest wait between reconnection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// How long lapin may take to recover a lost connection before warren reconnects itself.
/// lapin's recovery either succeeds within a few seconds (its backoff: 0.25 s doubling to
/// 1 s) or has given up — and a lapin that gave up leaves the connection "reconnecting" for
/// ever instead of failing it (seen here, and amqp-rs/lapin#450), so this limit is what
/// moves warren on, to the next of `[broker] urls` if the node stays down.
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

/// The broker side of a running daemon: both connections (each pipeline opens its own
/// channels on them).
struct Links {
    consume: Connection,
    publish: Connection,
}

/// Connects both connections, declares the topology and opens the publisher, retrying with
/// capped, jittered backoff until it works, `shutdown` is cancelled, or an error that
/// retrying cannot fix (credentials, a queue declared with other arguments). URLs are tried
/// from the one at index `first`; the publishing connection goes to the node the consuming
/// one reached.
async fn connect_all(
    config: &Config,
    first: usize,
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> anyhow::Result<Links> {
    let mut delay = RECONNECT_MIN;
    let mut attempt = 1u32;
    loop {
        let result = async {
            let connect = |role: Role, first: usize| {
                let recovered = metrics.recoveries(role.as_str());
                broker::connect(&config.broker, first, role, move || {
                    recovered.inc();
                })
            };
            let consume = connect(Role::Consume, first).await?;
            let publish = connect(Role::Publish, consume.url_index()).await?;
            consume.declare(config).await.map_err(Retry::Fatal)?;
            Ok::<_, Retry>(Links { consume, publish })
        }
        .await;
        match result {
            Ok(links) => {
                if attempt > 1 {
                    tracing::info!(attempt, "connected to the broker");
                }
                return Ok(links);
            }
            Err(Retry::Fatal(e)) => return Err(e),
            Err(Retry::Again(e)) => {
                let wait = jitter(delay);
                tracing::warn!(
                    attempt,
                    retry_in_ms = wait.as_millis() as u64,
                    error = %format!("{e:#}"),
                    "broker unavailable; retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => anyhow::bail!("stopped while connecting: {e:#}"),
                    () = tokio::time::sleep(wait) => {}
                }
                delay = (delay * 2).min(RECONNECT_MAX);
                attempt += 1;
            }
        }
    }
}

enum Retry {
    Again(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<broker::ConnectError> for Retry {
    fn from(e: broker::ConnectError) -> Self {
        if e.retryable {
            Retry::Again(e.into())
        } else {
            Retry::Fatal(e.into())
        }
    }
}

/// `delay` ± 20 %, so that many daemons do not reconnect in step.
fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.8 + f64::from(nanos % 1000) / 1000.0 * 0.4;
    delay.mul_f64(factor)
}

/// Runs the daemon until `shutdown` is cancelled or a pipeline fails.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    Daemon::start(config, shutdown).await?.wait().await
}

/// Compiles and initialises every configured plugin; the first failure is returned, naming it.
pub async fn load_plugins(
    runtime: &Runtime,
    config: &Config,
) -> anyhow::Result<BTreeMap<String, Arc<Plugin>>> {
    let mut plugins = BTreeMap::new();
    for settings in config.plugins.values() {
        let plugin = load_one(runtime, config, settings).await?;
        plugins.insert(settings.name.clone(), plugin);
    }
    Ok(plugins)
}

async fn load_one(
    runtime: &Runtime,
    config: &Config,
    settings: &PluginSettings,
) -> anyhow::Result<Arc<Plugin>> {
    let plugin = runtime
        .load(settings)
        .await
        .with_context(|| format!("{}: plugins.{}", config.path.display(), settings.name))?;
    tracing::info!(
        plugin = plugin.name(),
        version = plugin.version(),
        path = %plugin.path().display(),
        "plugin loaded"
    );
    Ok(plugin)
}

/// Asks a running daemon to re-read its config file (what SIGHUP does).
#[derive(Clone)]
pub struct ReloadHandle(mpsc::UnboundedSender<()>);

impl ReloadHandle {
    /// Requests a config reload; returns false if the daemon has stopped.
    pub fn reload(&self) -> bool {
        self.0.send(()).is_ok()
    }
}

/// One loaded plugin: its settings and the slot pipelines read its current version from.
struct LoadedPlugin {
    settings: PluginSettings,
    slot: PluginSlot,
    /// Hash of the last file content that failed to load, so a bad file is reported once.
    last_failed: Option<String>,
}

/// One running pipeline.
struct RunningPipeline {
    settings: PipelineSettings,
    stop: CancellationToken,
    done: tokio::task::JoinHandle<()>,
}

/// A started daemon: every pipeline is consuming.
pub struct Daemon {
    config: Config,
    runtime: Runtime,
    shutdown: CancellationToken,
    links: Links,
    plugins: BTreeMap<String, LoadedPlugin>,
    pipelines: BTreeMap<String, RunningPipeline>,
    metrics: SharedMetrics,
    /// Since when lapin has been recovering a lost connection, if it is.
    recovering: Option<Instant>,
    consuming: Arc<AtomicBool>,
    heartbeats: Arc<Mutex<BTreeMap<String, Heartbeat>>>,
    epoch: Instant,
    admin_plugins: Arc<ArcSwap<PluginTable>>,
    /// Each running pipeline's publisher, for `/readyz` and the metrics.
    publishers: Publishers,
    connection_health: Arc<ArcSwap<broker::ConnectionHealth>>,
    background: JoinSet<()>,
    background_stop: CancellationToken,
    failures_tx: mpsc::UnboundedSender<(String, anyhow::Error)>,
    failures: mpsc::UnboundedReceiver<(String, anyhow::Error)>,
    reload_tx: mpsc::UnboundedSender<()>,
    reloads: mpsc::UnboundedReceiver<()>,
    changes: mpsc::UnboundedReceiver<Vec<PathBuf>>,
    watcher: Option<Watcher>,
}

impl Daemon {
    /// Loads plugins, connects, declares the topology and starts consuming. Every error
    /// (bad plugin, broker down, topology refused) comes back before anything is consumed.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let runtime = Runtime::new()?;
        let loaded = load_plugins(&runtime, &config).await?;
        let plugins: BTreeMap<String, LoadedPlugin> = loaded
            .into_iter()
            .map(|(name, plugin)| {
                let settings = config.plugins[&name].clone();
                let slot = Arc::new(ArcSwap::new(plugin));
                let entry = LoadedPlugin {
                    settings,
                    slot,
                    last_failed: None,
                };
                (name, entry)
            })
            .collect();

        let metrics = Arc::new(Metrics::new());
        let links = connect_all(&config, 0, &metrics, &shutdown).await?;
        let health = links.consume.health();

        let (failures_tx, failures) = mpsc::unbounded_channel();
        let (reload_tx, reloads) = mpsc::unbounded_channel();
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let watcher = match Watcher::new(changes_tx) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "files are not watched; reload with SIGHUP");
                None
            }
        };
        let mut daemon = Self {
            runtime,
            shutdown,
            links,
            plugins,
            pipelines: BTreeMap::new(),
            metrics,
            recovering: None,
            consuming: Arc::new(AtomicBool::new(false)),
            heartbeats: Arc::default(),
            epoch: Instant::now(),
            admin_plugins: Arc::new(ArcSwap::from_pointee(PluginTable::new())),
            publishers: Publishers::default(),
            connection_health: Arc::new(ArcSwap::from_pointee(health)),
            background: JoinSet::new(),
            background_stop: CancellationToken::new(),
            failures_tx,
            failures,
            reload_tx,
            reloads,
            changes,
            watcher,
            config,
        };
        daemon.start_pipelines().await?;
        daemon.watch_files();
        daemon.publish_plugin_table();
        daemon.start_background().await?;
        daemon.consuming.store(true, Ordering::Relaxed);

        let status = format!("{} pipelines consuming", daemon.pipelines.len());
        systemd::ready(&status);
        tracing::info!(
            pipelines = daemon.pipelines.len(),
            broker = %daemon.config.broker.shown(),
            "warren ready"
        );
        Ok(daemon)
    }

    async fn start_background(&mut self) -> anyhow::Result<()> {
        let stop = self.background_stop.clone();
        if let Some(admin) = &self.config.admin {
            let state = AdminState {
                metrics: self.metrics.clone(),
                consuming: self.consuming.clone(),
                connection: self.connection_health.clone(),
                plugins: self.admin_plugins.clone(),
                publishers: self.publishers.clone(),
            };
            let server = admin::serve(admin.listen, Arc::new(state), stop.clone()).await?;
            self.background.spawn(async move {
                let _ = server.await;
            });
        }
        self.background.spawn(report_status(
            self.metrics.clone(),
            self.heartbeats.clone(),
            stop.clone(),
        ));
        if let Some(interval) = systemd::watchdog_interval() {
            self.background.spawn(watchdog(
                self.heartbeats.clone(),
                self.epoch,
                interval,
                stop,
            ));
        }
        Ok(())
    }

    async fn start_pipeline(&mut self, settings: PipelineSettings) -> anyhow::Result<()> {
        let slot = self
            .plugins
            .get(&settings.plugin)
            .map(|p| p.slot.clone())
            .with_context(|| {
                format!(
                    "pipeline {}: plugin {} not loaded",
                    settings.name, settings.plugin
                )
            })?;
        let tag = format!("warren.{}", settings.name);
        let reopens = self.metrics.channel_reopens(&settings.name);
        let publisher = self
            .links
            .publish
            .publisher(move || {
                reopens.inc();
            })
            .await
            .with_context(|| format!("pipeline {}", settings.name))?;
        let consumer = self
            .links
            .consume
            .consume(
                &settings.queue,
                settings.prefetch.get(),
                &tag,
                settings.coalesce_acks,
                settings.quorum,
            )
            .await
            .with_context(|| format!("pipeline {}", settings.name))?;
        self.publishers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(settings.name.clone(), publisher.clone());
        let heartbeat: Heartbeat = Arc::new(AtomicU64::new(
            u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(0),
        ));
        self.heartbeats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(settings.name.clone(), heartbeat.clone());
        let pipeline = Pipeline::new(
            settings.clone(),
            slot,
            publisher,
            Arc::from(self.links.publish.user()),
            self.metrics.pipeline(&settings.name),
            heartbeat,
            self.epoch,
        );
        let stop = CancellationToken::new();
        let failures = self.failures_tx.clone();
        let name = settings.name.clone();
        let grace = self.config.shutdown_grace;
        let run = pipeline.run(consumer, stop.clone(), grace);
        let done = tokio::spawn(async move {
            if let Err(e) = run.await {
                let _ = failures.send((name, e));
            }
        });
        tracing::info!(
            pipeline = settings.name,
            queue = settings.queue,
            plugin = settings.plugin,
            prefetch = settings.prefetch.get(),
            concurrency = settings.concurrency.get(),
            "pipeline consuming"
        );
        self.pipelines.insert(
            settings.name.clone(),
            RunningPipeline {
                settings,
                stop,
                done,
            },
        );
        Ok(())
    }

    /// Stops consuming, lets in-flight messages finish within the grace period, closes.
    async fn stop_pipeline(&mut self, name: &str) {
        if let Some(running) = self.pipelines.remove(name) {
            running.stop.cancel();
            let _ = running.done.await;
            self.heartbeats
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
            self.publishers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .remove(name);
            tracing::info!(pipeline = name, "pipeline stopped");
        }
    }

    fn watch_files(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        let config_path = self.config.path.clone();
        watcher.watch_files(
            self.plugins
                .values()
                .map(|p| p.settings.path.as_path())
                .chain(std::iter::once(config_path.as_path())),
        );
    }

    fn publish_plugin_table(&self) {
        let table = self
            .plugins
            .iter()
            .map(|(name, p)| {
                let users = self
                    .pipelines
                    .values()
                    .filter(|r| &r.settings.plugin == name)
                    .map(|r| r.settings.name.clone())
                    .collect();
                (name.clone(), (p.slot.clone(), users))
            })
            .collect();
        self.admin_plugins.store(Arc::new(table));
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &SharedMetrics {
        &self.metrics
    }

    /// A handle that asks for a config reload, as SIGHUP does.
    pub fn reload_handle(&self) -> ReloadHandle {
        ReloadHandle(self.reload_tx.clone())
    }

    /// The version currently serving for each plugin.
    pub fn plugin_versions(&self) -> BTreeMap<String, String> {
        self.plugins
            .iter()
            .map(|(name, p)| (name.clone(), p.slot.load().version().to_owned()))
            .collect()
    }

    /// Runs until `shutdown` (then drains) or a pipeline fails (then stops the others and
    /// returns its error, so that a supervisor restarts the daemon). Reloads plugins whose
    /// files change, and the config on a change of its file or a reload request.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        let result = loop {
            tokio::select! {
                () = self.shutdown.cancelled() => break Ok(()),
                _ = check.tick() => {
                    if self.links.consume.is_lost() || self.links.publish.is_lost() {
                        tracing::error!("a broker connection was lost and not recovered; reconnecting");
                        if let Err(e) = self.reconnect().await {
                            break Err(e);
                        }
                    } else if self.note_recovery().is_some_and(|since| since.elapsed() > RECOVERY_LIMIT) {
                        tracing::error!(
                            limit_s = RECOVERY_LIMIT.as_secs(),
                            "lapin did not recover the broker connection in time; reconnecting"
                        );
                        if let Err(e) = self.reconnect().await {
                            break Err(e);
                        }
                    }
                }
                Some((name, error)) = self.failures.recv() => {
                    if self.pipelines.contains_key(&name) {
                        tracing::error!(pipeline = name, error = %format!("{error:#}"), "pipeline lost its channel or connection; reconnecting");
                        if let Err(e) = self.reconnect().await {
                            break Err(e);
                        }
                    }
                }
                Some(()) = self.reloads.recv() => {
                    // SIGHUP: the config, and every plugin file whose content changed.
                    self.reload_config().await;
                    let names: Vec<String> = self.plugins.keys().cloned().collect();
                    for name in names {
                        self.reload_plugin(&name).await;
                    }
                }
                Some(paths) = self.changes.recv() => self.on_files_changed(paths).await,
            }
        };
        if result.is_ok() {
            tracing::info!("stopping: draining in-flight messages");
        }
        systemd::stopping();
        self.consuming.store(false, Ordering::Relaxed);
        self.watcher = None;
        let names: Vec<String> = self.pipelines.keys().cloned().collect();
        for running in self.pipelines.values() {
            running.stop.cancel();
        }
        for name in names {
            self.stop_pipeline(&name).await;
        }
        self.background_stop.cancel();
        while self.background.join_next().await.is_some() {}
        self.links.consume.close().await;
        self.links.publish.close().await;
        tracing::info!("stopped");
        result
    }

    /// Notes when lapin starts and finishes recovering a lost connection (the pipelines wait
    /// meanwhile, and `/readyz` says 503); returns since when it has been recovering.
    fn note_recovery(&mut self) -> Option<Instant> {
        let recovering = self.links.consume.is_recovering() || self.links.publish.is_recovering();
        match (recovering, self.recovering) {
            (true, None) => {
                tracing::warn!("a broker connection was lost; lapin is recovering it");
                systemd::status("broker connection lost; recovering");
                self.recovering = Some(Instant::now());
            }
            (false, Some(_)) => {
                systemd::status(&format!(
                    "{} pipelines consuming (recovered)",
                    self.pipelines.len()
                ));
                self.recovering = None;
            }
            _ => {}
        }
        self.recovering
    }

    /// Drops every pipeline and both connections, reconnects with backoff (trying every URL),
    /// declares the topology again and restarts every pipeline; if that fails half-way (the
    /// broker went again), starts over. Deliveries of the old channels are never settled on
    /// the new ones: the broker redelivers them. Used when lapin's recovery gave up or the
    /// broker closed a channel (consumer timeout, queue deleted).
    async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.consuming.store(false, Ordering::Relaxed);
        self.metrics.broker_reconnects.inc();
        self.recovering = None;
        systemd::status("reconnecting to the broker");
        // The node just lost is tried last.
        let first = (self.links.consume.url_index() + 1) % self.config.broker.urls.len();
        loop {
            self.drop_links().await;
            // A broker that just dropped us may be restarting: back off before the first try.
            tokio::select! {
                () = self.shutdown.cancelled() => anyhow::bail!("stopped while reconnecting"),
                () = tokio::time::sleep(jitter(RECONNECT_MIN)) => {}
            }
            // Errors that retrying cannot fix (credentials, topology) end the daemon here.
            self.links = connect_all(&self.config, first, &self.metrics, &self.shutdown).await?;
            self.connection_health
                .store(Arc::new(self.links.consume.health()));
            match self.start_pipelines().await {
                Ok(()) => break,
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "reconnected, but the pipelines could not start (the broker went again?); reconnecting"
                ),
            }
        }
        self.consuming.store(true, Ordering::Relaxed);
        systemd::status(&format!(
            "{} pipelines consuming (reconnected)",
            self.pipelines.len()
        ));
        tracing::info!(
            pipelines = self.pipelines.len(),
            "reconnected; consuming again"
        );
        Ok(())
    }

    /// Drops every pipeline at once (their deliveries cannot be settled any more) and closes
    /// both connections.
    async fn drop_links(&mut self) {
        for (_, running) in std::mem::take(&mut self.pipelines) {
            running.stop.cancel();
            running.done.abort();
        }
        // Nothing is left to beat: the watchdog goes on pinging while warren reconnects (it
        // is not wedged), and the pipelines beat again once restarted.
        self.heartbeats
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.publishers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.links.consume.close().await;
        self.links.publish.close().await;
        // Failures reported by the pipelines just dropped are stale.
        while self.failures.try_recv().is_ok() {}
    }

    async fn start_pipelines(&mut self) -> anyhow::Result<()> {
        for settings in self.config.pipelines.clone() {
            self.start_pipeline(settings).await?;
        }
        Ok(())
    }

    async fn on_files_changed(&mut self, paths: Vec<PathBuf>) {
        let changed: BTreeSet<PathBuf> = paths.into_iter().collect();
        if changed.iter().any(|p| same_file(p, &self.config.path)) {
            self.reload_config().await;
        }
        // Plugin files that changed with it (or alone); unchanged content is not reloaded.
        let names: Vec<String> = self
            .plugins
            .iter()
            .filter(|(_, p)| changed.iter().any(|c| same_file(c, &p.settings.path)))
            .map(|(name, _)| name.clone())
            .collect();
        for name in names {
            self.reload_plugin(&name).await;
        }
    }

    /// Compiles and initialises the plugin's file anew, off the hot path, and swaps it in if
    /// its content changed. On failure the old version keeps serving.
    async fn reload_plugin(&mut self, name: &str) {
        let Some(entry) = self.plugins.get_mut(name) else {
            return;
        };
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
                return;
            }
            Err(e) => {
                tracing::warn!(plugin = name, path = %path.display(), error = %e, "cannot read plugin file");
                return;
            }
        };
        let hash = crate::plugin::content_hash(&bytes);
        if hash == entry.slot.load().version() || entry.last_failed.as_deref() == Some(&hash) {
            return;
        }
        let started = Instant::now();
        match self.runtime.load_bytes(&entry.settings, bytes).await {
            Ok(plugin) => {
                let old = entry.slot.swap(plugin);
                entry.last_failed = None;
                self.metrics.reload(name, true);
                tracing::info!(
                    plugin = name,
                    from = old.version(),
                    to = hash,
                    took_ms = started.elapsed().as_millis() as u64,
                    "plugin reloaded"
                );
            }
            Err(e) => {
                // A file that changed since it was read is still being written (a slow copy):
                // not a failure; the rest of the write brings another change event.
                let now = tokio::fs::read(&path).await;
                if now.is_ok_and(|now| crate::plugin::content_hash(&now) != hash) {
                    tracing::debug!(plugin = name, path = %path.display(), "plugin file still being written; waiting for it");
                    return;
                }
                entry.last_failed = Some(hash);
                self.metrics.reload(name, false);
                tracing::error!(
                    plugin = name,
                    path = %path.display(),
                    version = entry.slot.load().version(),
                    error = %format!("{e:#}"),
                    "plugin reload failed; the loaded version keeps serving"
                );
            }
        }
    }

    /// Re-reads the config file and applies it: plugins reloaded, topology declared,
    /// pipelines added, removed or restarted. An invalid config is refused as a whole.
    async fn reload_config(&mut self) {
        systemd::reloading();
        match self.apply_config().await {
            Ok(summary) => {
                self.metrics.config_reload(true);
                tracing::info!(%summary, "config reloaded");
            }
            Err(e) => {
                self.metrics.config_reload(false);
                tracing::error!(
                    error = %format!("{e:#}"),
                    "config reload refused; the running configuration is unchanged"
                );
            }
        }
        systemd::ready(&format!("{} pipelines consuming", self.pipelines.len()));
    }

    async fn apply_config(&mut self) -> anyhow::Result<String> {
        let new = Config::load(&self.config.path)?;
        if new.broker.urls != self.config.broker.urls {
            anyhow::bail!("broker.url changed: restart warren to connect elsewhere");
        }
        let listen = |c: &Config| c.admin.as_ref().map(|a| a.listen);
        if listen(&new) != listen(&self.config) {
            tracing::warn!("admin.listen changed: it takes effect when warren restarts");
        }
        if new.shutdown_grace != self.config.shutdown_grace {
            tracing::warn!(
                "shutdown_grace_ms changed: pipelines started from now on use it; running ones keep theirs until restarted"
            );
        }
        // Load every new or changed plugin first: a failure refuses the whole config.
        let mut fresh = BTreeMap::new();
        for (name, settings) in &new.plugins {
            let unchanged = self
                .plugins
                .get(name)
                .is_some_and(|p| same_plugin(&p.settings, settings));
            if !unchanged {
                fresh.insert(name.clone(), load_one(&self.runtime, &new, settings).await?);
            }
        }
        self.links.consume.declare(&new).await?;

        let mut summary = Vec::new();
        // Pipelines that go away or change stop first (they drain).
        let old_pipelines: Vec<PipelineSettings> = self
            .pipelines
            .values()
            .map(|r| r.settings.clone())
            .collect();
        for old in &old_pipelines {
            if !new.pipelines.iter().any(|p| p == old) {
                self.stop_pipeline(&old.name).await;
                summary.push(if new.pipelines.iter().any(|p| p.name == old.name) {
                    format!("changed {}", old.name)
                } else {
                    format!("removed {}", old.name)
                });
            }
        }
        // Plugins: swap changed ones in place, add new ones, drop unused ones.
        for (name, plugin) in fresh {
            let settings = new.plugins[&name].clone();
            match self.plugins.get_mut(&name) {
                Some(entry) => {
                    entry.slot.store(plugin);
                    entry.settings = settings;
                    entry.last_failed = None;
                    self.metrics.reload(&name, true);
                    summary.push(format!("plugin {name} reloaded"));
                }
                None => {
                    self.plugins.insert(
                        name.clone(),
                        LoadedPlugin {
                            settings,
                            slot: Arc::new(ArcSwap::new(plugin)),
                            last_failed: None,
                        },
                    );
                    summary.push(format!("plugin {name} added"));
                }
            }
        }
        self.plugins
            .retain(|name, _| new.plugins.contains_key(name));
        self.config = new;
        // The new config is in force from here: a pipeline that cannot start (its channel
        // refused) is reported and left out, the others run.
        for settings in self.config.pipelines.clone() {
            if !self.pipelines.contains_key(&settings.name) {
                let name = settings.name.clone();
                if let Err(e) = self.start_pipeline(settings).await {
                    tracing::error!(pipeline = name, error = %format!("{e:#}"), "pipeline could not start");
                    summary.push(format!("failed to start {name}"));
                } else if !summary.iter().any(|s| s == &format!("changed {name}")) {
                    summary.push(format!("added {name}"));
                }
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

/// True if the two paths name the same file (same directory and file name).
fn same_file(a: &Path, b: &Path) -> bool {
    a == b || (a.file_name() == b.file_name() && dir_of(a) == dir_of(b))
}

fn dir_of(path: &Path) -> Option<PathBuf> {
    path.parent().and_then(|d| std::fs::canonicalize(d).ok())
}

fn same_plugin(a: &PluginSettings, b: &PluginSettings) -> bool {
    a.path == b.path
        && a.config == b.config
        && a.limits == b.limits
        && a.allowed_hosts == b.allowed_hosts
        && a.egress.timeout == b.egress.timeout
        && a.egress.max_response_bytes == b.egress.max_response_bytes
        && a.egress.trust == b.egress.trust
        && a.publish == b.publish
}

/// Refreshes the systemd status line: pipelines and messages handled.
async fn report_status(
    metrics: SharedMetrics,
    heartbeats: Arc<Mutex<BTreeMap<String, Heartbeat>>>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                let pipelines = heartbeats.lock().unwrap_or_else(PoisonError::into_inner).len();
                systemd::status(&format!(
                    "{pipelines} pipelines consuming; {} messages handled",
                    metrics.handled.get()
                ));
            }
        }
    }
}

/// Pings the systemd watchdog while every pipeline loop keeps beating; a wedged loop stops
/// the pings, and systemd restarts the daemon.
async fn watchdog(
    heartbeats: Arc<Mutex<BTreeMap<String, Heartbeat>>>,
    epoch: Instant,
    interval: Duration,
    stop: CancellationToken,
) {
    let stale_after = (HEARTBEAT_INTERVAL * 3).max(interval);
    let mut every = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                let now = epoch.elapsed();
                let alive = heartbeats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .all(|beat| {
                        let last = Duration::from_millis(beat.load(Ordering::Relaxed));
                        now.saturating_sub(last) <= stale_after
                    });
                if alive {
                    systemd::watchdog();
                } else {
                    tracing::error!("a pipeline loop stopped beating; withholding the watchdog ping");
                }
            }
        }
    }
}
