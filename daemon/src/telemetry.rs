//! Logging: `tracing` to stderr, human-readable or JSON, filtered by `RUST_LOG` (default
//! [`DEFAULT_FILTER`]); for `warren plugin test`, plugins' lines kept for the report instead.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Mutex, PoisonError};

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

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

/// The target of plugins' log lines (their `log` calls, stdout and stderr).
pub const PLUGIN_TARGET: &str = "warren::plugin";

/// Installs the global subscriber, one line per event. Plugins' lines carry target [`PLUGIN_TARGET`]; with
/// `plugin_logs`, they are kept there (every level) instead of printed.
pub fn init(format: LogFormat, plugin_logs: Option<PluginLogs>) {
    let mut filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_FILTER));
    if plugin_logs.is_some()
        && let Ok(off) = format!("{PLUGIN_TARGET}=off").parse()
    {
        filter = filter.add_directive(off);
    }
    // Colours only on a terminal: under systemd (journald) or a pipe, escape sequences would be
    // stored as part of every line. `NO_COLOR` turns them off on a terminal too.
    let colours = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let lines = tracing_subscriber::fmt::layer()
        .with_ansi(colours)
        // A log that cannot be written (stderr closed) is lost, and warren goes on: reporting
        // it would write to that stderr again, and panic.
        .log_internal_errors(false)
        .with_writer(|| OneLine(io::stderr()));
    let lines = match format {
        LogFormat::Text => lines.boxed(),
        LogFormat::Json => lines.json().boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(lines.with_filter(filter))
        .with(plugin_logs)
        .try_init();
}

/// Plugins' log lines, kept in memory as `level: text` (`warren plugin test` compares them
/// with what a case expects).
#[derive(Debug, Clone, Default)]
pub struct PluginLogs(Arc<Mutex<Vec<String>>>);

impl PluginLogs {
    /// The lines kept since the last call.
    pub fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl<S: Subscriber> Layer<S> for PluginLogs {
    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        if event.metadata().target() != PLUGIN_TARGET {
            return;
        }
        let mut text = MessageText(String::new());
        event.record(&mut text);
        let level = event.metadata().level().as_str().to_ascii_lowercase();
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(format!("{level}: {}", text.0));
    }
}

/// The `message` field of an event.
struct MessageText(String);

impl Visit for MessageText {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            value.clone_into(&mut self.0);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// Writes each log event as exactly one line: a line break or carriage return inside it (an
/// error that quotes a plugin's text, a multi-line error chain) is written as `\n` / `\r`, so
/// that nothing logged can start a line of its own. (tracing's formatter hands over one whole
/// event per `write`.)
struct OneLine<W>(W);

impl<W: Write> Write for OneLine<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let body = buf.strip_suffix(b"\n").unwrap_or(buf);
        if !body.iter().any(|b| matches!(b, b'\n' | b'\r')) {
            self.0.write_all(buf)?;
            return Ok(buf.len());
        }
        let mut line = Vec::with_capacity(buf.len() + 16);
        for &byte in body {
            match byte {
                b'\n' => line.extend_from_slice(b"\\n"),
                b'\r' => line.extend_from_slice(b"\\r"),
                other => line.push(other),
            }
        }
        if body.len() < buf.len() {
            line.push(b'\n');
        }
        self.0.write_all(&line)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn written(event: &str) -> String {
        let mut line = OneLine(Vec::new());
        line.write_all(event.as_bytes()).expect("write to memory");
        String::from_utf8(line.0).expect("utf-8")
    }

    #[test]
    fn an_event_is_one_line_whatever_it_holds() {
        assert_eq!(written("plain\n"), "plain\n");
        assert_eq!(
            written("ERROR plugin reload failed error=init: bad\nINFO warren: forged\r\n"),
            "ERROR plugin reload failed error=init: bad\\nINFO warren: forged\\r\n"
        );
        assert_eq!(written("no end\nof line"), "no end\\nof line");
    }
}
