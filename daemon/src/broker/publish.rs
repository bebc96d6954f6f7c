//! Publishes with publisher confirms and `mandatory`, so a publish counts only once the broker has it.

use std::time::Duration;

use anyhow::Context;
use lapin::Confirmation;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;

use super::convert::properties_to_amqp;
use crate::message::Outgoing;

/// How long to wait for the broker to confirm a publish (a broker alarm blocks publishers).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a publish interrupted by a lost connection checks whether lapin recovered it.
const RECOVERY_POLL: Duration = Duration::from_millis(20);

/// How many times one message is published across lost connections before giving up.
const PUBLISH_TRIES: u32 = 3;

/// Why a publish did not reach a queue.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No queue was bound to take it (`mandatory` returned it).
    #[error(
        "unroutable: exchange {exchange:?} routing key {routing_key:?} reaches no queue ({reply})"
    )]
    Returned {
        /// Exchange published to.
        exchange: String,
        /// Routing key used.
        routing_key: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The message cannot be published as given (a header breaking the contract's rules, a
    /// property too long for AMQP); nothing was sent.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The broker refused it.
    #[error("the broker nacked the publish to exchange {0:?}")]
    Nacked(String),
    /// No confirm within [`CONFIRM_TIMEOUT`].
    #[error("no publisher confirm within {} s (is the broker in a resource alarm?)", CONFIRM_TIMEOUT.as_secs())]
    Timeout,
    /// The channel or connection failed.
    #[error("publish failed: {0}")]
    Broker(String),
}

/// A channel in confirm mode.
#[derive(Clone)]
pub struct Publisher {
    channel: lapin::Channel,
}

impl Publisher {
    pub(super) async fn open(connection: &lapin::Connection) -> anyhow::Result<Self> {
        let channel = connection
            .create_channel()
            .await
            .context("cannot open a channel to publish")?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .context("cannot enable publisher confirms")?;
        Ok(Self { channel })
    }

    /// Publishes one message and waits for the broker's confirm. If the channel is lost on
    /// the way, waits (up to [`CONFIRM_TIMEOUT`]) for lapin to recover it and publishes again:
    /// an unconfirmed publish may or may not have reached the broker, so a message can then
    /// arrive twice, never zero times.
    pub async fn publish(&self, message: &Outgoing) -> Result<(), PublishError> {
        let deadline = tokio::time::Instant::now() + CONFIRM_TIMEOUT;
        let mut tries = 1;
        loop {
            match self.publish_once(message).await {
                Err(PublishError::Broker(error))
                    if tries < PUBLISH_TRIES && self.recovered_by(deadline).await =>
                {
                    tracing::debug!(%error, "publish interrupted by a lost connection; publishing again");
                    tries += 1;
                }
                result => return result,
            }
        }
    }

    /// Waits until the channel is open again after lapin recovered it; false if it is closed
    /// for good or still down at `deadline`.
    async fn recovered_by(&self, deadline: tokio::time::Instant) -> bool {
        loop {
            let status = self.channel.status();
            if status.connected() {
                return true;
            }
            // Initializing: reopening on a recovered connection; anything else is closed.
            if !status.initializing() || tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(RECOVERY_POLL).await;
        }
    }

    async fn publish_once(&self, message: &Outgoing) -> Result<(), PublishError> {
        let properties = properties_to_amqp(&message.properties).map_err(PublishError::Invalid)?;
        let confirm = self
            .channel
            .basic_publish(
                ShortString::from(message.exchange.as_str()),
                ShortString::from(message.routing_key.as_str()),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            )
            .await
            .map_err(|e| PublishError::Broker(e.to_string()))?;
        let confirmation = tokio::time::timeout(CONFIRM_TIMEOUT, confirm)
            .await
            .map_err(|_| PublishError::Timeout)?
            .map_err(|e| PublishError::Broker(e.to_string()))?;
        match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(PublishError::Returned {
                    exchange: message.exchange.clone(),
                    routing_key: message.routing_key.clone(),
                    reply: returned.reply_text.as_str().to_owned(),
                })
            }
            Confirmation::Nack(None) => Err(PublishError::Nacked(message.exchange.clone())),
            Confirmation::NotRequested => Err(PublishError::Broker(
                "publisher confirms are not enabled on this channel".into(),
            )),
        }
    }

    /// Publishes every message and waits until all are confirmed; the first failure is returned.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), PublishError> {
        match messages {
            [] => Ok(()),
            [one] => self.publish(one).await,
            many => {
                let results =
                    futures_util::future::join_all(many.iter().map(|m| self.publish(m))).await;
                results.into_iter().collect()
            }
        }
    }
}
