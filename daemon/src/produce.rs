//! `warren publish`: a producer for humans and scripts, one message per line of input, each confirmed.

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::broker::{self, Role};
use crate::config::BrokerSettings;
use crate::decision::PERSISTENT;
use crate::message::{Outgoing, Properties, empty_properties};

/// Publishes awaiting confirmation at once.
pub const PUBLISH_WINDOW: usize = 256;

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct Target {
    /// Exchange (empty: the default exchange).
    pub exchange: String,
    /// Routing key (on the default exchange: the queue).
    pub routing_key: String,
    /// Properties given to every message.
    pub properties: Properties,
}

impl Target {
    /// Persistent messages to `exchange` with `routing_key`, no other properties.
    pub fn new(exchange: impl Into<String>, routing_key: impl Into<String>) -> Self {
        let mut properties = empty_properties();
        properties.delivery_mode = Some(PERSISTENT);
        Self {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            properties,
        }
    }
}

/// Publishes each line of `input` (without its line ending) as one message; returns how many
/// were confirmed. Stops at the first refused publish (unroutable, nacked).
pub async fn publish_lines(
    broker: &BrokerSettings,
    target: &Target,
    input: impl AsyncBufRead + Unpin,
) -> anyhow::Result<u64> {
    let connection = broker::connect(broker, 0, Role::Publish, || {}).await?;
    let publisher = connection.publisher(|| ()).await?;
    let mut lines = input.lines();
    let mut in_flight = FuturesUnordered::new();
    let mut confirmed = 0u64;
    let mut result = Ok(());
    while let Some(line) = lines.next_line().await? {
        let message = Outgoing {
            exchange: target.exchange.clone(),
            routing_key: target.routing_key.clone(),
            body: line.into_bytes(),
            properties: target.properties.clone(),
        };
        let publisher = publisher.clone();
        in_flight.push(async move { publisher.publish(&message).await });
        if in_flight.len() >= PUBLISH_WINDOW
            && let Some(r) = in_flight.next().await
        {
            if let Err(e) = r {
                result = Err(e);
                break;
            }
            confirmed += 1;
        }
    }
    while let Some(r) = in_flight.next().await {
        match r {
            Ok(()) => confirmed += 1,
            Err(e) => {
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
    }
    connection.close().await;
    result.with_context(|| format!("after {confirmed} confirmed messages"))?;
    Ok(confirmed)
}
