//! The admin HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/plugins`, and the status
//! page (`/`) with its JSON (`/status`).

mod rates;
mod status;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use arc_swap::ArcSwap;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;

use crate::broker::Publisher;
use crate::broker::links::LinksHealth;
use crate::config::{AdminSettings, AdminToken, PipelineSettings};
use crate::metrics::SharedMetrics;
use crate::plugin::Plugin;
use crate::plugin::registry::PluginSlot;
pub use rates::{LONG_WINDOW, Rates, SAMPLE_EVERY, SHORT_WINDOW, sample};
pub use status::{Node, PipelineStatus, Status};

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
    /// Both connections (replaced when warren reconnects).
    pub links: Arc<ArcSwap<LinksHealth>>,
    /// Plugins by name, with the pipelines using each; replaced on config reload.
    pub plugins: Arc<ArcSwap<PluginTable>>,
    /// Each running pipeline's publisher: ready needs every publishing channel open.
    pub publishers: Publishers,
    /// The pipelines of the config in force; replaced on config reload.
    pub pipelines: Arc<ArcSwap<Vec<PipelineSettings>>>,
    /// `[broker] urls`, passwords hidden (a reload cannot change them).
    pub nodes: Vec<String>,
    /// Each pipeline's rates, kept by [`sample`].
    pub rates: Arc<Rates>,
}

impl AdminState {
    /// Connected and consuming.
    pub fn ready(&self) -> bool {
        self.consuming.load(Ordering::Relaxed)
            && self.links.load().consume.is_connected()
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

/// Most connections served at once; more are closed as they come.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may take to send a request's head (a slowloris client is cut off).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest a connection is kept, requests included.
pub const CONNECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest request head accepted.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;

/// Binds `listen` now (so a taken port fails start-up) and serves until `shutdown`: at most
/// [`MAX_CONNECTIONS`] at once, each cut off after [`HEADER_READ_TIMEOUT`] without a request
/// head and after [`CONNECTION_TIMEOUT`] in all. With a `token`, every endpoint but `/healthz`
/// requires the token: `Authorization: Bearer <token>`, or HTTP Basic with the token as the
/// password (what a browser asks for, to show the status page).
pub async fn serve(
    settings: &AdminSettings,
    state: Arc<AdminState>,
    shutdown: CancellationToken,
) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let listen = settings.listen;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("admin.listen: cannot listen on {listen}"))?;
    if settings.token.is_none() && !listen.ip().is_loopback() {
        tracing::warn!(
            %listen,
            "the admin endpoint listens beyond this machine without a token: set admin.token or admin.token_file"
        );
    }
    let app = Router::new()
        .route("/", get(status::page))
        .route("/status", get(status::status))
        .route("/metrics", get(metrics))
        .route("/readyz", get(readyz))
        .route("/plugins", get(plugins))
        .route_layer(axum::middleware::from_fn_with_state(
            Arc::new(settings.token.clone()),
            require_token,
        ))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(state);
    tracing::info!(%listen, "admin endpoint listening");
    Ok(tokio::spawn(accept(listener, app, shutdown)))
}

async fn accept(listener: tokio::net::TcpListener, app: Router, shutdown: CancellationToken) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let stream = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::warn!(error = %e, "admin endpoint: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Over the limit: closed at once, rather than left waiting.
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .max_buf_size(MAX_HEADER_BYTES)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            tokio::select! {
                _ = tokio::time::timeout(CONNECTION_TIMEOUT, connection) => {}
                () = shutdown.cancelled() => {}
            }
            drop(slot);
        });
    }
}

/// Lets a request through if no token is set, or if it carries the token.
async fn require_token(
    State(token): State<Arc<Option<AdminToken>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let Some(token) = token.as_ref() else {
        return next.run(request).await;
    };
    let offered = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(offered_token);
    if offered.is_some_and(|offered| token.matches(&offered)) {
        next.run(request).await
    } else {
        // Both schemes: a script sends the bearer token, a browser asks for Basic credentials.
        let mut response = (
            StatusCode::UNAUTHORIZED,
            "the admin token is required (admin.token): Authorization: Bearer <token>, or as the password of HTTP Basic\n",
        )
            .into_response();
        let challenges = response.headers_mut();
        challenges.append(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        challenges.append(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"warren admin\", charset=\"UTF-8\""),
        );
        response
    }
}

/// The token an `Authorization` header offers: a bearer token, or the password of Basic
/// credentials (any user name).
fn offered_token(authorization: &str) -> Option<String> {
    use base64::Engine as _;
    if let Some(token) = authorization.strip_prefix("Bearer ") {
        return Some(token.to_owned());
    }
    let encoded = authorization.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let credentials = String::from_utf8(decoded).ok()?;
    credentials
        .split_once(':')
        .map(|(_user, password)| password.to_owned())
}

async fn metrics(State(state): State<Arc<AdminState>>) -> impl IntoResponse {
    state
        .metrics
        .broker_connected
        .set(i64::from(state.links.load().consume.is_connected()));
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
        .map(|(name, (slot, pipelines))| plugin_json(name, &slot.load(), pipelines))
        .collect();
    axum::Json(list)
}

/// One plugin as `/plugins` and `/status` show it: its config without the values of
/// `secret_config`, whose keys alone are listed.
fn plugin_json(name: &str, plugin: &Plugin, pipelines: &[String]) -> serde_json::Value {
    let loaded_at = plugin
        .loaded_at()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let config: serde_json::Map<String, serde_json::Value> = plugin
        .config()
        .plain()
        .map(|(key, value)| (key.to_owned(), value.into()))
        .collect();
    serde_json::json!({
        "name": name,
        "version": plugin.version(),
        "path": plugin.path().display().to_string(),
        "loaded_at": loaded_at,
        "code": plugin.compilation().source.as_str(),
        "compile_ms": plugin.compilation().took.as_millis() as u64,
        "pipelines": pipelines,
        "config": config,
        "secret_config": plugin.config().secret_keys().collect::<Vec<_>>(),
    })
}
