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

use anyhow::anyhow;
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

/// Opens a connection. The error shows the URL without its password and says how to start a local broker.
pub async fn connect(settings: &BrokerSettings, role: Role) -> anyhow::Result<Connection> {
    let name = format!("{} ({})", settings.connection_name, role.as_str());
    let properties = ConnectionProperties::default().with_connection_name(name.into());
    let inner = lapin::Connection::connect(settings.url.expose(), properties)
        .await
        .map_err(|e| {
            let text = e.to_string();
            let hint = if text.contains("refused") {
                " (is RabbitMQ running? on this machine: `rabbitmq-server -detached`)"
            } else if text.to_ascii_lowercase().contains("access") || text.contains("auth") {
                " (check the user and password in [broker] url)"
            } else {
                ""
            };
            anyhow!("cannot connect to {}: {text}{hint}", settings.url)
        })?;
    Ok(Connection { inner })
}

impl Connection {
    /// Declares every exchange, queue and binding of the config (idempotent).
    pub async fn declare(&self, config: &Config) -> anyhow::Result<()> {
        topology::declare(&self.inner, config).await
    }

    /// Opens a channel with `basic.qos(prefetch)` and starts a manual-ack consumer on `queue`.
    pub async fn consume(&self, queue: &str, prefetch: u16, tag: &str) -> anyhow::Result<Consumer> {
        Consumer::start(&self.inner, queue, prefetch, tag).await
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
