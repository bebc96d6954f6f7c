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

    /// Publishes one message and waits for the broker's confirm.
    pub async fn publish(&self, message: &Outgoing) -> Result<(), PublishError> {
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
                properties_to_amqp(&message.properties),
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
