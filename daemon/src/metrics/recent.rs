//! What happened lately, for the status page: the last failures (fed where failures are
//! counted) and the plugin and config reloads, each kept in a bounded ring.

use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

/// How many failures are kept.
pub const RECENT_FAILURES: usize = 50;
/// How many reloads are kept.
pub const RECENT_RELOADS: usize = 50;
/// The longest reason or error text kept (a plugin's trap message can be long).
pub const TEXT_MAX: usize = 1000;

/// The last `N` events, newest first when listed.
#[derive(Debug)]
pub struct Recent<T, const N: usize>(Mutex<VecDeque<T>>);

impl<T, const N: usize> Default for Recent<T, N> {
    fn default() -> Self {
        Self(Mutex::new(VecDeque::with_capacity(N)))
    }
}

impl<T: Clone, const N: usize> Recent<T, N> {
    /// Adds `event`, forgetting the oldest past `N`.
    pub fn push(&self, event: T) {
        let mut ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if ring.len() == N {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// Every event kept, newest first.
    pub fn list(&self) -> Vec<T> {
        let ring = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        ring.iter().rev().cloned().collect()
    }
}

/// One message that failed: never its body.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Failure {
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The pipeline it came through.
    pub pipeline: String,
    /// Its `message_id` property (`-` if it has none).
    pub message_id: String,
    /// Why, in words.
    pub reason: String,
}

impl Failure {
    /// A failure now.
    pub fn now(pipeline: &str, message_id: &str, reason: impl std::fmt::Display) -> Self {
        Self {
            time_ms: now_ms(),
            pipeline: pipeline.to_owned(),
            message_id: message_id.to_owned(),
            reason: clip(reason.to_string()),
        }
    }
}

/// One load of a plugin after start-up, or one config reload.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reload {
    /// When, in milliseconds since the Unix epoch.
    pub time_ms: u64,
    /// The plugin; `None` for a config reload.
    pub plugin: Option<String>,
    /// The version serving before.
    pub from: Option<String>,
    /// The version loaded (or that failed to load).
    pub to: Option<String>,
    /// `loaded` (at start), `reloaded`, `added`, `failed`; for the config `applied` or `refused`.
    pub result: &'static str,
    /// Why it failed, or what changed.
    pub detail: Option<String>,
}

impl Reload {
    /// A reload now.
    pub fn now(plugin: Option<&str>, result: &'static str) -> Self {
        Self {
            time_ms: now_ms(),
            plugin: plugin.map(str::to_owned),
            from: None,
            to: None,
            result,
            detail: None,
        }
    }

    /// The same, from version `from` to `to`.
    pub fn versions(self, from: Option<&str>, to: Option<&str>) -> Self {
        Self {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            ..self
        }
    }

    /// The same, with `detail`.
    pub fn detail(self, detail: impl std::fmt::Display) -> Self {
        Self {
            detail: Some(clip(detail.to_string())),
            ..self
        }
    }
}

/// Now, in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `text` cut to [`TEXT_MAX`] bytes (at a character boundary), marked `…` if cut.
fn clip(mut text: String) -> String {
    if text.len() > TEXT_MAX {
        let mut end = TEXT_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
        text.push('…');
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_keeps_the_last_n_newest_first() {
        let ring: Recent<u32, 3> = Recent::default();
        for n in 0..5 {
            ring.push(n);
        }
        assert_eq!(ring.list(), [4, 3, 2]);
    }

    #[test]
    fn long_reasons_are_clipped_at_a_character_boundary() {
        let failure = Failure::now("p", "-", "é".repeat(TEXT_MAX));
        assert!(failure.reason.len() <= TEXT_MAX + '…'.len_utf8());
        assert!(failure.reason.ends_with('…'));
        assert_eq!(Failure::now("p", "id", "short").reason, "short");
    }
}
