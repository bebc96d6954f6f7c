//! The daemon's Prometheus metrics: one registry per daemon, handles resolved once per pipeline.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arc_swap::ArcSwap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::decision::Kind;
use crate::plugin::registry::PluginSlot;

mod counts;
mod egress;
mod help;
mod log_lines;
mod pipeline;
mod recent;
pub use counts::PipelineCounts;
use egress::EgressLabels;
use help::registered;
use log_lines::PluginLabels;
pub use pipeline::{InFlight, PipelineMetrics};
pub use recent::{Failure, RECENT_FAILURES, RECENT_RELOADS, Recent, Reload, now_ms};

/// The reasons a plugin fails on a message, as `warren_plugin_failures_total` labels them, in
/// the order of [`PipelineMetrics::failure`].
pub const PLUGIN_FAILURES: [&str; 4] = ["trap", "timeout", "too_large", "start"];

/// The last failures, shared by every pipeline.
pub type RecentFailures = Recent<Failure, RECENT_FAILURES>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VerdictLabels {
    pipeline: String,
    verdict: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PipelineLabels {
    pipeline: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct FailureLabels {
    pipeline: String,
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConnectionLabels {
    connection: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReloadLabels {
    plugin: String,
    result: &'static str,
}

/// Buckets of the `handle` latency histogram, in seconds: 10 µs up to RabbitMQ's 30-minute
/// consumer timeout, beyond which no `timeout_ms` makes sense.
const HANDLE_BUCKETS: [f64; 19] = [
    0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0,
    60.0, 120.0, 300.0, 600.0, 1800.0,
];

/// Buckets of the publish-confirm latency histogram, in seconds: 100 µs to the 30 s confirm
/// timeout.
const CONFIRM_BUCKETS: [f64; 12] = [
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5, 5.0, 30.0,
];

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BuildLabels {
    version: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PluginVersionLabels {
    plugin: String,
    version: String,
}

/// Every metric the daemon exports.
pub struct Metrics {
    registry: Registry,
    messages: Family<VerdictLabels, Counter>,
    received: Family<PipelineLabels, Counter>,
    handle_seconds: Family<PipelineLabels, Histogram>,
    in_flight: Family<PipelineLabels, Gauge>,
    failures: Family<FailureLabels, Counter>,
    publish_failures: Family<PipelineLabels, Counter>,
    stale_settlements: Family<PipelineLabels, Counter>,
    settle_failures: Family<PipelineLabels, Counter>,
    redeliveries: Family<PipelineLabels, Counter>,
    reloads: Family<ReloadLabels, Counter>,
    compiles: Family<ReloadLabels, Counter>,
    config_reloads: Family<ResultLabels, Counter>,
    recoveries: Family<ConnectionLabels, Counter>,
    dead_lettered: Family<FailureLabels, Counter>,
    invalid_publishes: Family<PipelineLabels, Counter>,
    panics: Family<PipelineLabels, Counter>,
    channel_reopens: Family<PipelineLabels, Counter>,
    channel_open: Family<PipelineLabels, Gauge>,
    pipeline_restarts: Family<PipelineLabels, Counter>,
    build_info: Family<BuildLabels, Gauge>,
    plugin_info: Family<PluginVersionLabels, Gauge>,
    confirm_seconds: Family<PipelineLabels, Histogram>,
    dead_letter_depth: Family<PipelineLabels, Gauge>,
    egress_requests: Family<EgressLabels, Counter>,
    log_lines_dropped: Family<PluginLabels, Counter>,
    failures_log: Arc<RecentFailures>,
    reloads_log: Recent<Reload, RECENT_RELOADS>,
    plugin_instances: Family<PluginLabels, Gauge>,
    /// The plugins, for `plugin_instances`, read when rendering.
    plugins: ArcSwap<Vec<(String, PluginSlot)>>,
    /// Times warren rebuilt its connections itself (lapin gave up, or a channel was closed).
    pub broker_reconnects: Counter,
    /// 1 while the consuming connection is open.
    pub broker_connected: Gauge,
    /// Messages handled by every pipeline together, for status lines.
    pub handled: Counter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every metric registered.
    pub fn new() -> Self {
        let mut r = Registry::with_prefix("warren");
        Self {
            messages: registered(&mut r, "messages", Family::default()),
            received: registered(&mut r, "messages_received", Family::default()),
            handle_seconds: registered(
                &mut r,
                "plugin_handle_seconds",
                Family::<PipelineLabels, Histogram>::new_with_constructor(
                    (|| Histogram::new(HANDLE_BUCKETS)) as fn() -> Histogram,
                ),
            ),
            in_flight: registered(&mut r, "messages_in_flight", Family::default()),
            failures: registered(&mut r, "plugin_failures", Family::default()),
            publish_failures: registered(&mut r, "publish_failures", Family::default()),
            stale_settlements: registered(&mut r, "stale_settlements", Family::default()),
            settle_failures: registered(&mut r, "settle_failures", Family::default()),
            redeliveries: registered(&mut r, "redeliveries", Family::default()),
            reloads: registered(&mut r, "plugin_reloads", Family::default()),
            compiles: registered(&mut r, "plugin_compiles", Family::default()),
            config_reloads: registered(&mut r, "config_reloads", Family::default()),
            recoveries: registered(&mut r, "broker_recoveries", Family::default()),
            broker_reconnects: registered(&mut r, "broker_reconnects", Counter::default()),
            broker_connected: registered(&mut r, "broker_connected", Gauge::default()),
            dead_lettered: registered(&mut r, "dead_lettered", Family::default()),
            invalid_publishes: registered(&mut r, "invalid_publishes", Family::default()),
            panics: registered(&mut r, "panics", Family::default()),
            channel_reopens: registered(&mut r, "publish_channel_reopens", Family::default()),
            channel_open: registered(&mut r, "publish_channel_open", Family::default()),
            pipeline_restarts: registered(&mut r, "pipeline_restarts", Family::default()),
            build_info: registered(&mut r, "build_info", Family::default()),
            plugin_info: registered(&mut r, "plugin_info", Family::default()),
            confirm_seconds: registered(
                &mut r,
                "publish_confirm_seconds",
                Family::new_with_constructor(
                    (|| Histogram::new(CONFIRM_BUCKETS)) as fn() -> Histogram,
                ),
            ),
            dead_letter_depth: registered(&mut r, "dead_letter_depth", Family::default()),
            egress_requests: registered(&mut r, "egress_requests", Family::default()),
            log_lines_dropped: registered(&mut r, "plugin_log_lines_dropped", Family::default()),
            failures_log: Arc::default(),
            reloads_log: Recent::default(),
            plugin_instances: registered(&mut r, "plugin_instances", Family::default()),
            plugins: ArcSwap::default(),
            handled: Counter::default(),
            registry: r,
        }
        .with_build_info()
    }

    fn with_build_info(self) -> Self {
        self.build_info
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION"),
            })
            .set(1);
        self
    }

    /// Records which version of each plugin serves (one series per plugin, value 1).
    pub fn set_plugin_versions<'a>(&self, versions: impl IntoIterator<Item = (&'a str, &'a str)>) {
        self.plugin_info.clear();
        for (plugin, version) in versions {
            self.plugin_info
                .get_or_create(&PluginVersionLabels {
                    plugin: plugin.to_owned(),
                    version: version.to_owned(),
                })
                .set(1);
        }
    }

    /// The plugins whose instances `warren_plugin_instances` counts (their current versions').
    pub fn set_plugin_slots<'a>(
        &self,
        slots: impl IntoIterator<Item = (&'a String, &'a PluginSlot)>,
    ) {
        let slots = slots.into_iter().map(|(n, s)| (n.clone(), s.clone()));
        self.plugins.store(Arc::new(slots.collect()));
        // A plugin removed from the config loses its series.
        self.plugin_instances.clear();
    }

    /// Records how many messages a pipeline's dead-letter queue holds.
    pub fn set_dead_letter_depth(&self, pipeline: &str, depth: u32) {
        self.dead_letter_depth
            .get_or_create(&PipelineLabels {
                pipeline: pipeline.to_owned(),
            })
            .set(i64::from(depth));
    }

    /// The counter of lapin recoveries of one connection (`consume` or `publish`).
    pub fn recoveries(&self, connection: &'static str) -> Counter {
        self.recoveries
            .get_or_create(&ConnectionLabels { connection })
            .clone()
    }

    /// The handles one pipeline uses, resolved once so the hot path does no label lookups.
    pub fn pipeline(&self, name: &str) -> PipelineMetrics {
        let p = || PipelineLabels {
            pipeline: name.to_owned(),
        };
        let verdict = |verdict| {
            self.messages
                .get_or_create(&VerdictLabels {
                    pipeline: name.to_owned(),
                    verdict,
                })
                .clone()
        };
        let failure = |reason| {
            self.failures
                .get_or_create(&FailureLabels {
                    pipeline: name.to_owned(),
                    reason,
                })
                .clone()
        };
        PipelineMetrics {
            name: Arc::from(name),
            recent: self.failures_log.clone(),
            received: self.received.get_or_create(&p()).clone(),
            handled: self.handled.clone(),
            verdicts: [
                verdict(Kind::Ack.as_str()),
                verdict(Kind::Reject.as_str()),
                verdict(Kind::Requeue.as_str()),
                verdict(Kind::Republish.as_str()),
                verdict(Kind::Error.as_str()),
            ],
            failures: PLUGIN_FAILURES.map(failure),
            handle_seconds: self.handle_seconds.get_or_create(&p()).clone(),
            in_flight: self.in_flight.get_or_create(&p()).clone(),
            publish_failures: self.publish_failures.get_or_create(&p()).clone(),
            stale_settlements: self.stale_settlements.get_or_create(&p()).clone(),
            settle_failures: self.settle_failures.get_or_create(&p()).clone(),
            confirm_seconds: self.confirm_seconds.get_or_create(&p()).clone(),
            redeliveries: self.redeliveries.get_or_create(&p()).clone(),
            dead_lettered: crate::decision::Reason::CODES.map(|reason| {
                self.dead_lettered
                    .get_or_create(&FailureLabels {
                        pipeline: name.to_owned(),
                        reason,
                    })
                    .clone()
            }),
            invalid_publishes: self.invalid_publishes.get_or_create(&p()).clone(),
            panics: self.panics.get_or_create(&p()).clone(),
        }
    }

    /// The counter of reopens of a pipeline's publishing channel.
    pub fn channel_reopens(&self, pipeline: &str) -> Counter {
        self.channel_reopens
            .get_or_create(&PipelineLabels {
                pipeline: pipeline.to_owned(),
            })
            .clone()
    }

    /// Counts a pipeline restarted after a failure.
    pub fn pipeline_restart(&self, pipeline: &str) {
        self.pipeline_restarts
            .get_or_create(&PipelineLabels {
                pipeline: pipeline.to_owned(),
            })
            .inc();
    }

    /// Records whether a pipeline's publishing channel is open (set when metrics are read).
    pub fn set_channel_open(&self, pipeline: &str, open: bool) {
        self.channel_open
            .get_or_create(&PipelineLabels {
                pipeline: pipeline.to_owned(),
            })
            .set(i64::from(open));
    }

    /// Counts a plugin load after start-up.
    pub fn reload(&self, plugin: &str, ok: bool) {
        self.reloads
            .get_or_create(&ReloadLabels {
                plugin: plugin.to_owned(),
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// Counts a plugin load by where its code came from: compiled, or the compile cache.
    pub fn compiled(&self, plugin: &str, source: crate::plugin::cache::Source) {
        self.compiles
            .get_or_create(&ReloadLabels {
                plugin: plugin.to_owned(),
                result: source.as_str(),
            })
            .inc();
    }

    /// Records a plugin load or a config reload in the history the status page shows.
    pub fn record_reload(&self, reload: Reload) {
        self.reloads_log.push(reload);
    }

    /// The last plugin loads and config reloads, newest first.
    pub fn recent_reloads(&self) -> Vec<Reload> {
        self.reloads_log.list()
    }

    /// The last failures of every pipeline, newest first.
    pub fn recent_failures(&self) -> Vec<Failure> {
        self.failures_log.list()
    }

    /// Counts a config reload, applied or refused.
    pub fn config_reload(&self, ok: bool) {
        self.config_reloads
            .get_or_create(&ResultLabels {
                result: if ok { "ok" } else { "failed" },
            })
            .inc();
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        for (plugin, slot) in self.plugins.load().iter() {
            let labels = PluginLabels {
                plugin: plugin.clone(),
            };
            let instances = i64::try_from(slot.load().instances()).unwrap_or(i64::MAX);
            self.plugin_instances.get_or_create(&labels).set(instances);
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Shared handle to the metrics.
pub type SharedMetrics = Arc<Metrics>;

/// Milliseconds since start-up at which a pipeline's loop last ran (for the watchdog).
pub type Heartbeat = Arc<AtomicU64>;

#[cfg(test)]
mod tests;
