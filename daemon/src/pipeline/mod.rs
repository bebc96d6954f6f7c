//! One pipeline: consume a queue, hand each delivery to the plugin, publish what it asks, settle once.

mod dead_letter;
mod process;
mod validate;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use tokio::sync::Semaphore;
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::broker::{Acker, Consumer, Publisher};
use crate::config::PipelineSettings;
use crate::decision::RetryPolicy;
use crate::message::Message;
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
        // Ticks missed while the loop took messages without looking at the timer are not made
        // up in a burst.
        beat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // Waited on once for the whole loop, not once per message.
        let drain = stop.drain.cancelled();
        tokio::pin!(drain);
        let mut inline = Inline::new();
        let mut streak = 0;
        let result = loop {
            // Under load a slot is free and a delivery waits: take them without polling the
            // stop token and the heartbeat timer for each message; those are looked at every
            // FAST_STREAK messages, and whenever the slot or the delivery is not there yet.
            let fast = streak < FAST_STREAK;
            streak = if fast { streak + 1 } else { 0 };
            // A free slot. Its permit is taken only by a message that becomes a task (one done
            // in the loop is over before the next is taken), and only this loop takes permits,
            // so the slot is still free then.
            if !(fast && permits.available_permits() > 0) {
                tokio::select! {
                    biased;
                    () = &mut drain => break Ok(()),
                    _ = beat.tick() => {
                        this.beat();
                        continue;
                    }
                    permit = permits.acquire() => if permit.is_err() { break Ok(()) },
                }
            }
            let next = match fast.then(|| consumer.next().now_or_never()) {
                Some(Some(next)) => Some(next),
                _ => loop {
                    tokio::select! {
                        biased;
                        () = &mut drain => break None,
                        _ = beat.tick() => this.beat(),
                        next = consumer.next() => break Some(next),
                    }
                },
            };
            let Some(next) = next else { break Ok(()) };
            match next {
                Some(Ok((message, acker))) => {
                    this.start(message, acker, &mut inline, &permits, &tasks, &cancel)
                        .await;
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

    /// Starts one message: its first step in the loop (see [`Inline`]), and what is left of
    /// it, if anything, as a task of its own that holds one of `permits`.
    async fn start(
        self: &Arc<Self>,
        message: Box<Message>,
        acker: Acker,
        inline: &mut Inline,
        permits: &Arc<Semaphore>,
        tasks: &TaskTracker,
        cancel: &CancellationToken,
    ) {
        // Boxed: the message's future is about 2 KiB (the plugin call and the settlement; the
        // rarer steps are boxed inside it), and a future is moved whole into a task and again
        // at each stage change of the task; a box moves as a pointer.
        let mut work = Box::pin(self.clone().process(message, acker));
        if inline.try_now() {
            let started = Instant::now();
            let polled =
                std::future::poll_fn(|cx| std::task::Poll::Ready(work.as_mut().poll(cx))).await;
            inline.took(started.elapsed());
            if polled.is_ready() {
                return;
            }
        }
        // The semaphore is never closed.
        let Ok(permit) = permits.clone().acquire_owned().await else {
            return;
        };
        let cancel = cancel.clone();
        tasks.spawn(async move {
            // The message first: a message done in one go never waits on the token (which
            // takes a lock to wait on, and another to stop waiting).
            tokio::select! {
                biased;
                () = work => {}
                () = cancel.cancelled() => {}
            }
            drop(permit);
        });
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

/// How many messages in a row the loop takes without looking at its stop token and heartbeat
/// timer, while a slot and a delivery are there at once (so a stop is seen within as many).
const FAST_STREAK: u32 = 64;

/// The longest first step of a message that is run in the pipeline's loop rather than in a task
/// of its own. See [`Inline`].
const INLINE_MAX: Duration = Duration::from_micros(50);

/// Overrides [`INLINE_MAX`], in microseconds: for `daemon/benches/profile.sh`, whose callgrind
/// runs every step some 50 times slower than it runs natively.
pub const INLINE_MAX_ENV: &str = "WARREN_INLINE_MAX_US";

/// How many first steps in the loop are judged together: a pipeline spawns its messages for
/// [`INLINE_BACKOFF`] once more than half of these took longer than the limit. One slow step
/// is not enough: the thread may have been preempted (the broker shares the cores).
const INLINE_SAMPLE: u32 = 32;

/// How long a pipeline whose first steps in the loop were mostly slow gives each message a
/// task of its own before it tries the loop again.
const INLINE_BACKOFF: Duration = Duration::from_secs(1);

/// Whether a message is run in the pipeline's loop first.
///
/// Most messages are finished in one step: the plugin returns without waiting on anything and
/// a coalesced ack is handed over. Run in the loop, such a message costs no task (spawn,
/// scheduling, a move of its future, a wake-up on another thread); only a message that waits
/// (a timer, an HTTP call, a publisher confirm, an ack on its own) becomes a task, from where
/// it stopped. First steps longer than [`INLINE_MAX`] (a plugin that computes) would hold the
/// loop and keep messages from running side by side on other cores: when most of a sample of
/// [`INLINE_SAMPLE`] are, the pipeline spawns every message for [`INLINE_BACKOFF`]. A guest
/// computing longer than an epoch tick yields anyway, so no first step holds the loop for more
/// than a tick.
#[derive(Debug)]
struct Inline {
    /// The longest first step that counts as fast.
    max: Duration,
    /// First steps in the current sample, and how many of them were slow.
    steps: u32,
    slow: u32,
    /// While set and in the future: spawn every message.
    spawn_until: Option<Instant>,
}

impl Inline {
    fn new() -> Self {
        let max = std::env::var(INLINE_MAX_ENV)
            .ok()
            .and_then(|us| us.parse().ok())
            .map_or(INLINE_MAX, Duration::from_micros);
        Self {
            max,
            steps: 0,
            slow: 0,
            spawn_until: None,
        }
    }

    /// Whether the next message is to be run in the loop first.
    fn try_now(&mut self) -> bool {
        match self.spawn_until {
            None => true,
            Some(until) if Instant::now() >= until => {
                self.spawn_until = None;
                true
            }
            Some(_) => false,
        }
    }

    /// Records how long a message's first step in the loop took.
    fn took(&mut self, elapsed: Duration) {
        self.steps += 1;
        self.slow += u32::from(elapsed > self.max);
        if self.steps < INLINE_SAMPLE {
            return;
        }
        if self.slow * 2 > INLINE_SAMPLE {
            self.spawn_until = Some(Instant::now() + INLINE_BACKOFF);
        }
        (self.steps, self.slow) = (0, 0);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn inline() -> Inline {
        Inline {
            max: INLINE_MAX,
            steps: 0,
            slow: 0,
            spawn_until: None,
        }
    }

    #[test]
    fn fast_first_steps_keep_messages_in_the_loop() {
        let mut inline = inline();
        for _ in 0..10 * INLINE_SAMPLE {
            assert!(inline.try_now());
            inline.took(INLINE_MAX / 10);
        }
    }

    #[test]
    fn a_few_slow_steps_do_not_stop_the_loop() {
        // A preempted thread makes a fast step look slow now and then.
        let mut inline = inline();
        for i in 0..4 * INLINE_SAMPLE {
            assert!(inline.try_now(), "step {i}");
            let slow = i % INLINE_SAMPLE < INLINE_SAMPLE / 2;
            inline.took(if slow {
                INLINE_MAX * 100
            } else {
                INLINE_MAX / 10
            });
        }
    }

    #[test]
    fn mostly_slow_steps_spawn_every_message_for_a_while() {
        let mut inline = inline();
        for _ in 0..INLINE_SAMPLE {
            assert!(inline.try_now());
            inline.took(INLINE_MAX * 2);
        }
        assert!(
            !inline.try_now(),
            "a computing plugin's messages run side by side"
        );
        inline.spawn_until = Some(Instant::now() - Duration::from_millis(1));
        assert!(
            inline.try_now(),
            "the loop is tried again after the back-off"
        );
        assert!(inline.spawn_until.is_none());
    }
}
