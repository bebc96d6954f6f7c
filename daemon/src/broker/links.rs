//! warren's links to the broker: both connections, opened (and reopened) with capped,
//! jittered backoff across the URLs of `[broker] urls`, the topology declared on them.

use std::time::Duration;

use super::{ConnectError, Connection, ConnectionHealth, Role, connect};
use crate::config::Config;
use crate::metrics::Metrics;
use tokio_util::sync::CancellationToken;

/// First wait before reconnecting to the broker; doubled after each failure.
pub const RECONNECT_MIN: Duration = Duration::from_millis(500);
pub const CONNECTION_CHECK: Duration = Duration::from_millis(250);
/// Longest wait between reconnection attempts.
pub const RECONNECT_MAX: Duration = Duration::from_secs(30);
/// The broker side of a running daemon: both connections (each pipeline opens its own
/// channels on them).
pub struct Links {
    /// Consumes and settles.
    pub consume: Connection,
    /// Publishes, with confirms.
    pub publish: Connection,
}

/// Handles on the state of both connections, for the admin endpoint.
#[derive(Clone)]
pub struct LinksHealth {
    /// The consuming connection.
    pub consume: ConnectionHealth,
    /// The publishing connection.
    pub publish: ConnectionHealth,
}

impl Links {
    /// Handles on the state of both connections.
    pub fn health(&self) -> LinksHealth {
        LinksHealth {
            consume: self.consume.health(),
            publish: self.publish.health(),
        }
    }
}

/// Connects both connections, declares the topology and opens the publisher, retrying with
/// capped, jittered backoff until it works, `shutdown` is cancelled, or an error that
/// retrying cannot fix (credentials, a queue declared with other arguments). URLs are tried
/// from the one at index `first`; the publishing connection goes to the node the consuming
/// one reached.
pub async fn connect_all(
    config: &Config,
    first: usize,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    give_up_after: Option<Duration>,
) -> Result<Links, LinkError> {
    let started = tokio::time::Instant::now();
    let mut delay = RECONNECT_MIN;
    let mut attempt = 1u32;
    loop {
        let result = async {
            let open = |role: Role, first: usize| {
                let recovered = metrics.recoveries(role.as_str());
                connect(&config.broker, first, role, move || {
                    recovered.inc();
                })
            };
            let consume = open(Role::Consume, first).await?;
            let publish = open(Role::Publish, consume.url_index()).await?;
            consume.declare(config).await.map_err(Retry::Fatal)?;
            Ok::<_, Retry>(Links { consume, publish })
        }
        .await;
        match result {
            Ok(links) => {
                if attempt > 1 {
                    tracing::info!(attempt, "connected to the broker");
                }
                return Ok(links);
            }
            Err(Retry::Fatal(e)) => return Err(LinkError::Refused(e)),
            Err(Retry::Again(e))
                if give_up_after.is_some_and(|limit| started.elapsed() >= limit) =>
            {
                return Err(LinkError::Unreachable(e.context(format!(
                    "the broker stayed unreachable for {} s (broker.startup_timeout_ms)",
                    started.elapsed().as_secs()
                ))));
            }
            Err(Retry::Again(e)) => {
                let wait = jitter(delay);
                tracing::warn!(
                    attempt,
                    retry_in_ms = wait.as_millis() as u64,
                    error = %format!("{e:#}"),
                    "broker unavailable; retrying"
                );
                tokio::select! {
                    () = shutdown.cancelled() => {
                        return Err(LinkError::Stopped(e.context("stopped while connecting")));
                    }
                    () = tokio::time::sleep(wait) => {}
                }
                delay = (delay * 2).min(RECONNECT_MAX);
                attempt += 1;
            }
        }
    }
}

/// Why the broker links could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    /// Retrying cannot fix it: credentials or vhost refused, the topology refused (a queue
    /// declared with other arguments) — a matter of configuration.
    #[error("{0:#}")]
    Refused(anyhow::Error),
    /// The broker stayed unreachable past the limit given.
    #[error("{0:#}")]
    Unreachable(anyhow::Error),
    /// Asked to stop while connecting.
    #[error("{0:#}")]
    Stopped(anyhow::Error),
}

enum Retry {
    Again(anyhow::Error),
    Fatal(anyhow::Error),
}

impl From<ConnectError> for Retry {
    fn from(e: ConnectError) -> Self {
        if e.retryable {
            Retry::Again(e.into())
        } else {
            Retry::Fatal(e.into())
        }
    }
}

/// `delay` ± 20 %, so that many daemons do not reconnect in step.
pub fn jitter(delay: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let factor = 0.8 + f64::from(nanos % 1000) / 1000.0 * 0.4;
    delay.mul_f64(factor)
}
