//! The daemon: load plugins, connect, declare, start every pipeline, and stop gracefully.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState};
use crate::broker::{self, Connection, Role};
use crate::config::Config;
use crate::metrics::{Heartbeat, Metrics, SharedMetrics};
use crate::pipeline::{HEARTBEAT_INTERVAL, Pipeline, PluginSlot};
use crate::plugin::{Plugin, Runtime};
use crate::systemd;

/// How often the systemd status line is refreshed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

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
        plugins.insert(settings.name.clone(), plugin);
    }
    Ok(plugins)
}

/// A started daemon: every pipeline is consuming.
pub struct Daemon {
    shutdown: CancellationToken,
    stop: CancellationToken,
    pipelines: JoinSet<anyhow::Result<()>>,
    consume: Connection,
    publish: Connection,
    plugins: BTreeMap<String, PluginSlot>,
    metrics: SharedMetrics,
    consuming: Arc<AtomicBool>,
    background: JoinSet<()>,
}

impl Daemon {
    /// Loads plugins, connects, declares the topology and starts consuming. Every error
    /// (bad plugin, broker down, topology refused) comes back before anything is consumed.
    pub async fn start(config: Config, shutdown: CancellationToken) -> anyhow::Result<Self> {
        let runtime = Runtime::new()?;
        let loaded = load_plugins(&runtime, &config).await?;
        let plugins: BTreeMap<String, PluginSlot> = loaded
            .into_iter()
            .map(|(name, plugin)| (name, Arc::new(ArcSwap::new(plugin))))
            .collect();

        let consume = broker::connect(&config.broker, Role::Consume).await?;
        let publish = broker::connect(&config.broker, Role::Publish).await?;
        consume.declare(&config).await?;
        let publisher = publish.publisher().await?;

        let stop = shutdown.child_token();
        let metrics: SharedMetrics = Arc::new(Metrics::new());
        let epoch = Instant::now();
        let mut heartbeats = Vec::new();
        let mut pipelines = JoinSet::new();
        for settings in &config.pipelines {
            let slot = plugins.get(&settings.plugin).cloned().with_context(|| {
                format!(
                    "pipeline {}: plugin {} not loaded",
                    settings.name, settings.plugin
                )
            })?;
            let tag = format!("warren.{}", settings.name);
            let consumer = consume
                .consume(&settings.queue, settings.prefetch.get(), &tag)
                .await
                .with_context(|| format!("pipeline {}", settings.name))?;
            let heartbeat: Heartbeat = Arc::new(AtomicU64::new(0));
            heartbeats.push(heartbeat.clone());
            let pipeline = Pipeline::new(
                settings.clone(),
                slot,
                publisher.clone(),
                metrics.pipeline(&settings.name),
                heartbeat,
                epoch,
            );
            pipelines.spawn(pipeline.run(consumer, stop.clone(), config.shutdown_grace));
            tracing::info!(
                pipeline = settings.name,
                queue = settings.queue,
                plugin = settings.plugin,
                prefetch = settings.prefetch.get(),
                concurrency = settings.concurrency.get(),
                "pipeline consuming"
            );
        }

        let consuming = Arc::new(AtomicBool::new(true));
        let mut background = JoinSet::new();
        if let Some(admin) = &config.admin {
            let state = AdminState {
                metrics: metrics.clone(),
                consuming: consuming.clone(),
                connection: consume.health(),
                plugins: plugins
                    .iter()
                    .map(|(name, slot)| {
                        let users = config
                            .pipelines
                            .iter()
                            .filter(|p| &p.plugin == name)
                            .map(|p| p.name.clone())
                            .collect();
                        (name.clone(), (slot.clone(), users))
                    })
                    .collect(),
            };
            let server = admin::serve(admin.listen, Arc::new(state), stop.clone()).await?;
            background.spawn(async move {
                let _ = server.await;
            });
        }
        background.spawn(report_status(
            metrics.clone(),
            config.pipelines.len(),
            stop.clone(),
        ));
        if let Some(interval) = systemd::watchdog_interval() {
            background.spawn(watchdog(heartbeats, epoch, interval, stop.clone()));
        }

        let status = format!("{} pipelines consuming", config.pipelines.len());
        systemd::ready(&status);
        tracing::info!(pipelines = config.pipelines.len(), broker = %config.broker.url, "warren ready");
        Ok(Self {
            shutdown,
            stop,
            pipelines,
            consume,
            publish,
            plugins,
            metrics,
            consuming,
            background,
        })
    }

    /// The daemon's metrics.
    pub fn metrics(&self) -> &SharedMetrics {
        &self.metrics
    }

    /// The current version of each plugin, by name.
    pub fn plugins(&self) -> &BTreeMap<String, PluginSlot> {
        &self.plugins
    }

    /// Waits for `shutdown` (then drains) or for a pipeline to fail (then stops the others and
    /// returns its error, so that a supervisor restarts the daemon).
    pub async fn wait(mut self) -> anyhow::Result<()> {
        let result = tokio::select! {
            () = self.shutdown.cancelled() => Ok(()),
            Some(joined) = self.pipelines.join_next() => match joined {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e),
                Err(e) => Err(anyhow::anyhow!("a pipeline task panicked: {e}")),
            },
        };
        if result.is_ok() {
            tracing::info!("stopping: draining in-flight messages");
        }
        systemd::stopping();
        self.consuming.store(false, Ordering::Relaxed);
        self.stop.cancel();
        while let Some(joined) = self.pipelines.join_next().await {
            match joined {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::error!(error = %format!("{e:#}"), "pipeline ended with an error")
                }
                Err(e) => tracing::error!(error = %e, "pipeline task panicked"),
            }
        }
        self.consume.close().await;
        self.publish.close().await;
        while self.background.join_next().await.is_some() {}
        tracing::info!("stopped");
        result
    }
}

/// Refreshes the systemd status line: pipelines and messages handled.
async fn report_status(metrics: SharedMetrics, pipelines: usize, stop: CancellationToken) {
    let mut every = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => systemd::status(&format!(
                "{pipelines} pipelines consuming; {} messages handled",
                metrics.handled.get()
            )),
        }
    }
}

/// Pings the systemd watchdog while every pipeline loop keeps beating; a wedged loop stops
/// the pings, and systemd restarts the daemon.
async fn watchdog(
    heartbeats: Vec<Heartbeat>,
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
                let alive = heartbeats.iter().all(|beat| {
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
