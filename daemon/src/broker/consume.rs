//! Consumes one queue with manual acks; each delivery becomes a plain [`Message`] and its [`Acker`].

use std::sync::{Arc, Mutex};

use anyhow::Context;
use futures_util::StreamExt;
use lapin::options::{BasicCancelOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::{FieldTable, ShortString};

use super::Acker;
use super::convert::{delivery_count, properties_from_amqp};
use super::settle::{Settler, ack_batch};
use crate::message::Message;

/// Consumers whose channel the broker closed, kept until their connection ends.
///
/// lapin 4.12 sends `basic.cancel` when the last handle of a consumer it still believes
/// active is dropped. After the broker closed the channel with an error (a consumer timeout,
/// say), the consumer is still "active" to lapin, and once lapin has removed the channel that
/// cancel fails with `InvalidChannel` — which lapin takes for a connection error and answers
/// by recovering the whole connection: every other pipeline consuming on it would get its
/// channel reopened and its unacked deliveries redelivered. So such a consumer is never
/// dropped while its connection lives: it is drained of what it buffered and parked here.
/// One small entry per broker-closed channel; freed with the connection.
#[derive(Clone, Default)]
pub(super) struct Retired(Arc<Mutex<Vec<lapin::Consumer>>>);

impl Retired {
    fn park(&self, mut consumer: lapin::Consumer) {
        use futures_util::FutureExt;
        // Buffered deliveries of a closed channel cannot be settled: let them go now.
        while let Some(Some(_)) = consumer.next().now_or_never() {}
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(consumer);
    }

    /// How many consumers are parked.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

/// A manual-ack consumer on its own channel.
pub struct Consumer {
    channel: lapin::Channel,
    /// Always `Some` until dropped (see [`Retired`]).
    inner: Option<lapin::Consumer>,
    retired: Retired,
    queue: String,
    tag: ShortString,
    coalesce_acks: bool,
    /// How many acks one `multiple` ack covers at most (from the prefetch).
    batch: u64,
    settler: Option<Settler>,
    /// The delivery tag of the last delivery received.
    last_tag: u64,
    /// Read `x-delivery-count` (a quorum queue's own count).
    quorum: bool,
}

impl Consumer {
    pub(super) async fn start(
        connection: &lapin::Connection,
        retired: Retired,
        queue: &str,
        prefetch: u16,
        tag: &str,
        coalesce_acks: bool,
        quorum: bool,
    ) -> anyhow::Result<Self> {
        let channel = connection
            .create_channel()
            .await
            .context("cannot open a channel to consume")?;
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .with_context(|| format!("basic.qos({prefetch}) refused"))?;
        let inner = channel
            .basic_consume(
                ShortString::from(queue),
                ShortString::from(tag),
                BasicConsumeOptions {
                    no_ack: false,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("cannot consume queue {queue:?}"))?;
        let tag = inner.tag();
        let batch = ack_batch(prefetch);
        Ok(Self {
            channel,
            inner: Some(inner),
            retired,
            queue: queue.to_owned(),
            tag,
            coalesce_acks,
            batch,
            settler: coalesce_acks.then(|| Settler::start(batch)),
            last_tag: 0,
            quorum,
        })
    }

    /// The next delivery; `None` once the consumer is cancelled (by us or the broker).
    ///
    /// The message is boxed: it is moved from here to the pipeline, into the message's future,
    /// and lent to the plugin's instance for the call, each time as a pointer.
    pub async fn next(&mut self) -> Option<anyhow::Result<(Box<Message>, Acker)>> {
        let delivery = match self.inner.as_mut()?.next().await? {
            Ok(delivery) => delivery,
            Err(e) => {
                return Some(Err(
                    anyhow::Error::new(e).context(format!("consumer on {:?} failed", self.queue))
                ));
            }
        };
        let message = Box::new(Message {
            exchange: delivery.exchange.into(),
            routing_key: delivery.routing_key.into(),
            queue: self.queue.clone(),
            redelivered: delivery.redelivered,
            delivery_count: if self.quorum {
                delivery_count(&delivery.properties)
            } else {
                None
            },
            properties: properties_from_amqp(&delivery.properties),
            body: delivery.data,
        });
        if delivery.delivery_tag <= self.last_tag {
            // Tags only grow on a channel: this is a new channel, recovered by lapin after the
            // connection was lost. Acks of the old one are refused by lapin (the broker
            // redelivers those messages); the new one gets its own watermark from tag 1. The
            // old settler ends once the last delivery of the old channel is settled.
            tracing::info!(
                queue = self.queue,
                "consumer restored on a recovered channel; unsettled deliveries of the lost one are redelivered"
            );
            if self.coalesce_acks {
                self.settler = Some(Settler::start(self.batch));
            }
        }
        self.last_tag = delivery.delivery_tag;
        let coalesce = self.settler.as_ref().map(Settler::sender);
        Some(Ok((
            message,
            Acker::new(delivery.acker, delivery.delivery_tag, coalesce),
        )))
    }

    /// Stops deliveries (`basic.cancel`). Deliveries already received can still be settled.
    pub async fn cancel(&self) {
        if self.channel.status().connected() {
            let _ = self
                .channel
                .basic_cancel(self.tag.clone(), BasicCancelOptions::default())
                .await;
        }
    }

    /// Sends the acks handed over so far, then closes the channel; deliveries not yet
    /// settled go back to the queue.
    pub async fn close(mut self) {
        if let Some(settler) = self.settler.take() {
            settler.flush().await;
        }
        if self.channel.status().connected() {
            let _ = self
                .channel
                .close(200, ShortString::from("pipeline stopped"))
                .await;
        }
    }
}

impl Drop for Consumer {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && !self.channel.status().connected()
        {
            self.retired.park(inner);
        }
    }
}

#[cfg(test)]
#[path = "consume_tests.rs"]
mod tests;
