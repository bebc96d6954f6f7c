//! `warren publish`: a producer for humans and scripts, one message per line of input, each confirmed.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use crate::broker::{self, Role};
use crate::config::{
    BrokerSettings, BrokerUrl, Config, DEFAULT_BROKER_URL, DEFAULT_STARTUP_TIMEOUT_MS,
};
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

/// `warren publish`: its command-line arguments.
#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    /// Broker URL; defaults to [broker] url of --config, else the local broker.
    #[arg(long, env = "WARREN_BROKER_URL", hide_env_values = true)]
    pub url: Option<String>,
    /// Take the broker URL from this configuration file.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Exchange to publish to (default: the default exchange).
    #[arg(long, short, default_value = "")]
    pub exchange: String,
    /// Routing key.
    #[arg(long, short, conflicts_with = "queue")]
    pub routing_key: Option<String>,
    /// Publish straight to this queue (the default exchange with the queue as routing key).
    #[arg(long, short)]
    pub queue: Option<String>,
    /// Message priority (the queue needs max_priority).
    #[arg(long, short)]
    pub priority: Option<u8>,
    /// Publish transient messages instead of persistent ones.
    #[arg(long)]
    pub transient: bool,
    /// reply-to property.
    #[arg(long)]
    pub reply_to: Option<String>,
    /// correlation-id property.
    #[arg(long)]
    pub correlation_id: Option<String>,
    /// content-type property.
    #[arg(long)]
    pub content_type: Option<String>,
}

/// `warren publish`: publishes each line of standard input to where `args` say.
pub async fn command(args: PublishArgs) -> anyhow::Result<()> {
    let one = |url: &str| -> anyhow::Result<BrokerSettings> {
        Ok(BrokerSettings {
            urls: vec![BrokerUrl::parse(url).map_err(|e| anyhow::anyhow!("--url: {e}"))?],
            connection_name: format!("warren-publish@{}", crate::config::hostname()),
            startup_timeout: Duration::from_millis(DEFAULT_STARTUP_TIMEOUT_MS),
            tls: None,
        })
    };
    let broker = match (args.url, args.config) {
        (Some(url), _) => one(&url)?,
        (None, Some(path)) => Config::load(&path)?.broker,
        (None, None) => one(DEFAULT_BROKER_URL)?,
    };
    let (exchange, routing_key) = match (args.queue, args.routing_key) {
        (Some(queue), _) => (String::new(), queue),
        (None, Some(key)) => (args.exchange, key),
        (None, None) if !args.exchange.is_empty() => (args.exchange, String::new()),
        (None, None) => anyhow::bail!(
            "say where to publish: --queue NAME, or --exchange NAME with --routing-key KEY"
        ),
    };
    let mut target = Target::new(exchange, routing_key);
    target.properties.priority = args.priority;
    target.properties.reply_to = args.reply_to;
    target.properties.correlation_id = args.correlation_id;
    target.properties.content_type = args.content_type;
    if args.transient {
        target.properties.delivery_mode = Some(1);
    }
    let stdin = tokio::io::BufReader::new(tokio::io::stdin());
    let count = publish_lines(&broker, &target, stdin)
        .await
        .context("warren publish")?;
    eprintln!("published {count} messages (confirmed by the broker)");
    Ok(())
}
