//! warren in this process for a bench run: started on copies of its plugins, and waited on
//! until every message is handled and settled.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};

use crate::support::{Running, TestConfig, start_at, write_config_with};

/// A drain that makes no progress for this long fails the run.
pub const STALL: Duration = Duration::from_secs(60);

/// How often a drain's progress is looked at.
const LOOK_EVERY: Duration = Duration::from_millis(1);

/// Starts warren on `config`, whose plugins name their `.wasm` by file name, with copies of
/// `plugins` beside it (so that a rebuild of `dist/` during the run does not reload them).
pub async fn start_beside(config: &TestConfig, plugins: &[&Path]) -> anyhow::Result<Running> {
    let mut copies = Vec::new();
    for plugin in plugins {
        let name = plugin
            .file_name()
            .and_then(|name| name.to_str())
            .context("plugin path without a file name")?;
        let bytes = std::fs::read(plugin).with_context(|| format!("read {}", plugin.display()))?;
        copies.push((name, bytes));
    }
    let files: Vec<(&str, &[u8])> = copies.iter().map(|(n, b)| (*n, b.as_slice())).collect();
    let (dir, path) = write_config_with(&config.build(), &files);
    Ok(start_at(dir, &path).await)
}

/// Messages handled by every pipeline (counted before they are settled).
pub fn handled(daemon: &Running) -> u64 {
    daemon.metrics.handled.get()
}

/// Waits until `n` messages are handled and none is in flight (all settled); fails if
/// nothing moves for [`STALL`] or the daemon stops.
pub async fn wait_settled(daemon: &Running, n: u64) -> anyhow::Result<()> {
    let mut last = (handled(daemon), Instant::now());
    loop {
        let handled = handled(daemon);
        // The in-flight gauge only once all are handled: rendering the metrics costs CPU,
        // which the drain measures.
        if handled >= n && daemon.total("warren_messages_in_flight", &[]) == 0.0 {
            return Ok(());
        }
        ensure!(!daemon.has_stopped(), "the daemon stopped early");
        if handled != last.0 {
            last = (handled, Instant::now());
        }
        ensure!(
            last.1.elapsed() < STALL,
            "warren stalled at {handled} of {n} messages"
        );
        tokio::time::sleep(LOOK_EVERY).await;
    }
}
