//! The daemon: load plugins, connect, declare, start every pipeline, and stop gracefully.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::broker::{self, Connection, Role};
use crate::config::Config;
use crate::pipeline::{Pipeline, PluginSlot};
use crate::plugin::{Plugin, Runtime};

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
            let pipeline = Pipeline::new(settings.clone(), slot, publisher.clone());
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
        tracing::info!(pipelines = config.pipelines.len(), broker = %config.broker.url, "warren ready");
        Ok(Self {
            shutdown,
            stop,
            pipelines,
            consume,
            publish,
            plugins,
        })
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
        tracing::info!("stopped");
        result
    }
}
