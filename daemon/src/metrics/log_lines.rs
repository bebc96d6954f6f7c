//! Plugins' log lines dropped over their rate limit, counted by plugin; the label set of
//! per-plugin series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;

use super::Metrics;
use crate::plugin::LogCounter;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct PluginLabels {
    pub(super) plugin: String,
}

impl LogCounter for Metrics {
    fn dropped_lines(&self, plugin: &str) -> Counter {
        self.log_lines_dropped
            .get_or_create(&PluginLabels {
                plugin: plugin.to_owned(),
            })
            .clone()
    }
}
