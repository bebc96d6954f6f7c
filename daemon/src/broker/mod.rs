//! The wall around RabbitMQ: the only module that imports lapin.
//!
//! Warren opens two connections: one that consumes and settles, one that publishes with
//! publisher confirms. A broker under a memory alarm blocks connections that publish,
//! acks included; keeping them apart lets acks and rejects flow while publishes wait.
//!
//! Both connections use lapin's own recovery (`enable_auto_recover`): when a connection is
//! lost, lapin reconnects to the same URL, reopens its channels (QoS and confirm mode
//! included) and restarts their consumers. Deliveries of the lost channel cannot be settled
//! any more (lapin refuses their acks; the broker redelivers them), and the recovered
//! channel numbers its deliveries from 1 again, which [`Consumer`] notices. When lapin gives
//! up (the node stays down past [`RECOVERY_ATTEMPTS`] retries: seen through [`Connects`],
//! since lapin itself leaves such a connection "reconnecting") or does not finish in time,
//! the daemon rebuilds everything itself, trying every URL of `[broker] urls`.

mod connects;
mod consume;
mod convert;
mod dead_letters;
pub mod links;
mod publish;
mod settle;
mod tls;
mod topology;

/// The longest AMQP short string (exchange, routing key, header keys, most properties).
pub const SHORT_STRING_MAX: usize = 255;

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use lapin::{ConnectionProperties, types::ShortString};

use connects::Connects;
pub use consume::Consumer;
pub use dead_letters::DeadMessage;
pub use publish::{CONFIRM_TIMEOUT, PublishError, Publisher};
pub use settle::{Acker, Settled, Settlement};

use crate::config::{BrokerSettings, Config};

/// Which of warren's connections this is; part of the connection name the broker shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Consumes and settles deliveries.
    Consume,
    /// Publishes, with confirms.
    Publish,
}

impl Role {
    /// `consume` or `publish`.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Consume => "consume",
            Role::Publish => "publish",
        }
    }
}

/// lapin's first wait before reconnecting a lost connection; doubled each round, with jitter.
pub const RECOVERY_MIN_DELAY: Duration = Duration::from_millis(250);
/// lapin's longest wait between two reconnection attempts.
pub const RECOVERY_MAX_DELAY: Duration = Duration::from_secs(1);
/// How many times lapin retries the TCP connection (and the recovery rounds) before giving
/// up: a few seconds, enough for a dropped connection; past that the daemon reconnects
/// itself, to another node if `[broker] urls` has several.
pub const RECOVERY_ATTEMPTS: usize = 3;

/// How long a replaced connection that lapin is still recovering is watched (lapin's own
/// schedule ends well before).
const RETIRE_WATCH: Duration = Duration::from_secs(120);
/// How long closing a connection may wait for the broker's answer.
const CLOSE_LIMIT: Duration = Duration::from_secs(5);
/// How often a replaced connection is checked.
const RETIRE_POLL: Duration = Duration::from_millis(100);

/// One AMQP connection.
pub struct Connection {
    inner: Arc<lapin::Connection>,
    /// lapin's connects for it, to see when its recovery gave up.
    connects: Connects,
    /// Consumers of channels the broker closed, kept as long as this connection (see
    /// [`consume::Retired`]).
    retired: consume::Retired,
    watcher: tokio::task::JoinHandle<()>,
    url_index: usize,
    user: String,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.watcher.abort();
    }
}

fn properties(name: &str) -> ConnectionProperties {
    ConnectionProperties::default()
        .with_connection_name(name.into())
        .enable_auto_recover()
        .configure_backoff(|backoff| {
            backoff
                .with_min_delay(RECOVERY_MIN_DELAY)
                .with_max_delay(RECOVERY_MAX_DELAY)
                .with_max_times(RECOVERY_ATTEMPTS)
                .with_jitter()
        })
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    message: String,
    /// False when retrying cannot help (credentials refused, vhost missing).
    pub retryable: bool,
}

/// Opens a connection, trying each URL in turn from the one at index `first`. The error
/// shows the URLs without their passwords and says how to start a local broker.
/// `recovered` is called each time lapin recovers the connection after losing it.
pub async fn connect(
    settings: &BrokerSettings,
    first: usize,
    role: Role,
    recovered: impl Fn() + Send + 'static,
) -> Result<Connection, ConnectError> {
    let name = format!("{} ({})", settings.connection_name, role.as_str());
    let mut last = ConnectError {
        message: "no broker URL configured".to_owned(),
        retryable: false,
    };
    let count = settings.urls.len();
    for index in (0..count).map(|i| (first + i) % count) {
        let url = &settings.urls[index];
        let connects = Connects::default();
        match tls::open(url, settings, properties(&name), &connects).await {
            Ok(inner) => {
                let mut connection =
                    Connection::watched(inner, connects, url.to_string(), role, recovered);
                connection.url_index = index;
                // With EXTERNAL the broker takes the user from the certificate: known here
                // only if the URL names it too.
                connection.user = if tls::external_login(url, settings) && !tls::names_user(url) {
                    String::new()
                } else {
                    url_user(url.expose())
                };
                return Ok(connection);
            }
            Err(e) => {
                let retryable = retryable(&e) && !tls::is_certificate_problem(&e);
                let text = e.to_string();
                let tls_hint = tls::hint(&e, url, settings).map(|h| format!(" ({h})"));
                let hint = if let Some(hint) = &tls_hint {
                    hint.as_str()
                } else if !retryable {
                    " (check the user, password and vhost in [broker] url)"
                } else if matches!(e.kind(), lapin::ErrorKind::IOError(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
                {
                    " (is RabbitMQ running? on this machine: `rabbitmq-server -detached`)"
                } else {
                    ""
                };
                last = ConnectError {
                    message: format!("cannot connect to {url}: {text}{hint}"),
                    retryable,
                };
            }
        }
    }
    Err(last)
}

impl Connection {
    /// Wraps `inner`, reporting each recovery lapin completes on it.
    fn watched(
        inner: lapin::Connection,
        connects: Connects,
        shown_url: String,
        role: Role,
        recovered: impl Fn() + Send + 'static,
    ) -> Self {
        let mut events = inner.events_listener();
        let opened = tokio::time::Instant::now();
        let watcher = tokio::spawn(async move {
            while let Some(event) = events.next().await {
                // The first connection's own `Connected` may still arrive just after
                // `connect` returned; a recovery cannot: lapin waits at least
                // RECOVERY_MIN_DELAY before reconnecting.
                if matches!(event, lapin::Event::Connected)
                    && opened.elapsed() >= RECOVERY_MIN_DELAY
                {
                    recovered();
                    tracing::info!(
                        broker = %shown_url,
                        connection = role.as_str(),
                        "broker connection recovered by lapin; its channels and consumers are restored"
                    );
                }
            }
        });
        Self {
            inner: Arc::new(inner),
            connects,
            retired: consume::Retired::default(),
            watcher,
            url_index: 0,
            user: String::new(),
        }
    }

    /// The broker user this connection logged in as (the only `user_id` the broker lets it
    /// publish).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// Which of `[broker] urls` this connection uses (its index).
    pub fn url_index(&self) -> usize {
        self.url_index
    }

    /// Declares every exchange, queue and binding of the config (idempotent).
    pub async fn declare(&self, config: &Config) -> anyhow::Result<()> {
        topology::declare(&self.inner, config).await
    }

    /// Opens a channel with `basic.qos(prefetch)` and starts a manual-ack consumer on `queue`;
    /// with `coalesce_acks`, its acks are coalesced into `multiple` acks. The
    /// `x-delivery-count` header is read as the broker's count only if `quorum` (on other
    /// queues a producer may have set it).
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
        tag: &str,
        coalesce_acks: bool,
        quorum: bool,
    ) -> anyhow::Result<Consumer> {
        let retired = self.retired.clone();
        Consumer::start(
            &self.inner,
            retired,
            queue,
            prefetch,
            tag,
            coalesce_acks,
            quorum,
        )
        .await
    }

    /// Opens a channel in confirm mode for publishing; `reopened` is called each time the
    /// publisher has to reopen it after the broker closed it.
    pub async fn publisher(
        &self,
        reopened: impl Fn() + Send + Sync + 'static,
    ) -> anyhow::Result<Publisher> {
        Publisher::open(self.inner.clone(), reopened).await
    }

    /// True while the connection is open.
    pub fn is_connected(&self) -> bool {
        self.inner.status().connected()
    }

    /// True once the connection is closed or failed for good: lapin is not recovering it
    /// (see [`Connection::gave_up`]).
    pub fn is_lost(&self) -> bool {
        let status = self.inner.status();
        status.closed() || status.errored() || self.gave_up()
    }

    /// True while lapin is reconnecting this connection after losing it.
    pub fn is_recovering(&self) -> bool {
        reconnecting(self.inner.status(), &self.connects)
    }

    /// True when lapin has stopped trying to reconnect, though it still calls the connection
    /// "reconnecting": every connect of its last round failed (see [`Connects`]).
    pub fn gave_up(&self) -> bool {
        gave_up(self.inner.status(), &self.connects)
    }

    /// Closes the connection; unacked deliveries go back to their queues. A connection lapin
    /// is still recovering is watched for [`RETIRE_WATCH`] and closed if it comes back, so
    /// that no consumer lingers on a connection warren has replaced.
    pub async fn close(&self) {
        if self.is_connected() {
            // A broker that stops answering must not hold the daemon's stop: past the limit
            // the socket is dropped with the connection, which the broker treats the same.
            let closing = self.inner.close(200, ShortString::from("warren stopping"));
            if tokio::time::timeout(CLOSE_LIMIT, closing).await.is_err() {
                tracing::warn!(
                    limit_ms = CLOSE_LIMIT.as_millis() as u64,
                    "the broker did not answer connection.close in time"
                );
            }
        } else if self.is_recovering() {
            let inner = self.inner.clone();
            tokio::spawn(async move {
                let deadline = tokio::time::Instant::now() + RETIRE_WATCH;
                while tokio::time::Instant::now() < deadline {
                    let status = inner.status();
                    if status.connected() {
                        tracing::info!("a replaced connection came back (lapin): closing it");
                        let _ = inner
                            .close(200, ShortString::from("replaced by another connection"))
                            .await;
                        return;
                    }
                    if status.closed() || status.errored() {
                        return;
                    }
                    tokio::time::sleep(RETIRE_POLL).await;
                }
            });
        }
    }
}

/// The user name in an AMQP URL, decoded (`guest` when the URL has none, as lapin does).
fn url_user(url: &str) -> String {
    url.parse::<lapin::uri::AMQPUri>()
        .map(|uri| uri.authority.userinfo.username)
        .unwrap_or_else(|_| "guest".to_owned())
}

/// False for what retrying cannot fix: the broker refused the credentials (403
/// ACCESS_REFUSED) or the vhost (530 NOT_ALLOWED), or the client could not authenticate.
fn retryable(error: &lapin::Error) -> bool {
    match error.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => !matches!(amqp.get_id(), 403 | 530),
        lapin::ErrorKind::AuthProviderError(_) => false,
        _ => true,
    }
}

/// A cheap handle that tells whether a connection is open, and to which node.
#[derive(Clone)]
pub struct ConnectionHealth {
    status: lapin::ConnectionStatus,
    connects: Connects,
    url_index: usize,
}

impl ConnectionHealth {
    /// True while the connection is open.
    pub fn is_connected(&self) -> bool {
        self.status.connected()
    }

    /// How the connection stands with the node at `url_index` of `[broker] urls`:
    /// `connected`, `recovering` (lapin reconnecting), `lost`, or `standby` if it is not on
    /// that node.
    pub fn state_on(&self, url_index: usize) -> &'static str {
        if url_index != self.url_index {
            "standby"
        } else if self.status.connected() {
            "connected"
        } else if reconnecting(&self.status, &self.connects) {
            "recovering"
        } else {
            "lost"
        }
    }
}

impl Connection {
    /// A handle on this connection's state, for health checks.
    pub fn health(&self) -> ConnectionHealth {
        ConnectionHealth {
            status: self.inner.status().clone(),
            connects: self.connects.clone(),
            url_index: self.url_index,
        }
    }
}

/// True while lapin is (re)connecting and has not given up.
fn reconnecting(status: &lapin::ConnectionStatus, connects: &Connects) -> bool {
    (status.reconnecting() || status.connecting()) && !connects.exhausted()
}

/// True when lapin calls the connection (re)connecting but has stopped trying.
fn gave_up(status: &lapin::ConnectionStatus, connects: &Connects) -> bool {
    (status.reconnecting() || status.connecting()) && connects.exhausted()
}
