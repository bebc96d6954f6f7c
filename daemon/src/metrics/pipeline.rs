//! One pipeline's metric handles, resolved once when the pipeline starts, so that the
//! message path only increments counters it already holds.

use std::fmt::Display;
use std::sync::Arc;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{Failure, RecentFailures};
use crate::decision::{Kind, Reason};

/// One pipeline's metric handles, and the daemon's ring of recent failures: a message that
/// fails is counted and recorded there in one call.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub(super) name: Arc<str>,
    pub(super) recent: Arc<RecentFailures>,
    pub(super) received: Counter,
    pub(super) handled: Counter,
    pub(super) verdicts: [Counter; 5],
    pub(super) failures: [Counter; 4],
    /// Latency of `handle`.
    pub handle_seconds: Histogram,
    /// Messages received and not settled.
    pub in_flight: Gauge,
    /// Publishes not confirmed.
    pub(super) publish_failures: Counter,
    /// Settlements on a dead channel.
    pub stale_settlements: Counter,
    /// Settlements that failed with an error.
    pub settle_failures: Counter,
    /// Time from publishing a message's publishes to the broker confirming all of them.
    pub confirm_seconds: Histogram,
    /// Redelivered messages received.
    pub redeliveries: Counter,
    /// Messages rejected for good, by [`crate::decision::Reason::index`].
    pub(super) dead_lettered: [Counter; 6],
    /// Messages whose plugin asked to publish something invalid.
    pub invalid_publishes: Counter,
    /// Messages on which warren panicked.
    pub(super) panics: Counter,
}

impl PipelineMetrics {
    /// Counts one message received; it counts as in flight while the guard lives.
    pub fn arrived(&self) -> InFlight {
        self.received.inc();
        InFlight::new(&self.in_flight)
    }

    /// Records a failed message in the ring of recent failures.
    fn record(&self, message_id: &str, reason: impl Display) {
        self.recent
            .push(Failure::now(&self.name, message_id, reason));
    }

    /// Counts one message's verdict.
    pub fn verdict(&self, kind: Kind) {
        let i = match kind {
            Kind::Ack => 0,
            Kind::Reject => 1,
            Kind::Requeue => 2,
            Kind::Republish => 3,
            Kind::Error => 4,
        };
        self.verdicts[i].inc();
        self.handled.inc();
    }

    /// Counts one plugin failure, on the message `message_id`, and records it.
    pub fn failure(&self, error: &crate::plugin::PluginError, message_id: &str) {
        use crate::plugin::PluginError;
        let i = match error {
            PluginError::Trap(_) => 0,
            PluginError::Timeout(_) => 1,
            PluginError::TooLarge { .. } => 2,
            PluginError::Start(_) => 3,
        };
        self.failures[i].inc();
        self.record(message_id, error);
    }

    /// Counts and records a message whose plugin asked to publish something invalid.
    pub fn invalid_publish(&self, message_id: &str, problem: &dyn Display) {
        self.invalid_publishes.inc();
        self.record(message_id, format_args!("invalid publish: {problem}"));
    }

    /// Counts and records a message whose publishes (or warren's copy of it) failed.
    pub fn publish_failed(&self, message_id: &str, error: &dyn Display) {
        self.publish_failures.inc();
        self.record(message_id, format_args!("publish failed: {error}"));
    }

    /// Counts and records a message on which warren panicked.
    pub fn panicked(&self, message_id: &str, panic: &str) {
        self.panics.inc();
        self.record(message_id, Reason::Panic(panic.to_owned()));
    }

    /// Counts a message rejected for good, and records it if nothing failed before: a
    /// delivery limit reached (a plugin's own reject is its verdict, not a failure; the other
    /// reasons were recorded where they happened).
    pub fn dead_lettered(&self, reason: &Reason, message_id: &str) {
        self.dead_lettered[reason.index()].inc();
        if matches!(reason, Reason::DeliveryLimit { .. }) {
            self.record(message_id, reason);
        }
    }
}

/// One message in flight, counted in its pipeline's gauge while it lives (so that a message
/// cancelled half-way is uncounted too).
pub struct InFlight(Gauge);

impl InFlight {
    /// Counts one more message in `gauge`.
    pub fn new(gauge: &Gauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.dec();
    }
}
