//! Phase 1: the drain throughput of warren in-process against three bare lapin consumers,
//! each on a fresh queue filled with the same messages.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, bail, ensure};
use futures_util::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};

use crate::args::Args;
use crate::in_process::{STALL, handled, start_beside, wait_settled};
use crate::measure::{Meter, Sample};
use crate::stats::Spread;
use crate::support::{BENCH_FAMILY, Broker, TestConfig, connect, test_plugin, unique_in};

/// Publishes in flight (unconfirmed) while filling a queue.
pub const PUBLISH_WINDOW: usize = 2_000;
/// The largest batch of baseline (c): one `multiple = true` ack per this many messages.
const MULTIPLE_ACK_BATCH: usize = 50;

/// Who drains the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drainer {
    /// (a) `delivery.ack().await` inside the consume loop.
    AckAwaited,
    /// (b) each ack spawned as its own task; the loop does not wait.
    AckSpawned,
    /// (c) one `multiple = true` ack per batch of contiguous messages, plus a final one.
    AckMultiple,
    /// warren in-process, `scripted` plugin in mode `ack`, concurrency = prefetch, with
    /// `coalesce_acks` set as given (false: one ack per message, the settle path before
    /// coalescing; true: the default).
    Warren { coalesce: bool },
}

/// Every drainer, in the order of the report's columns.
const DRAINERS: [Drainer; 5] = [
    Drainer::AckAwaited,
    Drainer::AckSpawned,
    Drainer::AckMultiple,
    Drainer::Warren { coalesce: false },
    Drainer::Warren { coalesce: true },
];

impl Drainer {
    fn label(self) -> &'static str {
        match self {
            Drainer::AckAwaited => "a-awaited",
            Drainer::AckSpawned => "b-spawned",
            Drainer::AckMultiple => "c-multiple",
            Drainer::Warren { coalesce: false } => "warren-single",
            Drainer::Warren { coalesce: true } => "warren-coalesce",
        }
    }
}

/// The batch of baseline (c): 50, but at most half the prefetch (a batch larger than the
/// prefetch would never complete: the broker stops delivering at `prefetch` unacked).
fn multiple_batch(prefetch: u16) -> usize {
    MULTIPLE_ACK_BATCH.min((usize::from(prefetch) / 2).max(1))
}

/// Runs every drainer at every prefetch, `--rounds` times; returns the report's tables.
pub async fn phase(args: &Args) -> anyhow::Result<String> {
    let broker = Broker::connect_as(&args.url, "warren-bench.control").await;
    let body = vec![b'x'; args.size];
    let plugin = test_plugin("scripted");
    // rates[prefetch index][drainer index] = one rate per round
    let mut rates = vec![vec![Vec::new(); DRAINERS.len()]; args.prefetch.len()];
    let (mut own_cpu, mut broker_cpu) = (rates.clone(), rates.clone());
    let mut fills = Vec::new();
    for round in 0..args.rounds {
        for (pi, &prefetch) in args.prefetch.iter().enumerate() {
            // Rotate the order from round to round so drift does not favour one drainer.
            for k in 0..DRAINERS.len() {
                let di = (k + round) % DRAINERS.len();
                let drainer = DRAINERS[di];
                let what = format!("tp.{}.p{prefetch}", drainer.label());
                let queue = unique_in(BENCH_FAMILY, &what);
                broker.queue(&queue).await;
                let filling = Instant::now();
                let bodies = std::iter::repeat_n(&body, args.messages);
                broker
                    .publish_many(&queue, bodies, args.properties(), PUBLISH_WINDOW)
                    .await;
                let fill_rate = args.messages as f64 / filling.elapsed().as_secs_f64();
                fills.push(fill_rate);
                let sample = match drainer {
                    Drainer::Warren { coalesce } => {
                        drain_warren(args, &broker, &plugin, &queue, prefetch, coalesce, None)
                            .await?
                    }
                    bare => drain_bare(args, &queue, prefetch, bare).await?,
                };
                broker.delete_queue(&queue).await;
                eprintln!(
                    "round {}/{} prefetch {prefetch:>4} {:<15} {:>8.0} msgs/s (fill {:>6.0} msgs/s)",
                    round + 1,
                    args.rounds,
                    drainer.label(),
                    sample.rate,
                    fill_rate
                );
                rates[pi][di].push(sample.rate);
                own_cpu[pi][di].push(sample.own_us);
                if let Some(us) = sample.broker_us {
                    broker_cpu[pi][di].push(us);
                }
            }
        }
    }
    // The dead-letter queues warren declared beside the drained ones.
    broker.cleanup().await;
    broker.close().await;

    let mut out = String::new();
    writeln!(
        out,
        "\n### Drain throughput, msgs/s: median (min–max) over {} rounds of {} x {} B\n",
        args.rounds, args.messages, args.size
    )?;
    out.push_str(
        "| prefetch | (a) ack awaited | (b) ack spawned | (c) multiple ack | warren, coalesce_acks = false | warren, coalesce_acks = true (default) |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    for (pi, &prefetch) in args.prefetch.iter().enumerate() {
        let r = &rates[pi];
        writeln!(
            out,
            "| {prefetch} | {} | {} | {} (per {}) | {} | {} |",
            Spread::of(&r[0]).rate(),
            Spread::of(&r[1]).rate(),
            Spread::of(&r[2]).rate(),
            multiple_batch(prefetch),
            Spread::of(&r[3]).rate(),
            Spread::of(&r[4]).rate(),
        )?;
    }
    writeln!(
        out,
        "\n### warren / baseline, same round: median (min–max)\n\n\
         | prefetch | warren | / (a) ack awaited | / (b) ack spawned | / (c) multiple ack |\n\
         |---:|---|---:|---:|---:|"
    )?;
    for (pi, &prefetch) in args.prefetch.iter().enumerate() {
        let r = &rates[pi];
        for (wi, what) in [(3, "coalesce_acks = false"), (4, "coalesce_acks = true")] {
            let ratio = |base: &Vec<f64>| -> Vec<f64> {
                r[wi].iter().zip(base).map(|(w, b)| w / b).collect()
            };
            writeln!(
                out,
                "| {prefetch} | {what} | {} | {} | {} |",
                Spread::of(&ratio(&r[0])).ratio(),
                Spread::of(&ratio(&r[1])).ratio(),
                Spread::of(&ratio(&r[2])).ratio(),
            )?;
        }
    }
    writeln!(
        out,
        "\n### CPU time per message, µs: this process / the broker (median over rounds)\n\n\
         | prefetch | (a) ack awaited | (b) ack spawned | (c) multiple ack | warren, coalesce_acks = false | warren, coalesce_acks = true |\n\
         |---:|---:|---:|---:|---:|---:|"
    )?;
    for (pi, &prefetch) in args.prefetch.iter().enumerate() {
        let cells: Vec<String> = (0..DRAINERS.len())
            .map(|di| {
                let broker = Spread::of(&broker_cpu[pi][di]).median;
                let broker = if broker.is_finite() {
                    format!("{broker:.1}")
                } else {
                    "?".to_owned()
                };
                format!("{:.1} / {broker}", Spread::of(&own_cpu[pi][di]).median)
            })
            .collect();
        writeln!(out, "| {prefetch} | {} |", cells.join(" | "))?;
    }
    writeln!(
        out,
        "\nFill (publisher confirms, {PUBLISH_WINDOW} in flight): {} msgs/s over {} fills.",
        Spread::of(&fills).rate(),
        fills.len()
    )?;
    Ok(out)
}

/// Drains `--messages` with a bare lapin consumer on its own connection.
pub async fn drain_bare(
    args: &Args,
    queue: &str,
    prefetch: u16,
    drainer: Drainer,
) -> anyhow::Result<Sample> {
    let n = args.messages;
    let connection = connect(&args.url, &format!("warren-bench.{}", drainer.label())).await;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            ShortString::from(queue),
            ShortString::from("warren-bench"),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let batch = multiple_batch(prefetch);
    let mut acks = tokio::task::JoinSet::new();
    let meter = Meter::start(args.broker_pid);
    let mut received = 0;
    while received < n {
        let delivery = tokio::time::timeout(STALL, consumer.next())
            .await
            .with_context(|| format!("no delivery for {STALL:?} after {received}"))?
            .context("consumer cancelled")??;
        received += 1;
        match drainer {
            Drainer::AckAwaited => {
                delivery.ack(BasicAckOptions::default()).await?;
            }
            Drainer::AckSpawned => {
                acks.spawn(async move { delivery.acker.ack(BasicAckOptions::default()).await });
                while let Some(done) = acks.try_join_next() {
                    done??;
                }
            }
            Drainer::AckMultiple => {
                if received % batch == 0 || received == n {
                    delivery.ack(BasicAckOptions { multiple: true }).await?;
                }
            }
            Drainer::Warren { .. } => bail!("not a bare consumer"),
        }
    }
    while let Some(done) = acks.join_next().await {
        done??;
    }
    // A barrier: the broker handles a channel's frames in order, so the reply to this
    // declare comes after every ack sent before it has been processed.
    let left = channel
        .queue_declare(
            ShortString::from(queue),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?
        .message_count();
    let sample = meter.stop(n as u64);
    let _ = connection.close(200, ShortString::from("drained")).await;
    ensure!(left == 0, "{queue}: {left} messages left after the drain");
    Ok(sample)
}

/// Drains `--messages` through warren in-process; the rate runs from "ready" until every
/// message is handled and settled (no message in flight). With `coalesce_acks` a settled ack
/// may reach the broker a few ms later (warren's straggler delay); the queue is checked empty
/// once the daemon has stopped, so every message was acked in the end. With `otlp`, its
/// messages are traced, the spans sent to that OTLP/HTTP endpoint.
pub async fn drain_warren(
    args: &Args,
    broker: &Broker,
    plugin: &Path,
    queue: &str,
    prefetch: u16,
    coalesce: bool,
    otlp: Option<&str>,
) -> anyhow::Result<Sample> {
    let n = args.messages as u64;
    let pipeline =
        format!("prefetch = {prefetch}\nconcurrency = {prefetch}\ncoalesce_acks = {coalesce}");
    let mut config = TestConfig::with_url(&args.url)
        .connection_name("warren-bench.warren")
        .plugin("noop", Path::new("scripted.wasm"), "mode = \"ack\"", "")
        .queue(queue, "")
        .pipeline("bench", queue, "noop", &pipeline);
    if let Some(endpoint) = otlp {
        config = config.otlp(endpoint, "warren-bench");
    }
    let daemon = start_beside(&config, &[plugin]).await?;
    let meter = Meter::start(args.broker_pid);
    let before = handled(&daemon);
    wait_settled(&daemon, n).await?;
    let sample = meter.stop(n - before);
    daemon.stop().await?;
    // Whatever warren had not acked went back to the queue when it closed its channel.
    let left = broker.ready(queue).await;
    ensure!(
        left == 0,
        "{queue}: {left} messages left after warren's drain"
    );
    Ok(sample)
}
