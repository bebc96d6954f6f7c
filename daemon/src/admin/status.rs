//! `GET /status`, the JSON the status page (`GET /`) polls: the broker nodes, each pipeline
//! with its rates and counts, the last failures and reloads, and the plugins — never a
//! message body, never a secret config value.

use std::collections::BTreeMap;
use std::sync::{Arc, PoisonError};

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::rates::Rate;
use super::{AdminState, plugin_json};
use crate::config::{DeadLetter, PipelineSettings};
use crate::metrics::{Failure, Reload};

/// The status page: static HTML whose script polls `/status`.
pub const PAGE: &str = include_str!("page.html");

/// `GET /`: the status page.
pub async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-store"),
            // The page's own inline style and script, and fetches of /status; nothing else.
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
            ),
        ],
        PAGE,
    )
}

/// Everything `/status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// warren's version.
    pub version: &'static str,
    /// When this was taken, in milliseconds since the Unix epoch.
    pub now_ms: u64,
    /// As `/readyz`: connected, consuming, every publishing channel open.
    pub ready: bool,
    /// Each node of `[broker] urls`, and how warren's connections to it stand.
    pub broker: Vec<Node>,
    /// Each pipeline of the config.
    pub pipelines: Vec<PipelineStatus>,
    /// The last failures, newest first.
    pub failures: Vec<Failure>,
    /// The last plugin loads and config reloads, newest first.
    pub reloads: Vec<Reload>,
    /// Each plugin, as `/plugins` shows it.
    pub plugins: Vec<serde_json::Value>,
}

/// One broker node.
#[derive(Debug, Serialize)]
pub struct Node {
    /// Its URL, password hidden.
    pub url: String,
    /// The consuming connection: `connected`, `recovering`, `lost`, or `standby` (not on
    /// this node).
    pub consume: &'static str,
    /// The publishing connection, likewise.
    pub publish: &'static str,
}

/// One pipeline.
#[derive(Debug, Serialize)]
pub struct PipelineStatus {
    /// Its name.
    pub name: String,
    /// `consuming`, or `restarting` (its channel failed; it is restarted after a backoff).
    pub state: &'static str,
    /// The queue it consumes.
    pub queue: String,
    /// The plugin that handles its messages.
    pub plugin: String,
    /// The version of that plugin now serving.
    pub plugin_version: Option<String>,
    /// `basic.qos`.
    pub prefetch: u16,
    /// Messages inside the plugin at once.
    pub concurrency: usize,
    /// Messages received and not settled.
    pub in_flight: i64,
    /// Messages received since start.
    pub received: u64,
    /// Messages received per second.
    pub rate_in: Rate,
    /// Messages handled (given a verdict) per second.
    pub rate_out: Rate,
    /// Messages by verdict.
    pub verdicts: BTreeMap<&'static str, u64>,
    /// Failures by reason: the plugin's (trap, timeout, too_large, start), invalid
    /// publishes, failed publishes, panics.
    pub failures: BTreeMap<&'static str, u64>,
    /// Messages rejected for good, by reason.
    pub dead_lettered: BTreeMap<&'static str, u64>,
    /// Where they go: `queue` (warren's `<queue>.dead`), `exchange` (the queue's dead-letter
    /// exchange) or `dropped`.
    pub dead_letter: &'static str,
    /// warren's dead-letter queue, if it has one.
    pub dead_letter_queue: Option<String>,
    /// How many messages it holds (read every 10 s), once read.
    pub dead_letter_depth: Option<i64>,
}

/// `GET /status`.
pub async fn status(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        axum::Json(report(&state)),
    )
}

/// What `/status` reports now.
pub fn report(state: &AdminState) -> Status {
    let links = state.links.load();
    let broker = state
        .nodes
        .iter()
        .enumerate()
        .map(|(index, url)| Node {
            url: url.clone(),
            consume: links.consume.state_on(index),
            publish: links.publish.state_on(index),
        })
        .collect();
    let table = state.plugins.load();
    let running = state
        .publishers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .keys()
        .cloned()
        .collect::<Vec<_>>();
    let pipelines = state
        .pipelines
        .load()
        .iter()
        .map(|p| {
            let version = table
                .get(&p.plugin)
                .map(|(slot, _)| slot.load().version().to_owned());
            pipeline(state, p, running.contains(&p.name), version)
        })
        .collect();
    Status {
        version: env!("CARGO_PKG_VERSION"),
        now_ms: crate::metrics::now_ms(),
        ready: state.ready(),
        broker,
        pipelines,
        failures: state.metrics.recent_failures(),
        reloads: state.metrics.recent_reloads(),
        plugins: table
            .iter()
            .map(|(name, (slot, users))| plugin_json(name, &slot.load(), users))
            .collect(),
    }
}

fn pipeline(
    state: &AdminState,
    p: &PipelineSettings,
    running: bool,
    plugin_version: Option<String>,
) -> PipelineStatus {
    let counts = state.metrics.pipeline_counts(&p.name);
    let (rate_in, rate_out) = state.rates.of(&p.name);
    let (dead_letter, dead_letter_queue) = match &p.dead_letter {
        DeadLetter::Queue(queue) => ("queue", Some(queue.clone())),
        DeadLetter::Broker => ("exchange", None),
        DeadLetter::Drop => ("dropped", None),
    };
    PipelineStatus {
        name: p.name.clone(),
        state: if running { "consuming" } else { "restarting" },
        queue: p.queue.clone(),
        plugin: p.plugin.clone(),
        plugin_version,
        prefetch: p.prefetch.get(),
        concurrency: p.concurrency.get(),
        in_flight: counts.in_flight,
        received: counts.received,
        rate_in,
        rate_out,
        verdicts: counts.verdicts.into_iter().collect(),
        failures: counts.failures.into_iter().collect(),
        dead_lettered: counts.dead_lettered.into_iter().collect(),
        dead_letter,
        dead_letter_queue,
        dead_letter_depth: counts.dead_letter_depth,
    }
}
