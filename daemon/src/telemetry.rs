//! Logging: `tracing` to stderr, human-readable or JSON, filtered by `RUST_LOG` (default
//! [`DEFAULT_FILTER`]).

use tracing_subscriber::EnvFilter;

/// The log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The filter without `RUST_LOG`: `info`, but lapin's line for each returned (unroutable)
/// publish is dropped, because it prints the whole message, body included; warren logs the
/// failed publish itself, without the body.
pub const DEFAULT_FILTER: &str = "info,lapin::returned_messages=error";

/// Installs the global subscriber. Plugins' `log` lines carry target `warren::plugin`.
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
