//! `warren dlq`: look at the messages in the pipelines' dead-letter queues, and put them back.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context;

use crate::broker::{self, Connection, DeadMessage, Role};
use crate::config::{Config, DEFAULT_CONFIG_PATH, DeadLetter, PipelineSettings};
use crate::message::{Field, HeaderValue, resolve};
use crate::pipeline::{DEAD_LETTER_HEADERS, REASON_HEADER, TIME_HEADER};

/// Messages published, then acked, at a time by a replay: what a replay cut off (even by
/// `kill -9`) may repeat.
pub const REPLAY_WINDOW: usize = 100;

/// Messages a listing reads at most to count reasons.
const LIST_SCAN_MAX: usize = 10_000;

/// `warren dlq`: its subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum DlqCommand {
    /// Counts by reason, then the first messages (id, reason, time) of each dead-letter queue.
    List(ListArgs),
    /// Moves messages back to their pipeline's queue (a confirmed publish, then an ack),
    /// unchanged but for warren's reason headers.
    Replay(ReplayArgs),
}

/// `warren dlq list`.
#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// The configuration file.
    #[arg(long, short, env = "WARREN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// Only this pipeline's dead-letter queue.
    #[arg(long, short)]
    pub pipeline: Option<String>,
    /// How many messages to show.
    #[arg(long, short = 'n', default_value_t = 20)]
    pub limit: usize,
    /// Show the bodies too (as text, or hex when they are not UTF-8).
    #[arg(long)]
    pub body: bool,
}

/// `warren dlq replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// The configuration file.
    #[arg(long, short, env = "WARREN_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    pub config: PathBuf,
    /// The pipeline whose dead-lettered messages go back to its queue.
    #[arg(long, short)]
    pub pipeline: String,
    /// Move at most this many.
    #[arg(long, short = 'n')]
    pub limit: Option<usize>,
    /// Only messages whose reason starts with this (e.g. "plugin failed").
    #[arg(long, short)]
    pub reason: Option<String>,
}

/// Runs a `warren dlq` subcommand.
pub async fn command(command: DlqCommand) -> anyhow::Result<()> {
    match command {
        DlqCommand::List(args) => {
            let config = Config::load(&args.config)?;
            let connection = connect(&config).await?;
            let mut out = String::new();
            for pipeline in chosen(&config, args.pipeline.as_deref())? {
                list(&connection, pipeline, &args, &mut out).await?;
            }
            connection.close().await;
            print!("{out}");
            Ok(())
        }
        DlqCommand::Replay(args) => {
            let config = Config::load(&args.config)?;
            let pipeline = chosen(&config, Some(&args.pipeline))?[0];
            let dead = dead_queue(pipeline)?;
            let connection = connect(&config).await?;
            let reason = args.reason.clone();
            let moved = connection
                .replay(
                    dead,
                    &pipeline.queue,
                    args.limit.unwrap_or(usize::MAX),
                    REPLAY_WINDOW,
                    |message| replayable(message, reason.as_deref()),
                    |moved| eprintln!("replayed {moved} messages so far"),
                )
                .await?;
            connection.close().await;
            eprintln!(
                "replayed {moved} messages from {dead} to {} (confirmed, then acked)",
                pipeline.queue
            );
            Ok(())
        }
    }
}

async fn connect(config: &Config) -> anyhow::Result<Connection> {
    Ok(broker::connect(&config.broker, 0, Role::Consume, || {}).await?)
}

/// The pipelines named (one), or all of them.
fn chosen<'a>(config: &'a Config, name: Option<&str>) -> anyhow::Result<Vec<&'a PipelineSettings>> {
    match name {
        None => Ok(config.pipelines.iter().collect()),
        Some(name) => {
            let pipeline = config
                .pipelines
                .iter()
                .find(|p| p.name == name)
                .with_context(|| {
                    let known: Vec<&str> =
                        config.pipelines.iter().map(|p| p.name.as_str()).collect();
                    format!(
                        "no pipeline named {name:?}; pipelines: [{}]",
                        known.join(", ")
                    )
                })?;
            Ok(vec![pipeline])
        }
    }
}

fn dead_queue(pipeline: &PipelineSettings) -> anyhow::Result<&str> {
    match &pipeline.dead_letter {
        DeadLetter::Queue(queue) => Ok(queue),
        DeadLetter::Broker => anyhow::bail!(
            "pipeline {}: its queue has a dead_letter_exchange; its rejected messages are wherever that exchange routes them",
            pipeline.name
        ),
        DeadLetter::Drop => anyhow::bail!(
            "pipeline {}: dead_letter_queue = false; rejected messages are dropped",
            pipeline.name
        ),
    }
}

async fn list(
    connection: &Connection,
    pipeline: &PipelineSettings,
    args: &ListArgs,
    out: &mut String,
) -> anyhow::Result<()> {
    let Ok(dead) = dead_queue(pipeline) else {
        let _ = writeln!(
            out,
            "pipeline {}: no dead-letter queue of warren's",
            pipeline.name
        );
        return Ok(());
    };
    let depth = connection.queue_depth(dead).await?;
    let messages = connection.peek(dead, LIST_SCAN_MAX).await?;
    let _ = writeln!(
        out,
        "pipeline {}: {dead} holds {depth} messages",
        pipeline.name
    );
    let mut reasons: BTreeMap<String, usize> = BTreeMap::new();
    for message in &messages {
        *reasons.entry(reason_of(message)).or_default() += 1;
    }
    for (reason, count) in &reasons {
        let _ = writeln!(out, "  {count:>7}  {reason}");
    }
    if messages.len() < depth as usize {
        let _ = writeln!(
            out,
            "  (reasons counted over the first {} messages)",
            messages.len()
        );
    }
    for message in messages.iter().take(args.limit) {
        let id = message.properties.message_id.as_deref().unwrap_or("-");
        let time = header(message, TIME_HEADER)
            .and_then(|v| match v {
                HeaderValue::Timestamp(t) => Some(t.to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "-".to_owned());
        let _ = writeln!(out, "  {time}  {id}  {}", reason_of(message));
        if args.body {
            let body = match std::str::from_utf8(&message.body) {
                Ok(text) => text.to_owned(),
                Err(_) => message.body.iter().map(|b| format!("{b:02x}")).collect(),
            };
            let _ = writeln!(out, "      {body}");
        }
    }
    Ok(())
}

fn header<'a>(message: &'a DeadMessage, key: &str) -> Option<&'a HeaderValue> {
    let header = message.properties.headers.iter().find(|h| h.key == key)?;
    match resolve(header).ok()? {
        Field::Scalar(value) => Some(value),
        _ => None,
    }
}

fn reason_of(message: &DeadMessage) -> String {
    match header(message, REASON_HEADER) {
        Some(HeaderValue::Text(reason)) => reason.clone(),
        _ => "(no x-warren-reason)".to_owned(),
    }
}

/// The message to publish back for `message` — warren's headers dropped — if its reason
/// matches `reason` (or there is no filter).
fn replayable(mut message: DeadMessage, reason: Option<&str>) -> Option<DeadMessage> {
    if let Some(wanted) = reason
        && !reason_of(&message).starts_with(wanted)
    {
        return None;
    }
    message
        .properties
        .headers
        .retain(|h| !DEAD_LETTER_HEADERS.contains(&h.key.as_str()));
    Some(message)
}
