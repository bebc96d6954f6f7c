//! Reading and replaying a dead-letter queue (`warren dlq`): the AMQP side.

use anyhow::Context;
use lapin::options::{
    BasicAckOptions, BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions,
    QueueDeclareOptions,
};
use lapin::types::{FieldTable, ShortString};

use super::Connection;
use super::convert::{properties_from_amqp, properties_to_amqp};
use crate::message::Properties;

/// One dead-lettered message, as read.
#[derive(Debug)]
pub struct DeadMessage {
    /// Its properties, headers included.
    pub properties: Properties,
    /// Its body.
    pub body: Vec<u8>,
}

impl Connection {
    /// How many messages `queue` holds (a passive declare).
    pub async fn queue_depth(&self, queue: &str) -> anyhow::Result<u32> {
        let channel = self.inner.create_channel().await?;
        let declared = channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("queue {queue:?} does not exist"))?;
        let _ = channel.close(200, ShortString::from("counted")).await;
        Ok(declared.message_count())
    }

    /// Reads up to `max` messages of `queue` without taking them: they are fetched unacked and
    /// all go back to the queue, in their order, when the channel closes.
    pub async fn peek(&self, queue: &str, max: usize) -> anyhow::Result<Vec<DeadMessage>> {
        let channel = self.inner.create_channel().await?;
        let mut messages = Vec::new();
        while messages.len() < max {
            let got = channel
                .basic_get(ShortString::from(queue), BasicGetOptions { no_ack: false })
                .await
                .with_context(|| format!("cannot read queue {queue:?}"))?;
            let Some(got) = got else { break };
            messages.push(DeadMessage {
                properties: properties_from_amqp(&got.delivery.properties),
                body: got.delivery.data,
            });
        }
        let _ = channel.close(200, ShortString::from("peeked")).await;
        Ok(messages)
    }

    /// Moves messages from `from` to the queue `to`, `window` at a time: each window is
    /// published (mandatory, confirmed), then acked, so a replay cut off anywhere loses
    /// nothing and repeats at most one window. `rewrite` gives what to publish for a message,
    /// or `None` to leave it in `from`. Stops after `limit` moved, or when `from` is empty;
    /// calls `progress` with the count after each window. Returns how many were moved.
    pub async fn replay(
        &self,
        from: &str,
        to: &str,
        limit: usize,
        window: usize,
        rewrite: impl Fn(DeadMessage) -> Option<DeadMessage>,
        progress: impl Fn(usize),
    ) -> anyhow::Result<usize> {
        let channel = self.inner.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut moved = 0;
        'windows: while moved < limit {
            let mut confirms = Vec::new();
            while confirms.len() < window.min(limit - moved) {
                let got = channel
                    .basic_get(ShortString::from(from), BasicGetOptions { no_ack: false })
                    .await
                    .with_context(|| format!("cannot read queue {from:?}"))?;
                let Some(got) = got else { break };
                let tag = got.delivery.delivery_tag;
                let message = DeadMessage {
                    properties: properties_from_amqp(&got.delivery.properties),
                    body: got.delivery.data,
                };
                // Left unacked: it goes back to `from` when the channel closes.
                let Some(message) = rewrite(message) else {
                    continue;
                };
                let properties =
                    properties_to_amqp(&message.properties).map_err(anyhow::Error::msg)?;
                let confirm = channel
                    .basic_publish(
                        ShortString::from(""),
                        ShortString::from(to),
                        BasicPublishOptions {
                            mandatory: true,
                            ..BasicPublishOptions::default()
                        },
                        &message.body,
                        properties,
                    )
                    .await?;
                confirms.push((tag, confirm));
            }
            if confirms.is_empty() {
                break 'windows;
            }
            let count = confirms.len();
            let mut published = Vec::with_capacity(count);
            for (tag, confirm) in confirms {
                let confirmation = confirm.await?;
                if !matches!(confirmation, lapin::Confirmation::Ack(None)) {
                    anyhow::bail!(
                        "the broker did not take a replayed message for queue {to:?}; it stays in {from:?}"
                    );
                }
                published.push(tag);
            }
            // Only now, every one of them confirmed: taken out of `from`. (One by one: a
            // message `rewrite` left in `from` may sit between them.)
            for tag in published {
                channel
                    .basic_ack(tag, BasicAckOptions::default())
                    .await
                    .context("cannot ack a replayed message (it stays in the dead-letter queue, and may be replayed twice)")?;
            }
            moved += count;
            progress(moved);
        }
        let _ = channel.close(200, ShortString::from("replayed")).await;
        Ok(moved)
    }
}
