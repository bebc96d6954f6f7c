//! The daemon: load plugins, connect, run every pipeline, reload, and stop gracefully.
//!
//! [`Daemon::wait`] is the one loop: broker links watched, pipeline failures restarted one at
//! a time by the [`supervisor`], plugin files and the config reloaded ([`reload`]), and the
//! drain on stop.

mod background;
mod handles;
mod recovery;
mod reload;
mod supervisor;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, PluginTable, Rates};
use crate::broker::links::{LinkError, Links, LinksHealth, connect_all};
use crate::config::{Config, DeadLetter, PipelineSettings};
use crate::metrics::{Metrics, SharedMetrics};
use crate::plugin::Runtime;
use crate::plugin::registry::Registry;
use crate::systemd;
use crate::trace::{Exporter, Tracer};
use crate::watch::Watcher;
pub use handles::{ReloadHandle, Reloads, StartError, reload_channel};
pub use reload::ConfigDiff;
pub use supervisor::{RESTART_MAX, RESTART_MIN};

/// How often the depth of each dead-letter queue is read for `warren_dead_letter_depth`.
pub const DEAD_LETTER_DEPTH_INTERVAL: Duration = Duration::from_secs(10);
/// How often the connections' state is checked (a lost publishing connection is seen here).
pub const CONNECTION_CHECK: Duration = Duration::from_millis(250);
/// How long lapin may take to recover a lost connection before warren reconnects itself.
/// lapin's recovery either succeeds within a few seconds (its backoff: 0.25 s doubling to
/// 1 s) or gives up. A lapin that gave up leaves the connection "reconnecting" for ever
/// instead of failing it (amqp-rs/lapin#450); warren sees that by counting lapin's failed
/// connects (`broker::Connects`) and reconnects at once. This limit is for the rest: a
/// recovery stuck anywhere else (a connect that hangs on a silent network, a channel that
/// never reopens).
pub const RECOVERY_LIMIT: Duration = Duration::from_secs(10);

/// What the daemon's loop listens to.
struct Inbox {
    failures: mpsc::UnboundedReceiver<supervisor::Failure>,
    restarts: mpsc::UnboundedReceiver<String>,
    reloads: mpsc::UnboundedReceiver<()>,
    changes: mpsc::UnboundedReceiver<Vec<PathBuf>>,
}

/// A started daemon: every pipeline is consuming.
pub struct Daemon {
    config: Config,
    shutdown: CancellationToken,
    links: Links,
    plugins: Registry,
    pipelines: supervisor::Supervisor,
    metrics: SharedMetrics,
    /// Since when lapin has been recovering a lost connection, if it is.
    recovering: Option<Instant>,
    consuming: Arc<AtomicBool>,
    admin_plugins: Arc<ArcSwap<PluginTable>>,
    admin_pipelines: Arc<ArcSwap<Vec<PipelineSettings>>>,
    connection_health: Arc<ArcSwap<LinksHealth>>,
    background: JoinSet<()>,
    background_stop: CancellationToken,
    inbox: Inbox,
    reload: ReloadHandle,
    watcher: Option<Watcher>,
    /// Sends message traces, when `[telemetry]` asks for them.
    exporter: Option<Exporter>,
}

impl Daemon {
    /// Loads plugins, connects, declares the topology and starts consuming. Every error
    /// (bad plugin, broker down, topology refused) comes back before anything is consumed.
    pub async fn start(config: Config, shutdown: CancellationToken) -> Result<Self, StartError> {
        Self::start_with(config, shutdown, reload_channel()).await
    }

    /// Like [`Daemon::start`], taking reload requests from a channel made beforehand (so that
    /// a SIGHUP during start-up is not lost).
    pub async fn start_with(
        config: Config,
        shutdown: CancellationToken,
        (reload, Reloads(reloads)): (ReloadHandle, Reloads),
    ) -> Result<Self, StartError> {
        let metrics = Arc::new(Metrics::new());
        let runtime = Runtime::new(&config.cache)
            .map_err(StartError::Other)?
            .count_egress(metrics.clone())
            .count_dropped_lines(metrics.clone());
        let plugins = Registry::load(runtime, &config.path, config.plugins.values())
            .await
            .map_err(StartError::Config)?;
        let (exporter, tracer) = start_tracing(&config).map_err(StartError::Config)?;
        reload::count_start_loads(&metrics, &plugins);
        let limit = Some(config.broker.startup_timeout);
        let links = connect_all(&config, 0, &metrics, &shutdown, limit)
            .await
            .map_err(|e| match e {
                LinkError::Refused(e) => StartError::Config(e),
                LinkError::Unreachable(e) => StartError::Unreachable(e),
                LinkError::Stopped(e) => StartError::Stopped(e),
            })?;
        let health = links.health();

        let (failures_tx, failures) = mpsc::unbounded_channel();
        let (restarts_tx, restarts) = mpsc::unbounded_channel();
        let (changes_tx, changes) = mpsc::unbounded_channel();
        let watcher = Watcher::new(changes_tx)
            .inspect_err(|e| {
                tracing::warn!(error = %format!("{e:#}"), "files are not watched; reload with SIGHUP");
            })
            .ok();
        let mut daemon = Self {
            shutdown,
            links,
            plugins,
            pipelines: supervisor::Supervisor::new(
                Instant::now(),
                failures_tx,
                restarts_tx,
                tracer,
            ),
            metrics,
            recovering: None,
            consuming: Arc::new(AtomicBool::new(false)),
            admin_plugins: Arc::new(ArcSwap::from_pointee(PluginTable::new())),
            admin_pipelines: Arc::new(ArcSwap::from_pointee(Vec::new())),
            connection_health: Arc::new(ArcSwap::from_pointee(health)),
            background: JoinSet::new(),
            background_stop: CancellationToken::new(),
            inbox: Inbox {
                failures,
                restarts,
                reloads,
                changes,
            },
            reload,
            watcher,
            exporter,
            config,
        };
        daemon
            .start_all_pipelines()
            .await
            .map_err(StartError::Other)?;
        daemon.watch_files();
        daemon.publish_plugin_table();
        daemon.start_background().await.map_err(StartError::Other)?;
        daemon.consuming.store(true, Ordering::Relaxed);

        systemd::ready(&format!("{} pipelines consuming", daemon.pipelines.len()));
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
            let rates = Arc::new(Rates::default());
            let state = AdminState {
                metrics: self.metrics.clone(),
                consuming: self.consuming.clone(),
                links: self.connection_health.clone(),
                plugins: self.admin_plugins.clone(),
                publishers: self.pipelines.publishers(),
                pipelines: self.admin_pipelines.clone(),
                nodes: self
                    .config
                    .broker
                    .urls
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                rates: rates.clone(),
            };
            let server = admin::serve(admin, Arc::new(state), stop.clone()).await?;
            self.background.spawn(async move {
                let _ = server.await;
            });
            self.background.spawn(admin::sample(
                rates,
                self.metrics.clone(),
                self.admin_pipelines.clone(),
                stop.clone(),
            ));
        }
        let heartbeats = self.pipelines.heartbeats();
        self.background.spawn(background::report_status(
            self.metrics.clone(),
            heartbeats.clone(),
            stop.clone(),
        ));
        if let Some(interval) = systemd::watchdog_interval() {
            self.background.spawn(background::watchdog(
                heartbeats,
                Instant::now(),
                interval,
                stop,
            ));
        }
        Ok(())
    }

    async fn start_pipeline(&mut self, settings: PipelineSettings) -> anyhow::Result<()> {
        self.start_pipeline_with(settings, None).await
    }

    async fn start_pipeline_with(
        &mut self,
        settings: PipelineSettings,
        publisher: Option<crate::broker::Publisher>,
    ) -> anyhow::Result<()> {
        let slot = self.plugins.slot(&settings.plugin).with_context(|| {
            format!(
                "pipeline {}: plugin {} not loaded",
                settings.name, settings.plugin
            )
        })?;
        let (links, metrics, grace) = (&self.links, &self.metrics, self.config.shutdown_grace);
        self.pipelines
            .start(settings, slot, links, metrics, grace, publisher)
            .await
    }

    /// Starts every pipeline of the config: first every publishing channel, then the
    /// consumers (see [`supervisor::Supervisor::open_publisher`]).
    async fn start_all_pipelines(&mut self) -> anyhow::Result<()> {
        let mut publishers = Vec::new();
        for settings in &self.config.pipelines {
            let publisher =
                supervisor::Supervisor::open_publisher(&settings.name, &self.links, &self.metrics)
                    .await?;
            publishers.push(publisher);
        }
        for (settings, publisher) in self.config.pipelines.clone().into_iter().zip(publishers) {
            self.start_pipeline_with(settings, Some(publisher)).await?;
        }
        Ok(())
    }

    fn watch_files(&mut self) {
        let Some(watcher) = &mut self.watcher else {
            return;
        };
        let config_path = self.config.path.clone();
        watcher.watch_files(
            self.plugins
                .settings()
                .map(|p| p.path.as_path())
                .chain(std::iter::once(config_path.as_path())),
        );
    }

    /// Publishes the plugins (with their users) for `/plugins`, the pipelines for `/status`,
    /// and the plugins' versions for `warren_plugin_info`.
    fn publish_plugin_table(&self) {
        self.admin_pipelines
            .store(Arc::new(self.config.pipelines.clone()));
        let versions = self.plugins.versions();
        self.metrics
            .set_plugin_versions(versions.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        self.metrics.set_plugin_slots(self.plugins.slots());
        let table = self
            .plugins
            .slots()
            .map(|(name, slot)| (name.clone(), (slot.clone(), self.pipelines.users_of(name))))
            .collect();
        self.admin_plugins.store(Arc::new(table));
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &SharedMetrics {
        &self.metrics
    }

    /// A handle that asks for a config reload, as SIGHUP does.
    pub fn reload_handle(&self) -> ReloadHandle {
        self.reload.clone()
    }

    /// The version currently serving for each plugin.
    pub fn plugin_versions(&self) -> BTreeMap<String, String> {
        self.plugins.versions()
    }

    /// Runs until `shutdown` (then drains) or an error that retrying cannot fix (then stops
    /// the pipelines and returns it, so that a supervisor restarts the daemon). Restarts a
    /// failed pipeline alone; reconnects everything when a connection is lost for good;
    /// reloads plugins whose files change, and the config on a change of its file or a
    /// reload request.
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let mut check = tokio::time::interval(CONNECTION_CHECK);
        let mut depths = tokio::time::interval(DEAD_LETTER_DEPTH_INTERVAL);
        let result = loop {
            let step = tokio::select! {
                () = self.shutdown.cancelled() => break Ok(()),
                _ = check.tick() => self.check_links().await,
                _ = depths.tick() => {
                    self.read_dead_letter_depths().await;
                    Ok(())
                }
                Some((name, error)) = self.inbox.failures.recv() => {
                    self.pipelines.failed(&name, &error).await;
                    Ok(())
                }
                Some(name) = self.inbox.restarts.recv() => {
                    self.restart_pipeline(&name).await;
                    Ok(())
                }
                Some(()) = self.inbox.reloads.recv() => {
                    // SIGHUP: the config, and every plugin file whose content changed.
                    self.reload_config().await;
                    for name in self.plugins.names() {
                        self.reload_plugin_file(&name, true).await;
                    }
                    self.publish_plugin_table();
                    Ok(())
                }
                Some(paths) = self.inbox.changes.recv() => {
                    self.on_files_changed(paths).await;
                    Ok(())
                }
            };
            if let Err(e) = step {
                break Err(e);
            }
        };
        if result.is_ok() {
            tracing::info!("stopping: draining in-flight messages");
        }
        systemd::stopping();
        self.consuming.store(false, Ordering::Relaxed);
        self.watcher = None;
        self.pipelines.stop_all().await;
        self.background_stop.cancel();
        while self.background.join_next().await.is_some() {}
        self.links.consume.close().await;
        self.links.publish.close().await;
        if let Some(exporter) = self.exporter.take() {
            exporter.shutdown().await;
        }
        tracing::info!("stopped");
        result
    }

    /// Reads how many messages each pipeline's dead-letter queue holds, for the metrics.
    async fn read_dead_letter_depths(&self) {
        for pipeline in &self.config.pipelines {
            if let DeadLetter::Queue(queue) = &pipeline.dead_letter
                && let Ok(depth) = self.links.consume.queue_depth(queue).await
            {
                self.metrics.set_dead_letter_depth(&pipeline.name, depth);
            }
        }
    }
}

/// The span exporter and the tracer, if `[telemetry]` is set; otherwise no exporter and a
/// tracer that does nothing.
fn start_tracing(config: &Config) -> anyhow::Result<(Option<Exporter>, Tracer)> {
    Ok(match &config.telemetry {
        Some(telemetry) => {
            let (exporter, tracer) = Exporter::start(telemetry)?;
            (Some(exporter), tracer)
        }
        None => (None, Tracer::off()),
    })
}
