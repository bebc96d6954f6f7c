//! The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/plugins`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::broker::{ConnectionHealth, Publisher};
use crate::metrics::SharedMetrics;
use crate::plugin::registry::PluginSlot;

/// Plugins by name, with the pipelines using each.
pub type PluginTable = BTreeMap<String, (PluginSlot, Vec<String>)>;

/// Each running pipeline's publisher, by pipeline name.
pub type Publishers = Arc<Mutex<BTreeMap<String, Publisher>>>;

/// What the endpoint reports on.
pub struct AdminState {
    /// The metrics registry.
    pub metrics: SharedMetrics,
    /// Set once every pipeline consumes; cleared when stopping.
    pub consuming: Arc<AtomicBool>,
    /// The consuming connection (replaced when warren reconnects).
    pub connection: Arc<ArcSwap<ConnectionHealth>>,
    /// Plugins by name, with the pipelines using each; replaced on config reload.
    pub plugins: Arc<ArcSwap<PluginTable>>,
    /// Each pipeline's publisher: ready needs every publishing channel open.
    pub publishers: Publishers,
}

impl AdminState {
    /// Connected and consuming.
    pub fn ready(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
            && self.connection.load().is_connected()
            && self.closed_publishers().is_empty()
    }

    /// The pipelines whose publishing channel is closed (it is reopened by the next publish).
    pub fn closed_publishers(&self) -> Vec<String> {
        self.publishers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .filter(|(_, p)| !p.is_open())
            .map(|(name, _)| name.clone())
            .collect()
    }
}

/// Binds `listen` now (so a taken port fails start-up) and serves until `shutdown`.
pub async fn serve(
    listen: SocketAddr,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("admin.listen: cannot listen on {listen}"))?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/plugins", get(plugins))
        .with_state(state);
    tracing::info!(%listen, "admin endpoint listening");
    Ok(tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move { shutdown.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    }))
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    state
        .metrics
        .broker_connected
        .set(i64::from(state.connection.load().is_connected()));
    for (name, publisher) in state
        .publishers
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .iter()
    {
        state.metrics.set_channel_open(name, publisher.is_open());
    }
    // prometheus-client writes OpenMetrics text (`# EOF`, counters as `..._total`), which
    // Prometheus scrapes when told so by the content type.
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

async fn readyz(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    if state.ready() {
        return (StatusCode::OK, "ready\n".to_owned());
    }
    let closed = state.closed_publishers();
    let why = if closed.is_empty() {
        "not ready\n".to_owned()
    } else {
        format!(
            "not ready: publishing channel closed for pipeline {}\n",
            closed.join(", ")
        )
    };
    (StatusCode::SERVICE_UNAVAILABLE, why)
}

async fn plugins(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    let table = state.plugins.load();
    let list: Vec<serde_json::Value> = table
        .iter()
        .map(|(name, (slot, pipelines))| {
            let plugin = slot.load();
            let loaded_at = plugin
                .loaded_at()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            serde_json::json!({
                "name": name,
                "version": plugin.version(),
                "path": plugin.path().display().to_string(),
                "loaded_at": loaded_at,
                "code": plugin.compilation().source.as_str(),
                "compile_ms": plugin.compilation().took.as_millis() as u64,
                "pipelines": pipelines,
            })
        })
        .collect();
    axum::Json(list)
}
