//! One pipeline: consume a queue, hand each delivery to the plugin, publish what it asks, settle once.

mod dead_letter;
mod process;
mod validate;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Consumer, Publisher};
use crate::config::PipelineSettings;
use crate::decision::RetryPolicy;
use crate::metrics::{Heartbeat, PipelineMetrics};
use crate::plugin::registry::PluginSlot;
use crate::trace::Tracer;

pub use dead_letter::{
    DEAD_LETTER_HEADERS, PIPELINE_HEADER, PLUGIN_VERSION_HEADER, REASON_HEADER, TIME_HEADER,
};
pub use validate::{InvalidPublish, check_plugin_publishes};

/// How often an idle pipeline loop proves it is alive (for the systemd watchdog).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// A running pipeline's parts.
pub struct Pipeline {
    name: Arc<str>,
    settings: PipelineSettings,
    plugin: PluginSlot,
    publisher: Publisher,
    /// The broker user warren publishes as (the only `user_id` its messages may carry).
    user: Arc<str>,
    metrics: PipelineMetrics,
    heartbeat: Heartbeat,
    epoch: Instant,
    retry: RetryPolicy,
    tracer: Tracer,
}

impl Pipeline {
    /// A pipeline that runs `settings` with `plugin`, publishing through `publisher`.
    ///
    /// The loop stores the milliseconds since `epoch` in `heartbeat` at least every
    /// [`HEARTBEAT_INTERVAL`] while it runs.
    pub fn new(
        settings: PipelineSettings,
        plugin: PluginSlot,
        publisher: Publisher,
        user: Arc<str>,
        metrics: PipelineMetrics,
        heartbeat: Heartbeat,
        epoch: Instant,
    ) -> Self {
        let retry = RetryPolicy {
            max_deliveries: settings.max_deliveries,
            queue: settings.queue.clone(),
            retry_queues: settings.retry_queues.clone(),
        };
        Self {
            retry,
            name: Arc::from(settings.name.as_str()),
            settings,
            plugin,
            publisher,
            user,
            metrics,
            heartbeat,
            epoch,
            tracer: Tracer::off(),
        }
    }

    /// The pipeline, its messages traced by `tracer`.
    pub fn traced(self, tracer: Tracer) -> Self {
        Self { tracer, ..self }
    }

    fn beat(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat.store(now, Ordering::Relaxed);
    }

    /// Consumes until told to stop. On [`Stop::drain`] the messages in flight get `grace`
    /// to finish and settle; those not settled by then return to the queue when the channel
    /// closes. On [`Stop::abort`], or when the consumer fails, they are cancelled at once:
    /// their deliveries cannot be settled any more (the broker redelivers them), so nothing
    /// more is published for them.
    ///
    /// Returns an error if the consumer fails (channel or connection lost, consumer cancelled
    /// by the broker).
    pub async fn run(
        self,
        mut consumer: Consumer,
        stop: Stop,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.get()));
        let tasks = TaskTracker::new();
        let cancel = stop.abort.child_token();
        let this = Arc::new(self);
        let mut beat = tokio::time::interval(HEARTBEAT_INTERVAL);
        // Waited on once for the whole loop, not once per message.
        let drain = stop.drain.cancelled();
        tokio::pin!(drain);
        let result = loop {
            let permit = tokio::select! {
                biased;
                () = &mut drain => break Ok(()),
                _ = beat.tick() => {
                    this.beat();
                    continue;
                }
                permit = permits.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => break Ok(()),
                },
            };
            let next = loop {
                tokio::select! {
                    biased;
                    () = &mut drain => break None,
                    _ = beat.tick() => this.beat(),
                    next = consumer.next() => break Some(next),
                }
            };
            let Some(next) = next else { break Ok(()) };
            match next {
                Some(Ok((message, acker))) => {
                    let (this, cancel) = (this.clone(), cancel.clone());
                    tasks.spawn(async move {
                        // Boxed: the message's future is several KiB (the plugin call, the
                        // publishes, the settlement), and a task's future is moved whole into
                        // the task and again at each stage change; a box moves as a pointer.
                        let work = Box::pin(this.process(message, acker));
                        // The message first: a message done in one go never waits on the
                        // token (which takes a lock to wait on, and another to stop waiting).
                        tokio::select! {
                            biased;
                            () = work => {}
                            () = cancel.cancelled() => {}
                        }
                        drop(permit);
                    });
                }
                Some(Err(e)) => break Err(e),
                None => {
                    break Err(anyhow::anyhow!(
                        "pipeline {}: the broker cancelled the consumer on queue {:?} (queue deleted?)",
                        this.name,
                        this.settings.queue
                    ));
                }
            }
        };
        consumer.cancel().await;
        let cancel_now = result.is_err() || stop.abort.is_cancelled();
        this.finish(tasks, cancel, cancel_now, grace, &mut beat)
            .await;
        consumer.close().await;
        this.publisher.close().await;
        result
    }

    /// Lets the messages in flight finish within `grace` — or, if `cancel_now` (nothing in
    /// flight can be settled on a dead channel), cancels them at once. Whatever still runs at
    /// the end is cancelled: it publishes nothing more.
    async fn finish(
        &self,
        tasks: TaskTracker,
        cancel: CancellationToken,
        cancel_now: bool,
        grace: Duration,
        beat: &mut tokio::time::Interval,
    ) {
        tasks.close();
        let grace = if cancel_now {
            cancel.cancel();
            CANCEL_WAIT
        } else {
            grace
        };
        // Draining is alive too: keep beating (a long grace period must not trip the watchdog).
        let drained = async {
            let wait = tasks.wait();
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    _ = beat.tick() => self.beat(),
                }
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() {
            if !cancel_now {
                tracing::warn!(
                    pipeline = &*self.name,
                    grace_ms = grace.as_millis() as u64,
                    "in-flight messages did not finish within the grace period; they return to the queue"
                );
            }
            cancel.cancel();
        }
    }
}

/// How long cancelled messages get to let go (a guest computing stops at its next epoch tick).
const CANCEL_WAIT: Duration = Duration::from_secs(1);

/// How a pipeline is told to stop; clones share it.
#[derive(Debug, Clone, Default)]
pub struct Stop {
    drain: CancellationToken,
    abort: CancellationToken,
}

impl Stop {
    /// Stop consuming; messages in flight get the grace period to finish and settle.
    pub fn drain(&self) {
        self.drain.cancel();
    }

    /// Stop consuming and cancel the messages in flight now.
    pub fn abort(&self) {
        self.abort.cancel();
        self.drain.cancel();
    }
}
