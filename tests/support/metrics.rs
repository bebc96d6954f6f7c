//! Metrics looked up by name and labels: in a parsed Prometheus scrape, or a running daemon's.

use std::time::Duration;

use super::daemon::Running;
use super::wait::{PATIENCE, eventually};

/// `metrics` rendered as Prometheus text and parsed back.
pub fn scrape_of(metrics: &warren::metrics::SharedMetrics) -> prometheus_parse::Scrape {
    parse_scrape(&metrics.render())
}

/// Prometheus text (a `/metrics` body) parsed.
pub fn parse_scrape(text: &str) -> prometheus_parse::Scrape {
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("valid Prometheus text")
}

/// The values of the samples `name` that carry `labels` (and any others).
fn values<'a>(
    scrape: &'a prometheus_parse::Scrape,
    name: &'a str,
    labels: &'a [(&str, &str)],
) -> impl Iterator<Item = f64> + 'a {
    scrape
        .samples
        .iter()
        .filter(move |s| {
            s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// The value of the sample `name` with `labels`, if there is one.
pub fn find_sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    values(scrape, name, labels).next()
}

/// The value of the sample `name` with `labels` (the test fails if there is none).
pub fn sample(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    find_sample(scrape, name, labels).unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

/// The sum of every sample `name` with `labels`, whatever its other labels (all pipelines).
pub fn total(scrape: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    values(scrape, name, labels).sum()
}

impl Running {
    /// The daemon's metrics, rendered as Prometheus text and parsed back.
    pub fn scrape(&self) -> prometheus_parse::Scrape {
        scrape_of(&self.metrics)
    }

    /// The current value of the sample `name` with `labels` (the test fails if there is none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample(&self.scrape(), name, labels)
    }

    /// The current sum of the samples `name` with `labels`, whatever their other labels.
    pub fn total(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        total(&self.scrape(), name, labels)
    }

    /// Waits (up to [`PATIENCE`]) until the sample `name` with `labels` reaches `at_least`.
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], at_least: f64) {
        self.wait_metric_for(name, labels, at_least, PATIENCE).await;
    }

    /// Waits (up to `patience`) until the sample `name` with `labels` reaches `at_least`.
    pub async fn wait_metric_for(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
        patience: Duration,
    ) {
        let reached = || async {
            find_sample(&self.scrape(), name, labels)
                .is_some_and(|v| v >= at_least)
                .then_some(())
        };
        let what = format!("{name} {labels:?} reaching {at_least}");
        eventually(what, patience, reached).await;
    }

    /// Waits (up to [`PATIENCE`]) until the sample `name` with `labels` is at most `at_most`.
    pub async fn wait_metric_down_to(&self, name: &str, labels: &[(&str, &str)], at_most: f64) {
        let reached = || async {
            find_sample(&self.scrape(), name, labels)
                .is_some_and(|v| v <= at_most)
                .then_some(())
        };
        let what = format!("{name} {labels:?} down to {at_most}");
        eventually(what, PATIENCE, reached).await;
    }
}
