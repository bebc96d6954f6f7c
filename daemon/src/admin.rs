//! The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/plugins`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::UNIX_EPOCH;

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::broker::ConnectionHealth;
use crate::metrics::SharedMetrics;
use crate::pipeline::PluginSlot;

/// Plugins by name, with the pipelines using each.
pub type PluginTable = BTreeMap<String, (PluginSlot, Vec<String>)>;

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
}

impl AdminState {
    /// Connected and consuming.
    pub fn ready(&self) -> bool {
        self.consuming.load(Ordering::Relaxed) && self.connection.load().is_connected()
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
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
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
                "pipelines": pipelines,
            })
        })
        .collect();
    axum::Json(list)
}
