//! The test kit shared by the end-to-end tests, the fault tests and the benches: the broker, unique
//! names, the plugins, a config builder, a daemon to run, waiting for a condition, and metrics.
//!
//! Each of those binaries includes it with `#[path = "…/tests/support/mod.rs"] mod support;`;
//! none of them uses all of it.

#![allow(dead_code, unused_imports)]

// The test's own broker connection: declare, publish, take, count and clean up queues.
mod broker;
// `TestConfig`, a `warren.toml` built up in place of a hand-written template, and writing it.
mod config;
// A daemon in this process (`Running`), or `warren run` as a child process.
mod daemon;
// Samples of a Prometheus scrape, looked up by name and labels.
mod metrics;
// RabbitMQ nodes and clusters a test starts for itself, killed and deleted on drop.
mod node;
// Names that no other test, bench or earlier run uses.
mod names;
// An OTLP/HTTP receiver that keeps the spans warren exports.
mod otlp;
// The `.wasm` plugins, built once per run.
mod plugins;
// `eventually(what, patience, probe)`: the one way a test waits for something.
mod wait;

pub use broker::*;
pub use config::*;
pub use daemon::*;
pub use metrics::*;
pub use names::*;
pub use node::*;
pub use otlp::*;
pub use plugins::*;
pub use wait::*;
