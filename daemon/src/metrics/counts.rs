//! A pipeline's counts read back, for the status page: from the series the pipeline's handles
//! write, never creating one (a pipeline without a dead-letter queue gets no depth series).

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;

use super::{FailureLabels, Metrics, PLUGIN_FAILURES, PipelineLabels, VerdictLabels};
use crate::decision::{Kind, Reason};

/// The verdicts, in the order they are shown.
const VERDICTS: [Kind; 5] = [
    Kind::Ack,
    Kind::Reject,
    Kind::Requeue,
    Kind::Republish,
    Kind::Error,
];

/// One pipeline's counts since start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PipelineCounts {
    /// Messages received.
    pub received: u64,
    /// Messages received and not settled.
    pub in_flight: i64,
    /// Messages by verdict.
    pub verdicts: Vec<(&'static str, u64)>,
    /// Failures by reason: the plugin's ([`PLUGIN_FAILURES`]), then `invalid_publish`,
    /// `publish_failed` and `panic`.
    pub failures: Vec<(&'static str, u64)>,
    /// Messages rejected for good, by [`Reason::CODES`].
    pub dead_lettered: Vec<(&'static str, u64)>,
    /// Messages in its dead-letter queue, once read (every 10 s).
    pub dead_letter_depth: Option<i64>,
}

impl PipelineCounts {
    /// Messages given a verdict.
    pub fn handled(&self) -> u64 {
        self.verdicts.iter().map(|(_, n)| n).sum()
    }
}

impl Metrics {
    /// What the pipeline named `name` has counted since start (zeros for one never run).
    pub fn pipeline_counts(&self, name: &str) -> PipelineCounts {
        let pipeline = || PipelineLabels {
            pipeline: name.to_owned(),
        };
        let of = |family: &Family<PipelineLabels, Counter>| {
            family.get(&pipeline()).map_or(0, |c| c.get())
        };
        let by_reason = |family: &Family<FailureLabels, Counter>, reason: &'static str| {
            let labels = FailureLabels {
                pipeline: name.to_owned(),
                reason,
            };
            (reason, family.get(&labels).map_or(0, |c| c.get()))
        };
        let mut failures: Vec<_> = PLUGIN_FAILURES
            .iter()
            .map(|reason| by_reason(&self.failures, reason))
            .collect();
        failures.extend([
            ("invalid_publish", of(&self.invalid_publishes)),
            ("publish_failed", of(&self.publish_failures)),
            ("panic", of(&self.panics)),
        ]);
        PipelineCounts {
            received: of(&self.received),
            in_flight: self.in_flight.get(&pipeline()).map_or(0, |g| g.get()),
            verdicts: VERDICTS
                .iter()
                .map(|kind| {
                    let labels = VerdictLabels {
                        pipeline: name.to_owned(),
                        verdict: kind.as_str(),
                    };
                    (
                        kind.as_str(),
                        self.messages.get(&labels).map_or(0, |c| c.get()),
                    )
                })
                .collect(),
            failures,
            dead_lettered: Reason::CODES
                .iter()
                .map(|reason| by_reason(&self.dead_lettered, reason))
                .collect(),
            dead_letter_depth: self.dead_letter_depth.get(&pipeline()).map(|g| g.get()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the pipeline's handles count is what is read back, by name.
    #[test]
    fn counts_read_back_what_the_handles_counted() {
        let metrics = Metrics::new();
        assert_eq!(
            metrics.pipeline_counts("p").dead_letter_depth,
            None,
            "nothing is created by reading"
        );
        let p = metrics.pipeline("p");
        let guard = p.arrived();
        let _second = p.arrived();
        drop(guard);
        p.verdict(Kind::Ack);
        p.verdict(Kind::Error);
        p.failure(&crate::plugin::PluginError::Timeout(5), "m-1");
        p.dead_lettered(&Reason::Rejected, "m-2");
        p.publish_failed("m-3", &"nacked");
        metrics.set_dead_letter_depth("p", 4);
        let counts = metrics.pipeline_counts("p");
        assert_eq!((counts.received, counts.in_flight), (2, 1));
        assert_eq!(counts.handled(), 2);
        let get =
            |list: &[(&str, u64)], key: &str| list.iter().find(|(k, _)| *k == key).map(|(_, n)| *n);
        assert_eq!(get(&counts.verdicts, "error"), Some(1));
        assert_eq!(get(&counts.failures, "timeout"), Some(1));
        assert_eq!(get(&counts.failures, "publish_failed"), Some(1));
        assert_eq!(get(&counts.dead_lettered, "rejected"), Some(1));
        assert_eq!(counts.dead_letter_depth, Some(4));
        assert_eq!(metrics.pipeline_counts("other").handled(), 0);
        // The timeout and the failed publish are recent failures; the plugin's reject is not.
        let recent = metrics.recent_failures();
        let ids: Vec<&str> = recent.iter().map(|f| f.message_id.as_str()).collect();
        assert_eq!(ids, ["m-3", "m-1"]);
        assert_eq!(recent[1].reason, "plugin timed out after 5 ms");
        assert_eq!(recent[0].reason, "publish failed: nacked");
        assert_eq!(recent[0].pipeline, "p");
    }
}
