//! The path of one message through a pipeline: the delivery limit, the plugin, the checks of
//! what it publishes, the publishes (confirmed), then exactly one settlement — a dead-letter
//! included, and whatever happens on the way, a panic included.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use futures_util::FutureExt;

use super::Pipeline;
use super::dead_letter::dead_letter_copy;
use super::validate::{check_plugin_publishes, check_properties};
use crate::broker::{Acker, PublishError, Settled, Settlement};
use crate::config::DeadLetter;
use crate::decision::{Decision, Fate, Kind, Reason, attempt, counted_copy, decide};
use crate::message::{Message, Outgoing};
use crate::plugin::Plugin;
use crate::trace::MessageTrace;

impl Pipeline {
    /// The path of one message: plugin → decision → publishes (confirmed) → settlement; its
    /// future owns the pipeline, so that it can start in the pipeline's loop and go on as a
    /// task of its own.
    ///
    /// Whatever happens on the way — a panic included — the delivery is settled exactly once
    /// and its concurrency slot freed.
    ///
    /// The future is boxed and lives as long as the message: the steps few messages take
    /// (counting a redelivery, dead-lettering, publishing) are boxed only when taken, so that
    /// the future every message allocates, builds and moves stays small.
    pub(super) async fn process(self: Arc<Self>, mut message: Box<Message>, acker: Acker) {
        let _in_flight = self.metrics.arrived();
        if message.redelivered {
            self.metrics.redeliveries.inc();
        }
        let plugin = self.plugin.load_full();
        let trace = self.tracer.start(&self.name, &plugin, &message);
        let fate = match AssertUnwindSafe(self.decide_and_publish(&plugin, &mut message, &trace))
            .catch_unwind()
            .await
        {
            Ok(fate) => fate,
            Err(panic) => {
                let text = panic_text(panic.as_ref());
                self.metrics.panicked(message_id(&message), &text);
                tracing::error!(
                    pipeline = &*self.name,
                    message_id = message_id(&message),
                    on_error = ?self.settings.on_error,
                    panic = text,
                    "warren failed on a message (a bug: please report it); on_error applies"
                );
                let reason = Reason::Panic(text);
                trace.failed(&reason);
                Fate::on_error(self.settings.on_error, reason)
            }
        };
        let settlement = match fate {
            Fate::Ack => Settlement::Ack,
            Fate::Requeue => Settlement::Requeue,
            Fate::DeadLetter(reason) => {
                Box::pin(self.dead_letter(&plugin, &message, reason, &trace)).await
            }
        };
        let step = trace.settle_step(settlement);
        self.settle(acker, settlement, &message).await;
        drop(step);
    }

    /// Everything up to the settlement: the delivery limit, the plugin, the checks of what it
    /// publishes, and the publishes, confirmed.
    async fn decide_and_publish(
        &self,
        plugin: &Plugin,
        message: &mut Box<Message>,
        trace: &MessageTrace<'_>,
    ) -> Fate {
        let metrics = &self.metrics;
        let on_error = self.settings.on_error;
        if message.redelivered && !self.settings.quorum && self.retry.max_deliveries.is_some() {
            return Box::pin(self.count_redelivery(message, trace)).await;
        }
        if let Some(reason) = self.retry.exceeded(attempt(message)) {
            tracing::warn!(
                pipeline = &*self.name,
                message_id = message_id(message),
                %reason,
                "message over max_deliveries: dead-lettered without calling the plugin"
            );
            metrics.verdict(Kind::Error);
            return Fate::DeadLetter(reason);
        }
        let started = Instant::now();
        let step = trace.step("handle");
        let result = plugin
            .handle_traced(&self.name, message, trace.trace_id())
            .await;
        step.end(result.as_ref().err());
        metrics
            .handle_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Err(error) = &result {
            trace.failed(&format_args!("plugin failed: {error}"));
            metrics.failure(error, message_id(message));
            tracing::warn!(
                pipeline = &*self.name,
                plugin = plugin.name(),
                version = plugin.version(),
                message_id = message_id(message),
                on_error = ?on_error,
                %error,
                "plugin failed on a message"
            );
        }
        let mut decision = decide(result, message, on_error, &self.retry);
        metrics.verdict(decision.kind);
        trace.verdict(decision.kind);
        if let Fate::DeadLetter(reason @ Reason::DeliveryLimit { .. }) = &decision.fate {
            tracing::warn!(
                pipeline = &*self.name,
                message_id = message_id(message),
                %reason,
                "last allowed delivery: dead-lettered instead of requeued"
            );
        }
        if let Err(fate) = self.check_publishes(plugin, &mut decision, message, trace) {
            return fate;
        }
        if decision.publishes.is_empty() {
            return decision.fate;
        }
        let started = Instant::now();
        let published = Box::pin(trace.publish_all(&self.publisher, &mut decision.publishes)).await;
        self.metrics
            .confirm_seconds
            .observe(started.elapsed().as_secs_f64());
        match published {
            Ok(()) => decision.fate,
            Err(error) => self.publish_failed(plugin, message, decision.kind, error, trace),
        }
    }

    /// Checks what the plugin asked to publish (its rules and AMQP's) and makes warren's own
    /// publishes safe; an invalid publish is the fate `on_error` gives, and nothing is
    /// published for the message.
    fn check_publishes(
        &self,
        plugin: &Plugin,
        decision: &mut Decision,
        message: &Message,
        trace: &MessageTrace<'_>,
    ) -> Result<(), Fate> {
        let (from_plugin, own) = decision.publishes.split_at_mut(decision.from_plugin);
        let checked = check_plugin_publishes(from_plugin, plugin.publish_rules(), &self.user)
            .and_then(|()| {
                own.iter_mut()
                    .try_for_each(|m| check_properties(&mut m.properties, &self.user))
            });
        let Err(invalid) = checked else {
            return Ok(());
        };
        self.metrics.invalid_publish(message_id(message), &invalid);
        tracing::warn!(
            pipeline = &*self.name,
            plugin = plugin.name(),
            version = plugin.version(),
            message_id = message_id(message),
            on_error = ?self.settings.on_error,
            error = %invalid,
            "the plugin asked to publish an invalid message; nothing is published for this message"
        );
        let reason = Reason::InvalidPublish(invalid.to_string());
        trace.failed(&reason);
        Err(Fate::on_error(self.settings.on_error, reason))
    }

    /// The fate of a message whose publishes failed: back to the queue if the failure is
    /// transient (no confirm, connection lost), `on_error` if the broker refused for good or
    /// the message could not be encoded.
    fn publish_failed(
        &self,
        plugin: &Plugin,
        message: &Message,
        verdict: Kind,
        error: PublishError,
        trace: &MessageTrace<'_>,
    ) -> Fate {
        let on_error = self.settings.on_error;
        self.metrics.publish_failed(message_id(message), &error);
        trace.failed(&format_args!("publish failed: {error}"));
        let fate = if error.is_transient() {
            Fate::Requeue
        } else if let PublishError::Invalid(problem) = &error {
            self.metrics.invalid_publishes.inc();
            Fate::on_error(on_error, Reason::InvalidPublish(problem.clone()))
        } else {
            Fate::on_error(on_error, Reason::PublishRefused(error.to_string()))
        };
        tracing::warn!(
            pipeline = &*self.name,
            plugin = plugin.name(),
            version = plugin.version(),
            message_id = message_id(message),
            verdict = verdict.as_str(),
            then = if fate == Fate::Requeue { "requeue" } else { "on_error" },
            %error,
            "publish failed; the message is not acked"
        );
        fate
    }

    /// A classic queue does not count deliveries: a message back after a crash or a lost
    /// channel (`redelivered`) has its delivery counted in [`DELIVERIES_HEADER`] by a copy
    /// published to the queue before it reaches the plugin again (the copy confirmed, then
    /// the delivery acked). So a message that kills the process is dead-lettered after
    /// `max_deliveries` instead of crashing it for ever.
    ///
    /// [`DELIVERIES_HEADER`]: crate::decision::DELIVERIES_HEADER
    async fn count_redelivery(&self, message: &Message, trace: &MessageTrace<'_>) -> Fate {
        // The broker delivered it once more than the header says.
        let delivery = attempt(message).saturating_add(1);
        if let Some(reason) = self.retry.exceeded(delivery) {
            tracing::warn!(
                pipeline = &*self.name,
                message_id = message_id(message),
                %reason,
                "redelivered message over max_deliveries: dead-lettered without calling the plugin"
            );
            self.metrics.verdict(Kind::Error);
            return Fate::DeadLetter(reason);
        }
        let copy = counted_copy(message, self.settings.queue.clone(), delivery - 1);
        match self.publish_copy(copy, trace).await {
            Ok(()) => {
                tracing::debug!(
                    pipeline = &*self.name,
                    message_id = message_id(message),
                    delivery,
                    "redelivery counted; the message is back in the queue"
                );
                Fate::Ack
            }
            Err(error) => {
                self.metrics.publish_failed(message_id(message), &error);
                tracing::warn!(
                    pipeline = &*self.name,
                    message_id = message_id(message),
                    %error,
                    "could not count a redelivery; the message goes back to the queue"
                );
                Fate::Requeue
            }
        }
    }

    /// Sends a message that is rejected for good where the pipeline says: its queue's
    /// dead-letter exchange (`basic.reject`), warren's `<queue>.dead` (a confirmed copy with
    /// the reason, then an ack), or nowhere if the pipeline opted out. If the copy cannot be
    /// published, the message goes back to the queue: it is never dropped unasked.
    async fn dead_letter(
        &self,
        plugin: &Plugin,
        message: &Message,
        reason: Reason,
        trace: &MessageTrace<'_>,
    ) -> Settlement {
        self.metrics.dead_lettered(&reason, message_id(message));
        if reason != Reason::Rejected {
            trace.failed(&reason);
        }
        let DeadLetter::Queue(queue) = &self.settings.dead_letter else {
            return Settlement::Reject;
        };
        let copy = dead_letter_copy(message, queue, &reason, &self.name, plugin.version());
        match AssertUnwindSafe(self.publish_copy(copy, trace))
            .catch_unwind()
            .await
        {
            Ok(Ok(())) => Settlement::Ack,
            Ok(Err(error)) => {
                self.metrics.publish_failed(message_id(message), &error);
                tracing::error!(
                    pipeline = &*self.name,
                    message_id = message_id(message),
                    dead_letter_queue = queue,
                    %reason,
                    %error,
                    "could not move the message to its dead-letter queue; it goes back to the queue"
                );
                Settlement::Requeue
            }
            Err(panic) => {
                let text = panic_text(panic.as_ref());
                self.metrics.panicked(message_id(message), &text);
                tracing::error!(
                    pipeline = &*self.name,
                    message_id = message_id(message),
                    panic = text,
                    "warren failed dead-lettering a message (a bug: please report it); it goes back to the queue"
                );
                Settlement::Requeue
            }
        }
    }

    /// Publishes a copy warren makes of a delivered message (a counted redelivery, a
    /// dead-letter), its properties made safe to publish first (a foreign `user_id` removed).
    async fn publish_copy(
        &self,
        mut copy: Outgoing,
        trace: &MessageTrace<'_>,
    ) -> Result<(), String> {
        check_properties(&mut copy.properties, &self.user).map_err(|e| e.to_string())?;
        let publish = trace.publish(&self.publisher, copy);
        publish.await.map_err(|e| e.to_string())
    }

    async fn settle(&self, acker: Acker, settlement: Settlement, message: &Message) {
        let settled = acker.settle(settlement).await;
        match settled {
            Ok(Settled::Sent) => {}
            Ok(Settled::ChannelGone) => {
                self.metrics.stale_settlements.inc();
                tracing::warn!(
                    pipeline = &*self.name,
                    message_id = message_id(message),
                    "channel closed before the message was settled; the broker will redeliver it"
                );
            }
            Err(error) => {
                self.metrics.settle_failures.inc();
                tracing::warn!(
                    pipeline = &*self.name,
                    message_id = message_id(message),
                    %error,
                    "settling failed; the broker will redeliver the message"
                );
            }
        }
    }
}

fn message_id(message: &Message) -> &str {
    message.properties.message_id.as_deref().unwrap_or("-")
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".to_owned())
}
