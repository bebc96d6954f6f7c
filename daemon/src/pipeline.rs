//! One pipeline: consume a queue, hand each delivery to the plugin, publish what it asks, settle once.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Acker, Consumer, Publisher};
use crate::config::OnError;
use crate::config::PipelineSettings;
use crate::decision::{RetryPolicy, Settlement, decide, over_limit};
use crate::message::{Message, Verdict};
use crate::metrics::{Heartbeat, PipelineMetrics};
use crate::plugin::Plugin;

/// How often an idle pipeline loop proves it is alive (for the systemd watchdog).
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(1);

/// The current version of a plugin. A reload swaps it; calls in flight keep their `Arc`.
pub type PluginSlot = Arc<ArcSwap<Plugin>>;

/// A running pipeline's parts.
pub struct Pipeline {
    name: Arc<str>,
    settings: PipelineSettings,
    plugin: PluginSlot,
    publisher: Publisher,
    metrics: PipelineMetrics,
    heartbeat: Heartbeat,
    epoch: Instant,
    retry: RetryPolicy,
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
            metrics,
            heartbeat,
            epoch,
        }
    }

    fn beat(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.heartbeat.store(now, Ordering::Relaxed);
    }

    /// Consumes until `stop` is cancelled, then lets in-flight messages finish and settle
    /// within `grace`. Messages not settled by then return to the queue when the channel closes.
    ///
    /// Returns an error if the consumer fails (channel or connection lost, consumer cancelled
    /// by the broker); unsettled messages are then redelivered by the broker.
    pub async fn run(
        self,
        mut consumer: Consumer,
        stop: CancellationToken,
        grace: Duration,
    ) -> anyhow::Result<()> {
        let permits = Arc::new(Semaphore::new(self.settings.concurrency.get()));
        let tasks = TaskTracker::new();
        let this = Arc::new(self);
        let mut beat = tokio::time::interval(HEARTBEAT_INTERVAL);
        let result = loop {
            let permit = tokio::select! {
                biased;
                () = stop.cancelled() => break Ok(()),
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
                    () = stop.cancelled() => break None,
                    _ = beat.tick() => this.beat(),
                    next = consumer.next() => break Some(next),
                }
            };
            let Some(next) = next else { break Ok(()) };
            match next {
                Some(Ok((message, acker))) => {
                    let this = this.clone();
                    tasks.spawn(async move {
                        this.process(message, acker).await;
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
        tasks.close();
        // On a dead channel nothing in flight can be settled any more: do not wait for it.
        let grace = if result.is_ok() {
            grace
        } else {
            Duration::ZERO
        };
        // Draining is alive too: keep beating (a long grace period must not trip the watchdog).
        let drained = async {
            let wait = tasks.wait();
            tokio::pin!(wait);
            loop {
                tokio::select! {
                    () = &mut wait => break,
                    _ = beat.tick() => this.beat(),
                }
            }
        };
        if tokio::time::timeout(grace, drained).await.is_err() && result.is_ok() {
            tracing::warn!(
                pipeline = &*this.name,
                grace_ms = grace.as_millis() as u64,
                "in-flight messages did not finish within the grace period; they return to the queue"
            );
        }
        consumer.close().await;
        result
    }

    /// The path of one message: plugin → decision → publishes (confirmed) → settlement.
    async fn process(&self, message: Message, acker: Acker) {
        let metrics = &self.metrics;
        metrics.in_flight.inc();
        if message.redelivered {
            metrics.redeliveries.inc();
        }
        let plugin = self.plugin.load_full();
        let on_error = self.settings.on_error;
        if let Some(decision) = over_limit(&self.retry, &message) {
            tracing::warn!(
                pipeline = &*self.name,
                message_id = message.properties.message_id.as_deref().unwrap_or("-"),
                deliveries = crate::decision::attempt(&message),
                reason = "delivery limit",
                "message over max_deliveries: rejected (dead-lettered) without calling the plugin"
            );
            metrics.verdict(decision.kind);
            self.settle(acker, decision.settlement, None).await;
            return;
        }
        let started = Instant::now();
        let result = plugin.handle(&self.name, &message).await;
        metrics
            .handle_seconds
            .observe(started.elapsed().as_secs_f64());
        let message_id = message.properties.message_id.clone();
        if let Err(error) = &result {
            metrics.failure(error);
            tracing::warn!(
                pipeline = &*self.name,
                plugin = plugin.name(),
                version = plugin.version(),
                message_id = message_id.as_deref().unwrap_or("-"),
                on_error = ?on_error,
                %error,
                "plugin failed on a message"
            );
        }
        let requeue_asked = match &result {
            Ok(outcome) => matches!(outcome.verdict, Verdict::Requeue),
            Err(_) => on_error == OnError::Requeue,
        };
        let last_delivery = self
            .retry
            .max_deliveries
            .is_some_and(|max| crate::decision::attempt(&message) >= max.get());
        let decision = decide(result, message, on_error, &self.retry);
        if requeue_asked && last_delivery {
            tracing::warn!(
                pipeline = &*self.name,
                message_id = message_id.as_deref().unwrap_or("-"),
                reason = "delivery limit",
                "last allowed delivery: rejected (dead-lettered) instead of requeued"
            );
        }
        metrics.verdict(decision.kind);
        let mut settlement = decision.settlement;
        if let Err(error) = self.publisher.publish_all(&decision.publishes).await {
            metrics.publish_failures.inc();
            settlement = Settlement::on_error(on_error);
            tracing::warn!(
                pipeline = &*self.name,
                plugin = plugin.name(),
                version = plugin.version(),
                message_id = message_id.as_deref().unwrap_or("-"),
                verdict = decision.kind.as_str(),
                on_error = ?on_error,
                %error,
                "publish failed; the message is not acked"
            );
        }
        self.settle(acker, settlement, message_id.as_deref()).await;
    }

    async fn settle(&self, acker: Acker, settlement: Settlement, message_id: Option<&str>) {
        let settled = acker.settle(settlement).await;
        self.metrics.in_flight.dec();
        match settled {
            Ok(true) => {}
            Ok(false) => {
                self.metrics.stale_settlements.inc();
                tracing::warn!(
                    pipeline = &*self.name,
                    message_id = message_id.unwrap_or("-"),
                    "channel closed before the message was settled; the broker will redeliver it"
                );
            }
            Err(error) => tracing::warn!(
                pipeline = &*self.name,
                message_id = message_id.unwrap_or("-"),
                %error,
                "settling failed; the broker will redeliver the message"
            ),
        }
    }
}
