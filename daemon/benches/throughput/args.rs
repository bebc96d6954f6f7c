//! The bench's command line: sizes, rounds, prefetch values and the phases to run.

use std::path::PathBuf;

use clap::{Parser, ValueEnum};

#[derive(Parser, Debug, Clone)]
#[command(about = "warren throughput benchmark (see BENCHMARKS.md)")]
pub struct Args {
    /// The broker.
    #[arg(
        long,
        env = "WARREN_BENCH_URL",
        default_value = "amqp://guest:guest@127.0.0.1:5672/%2f"
    )]
    pub url: String,
    /// Messages per drain in the throughput phase.
    #[arg(long, env = "WARREN_BENCH_MESSAGES", default_value_t = 100_000)]
    pub messages: usize,
    /// Body size in bytes (throughput and call phases).
    #[arg(long, env = "WARREN_BENCH_SIZE", default_value_t = 1024)]
    pub size: usize,
    /// Rounds of the throughput phase.
    #[arg(long, env = "WARREN_BENCH_ROUNDS", default_value_t = 3)]
    pub rounds: usize,
    /// Prefetch values of the throughput phase (comma-separated).
    #[arg(long, value_delimiter = ',', default_values_t = [10u16, 100, 1000])]
    pub prefetch: Vec<u16>,
    /// Publish transient messages (default: persistent, delivery mode 2).
    #[arg(long)]
    pub transient: bool,
    /// Timed calls of the call phase.
    #[arg(long, default_value_t = 100_000)]
    pub calls: usize,
    /// Messages of the sleeper case.
    #[arg(long, default_value_t = 1_000)]
    pub sleeper_messages: usize,
    /// Messages the Python router drains in the memory phase.
    #[arg(long, default_value_t = 10_000)]
    pub memory_messages: usize,
    /// OS pid of the broker, to report its CPU time per message; found with
    /// `rabbitmqctl status` when absent (if that works).
    #[arg(long, env = "WARREN_BENCH_BROKER_PID")]
    pub broker_pid: Option<u32>,
    /// Phases to run (comma-separated): throughput, call, sleeper, traces; all when absent.
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<Phase>,
    /// Internal (`profile.sh`): declare this queue and fill it with `--messages`, then exit.
    #[arg(long, hide = true)]
    pub fill: Option<String>,
    /// Internal (`profile.sh`): drain `--messages` from this queue with baseline (c) at the
    /// first `--prefetch`, then exit.
    #[arg(long, hide = true)]
    pub drain_bare: Option<String>,
    /// Internal: run one measurement of the memory phase in this process (`instances:NAME`
    /// or `drain:CAP`) and write its results (JSON) to `--memory-out`.
    #[arg(long, hide = true)]
    pub memory_child: Option<String>,
    /// Internal: where `--memory-child` writes its results.
    #[arg(long, hide = true)]
    pub memory_out: Option<PathBuf>,
    /// Internal: run the sleeper phase in this process and write its results (JSON) here.
    #[arg(long, hide = true)]
    pub sleeper_child: Option<PathBuf>,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    pub bench: bool,
}

/// A part of the bench, run on its own with `--only`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Throughput,
    Call,
    Sleeper,
    Traces,
    Memory,
}

impl Args {
    /// Whether `phase` is to run.
    pub fn runs(&self, phase: Phase) -> bool {
        self.only.is_empty() || self.only.contains(&phase)
    }

    /// The properties of the messages the bench publishes: persistent unless `--transient`.
    pub fn properties(&self) -> lapin::BasicProperties {
        lapin::BasicProperties::default().with_delivery_mode(if self.transient { 1 } else { 2 })
    }
}
