//! The running pipelines, started, stopped and restarted one at a time. One pipeline is one
//! failure domain: its own consumer and publishing channels; a pipeline whose channel the
//! broker closes (consumer timeout, queue deleted, a channel error) is restarted alone, after
//! a growing backoff, while the others go on undisturbed.

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::mpsc;

use crate::admin::Publishers;
use crate::broker::Publisher;
use crate::broker::links::{Links, jitter};
use crate::config::PipelineSettings;
use crate::metrics::{Heartbeat, Metrics};
use crate::pipeline::{Pipeline, Stop};
use crate::plugin::registry::PluginSlot;
use crate::trace::Tracer;

/// First wait before a failed pipeline is restarted; doubled at each failure in a row.
pub const RESTART_MIN: Duration = Duration::from_millis(500);
/// Longest wait before a failed pipeline is restarted.
pub const RESTART_MAX: Duration = Duration::from_secs(30);
/// How long opening a publishing channel may take.
pub const OPEN_LIMIT: Duration = Duration::from_secs(10);
/// A pipeline that ran this long before it failed restarts after [`RESTART_MIN`] again.
pub const RESTART_HEALTHY_AFTER: Duration = Duration::from_secs(60);
/// How long a pipeline told to stop may take to close its channels, past its grace period
/// (a broker call on a connection that is going may never be answered); then its task is
/// aborted.
pub const CLOSE_LIMIT: Duration = Duration::from_secs(5);

/// Each pipeline's heartbeat (for the systemd watchdog), by name.
pub type Heartbeats = Arc<Mutex<BTreeMap<String, Heartbeat>>>;

/// A pipeline's failure, reported by its task: its name, and why.
pub type Failure = (String, anyhow::Error);

struct Running {
    settings: PipelineSettings,
    stop: Stop,
    done: tokio::task::JoinHandle<()>,
    started: Instant,
    grace: Duration,
}

impl Running {
    /// Waits for the pipeline's task to end, for at most `limit` (see [`ended_within`]); if it
    /// had to be aborted, the messages it still had in flight are cancelled too (they are
    /// tasks of their own): nothing more is published for them, and their deliveries return
    /// to the queue with the channel.
    async fn ended(self, name: &str, limit: Duration) {
        if !ended_within(self.done, name, limit).await {
            self.stop.abort();
        }
    }
}

/// Waits for a pipeline's task to end, for at most `limit`; then aborts it (its channels are
/// dropped without a goodbye, which returns their deliveries all the same) and waits for
/// that. False if it had to be aborted.
async fn ended_within(mut done: tokio::task::JoinHandle<()>, name: &str, limit: Duration) -> bool {
    if tokio::time::timeout(limit, &mut done).await.is_ok() {
        return true;
    }
    tracing::warn!(
        pipeline = name,
        limit_ms = limit.as_millis() as u64,
        "pipeline did not stop in time (a broker call unanswered?); aborting its task"
    );
    done.abort();
    let _ = done.await;
    false
}

/// The running pipelines and what they share.
pub struct Supervisor {
    running: BTreeMap<String, Running>,
    heartbeats: Heartbeats,
    publishers: Publishers,
    epoch: Instant,
    failures: mpsc::UnboundedSender<Failure>,
    restarts: mpsc::UnboundedSender<String>,
    /// The wait before each failed pipeline's next restart.
    backoff: BTreeMap<String, Duration>,
    /// Traces every pipeline's messages (or none).
    tracer: Tracer,
}

impl Supervisor {
    /// No pipeline yet. Failed pipelines are reported on `failures`; a restart that is due is
    /// asked for on `restarts`.
    pub fn new(
        epoch: Instant,
        failures: mpsc::UnboundedSender<Failure>,
        restarts: mpsc::UnboundedSender<String>,
        tracer: Tracer,
    ) -> Self {
        Self {
            tracer,
            running: BTreeMap::new(),
            heartbeats: Heartbeats::default(),
            publishers: Publishers::default(),
            epoch,
            failures,
            restarts,
            backoff: BTreeMap::new(),
        }
    }

    /// Each pipeline's heartbeat.
    pub fn heartbeats(&self) -> Heartbeats {
        self.heartbeats.clone()
    }

    /// Each pipeline's publisher.
    pub fn publishers(&self) -> Publishers {
        self.publishers.clone()
    }

    /// How many pipelines run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// True if the pipeline named `name` runs.
    pub fn contains(&self, name: &str) -> bool {
        self.running.contains_key(name)
    }

    /// The running pipelines that use the plugin named `plugin`.
    pub fn users_of(&self, plugin: &str) -> Vec<String> {
        self.running
            .values()
            .filter(|r| r.settings.plugin == plugin)
            .map(|r| r.settings.name.clone())
            .collect()
    }

    /// Opens a pipeline's publishing channel. Done for every pipeline before any consumes
    /// at start: once a pipeline has published under a broker memory alarm, the broker stops
    /// reading the publishing connection, and a channel opened then would wait for the alarm
    /// to clear (which is also why this gives up after [`OPEN_LIMIT`]).
    pub async fn open_publisher(
        name: &str,
        links: &Links,
        metrics: &Metrics,
    ) -> anyhow::Result<Publisher> {
        let reopens = metrics.channel_reopens(name);
        let open = links.publish.publisher(move || {
            reopens.inc();
        });
        tokio::time::timeout(OPEN_LIMIT, open)
            .await
            .map_err(|_| {
                anyhow::anyhow!(
                    "pipeline {name}: no publishing channel within {} s (is the broker in a resource alarm?)",
                    OPEN_LIMIT.as_secs()
                )
            })?
            .with_context(|| format!("pipeline {name}"))
    }

    /// Starts the pipeline on `links`, with `publisher` if it is opened already.
    pub async fn start(
        &mut self,
        settings: PipelineSettings,
        slot: PluginSlot,
        links: &Links,
        metrics: &Metrics,
        grace: Duration,
        publisher: Option<Publisher>,
    ) -> anyhow::Result<()> {
        let name = settings.name.clone();
        let publisher = match publisher {
            Some(publisher) => publisher,
            None => Self::open_publisher(&name, links, metrics).await?,
        };
        let consumer = links
            .consume
            .consume(
                &settings.queue,
                settings.prefetch.get(),
                &format!("warren@{}.{name}", crate::config::hostname()),
                settings.coalesce_acks,
                settings.quorum,
            )
            .await
            .with_context(|| format!("pipeline {name}"));
        let consumer = match consumer {
            Ok(consumer) => consumer,
            Err(e) => {
                publisher.close().await;
                return Err(e);
            }
        };
        let heartbeat: Heartbeat = Arc::new(AtomicU64::new(
            u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(0),
        ));
        lock(&self.heartbeats).insert(name.clone(), heartbeat.clone());
        lock(&self.publishers).insert(name.clone(), publisher.clone());
        let pipeline = Pipeline::new(
            settings.clone(),
            slot,
            publisher,
            Arc::from(links.publish.user()),
            metrics.pipeline(&name),
            heartbeat,
            self.epoch,
        )
        .traced(self.tracer.clone());
        let stop = Stop::default();
        let run = pipeline.run(consumer, stop.clone(), grace);
        let failures = self.failures.clone();
        let task_name = name.clone();
        let done = tokio::spawn(async move {
            if let Err(e) = run.await {
                let _ = failures.send((task_name, e));
            }
        });
        tracing::info!(
            pipeline = name,
            queue = settings.queue,
            plugin = settings.plugin,
            prefetch = settings.prefetch.get(),
            concurrency = settings.concurrency.get(),
            "pipeline consuming"
        );
        self.running.insert(
            name,
            Running {
                settings,
                stop,
                done,
                started: Instant::now(),
                grace,
            },
        );
        Ok(())
    }

    /// Stops consuming, lets in-flight messages finish within the grace period, closes.
    pub async fn stop(&mut self, name: &str) {
        if let Some(running) = self.running.remove(name) {
            running.stop.drain();
            let limit = running.grace + CLOSE_LIMIT;
            running.ended(name, limit).await;
            self.forget(name);
            tracing::info!(pipeline = name, "pipeline stopped");
        }
    }

    /// Stops every pipeline at once, each draining within the grace period.
    pub async fn stop_all(&mut self) {
        for running in self.running.values() {
            running.stop.drain();
        }
        for name in self.running.keys().cloned().collect::<Vec<_>>() {
            self.stop(&name).await;
        }
    }

    /// Ends every pipeline at once, cancelling the messages in flight (their channels are
    /// gone: the broker redelivers them); nothing more is published for them.
    pub async fn abort_all(&mut self) {
        for (name, running) in std::mem::take(&mut self.running) {
            running.stop.abort();
            running.ended(&name, CLOSE_LIMIT).await;
            self.forget(&name);
        }
    }

    fn forget(&self, name: &str) {
        lock(&self.heartbeats).remove(name);
        lock(&self.publishers).remove(name);
    }

    /// A pipeline failed (its task ended with `error`): its in-flight messages are cancelled
    /// (they are redelivered), and it is restarted alone after its backoff. False if no such
    /// pipeline runs (a stale report).
    pub async fn failed(&mut self, name: &str, error: &anyhow::Error) -> bool {
        let Some(running) = self.running.remove(name) else {
            return false;
        };
        running.stop.abort();
        let healthy = running.started.elapsed() >= RESTART_HEALTHY_AFTER;
        running.ended(name, CLOSE_LIMIT).await;
        self.forget(name);
        if healthy {
            self.backoff.remove(name);
        }
        let wait = self.schedule_restart(name);
        tracing::error!(
            pipeline = name,
            error = %format!("{error:#}"),
            restart_in_ms = wait.as_millis() as u64,
            "pipeline lost its channel; restarting it alone"
        );
        true
    }

    /// Asks for a restart of `name` after its backoff, which doubles for the next time.
    pub fn schedule_restart(&mut self, name: &str) -> Duration {
        let delay = self.backoff.entry(name.to_owned()).or_insert(RESTART_MIN);
        let wait = jitter(*delay);
        *delay = (*delay * 2).min(RESTART_MAX);
        let restarts = self.restarts.clone();
        let name = name.to_owned();
        tokio::spawn(async move {
            tokio::time::sleep(wait).await;
            let _ = restarts.send(name);
        });
        wait
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pipeline_task_that_never_ends_is_aborted_past_the_limit() {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let on_drop = DropFlag(dropped.clone());
        let stuck = tokio::spawn(async move {
            let _held = on_drop;
            std::future::pending::<()>().await;
        });
        let limit = Duration::from_millis(50);
        assert!(!ended_within(stuck, "stuck", limit).await);
        assert!(
            dropped.load(std::sync::atomic::Ordering::SeqCst),
            "the stuck task still holds what it owned"
        );
        let quick = tokio::spawn(async {});
        assert!(ended_within(quick, "quick", limit).await);
    }

    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}
