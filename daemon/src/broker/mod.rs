//! The wall around RabbitMQ: the only module that imports lapin.
//!
//! Warren opens two connections: one that consumes and settles, one that publishes with
//! publisher confirms. A broker under a memory alarm blocks connections that publish,
//! acks included; keeping them apart lets acks and rejects flow while publishes wait.

mod consume;
mod convert;
mod publish;
mod settle;
mod topology;

use lapin::{ConnectionProperties, types::ShortString};

pub use consume::Consumer;
pub use publish::{CONFIRM_TIMEOUT, PublishError, Publisher};
pub use settle::Acker;

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
    fn as_str(self) -> &'static str {
        match self {
            Role::Consume => "consume",
            Role::Publish => "publish",
        }
    }
}

/// One AMQP connection.
pub struct Connection {
    inner: lapin::Connection,
}

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConnectError {
    message: String,
    /// False when retrying cannot help (credentials refused, vhost missing).
    pub retryable: bool,
}

/// Opens a connection, trying each URL in turn. The error shows the URLs without their
/// passwords and says how to start a local broker.
pub async fn connect(settings: &BrokerSettings, role: Role) -> Result<Connection, ConnectError> {
    let name = format!("{} ({})", settings.connection_name, role.as_str());
    let mut last = ConnectError {
        message: "no broker URL configured".to_owned(),
        retryable: false,
    };
    for url in &settings.urls {
        let properties = ConnectionProperties::default().with_connection_name(name.clone().into());
        match lapin::Connection::connect(url.expose(), properties).await {
            Ok(inner) => return Ok(Connection { inner }),
            Err(e) => {
                let text = e.to_string();
                let refused_access = text.contains("ACCESS_REFUSED")
                    || text.contains("NOT_ALLOWED")
                    || text.to_ascii_lowercase().contains("auth");
                let hint = if refused_access {
                    " (check the user, password and vhost in [broker] url)"
                } else if text.contains("refused") {
                    " (is RabbitMQ running? on this machine: `rabbitmq-server -detached`)"
                } else {
                    ""
                };
                last = ConnectError {
                    message: format!("cannot connect to {url}: {text}{hint}"),
                    retryable: !refused_access,
                };
            }
        }
    }
    Err(last)
}

impl Connection {
    /// Declares every exchange, queue and binding of the config (idempotent).
    pub async fn declare(&self, config: &Config) -> anyhow::Result<()> {
        topology::declare(&self.inner, config).await
    }

    /// Opens a channel with `basic.qos(prefetch)` and starts a manual-ack consumer on `queue`;
    /// with `coalesce_acks`, its acks are coalesced into `multiple` acks.
    pub async fn consume(
        &self,
        queue: &str,
        prefetch: u16,
        tag: &str,
        coalesce_acks: bool,
    ) -> anyhow::Result<Consumer> {
        Consumer::start(&self.inner, queue, prefetch, tag, coalesce_acks).await
    }

    /// Opens a channel in confirm mode for publishing.
    pub async fn publisher(&self) -> anyhow::Result<Publisher> {
        Publisher::open(&self.inner).await
    }

    /// True while the connection is open.
    pub fn is_connected(&self) -> bool {
        self.inner.status().connected()
    }

    /// Closes the connection; unacked deliveries go back to their queues.
    pub async fn close(&self) {
        if self.is_connected() {
            let _ = self
                .inner
                .close(200, ShortString::from("warren stopping"))
                .await;
        }
    }
}

/// A cheap handle that tells whether a connection is open.
#[derive(Clone)]
pub struct ConnectionHealth(lapin::ConnectionStatus);

impl ConnectionHealth {
    /// True while the connection is open.
    pub fn is_connected(&self) -> bool {
        self.0.connected()
    }
}

impl Connection {
    /// A handle on this connection's state, for health checks.
    pub fn health(&self) -> ConnectionHealth {
        ConnectionHealth(self.inner.status().clone())
    }
}
