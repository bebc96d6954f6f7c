//! The daemon's background duties: the systemd status line and the watchdog.

use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::supervisor::Heartbeats;
use crate::metrics::SharedMetrics;
use crate::pipeline::HEARTBEAT_INTERVAL;
use crate::systemd;

/// How often the systemd status line is refreshed.
pub const STATUS_INTERVAL: Duration = Duration::from_secs(10);

/// Refreshes the systemd status line: pipelines and messages handled.
pub async fn report_status(
    metrics: SharedMetrics,
    heartbeats: Heartbeats,
    stop: CancellationToken,
) {
    let mut every = tokio::time::interval(STATUS_INTERVAL);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                let pipelines = heartbeats.lock().unwrap_or_else(PoisonError::into_inner).len();
                systemd::status(&format!(
                    "{pipelines} pipelines consuming; {} messages handled",
                    metrics.handled.get()
                ));
            }
        }
    }
}

/// Pings the systemd watchdog while every pipeline loop keeps beating; a wedged loop stops
/// the pings, and systemd restarts the daemon.
pub async fn watchdog(
    heartbeats: Heartbeats,
    epoch: Instant,
    interval: Duration,
    stop: CancellationToken,
) {
    let stale_after = (HEARTBEAT_INTERVAL * 3).max(interval);
    let mut every = tokio::time::interval(interval);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = every.tick() => {
                let now = epoch.elapsed();
                let alive = heartbeats
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .values()
                    .all(|beat| {
                        let last = Duration::from_millis(beat.load(Ordering::Relaxed));
                        now.saturating_sub(last) <= stale_after
                    });
                if alive {
                    systemd::watchdog();
                } else {
                    tracing::error!("a pipeline loop stopped beating; withholding the watchdog ping");
                }
            }
        }
    }
}
