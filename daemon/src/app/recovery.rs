//! How the daemon recovers: a broker connection lost for good (or recovering for too long)
//! means a reconnect of everything; a failed pipeline is restarted alone.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::{Daemon, RECOVERY_LIMIT};
use crate::broker::links::{LinkError, RECONNECT_MIN, connect_all, jitter};
use crate::systemd;

impl Daemon {
    /// Reconnects everything if a connection is lost for good (lapin included, when it gave
    /// up), or lapin has been recovering one for longer than [`RECOVERY_LIMIT`].
    pub(super) async fn check_links(&mut self) -> anyhow::Result<()> {
        if self.links.consume.gave_up() || self.links.publish.gave_up() {
            tracing::error!(
                connects = 1 + crate::broker::RECOVERY_ATTEMPTS,
                "lapin gave up recovering a broker connection (every connect of its last round failed); reconnecting"
            );
            return self.reconnect().await;
        }
        if self.links.consume.is_lost() || self.links.publish.is_lost() {
            tracing::error!("a broker connection was lost and not recovered; reconnecting");
            return self.reconnect().await;
        }
        if self
            .note_recovery()
            .is_some_and(|since| since.elapsed() > RECOVERY_LIMIT)
        {
            tracing::error!(
                limit_s = RECOVERY_LIMIT.as_secs(),
                "lapin did not recover the broker connection in time; reconnecting"
            );
            return self.reconnect().await;
        }
        Ok(())
    }

    /// Starts a pipeline that failed, if the config still has it and it is not running yet;
    /// its queue is declared again first (it may have been deleted). On failure, a later
    /// restart is scheduled, after a longer wait.
    pub(super) async fn restart_pipeline(&mut self, name: &str) {
        if self.pipelines.contains(name) {
            return;
        }
        let Some(settings) = self
            .config
            .pipelines
            .iter()
            .find(|p| p.name == name)
            .cloned()
        else {
            return;
        };
        let started = async {
            self.links.consume.declare(&self.config).await?;
            self.start_pipeline(settings).await
        }
        .await;
        match started {
            Ok(()) => {
                self.metrics.pipeline_restart(name);
                self.publish_plugin_table();
                tracing::info!(pipeline = name, "pipeline restarted");
            }
            Err(e) => {
                let wait = self.pipelines.schedule_restart(name);
                tracing::warn!(
                    pipeline = name,
                    error = %format!("{e:#}"),
                    retry_in_ms = wait.as_millis() as u64,
                    "pipeline could not restart; trying again later"
                );
            }
        }
    }

    /// Notes when lapin starts and finishes recovering a lost connection (the pipelines wait
    /// meanwhile, and `/readyz` says 503); returns since when it has been recovering.
    pub(super) fn note_recovery(&mut self) -> Option<Instant> {
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

    /// Ends every pipeline (cancelling their in-flight messages) and both connections,
    /// reconnects with backoff (trying every URL), declares the topology again and restarts
    /// every pipeline; if that fails half-way (the broker went again), starts over.
    /// Deliveries of the old channels are never settled on the new ones: the broker
    /// redelivers them. Used when lapin's recovery gave up. A stop asked for meanwhile ends it
    /// early, with `Ok` (the caller sees the shutdown next).
    pub(super) async fn reconnect(&mut self) -> anyhow::Result<()> {
        self.consuming.store(false, Ordering::Relaxed);
        self.metrics.broker_reconnects.inc();
        self.recovering = None;
        systemd::status("reconnecting to the broker");
        // The node just lost is tried last.
        let first = (self.links.consume.url_index() + 1) % self.config.broker.urls.len();
        loop {
            self.pipelines.abort_all().await;
            self.links.consume.close().await;
            self.links.publish.close().await;
            // Failures reported by the pipelines just ended are stale.
            while self.inbox.failures.try_recv().is_ok() {}
            // A broker that just dropped us may be restarting: back off before the first try.
            // Stopped meanwhile: a clean stop (there is nothing in flight to drain).
            tokio::select! {
                () = self.shutdown.cancelled() => return Ok(()),
                () = tokio::time::sleep(jitter(RECONNECT_MIN)) => {}
            }
            // Errors that retrying cannot fix (credentials, topology) end the daemon here.
            self.links =
                match connect_all(&self.config, first, &self.metrics, &self.shutdown, None).await {
                    Ok(links) => links,
                    Err(LinkError::Stopped(_)) => return Ok(()),
                    Err(e) => return Err(anyhow::Error::new(e)),
                };
            self.connection_health.store(Arc::new(self.links.health()));
            match self.start_all_pipelines().await {
                Ok(()) => break,
                Err(e) => tracing::warn!(
                    error = %format!("{e:#}"),
                    "reconnected, but the pipelines could not start (the broker went again?); reconnecting"
                ),
            }
        }
        self.consuming.store(true, Ordering::Relaxed);
        self.publish_plugin_table();
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
}
