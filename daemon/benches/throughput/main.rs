//! Warren against bare lapin consumers, the plugin call path, and the sleeper / peak-RSS case.
//!
//! Needs RabbitMQ (`127.0.0.1:5672` as guest, or `WARREN_BENCH_URL`); the plugins are built by
//! `plugins/build` when they are missing or stale. How to run it and the latest results:
//! `BENCHMARKS.md` at the repo root.
//!
//! Phases (`--only throughput,call,sleeper,traces,memory`; all by default):
//! - `throughput`: for each prefetch and round, fill a fresh queue with N messages and drain it
//!   with (a) `ack().await` in the consume loop, (b) acks spawned off the loop, (c) one
//!   `multiple` ack per batch, and warren in-process with the no-op `scripted` plugin, with
//!   `coalesce_acks` off (one ack per message) and on (the default).
//! - `call`: `Plugin::handle` on a 1 KiB message, broker-free; and the first call on a fresh
//!   instance (instantiate + `init` + `handle`).
//! - `sleeper`: in a child process (so its peak RSS is its own): 1,000 one-dot messages through
//!   the `sleeper` plugin; then the three shipped plugins together at concurrency 100.
//! - `traces`: warren with message traces off and on (spans exported to an OTLP/HTTP receiver
//!   in this process), alternating, and the ratio of the two rates.
//! - `memory`: each in a child process: the memory of one instance of each example plugin,
//!   and the Python router's RSS after draining 10,000 messages at concurrency 100.
//!
//! Progress goes to stderr, the Markdown report to stdout.

// The test kit shared with the end-to-end and fault tests: broker, names, plugins, config
// builder, in-process daemon, metrics.
#[path = "../../../tests/support/mod.rs"]
mod support;

// The command line: sizes, rounds, prefetch values, phases.
mod args;
// Phase 2: the plugin call path, broker-free.
mod call;
// warren in this process, on copies of its plugins, waited on until every message settled.
mod in_process;
// Wall and CPU time of a drain, and the process's memory.
mod measure;
// The halves of profile.sh: fill a queue, drain it bare.
mod profile;
// Phase 3: the sleeper case and peak RSS, in a child process.
mod sleeper;
// Phase 4: each example plugin's memory, and the Python router's under load.
mod memory;
// Median, spread and percentiles of the measurements, as report cells.
mod stats;
// Phase 1: drain throughput of warren against three bare consumers.
mod throughput;
// Phase 4: warren's throughput with message traces off and on.
mod traces;

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::Context as _;
use clap::Parser;

use args::{Args, Phase};

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
            return sleeper::child(&args, out).await;
        }
        if let Some(spec) = &args.memory_child {
            let out = args
                .memory_out
                .as_deref()
                .context("--memory-child needs --memory-out")?;
            return memory::child_main(&args, spec, out).await;
        }
        if let Some(queue) = &args.fill {
            return profile::fill(&args, queue).await;
        }
        if let Some(queue) = &args.drain_bare {
            return profile::drain(&args, queue).await;
        }
        run(&args).await
    })
}

/// Runs the phases asked for and prints the report.
async fn run(args: &Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut args = args.clone();
    if args.broker_pid.is_none() && args.runs(Phase::Throughput) {
        args.broker_pid = measure::broker_pid().await;
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
        support::shown(&args.url),
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
        report.push_str(&call::phase(args).await?);
    }
    if args.runs(Phase::Sleeper) {
        report.push_str(&sleeper::phase(args).await?);
    }
    if args.runs(Phase::Memory) {
        report.push_str(&memory::phase(args).await?);
    }
    if args.runs(Phase::Throughput) {
        report.push_str(&throughput::phase(args).await?);
    }
    if args.runs(Phase::Traces) {
        report.push_str(&traces::phase(args).await?);
    }
    writeln!(
        report,
        "\ntotal wall time: {:.0} s",
        started.elapsed().as_secs_f64()
    )?;
    println!("{report}");
    Ok(())
}
