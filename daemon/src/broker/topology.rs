//! Declares the configured exchanges, queues and bindings, in that order, at start-up.

use anyhow::{Context, anyhow};
use lapin::ExchangeKind as LapinKind;
use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};

use super::convert::arguments_to_amqp;
use crate::config::{ArgValue, Config, ExchangeKind};

pub(super) async fn declare(connection: &lapin::Connection, config: &Config) -> anyhow::Result<()> {
    let channel = connection
        .create_channel()
        .await
        .context("cannot open a channel to declare the topology")?;
    exchanges(&channel, config).await?;
    queues(connection, &channel, config).await?;
    bindings(&channel, config).await?;
    let _ = channel.close(200, ShortString::from("declared")).await;
    Ok(())
}

async fn exchanges(channel: &lapin::Channel, config: &Config) -> anyhow::Result<()> {
    for (i, e) in config.exchanges.iter().enumerate() {
        let kind = match e.kind {
            ExchangeKind::Direct => LapinKind::Direct,
            ExchangeKind::Fanout => LapinKind::Fanout,
            ExchangeKind::Topic => LapinKind::Topic,
            ExchangeKind::Headers => LapinKind::Headers,
        };
        channel
            .exchange_declare(
                ShortString::from(e.name.as_str()),
                kind,
                ExchangeDeclareOptions {
                    durable: e.durable,
                    auto_delete: e.auto_delete,
                    ..ExchangeDeclareOptions::default()
                },
                arguments_to_amqp(&e.arguments),
            )
            .await
            .map_err(|err| {
                anyhow!(
                    "{}: exchanges[{i}] {:?} cannot be declared: {err} (if it exists with other settings, match them or delete it)",
                    config.path.display(),
                    e.name
                )
            })?;
    }
    Ok(())
}

async fn queues(
    connection: &lapin::Connection,
    channel: &lapin::Channel,
    config: &Config,
) -> anyhow::Result<()> {
    for (i, q) in config.queues.iter().enumerate() {
        if let Some(ArgValue::Text(dlx)) = q.arguments.get("x-dead-letter-exchange") {
            let declared = config.exchanges.iter().any(|e| &e.name == dlx);
            if !declared && !dlx.is_empty() && !exchange_exists(connection, dlx).await {
                return Err(anyhow!(
                    "{}: queues[{i}].dead_letter_exchange: exchange {dlx:?} does not exist, so rejected messages would be dropped; declare it under [[exchanges]]",
                    config.path.display()
                ));
            }
        }
        channel
            .queue_declare(
                ShortString::from(q.name.as_str()),
                QueueDeclareOptions {
                    durable: q.durable,
                    auto_delete: q.auto_delete,
                    ..QueueDeclareOptions::default()
                },
                arguments_to_amqp(&q.arguments),
            )
            .await
            .map_err(|err| {
                anyhow!(
                    "{}: queues[{i}] {:?} cannot be declared: {err} (a queue that exists with other arguments must be deleted or matched)",
                    config.path.display(),
                    q.name
                )
            })?;
    }
    Ok(())
}

async fn bindings(channel: &lapin::Channel, config: &Config) -> anyhow::Result<()> {
    for (i, b) in config.bindings.iter().enumerate() {
        channel
            .queue_bind(
                ShortString::from(b.queue.as_str()),
                ShortString::from(b.exchange.as_str()),
                ShortString::from(b.routing_key.as_str()),
                QueueBindOptions::default(),
                arguments_to_amqp(&b.arguments),
            )
            .await
            .map_err(|err| {
                anyhow!(
                    "{}: bindings[{i}] ({} -> {}) cannot be declared: {err}",
                    config.path.display(),
                    b.exchange,
                    b.queue
                )
            })?;
    }
    Ok(())
}

/// A passive declare on a throw-away channel (a missing exchange closes the channel).
async fn exchange_exists(connection: &lapin::Connection, name: &str) -> bool {
    let Ok(channel) = connection.create_channel().await else {
        return false;
    };
    let found = channel
        .exchange_declare(
            ShortString::from(name),
            LapinKind::Direct,
            ExchangeDeclareOptions {
                passive: true,
                ..ExchangeDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .is_ok();
    if found {
        let _ = channel.close(200, ShortString::from("checked")).await;
    }
    found
}
