//! Each pipeline's rates in and out, for the status page: a sampler reads the pipelines'
//! counters once a second into a ring of snapshots, and a rate is the difference between the
//! newest snapshot and the one a window ago. The message path does nothing for it beyond the
//! counter increments it does anyway.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::config::PipelineSettings;
use crate::metrics::SharedMetrics;

/// How often the counters are sampled.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// The short window of a rate.
pub const SHORT_WINDOW: Duration = Duration::from_secs(10);
/// The long window of a rate (and how far back snapshots are kept).
pub const LONG_WINDOW: Duration = Duration::from_secs(60);

/// One snapshot of a pipeline's counters.
#[derive(Debug, Clone, Copy)]
struct Snapshot {
    at: Instant,
    received: u64,
    handled: u64,
}

/// A rate over the short and the long window, in messages per second.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Rate {
    /// Over the last [`SHORT_WINDOW`] (10 s).
    pub last_10s: f64,
    /// Over the last [`LONG_WINDOW`] (a minute).
    pub last_minute: f64,
}

/// Each pipeline's snapshots, newest last, as far back as [`LONG_WINDOW`].
#[derive(Debug, Default)]
pub struct Rates {
    pipelines: Mutex<BTreeMap<String, VecDeque<Snapshot>>>,
}

impl Rates {
    /// Adds a snapshot of `pipeline`'s counters taken `at`, dropping those too old to matter.
    fn record(&self, pipeline: &str, at: Instant, received: u64, handled: u64) {
        let mut pipelines = self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let ring = pipelines.entry(pipeline.to_owned()).or_default();
        ring.push_back(Snapshot {
            at,
            received,
            handled,
        });
        // Keep one snapshot at least a whole window old, so that the long rate spans it.
        while ring
            .get(1)
            .is_some_and(|s| at.duration_since(s.at) >= LONG_WINDOW)
        {
            ring.pop_front();
        }
    }

    /// Forgets the pipelines not in `names`.
    fn retain(&self, names: &[&str]) {
        self.pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .retain(|name, _| names.contains(&name.as_str()));
    }

    /// `pipeline`'s rates in (received) and out (handled); zero until two snapshots exist.
    pub fn of(&self, pipeline: &str) -> (Rate, Rate) {
        let pipelines = self
            .pipelines
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let Some(ring) = pipelines.get(pipeline) else {
            return (Rate::default(), Rate::default());
        };
        let rate = |count: fn(&Snapshot) -> u64| Rate {
            last_10s: per_second(ring, SHORT_WINDOW, count),
            last_minute: per_second(ring, LONG_WINDOW, count),
        };
        (rate(|s| s.received), rate(|s| s.handled))
    }
}

/// The rate of `count` between the newest snapshot and the oldest one within `window` of it
/// (or the oldest there is, for a pipeline younger than the window).
fn per_second(ring: &VecDeque<Snapshot>, window: Duration, count: fn(&Snapshot) -> u64) -> f64 {
    let Some(newest) = ring.back() else {
        return 0.0;
    };
    let Some(start) = ring
        .iter()
        .find(|s| newest.at.duration_since(s.at) <= window)
    else {
        return 0.0;
    };
    let span = newest.at.duration_since(start.at).as_secs_f64();
    if span <= 0.0 {
        return 0.0;
    }
    count(newest).saturating_sub(count(start)) as f64 / span
}

/// Samples every pipeline's counters each [`SAMPLE_EVERY`] until `stop`.
pub async fn sample(
    rates: Arc<Rates>,
    metrics: SharedMetrics,
    pipelines: Arc<ArcSwap<Vec<PipelineSettings>>>,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(SAMPLE_EVERY);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                let pipelines = pipelines.load();
                let now = Instant::now();
                for p in pipelines.iter() {
                    let counts = metrics.pipeline_counts(&p.name);
                    rates.record(&p.name, now, counts.received, counts.handled());
                }
                let names: Vec<&str> = pipelines.iter().map(|p| p.name.as_str()).collect();
                rates.retain(&names);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Snapshots one second apart: `received` goes up by `per_second` each second.
    fn steady(rates: &Rates, start: Instant, seconds: u64, per_second: u64) {
        for s in 0..=seconds {
            let at = start + Duration::from_secs(s);
            rates.record("p", at, s * per_second, s * per_second / 2);
        }
    }

    #[test]
    fn a_steady_flow_gives_its_rate_over_both_windows() {
        let rates = Rates::default();
        steady(&rates, Instant::now(), 120, 10);
        let (rate_in, rate_out) = rates.of("p");
        assert_eq!(
            rate_in,
            Rate {
                last_10s: 10.0,
                last_minute: 10.0
            }
        );
        assert_eq!(
            rate_out,
            Rate {
                last_10s: 5.0,
                last_minute: 5.0
            }
        );
        let kept = rates.pipelines.lock().expect("lock")["p"].len();
        assert!(kept <= 62, "only a minute of snapshots is kept: {kept}");
    }

    #[test]
    fn a_burst_shows_in_the_short_window_more_than_the_long_one() {
        let rates = Rates::default();
        let start = Instant::now();
        // 50 s idle, then 100 messages a second for 10 s.
        for s in 0..=60u64 {
            let received = s.saturating_sub(50) * 100;
            rates.record("p", start + Duration::from_secs(s), received, received);
        }
        let (rate_in, _) = rates.of("p");
        assert_eq!(rate_in.last_10s, 100.0);
        assert!(
            (rate_in.last_minute - 1000.0 / 60.0).abs() < 1e-9,
            "{rate_in:?}"
        );
    }

    #[test]
    fn a_young_pipeline_uses_what_it_has_and_an_unknown_one_is_zero() {
        let rates = Rates::default();
        assert_eq!(rates.of("p"), (Rate::default(), Rate::default()));
        let start = Instant::now();
        rates.record("p", start, 0, 0);
        assert_eq!(
            rates.of("p").0,
            Rate::default(),
            "one snapshot: no rate yet"
        );
        rates.record("p", start + Duration::from_secs(2), 8, 8);
        assert_eq!(
            rates.of("p").0,
            Rate {
                last_10s: 4.0,
                last_minute: 4.0
            }
        );
        rates.retain(&[]);
        assert_eq!(
            rates.of("p").0,
            Rate::default(),
            "a removed pipeline is forgotten"
        );
    }
}
