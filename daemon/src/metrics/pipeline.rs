//! One pipeline's metric handles, resolved once when the pipeline starts, so that the
//! message path only increments counters it already holds.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use crate::decision::Kind;

/// One pipeline's metric handles.
#[derive(Clone)]
pub struct PipelineMetrics {
    pub(super) handled: Counter,
    pub(super) verdicts: [Counter; 5],
    pub(super) failures: [Counter; 4],
    /// Latency of `handle`.
    pub handle_seconds: Histogram,
    /// Messages received and not settled.
    pub in_flight: Gauge,
    /// Publishes not confirmed.
    pub publish_failures: Counter,
    /// Settlements on a dead channel.
    pub stale_settlements: Counter,
    /// Settlements that failed with an error.
    pub settle_failures: Counter,
    /// Time from publishing a message's publishes to the broker confirming all of them.
    pub confirm_seconds: Histogram,
    /// Redelivered messages received.
    pub redeliveries: Counter,
    /// Messages rejected for good, by [`crate::decision::Reason::index`].
    pub dead_lettered: [Counter; 6],
    /// Messages whose plugin asked to publish something invalid.
    pub invalid_publishes: Counter,
    /// Messages on which warren panicked.
    pub panics: Counter,
}

impl PipelineMetrics {
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

    /// Counts one plugin failure.
    pub fn failure(&self, error: &crate::plugin::PluginError) {
        use crate::plugin::PluginError;
        let i = match error {
            PluginError::Trap(_) => 0,
            PluginError::Timeout(_) => 1,
            PluginError::TooLarge { .. } => 2,
            PluginError::Start(_) => 3,
        };
        self.failures[i].inc();
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
