//! Warren: consumes RabbitMQ queues and hands every message to a WebAssembly plugin, which
//! acks, rejects, requeues or republishes it.
//!
//! The path of one message reads from the module names:
//! [`broker`] (consume) → [`pipeline`] → [`plugin`] (invoke) → [`decision`] → [`broker`] (publish, settle).

pub mod admin;
pub mod app;
pub mod authoring;
pub mod broker;
pub mod check;
pub mod config;
pub mod contract;
pub mod decision;
pub mod dlq;
pub mod exit;
#[cfg(test)]
mod fuzz;
pub mod message;
pub mod metrics;
pub mod pipeline;
pub mod plugin;
pub mod produce;
pub mod systemd;
pub mod telemetry;
pub mod trace;
pub mod try_plugin;
pub mod watch;
