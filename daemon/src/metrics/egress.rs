//! The HTTP requests plugins send, counted by plugin, host and the egress policy's answer.

use prometheus_client::encoding::EncodeLabelSet;

use super::Metrics;
use crate::plugin::egress::{EgressCounter, EgressResult};

/// `host` is an `allowed_hosts` entry as written, or `other`: a bounded set.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(super) struct EgressLabels {
    plugin: String,
    host: String,
    result: &'static str,
}

impl EgressCounter for Metrics {
    fn count(&self, plugin: &str, host: &str, result: EgressResult) {
        self.egress_requests
            .get_or_create(&EgressLabels {
                plugin: plugin.to_owned(),
                host: host.to_owned(),
                result: result.as_str(),
            })
            .inc();
    }
}
