//! Warren against bare lapin consumers, the plugin call path, and the sleeper / peak-RSS case.
//!
//! Needs RabbitMQ (`127.0.0.1:5672` as guest, or `WARREN_BENCH_URL`) and the plugins built by
//! `plugins/build`. How to run it and the latest results: `BENCHMARKS.md` at the repo root.
//!
//! Phases (`--only throughput,call,sleeper`; all by default):
//! - `throughput`: for each prefetch and round, fill a fresh queue with N messages and drain it
//!   with (a) `ack().await` in the consume loop, (b) acks spawned off the loop, (c) one
//!   `multiple` ack per batch, and warren in-process with the no-op `scripted` plugin, with
//!   `coalesce_acks` off (one ack per message) and on (the default).
//! - `call`: `Plugin::handle` on a 1 KiB message, broker-free; and the first call on a fresh
//!   instance (instantiate + `init` + `handle`).
//! - `sleeper`: in a child process (so its peak RSS is its own): 1,000 one-dot messages through
//!   the `sleeper` plugin; then the three shipped plugins together at concurrency 100.
//!
//! Progress goes to stderr, the Markdown report to stdout.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::{Parser, ValueEnum};
use futures_util::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, ConnectionProperties};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use warren::app::Daemon;
use warren::config::Config;
use warren::message::{Message, Verdict, empty_properties};
use warren::plugin::{PluginError, Runtime};

/// Publishes in flight (unconfirmed) while filling a queue.
const PUBLISH_WINDOW: usize = 2_000;
/// The largest batch of baseline (c): one `multiple = true` ack per this many messages.
const MULTIPLE_ACK_BATCH: usize = 50;
/// Bench queues expire this long after their last use, so an aborted run leaves nothing for long.
const QUEUE_EXPIRES_MS: i32 = 600_000;
/// A drain that makes no progress for this long fails the run.
const STALL: Duration = Duration::from_secs(60);
/// Calls before the timed ones in the call benchmark.
const WARM_UP_CALLS: usize = 10_000;
/// First calls on fresh instances measured.
const FIRST_CALL_SAMPLES: usize = 200;
/// How long the local HTTP server of the sleeper phase waits before it answers.
const HTTP_DELAY: Duration = Duration::from_secs(1);

#[derive(Parser, Debug, Clone)]
#[command(about = "warren throughput benchmark (see BENCHMARKS.md)")]
struct Args {
    /// The broker.
    #[arg(
        long,
        env = "WARREN_BENCH_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    url: String,
    /// Messages per drain in the throughput phase.
    #[arg(long, env = "WARREN_BENCH_MESSAGES", default_value_t = 100_000)]
    messages: usize,
    /// Body size in bytes (throughput and call phases).
    #[arg(long, env = "WARREN_BENCH_SIZE", default_value_t = 1024)]
    size: usize,
    /// Rounds of the throughput phase.
    #[arg(long, env = "WARREN_BENCH_ROUNDS", default_value_t = 3)]
    rounds: usize,
    /// Prefetch values of the throughput phase (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [10u16, 100, 1000])]
    prefetch: Vec<u16>,
    /// Publish transient messages (default: persistent, delivery mode 2).
    #[arg(long)]
    transient: bool,
    /// Timed calls of the call phase.
    #[arg(long, default_value_t = 100_000)]
    calls: usize,
    /// Messages of the sleeper case.
    #[arg(long, default_value_t = 1_000)]
    sleeper_messages: usize,
    /// OS pid of the broker, to report its CPU time per message; found with
    /// `rabbitmqctl status` when absent (if that works).
    #[arg(long, env = "WARREN_BENCH_BROKER_PID")]
    broker_pid: Option<u32>,
    /// Phases to run (comma-separated); all when absent.
    #[arg(long, value_delimiter = ',')]
    only: Vec<Phase>,
    /// Internal: run the sleeper phase in this process and write its results (JSON) here.
    #[arg(long, hide = true)]
    sleeper_child: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Throughput,
    Call,
    Sleeper,
}

impl Args {
    fn runs(&self, phase: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&phase)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        if let Some(out) = &args.sleeper_child {
            return sleeper_child(&args, out).await;
        }
        run(&args).await
    })
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut args = args.clone();
    if args.broker_pid.is_none() && args.runs(Phase::Throughput) {
        args.broker_pid = broker_pid().await;
    }
    let args = &args;
    let mut report = String::new();
    writeln!(
        report,
        "## warren benchmark\n\nprofile: {}; broker: {}; {} messages x {} B ({}), {} rounds, prefetch {:?}\n",
        if cfg!(debug_assertions) {
            "dev (warren's own code unoptimised, dependencies opt-level 2)"
        } else {
            "release"
        },
        redact(&args.url),
        args.messages,
        args.size,
        if args.transient {
            "transient"
        } else {
            "persistent"
        },
        args.rounds,
        args.prefetch,
    )?;
    if let Some(pid) = args.broker_pid {
        writeln!(report, "broker OS pid (for its CPU time): {pid}\n")?;
    }
    if args.runs(Phase::Call) {
        report.push_str(&phase_call(args).await?);
    }
    if args.runs(Phase::Sleeper) {
        report.push_str(&phase_sleeper(args).await?);
    }
    if args.runs(Phase::Throughput) {
        report.push_str(&phase_throughput(args).await?);
    }
    writeln!(
        report,
        "\ntotal wall time: {:.0} s",
        started.elapsed().as_secs_f64()
    )?;
    println!("{report}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Phase 1: throughput against the baselines.
// ---------------------------------------------------------------------------------------------

/// Who drains the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Drainer {
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

async fn phase_throughput(args: &Args) -> anyhow::Result<String> {
    let broker = Broker::connect(&args.url).await?;
    let body = vec![b'x'; args.size];
    let plugin = test_plugin("scripted")?;
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
                let queue = queue_name(&format!("tp.{}.p{prefetch}", drainer.label()));
                broker.declare(&queue).await?;
                let fill_rate = fill(args, &queue, args.messages, &body).await?;
                fills.push(fill_rate);
                let sample = match drainer {
                    Drainer::Warren { coalesce } => {
                        let n = args.messages;
                        drain_warren(args, &plugin, &queue, n, prefetch, coalesce).await?
                    }
                    bare => drain_bare(args, &queue, args.messages, prefetch, bare).await?,
                };
                broker.delete(&queue).await;
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

/// Fills `queue` with `n` copies of `body`, confirmed, many in flight; returns msgs/s.
async fn fill(args: &Args, queue: &str, n: usize, body: &[u8]) -> anyhow::Result<f64> {
    let connection = connect(&args.url, "warren-bench.fill").await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let properties =
        BasicProperties::default().with_delivery_mode(if args.transient { 1 } else { 2 });
    let mut window = VecDeque::with_capacity(PUBLISH_WINDOW);
    let started = Instant::now();
    for _ in 0..n {
        if window.len() >= PUBLISH_WINDOW
            && let Some(confirm) = window.pop_front()
        {
            confirmed(confirm).await?;
        }
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                ShortString::from(queue),
                BasicPublishOptions::default(),
                body,
                properties.clone(),
            )
            .await?;
        window.push_back(confirm);
    }
    while let Some(confirm) = window.pop_front() {
        confirmed(confirm).await?;
    }
    let rate = n as f64 / started.elapsed().as_secs_f64();
    let _ = connection.close(200, ShortString::from("filled")).await;
    Ok(rate)
}

async fn confirmed(confirm: lapin::PublisherConfirm) -> anyhow::Result<()> {
    let confirmation = confirm.await?;
    ensure!(
        confirmation.is_ack(),
        "publish not confirmed: {confirmation:?}"
    );
    Ok(())
}

/// Drains `n` messages with a bare lapin consumer on its own connection; returns msgs/s.
async fn drain_bare(
    args: &Args,
    queue: &str,
    n: usize,
    prefetch: u16,
    drainer: Drainer,
) -> anyhow::Result<Sample> {
    let connection = connect(&args.url, &format!("warren-bench.{}", drainer.label())).await?;
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

/// Drains `n` messages through warren in-process; returns msgs/s from "ready" until every
/// message is handled and settled (no message in flight). With `coalesce_acks` a settled ack
/// may reach the broker a few ms later (warren's straggler delay); the queue is checked empty
/// once the daemon has stopped, so every message was acked in the end.
async fn drain_warren(
    args: &Args,
    plugin: &Path,
    queue: &str,
    n: usize,
    prefetch: u16,
    coalesce: bool,
) -> anyhow::Result<Sample> {
    let config = format!(
        r#"shutdown_grace_ms = 5000
[broker]
url = "{url}"
connection_name = "warren-bench.warren"

[plugins.noop]
path = "scripted.wasm"
config = {{ mode = "ack" }}

{queue_toml}
[[pipelines]]
name = "bench"
queue = "{queue}"
plugin = "noop"
prefetch = {prefetch}
concurrency = {prefetch}
coalesce_acks = {coalesce}
"#,
        url = args.url,
        queue_toml = queue_toml(queue),
    );
    let daemon = InProcess::start(&config, &[plugin]).await?;
    let meter = Meter::start(args.broker_pid);
    let before = daemon.handled();
    daemon.wait_handled(n as u64).await?;
    let sample = meter.stop(n as u64 - before);
    daemon.stop().await?;
    let broker = Broker::connect(&args.url).await?;
    let left = broker.count(queue).await?;
    broker.close().await;
    // Whatever warren had not acked went back to the queue when it closed its channel.
    ensure!(
        left == 0,
        "{queue}: {left} messages left after warren's drain"
    );
    Ok(sample)
}

// ---------------------------------------------------------------------------------------------
// Phase 2: the plugin call path, broker-free.
// ---------------------------------------------------------------------------------------------

async fn phase_call(args: &Args) -> anyhow::Result<String> {
    let plugin_path = test_plugin("scripted")?;
    let config = r#"
[plugins.ack]
path = "scripted.wasm"
config = { mode = "ack" }

[plugins.body]
path = "scripted.wasm"
config = { mode = "body" }
"#;
    let (_dir, path) = write_config(config, &[&plugin_path])?;
    let config = Config::load(&path)?;
    // No compile cache, so that the load time below is a compile, as before the cache.
    let runtime = Runtime::new(&warren::plugin::cache::CacheSetting::Off)?;
    let loading = Instant::now();
    let ack = runtime.load(&config.plugins["ack"]).await?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let pipeline: Arc<str> = Arc::from("bench");
    let message = |body: Vec<u8>| Message {
        body,
        exchange: String::new(),
        routing_key: "bench".to_owned(),
        queue: "bench".to_owned(),
        redelivered: false,
        delivery_count: None,
        properties: empty_properties(),
    };
    let kib = message(vec![b'x'; args.size]);

    eprintln!("call: {WARM_UP_CALLS} warm-up + {} timed calls", args.calls);
    for _ in 0..WARM_UP_CALLS {
        ack.handle(&pipeline, &kib).await?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    let all = Instant::now();
    for _ in 0..args.calls {
        let t = Instant::now();
        let outcome = ack.handle(&pipeline, &kib).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        ensure!(
            matches!(outcome.verdict, Verdict::Ack),
            "scripted did not ack"
        );
    }
    let mean = all.elapsed().as_secs_f64() * 1e6 / args.calls as f64;
    let steady = Percentiles::of(&mut samples);

    // First call on a fresh instance: a trap (stack overflow, which prints nothing) throws the
    // pooled instance away, so the next `handle` instantiates and `init`s a new one first.
    let body = runtime.load(&config.plugins["body"]).await?;
    let recurse = message(b"recurse".to_vec());
    let ack_body = message(b"ack".to_vec());
    for _ in 0..1_000 {
        body.handle(&pipeline, &ack_body).await?;
    }
    let mut warm = Vec::with_capacity(FIRST_CALL_SAMPLES);
    let mut first = Vec::with_capacity(FIRST_CALL_SAMPLES);
    for _ in 0..FIRST_CALL_SAMPLES {
        let t = Instant::now();
        body.handle(&pipeline, &ack_body).await?;
        warm.push(t.elapsed().as_secs_f64() * 1e6);
        match body.handle(&pipeline, &recurse).await {
            Err(PluginError::Trap(_)) => {}
            other => bail!("expected a trap from body 'recurse', got {other:?}"),
        }
        let t = Instant::now();
        body.handle(&pipeline, &ack_body).await?;
        first.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let warm = Percentiles::of(&mut warm);
    let first = Percentiles::of(&mut first);

    let mut out = String::new();
    writeln!(
        out,
        "\n### Plugin call path (`Plugin::handle`, scripted.wasm, broker-free)\n\n\
         | what | median µs | p99 µs | mean µs |\n|---|---:|---:|---:|"
    )?;
    writeln!(
        out,
        "| `handle`, {} B body, mode=ack, {} calls after {WARM_UP_CALLS} warm-up | {:.2} | {:.2} | {:.2} |",
        args.size, args.calls, steady.p50, steady.p99, mean
    )?;
    writeln!(
        out,
        "| `handle`, 3 B body, mode=body, pooled instance | {:.2} | {:.2} | {:.2} |",
        warm.p50, warm.p99, warm.mean
    )?;
    writeln!(
        out,
        "| first `handle` on a fresh instance (instantiate + init + handle), {FIRST_CALL_SAMPLES} samples | {:.2} | {:.2} | {:.2} |",
        first.p50, first.p99, first.mean
    )?;
    writeln!(
        out,
        "\nLoading scripted.wasm (read, compile, link, first instance + init): {load_ms:.0} ms."
    )?;
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Phase 3: the sleeper case and peak RSS, in a child process.
// ---------------------------------------------------------------------------------------------

/// Runs the sleeper phase in a child process (its stdout, where the plugins print, is
/// discarded) so that the peak RSS it reports is that of this phase alone.
async fn phase_sleeper(args: &Args) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("sleeper.json");
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--url")
        .arg(&args.url)
        .arg("--sleeper-messages")
        .arg(args.sleeper_messages.to_string())
        .arg("--sleeper-child")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    ensure!(status.success(), "the sleeper child failed: {status}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let num = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let mut out = String::new();
    writeln!(
        out,
        "\n### Sleeper case and peak RSS (child process, warren in-process)\n\n| what | value |\n|---|---:|"
    )?;
    writeln!(
        out,
        "| {} one-dot messages through sleeper.wasm (seconds_per_dot = 1.0), prefetch 100, concurrency 100: ready → all acked | {:.2} s |",
        args.sleeper_messages,
        num("sleeper_secs")
    )?;
    writeln!(
        out,
        "| three shipped plugins at concurrency 100 ({} printer, {} sleeper, {} http_executor messages, HTTP answers after {} s): ready → all acked | {:.2} s |",
        num("mixed_printer"),
        num("mixed_sleeper"),
        num("mixed_http"),
        HTTP_DELAY.as_secs(),
        num("mixed_secs")
    )?;
    writeln!(
        out,
        "| process RSS before the first daemon started | {:.1} MiB |",
        num("rss_start_kib") / 1024.0
    )?;
    writeln!(
        out,
        "| peak RSS (VmHWM) after the sleeper case | {:.1} MiB |",
        num("hwm_sleeper_kib") / 1024.0
    )?;
    writeln!(
        out,
        "| peak RSS (VmHWM) after the three-plugin run | {:.1} MiB |",
        num("hwm_mixed_kib") / 1024.0
    )?;
    writeln!(
        out,
        "\nThe daemon runs inside the bench process, so VmHWM is the peak of the whole process: daemon + \
         the bench's own broker connections and the local HTTP server (small)."
    )?;
    Ok(out)
}

async fn sleeper_child(args: &Args, out: &Path) -> anyhow::Result<()> {
    let rss_start = proc_status_kib("VmRSS")?;
    let broker = Broker::connect(&args.url).await?;
    let n = args.sleeper_messages;
    let sleeper = shipped_plugin("sleeper")?;
    let printer = shipped_plugin("printer")?;
    let http = shipped_plugin("http_executor")?;

    // 1. The sleeper alone.
    let queue = queue_name("sleeper");
    broker.declare(&queue).await?;
    broker
        .publish_many(&queue, (0..n).map(|_| b".".to_vec()))
        .await?;
    let config = format!(
        r#"shutdown_grace_ms = 5000
[broker]
url = "{url}"
connection_name = "warren-bench.sleeper"

[plugins.sleeper]
path = "sleeper.wasm"
config = {{ seconds_per_dot = "1.0" }}

{queue_toml}
[[pipelines]]
name = "sleeper"
queue = "{queue}"
plugin = "sleeper"
prefetch = 100
concurrency = 100
"#,
        url = args.url,
        queue_toml = queue_toml(&queue),
    );
    eprintln!("sleeper: {n} one-dot messages, prefetch 100, concurrency 100");
    let daemon = InProcess::start(&config, &[&sleeper]).await?;
    daemon.wait_handled(n as u64).await?;
    let sleeper_secs = daemon.ready.elapsed().as_secs_f64();
    daemon.stop().await?;
    ensure!(broker.count(&queue).await? == 0, "sleeper left messages");
    broker.delete(&queue).await;
    let hwm_sleeper = proc_status_kib("VmHWM")?;
    eprintln!("sleeper: {sleeper_secs:.2} s, VmHWM {hwm_sleeper} KiB");

    // 2. The three shipped plugins, each at concurrency 100, all busy.
    let server = SlowHttp::start(HTTP_DELAY).await?;
    let (q_print, q_sleep, q_http) = (
        queue_name("mixed.printer"),
        queue_name("mixed.sleeper"),
        queue_name("mixed.http"),
    );
    let (n_print, n_sleep, n_http) = (n, n, n / 2);
    for q in [&q_print, &q_sleep, &q_http] {
        broker.declare(q).await?;
    }
    broker
        .publish_many(
            &q_print,
            (0..n_print).map(|i| format!("hello {i}").into_bytes()),
        )
        .await?;
    broker
        .publish_many(&q_sleep, (0..n_sleep).map(|_| b".".to_vec()))
        .await?;
    let request = format!(r#"{{"method": "GET", "url": "http://{}/"}}"#, server.addr);
    broker
        .publish_many(&q_http, (0..n_http).map(|_| request.clone().into_bytes()))
        .await?;
    let pipeline = |name: &str, queue: &str| {
        format!(
            "[[pipelines]]\nname = \"{name}\"\nqueue = \"{queue}\"\nplugin = \"{name}\"\nprefetch = 100\nconcurrency = 100\n"
        )
    };
    let config = format!(
        r#"shutdown_grace_ms = 5000
[broker]
url = "{url}"
connection_name = "warren-bench.mixed"

[plugins.printer]
path = "printer.wasm"

[plugins.sleeper]
path = "sleeper.wasm"
config = {{ seconds_per_dot = "1.0" }}

[plugins.http]
path = "http_executor.wasm"
allowed_hosts = ["{addr}"]

{q1}{q2}{q3}
{p1}{p2}{p3}"#,
        url = args.url,
        addr = server.addr,
        q1 = queue_toml(&q_print),
        q2 = queue_toml(&q_sleep),
        q3 = queue_toml(&q_http),
        p1 = pipeline("printer", &q_print),
        p2 = pipeline("sleeper", &q_sleep),
        p3 = pipeline("http", &q_http),
    );
    eprintln!("mixed: printer {n_print}, sleeper {n_sleep}, http {n_http} messages");
    let daemon = InProcess::start(&config, &[&printer, &sleeper, &http]).await?;
    daemon
        .wait_handled((n_print + n_sleep + n_http) as u64)
        .await?;
    let mixed_secs = daemon.ready.elapsed().as_secs_f64();
    let acked = daemon.acked();
    daemon.stop().await?;
    let hwm_mixed = proc_status_kib("VmHWM")?;
    eprintln!(
        "mixed: {mixed_secs:.2} s, VmHWM {hwm_mixed} KiB, {} requests served",
        server.served.load(Ordering::Relaxed)
    );
    for q in [&q_print, &q_sleep, &q_http] {
        ensure!(broker.count(q).await? == 0, "{q}: messages left");
        broker.delete(q).await;
    }
    broker.close().await;
    ensure!(
        acked == (n_print + n_sleep + n_http) as u64,
        "mixed: {acked} messages acked, expected {}",
        n_print + n_sleep + n_http
    );

    let result = serde_json::json!({
        "sleeper_secs": sleeper_secs,
        "mixed_secs": mixed_secs,
        "mixed_printer": n_print,
        "mixed_sleeper": n_sleep,
        "mixed_http": n_http,
        "rss_start_kib": rss_start,
        "hwm_sleeper_kib": hwm_sleeper,
        "hwm_mixed_kib": hwm_mixed,
    });
    std::fs::write(out, serde_json::to_vec(&result)?)?;
    Ok(())
}

/// A local HTTP server that answers every request `200 ok` after a delay, one connection each.
struct SlowHttp {
    addr: std::net::SocketAddr,
    served: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl SlowHttp {
    async fn start(delay: Duration) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (count, until) = (served.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = until.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut socket, _)) = accepted else {
                    continue;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => request.extend_from_slice(&buf[..k]),
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let response =
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    if socket.write_all(response.as_bytes()).await.is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self { addr, served, stop })
    }
}

impl Drop for SlowHttp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers.
// ---------------------------------------------------------------------------------------------

/// A warren daemon running in this process.
struct InProcess {
    metrics: warren::metrics::SharedMetrics,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    /// When `Daemon::start` returned: every pipeline consuming.
    ready: Instant,
    _dir: tempfile::TempDir,
}

impl InProcess {
    /// Copies the plugins next to a temporary config (so a rebuild of `dist/` during the run
    /// does not hot-reload them) and starts a daemon on it.
    async fn start(config: &str, plugins: &[&Path]) -> anyhow::Result<Self> {
        let (dir, path) = write_config(config, plugins)?;
        let config = Config::load(&path)?;
        let shutdown = CancellationToken::new();
        let daemon = Daemon::start(config, shutdown.clone()).await?;
        let ready = Instant::now();
        let metrics = daemon.metrics().clone();
        let task = tokio::spawn(daemon.wait());
        Ok(Self {
            metrics,
            shutdown,
            task,
            ready,
            _dir: dir,
        })
    }

    /// Messages handled by every pipeline (counted before they are settled).
    fn handled(&self) -> u64 {
        self.metrics.handled.get()
    }

    /// Messages handled with the verdict `ack`, all pipelines.
    fn acked(&self) -> u64 {
        self.sum_metric("warren_messages_total{", Some("verdict=\"ack\"")) as u64
    }

    /// Messages received and not yet settled, all pipelines.
    fn in_flight(&self) -> f64 {
        self.sum_metric("warren_messages_in_flight{", None)
    }

    fn sum_metric(&self, prefix: &str, containing: Option<&str>) -> f64 {
        self.metrics
            .render()
            .lines()
            .filter(|l| l.starts_with(prefix) && containing.is_none_or(|c| l.contains(c)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Waits until `n` messages are handled and none is in flight (all settled); fails if
    /// nothing moves for [`STALL`] or the daemon stops.
    async fn wait_handled(&self, n: u64) -> anyhow::Result<()> {
        let mut last = (self.handled(), Instant::now());
        loop {
            let handled = self.handled();
            if handled >= n && self.in_flight() == 0.0 {
                return Ok(());
            }
            ensure!(!self.task.is_finished(), "the daemon stopped early");
            if handled != last.0 {
                last = (handled, Instant::now());
            }
            ensure!(
                last.1.elapsed() < STALL,
                "warren stalled at {handled} of {n} messages"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await?
    }
}

/// One drain: its rate and the CPU time it cost per message.
struct Sample {
    rate: f64,
    /// CPU µs per message of this process (the bare consumer, or the whole in-process daemon).
    own_us: f64,
    /// CPU µs per message of the broker's OS process, if its pid is known.
    broker_us: Option<f64>,
}

/// Wall and CPU time from a start point.
struct Meter {
    at: Instant,
    own: Option<f64>,
    broker_pid: Option<u32>,
    broker: Option<f64>,
}

impl Meter {
    fn start(broker_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            own: cpu_seconds("self"),
            broker_pid,
            broker: broker_pid.and_then(|pid| cpu_seconds(&pid.to_string())),
        }
    }

    /// The sample for `n` messages handled since the start.
    fn stop(&self, n: u64) -> Sample {
        let elapsed = self.at.elapsed().as_secs_f64();
        let per_message =
            |before: Option<f64>, now: Option<f64>| Some((now? - before?) * 1e6 / n.max(1) as f64);
        Sample {
            rate: n as f64 / elapsed,
            own_us: per_message(self.own, cpu_seconds("self")).unwrap_or(f64::NAN),
            broker_us: per_message(
                self.broker,
                self.broker_pid
                    .and_then(|pid| cpu_seconds(&pid.to_string())),
            ),
        }
    }
}

/// User + system CPU seconds of a process (all its threads), from `/proc/PID/stat`.
fn cpu_seconds(pid: &str) -> Option<f64> {
    /// `USER_HZ`: 100 on every Linux this runs on.
    const TICKS_PER_SECOND: f64 = 100.0;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses: state is field 3, utime 14, stime 15.
    let mut fields = stat.rsplit_once(')')?.1.split_whitespace().skip(11);
    let utime: f64 = fields.next()?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / TICKS_PER_SECOND)
}

/// The broker's OS pid from `rabbitmqctl status`, if that works here.
async fn broker_pid() -> Option<u32> {
    let output = tokio::process::Command::new("rabbitmqctl")
        .arg("status")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .await
        .ok()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| l.trim().strip_prefix("OS PID:")?.trim().parse().ok())
}

/// The bench's own connection for declaring, counting and deleting queues.
struct Broker {
    url: String,
    connection: lapin::Connection,
    channel: lapin::Channel,
}

impl Broker {
    async fn connect(url: &str) -> anyhow::Result<Self> {
        let connection = connect(url, "warren-bench.control").await?;
        let channel = connection.create_channel().await?;
        Ok(Self {
            url: url.to_owned(),
            connection,
            channel,
        })
    }

    /// A durable queue with the same arguments warren declares (see [`queue_toml`]).
    async fn declare(&self, queue: &str) -> anyhow::Result<()> {
        let mut arguments = FieldTable::default();
        arguments.insert("x-expires".into(), AMQPValue::LongInt(QUEUE_EXPIRES_MS));
        self.channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                arguments,
            )
            .await
            .with_context(|| format!("declare {queue}"))?;
        Ok(())
    }

    /// Messages ready in `queue` (on a channel of its own: a failed passive declare closes it).
    async fn count(&self, queue: &str) -> anyhow::Result<u32> {
        let channel = self.connection.create_channel().await?;
        let q = channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .with_context(|| format!("queue {queue}"))?;
        let _ = channel.close(200, ShortString::from("counted")).await;
        Ok(q.message_count())
    }

    async fn delete(&self, queue: &str) {
        if let Err(e) = self
            .channel
            .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
            .await
        {
            eprintln!("warning: cannot delete {queue}: {e}");
        }
    }

    /// Publishes persistent messages with confirms, pipelined.
    async fn publish_many(
        &self,
        queue: &str,
        bodies: impl Iterator<Item = Vec<u8>>,
    ) -> anyhow::Result<()> {
        let connection = connect(&self.url, "warren-bench.fill").await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        let mut window = VecDeque::new();
        for body in bodies {
            window.push_back(
                channel
                    .basic_publish(
                        ShortString::from(""),
                        ShortString::from(queue),
                        BasicPublishOptions::default(),
                        &body,
                        BasicProperties::default().with_delivery_mode(2),
                    )
                    .await?,
            );
        }
        while let Some(confirm) = window.pop_front() {
            confirmed(confirm).await?;
        }
        let _ = connection.close(200, ShortString::from("filled")).await;
        Ok(())
    }

    async fn close(self) {
        let _ = self.connection.close(200, ShortString::from("done")).await;
    }
}

async fn connect(url: &str, name: &str) -> anyhow::Result<lapin::Connection> {
    lapin::Connection::connect(
        url,
        ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
    .with_context(|| format!("RabbitMQ is not reachable at {}", redact(url)))
}

/// The `[[queues]]` entry matching [`Broker::declare`], so warren's declaration is equivalent.
fn queue_toml(queue: &str) -> String {
    format!(
        "[[queues]]\nname = \"{queue}\"\ndurable = true\narguments = {{ \"x-expires\" = {QUEUE_EXPIRES_MS} }}\n"
    )
}

/// A queue name no other run uses: phase, pid, start time, sequence.
fn queue_name(what: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let millis = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    format!(
        "warren-bench.{what}.{}.{millis}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Writes `config` as `warren.toml` in a temporary folder, with copies of `plugins` beside it.
fn write_config(config: &str, plugins: &[&Path]) -> anyhow::Result<(tempfile::TempDir, PathBuf)> {
    let dir = tempfile::tempdir()?;
    for plugin in plugins {
        let name = plugin
            .file_name()
            .context("plugin path without a file name")?;
        std::fs::copy(plugin, dir.path().join(name))
            .with_context(|| format!("copy {}", plugin.display()))?;
    }
    let path = dir.path().join("warren.toml");
    std::fs::write(&path, config)?;
    Ok((dir, path))
}

fn repo_root() -> anyhow::Result<PathBuf> {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .context("daemon/ has no parent")
}

fn shipped_plugin(name: &str) -> anyhow::Result<PathBuf> {
    built(
        repo_root()?
            .join("plugins/dist")
            .join(format!("{name}.wasm")),
    )
}

fn test_plugin(name: &str) -> anyhow::Result<PathBuf> {
    built(
        repo_root()?
            .join("tests/plugins/dist")
            .join(format!("{name}.wasm")),
    )
}

fn built(path: PathBuf) -> anyhow::Result<PathBuf> {
    ensure!(
        path.is_file(),
        "{} is missing: run plugins/build first",
        path.display()
    );
    Ok(path)
}

/// A line of `/proc/self/status`, in KiB.
fn proc_status_kib(key: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {key} in /proc/self/status"))
}

/// The URL without its password.
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// Median, min and max of a set of measurements.
struct Spread {
    median: f64,
    min: f64,
    max: f64,
}

impl Spread {
    fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = match n {
            0 => f64::NAN,
            _ if n % 2 == 1 => sorted[n / 2],
            _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        };
        Self {
            median,
            min: sorted.first().copied().unwrap_or(f64::NAN),
            max: sorted.last().copied().unwrap_or(f64::NAN),
        }
    }

    fn rate(&self) -> String {
        if self.min == self.max {
            thousands(self.median)
        } else {
            format!(
                "{} ({}–{})",
                thousands(self.median),
                thousands(self.min),
                thousands(self.max)
            )
        }
    }

    fn ratio(&self) -> String {
        if self.min == self.max {
            format!("{:.2}", self.median)
        } else {
            format!("{:.2} ({:.2}–{:.2})", self.median, self.min, self.max)
        }
    }
}

/// 12345.6 → "12,346".
fn thousands(value: f64) -> String {
    if !value.is_finite() {
        return "–".to_owned();
    }
    let digits = format!("{:.0}", value);
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Latency percentiles of call samples, in µs.
struct Percentiles {
    p50: f64,
    p99: f64,
    mean: f64,
}

impl Percentiles {
    fn of(samples: &mut [f64]) -> Self {
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
            samples.get(i).copied().unwrap_or(f64::NAN)
        };
        Self {
            p50: at(0.5),
            p99: at(0.99),
            mean: samples.iter().sum::<f64>() / samples.len().max(1) as f64,
        }
    }
}
