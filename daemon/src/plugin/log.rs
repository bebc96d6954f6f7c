//! A plugin's log lines: each one line (control characters escaped), rate limited per
//! plugin, and tagged with the message its instance is handling; its stderr read as such lines.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

use crate::trace::TraceId;

/// Most bytes of log text (`log` and stderr) one `handle` may write; the rest is dropped,
/// with one line saying so.
pub const MAX_LOG_BYTES_PER_MESSAGE: usize = 64 * 1024;

/// Log lines a plugin may write per second, all its instances together (a burst of as many is
/// allowed); lines over the rate are dropped and counted in one line per second.
pub const LOG_LINES_PER_SECOND: u32 = 1_000;

/// Shares out a plugin's log lines: a token bucket refilled at [`LOG_LINES_PER_SECOND`].
#[derive(Debug)]
pub struct LogLimiter {
    state: std::sync::Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
    dropped: u64,
}

impl Default for LogLimiter {
    fn default() -> Self {
        Self {
            state: std::sync::Mutex::new(Bucket {
                tokens: LOG_LINES_PER_SECOND,
                refilled: Instant::now(),
                dropped: 0,
            }),
        }
    }
}

impl LogLimiter {
    /// True if one more line may be written now. When the bucket refills after lines were
    /// dropped, says how many in a line of its own.
    pub(super) fn admit(&self, plugin: &str) -> bool {
        let mut bucket = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if bucket.refilled.elapsed() >= std::time::Duration::from_secs(1) {
            bucket.tokens = LOG_LINES_PER_SECOND;
            bucket.refilled = Instant::now();
            if bucket.dropped > 0 {
                tracing::warn!(
                    target: "warren::plugin",
                    plugin,
                    dropped = bucket.dropped,
                    "plugin log lines dropped: over {LOG_LINES_PER_SECOND} lines per second"
                );
                bucket.dropped = 0;
            }
        }
        if bucket.tokens == 0 {
            bucket.dropped += 1;
            return false;
        }
        bucket.tokens -= 1;
        true
    }
}

/// A plugin's text made safe for one log line: line breaks and other control characters are
/// escaped (`\n`), so a plugin cannot forge a line of warren's own.
pub fn one_log_line(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The message an instance is handling, named in the plugin's log lines (its `log` calls and
/// its stderr); empty outside `handle` (during `init`).
#[derive(Debug, Default)]
pub(super) struct CallTag {
    /// The message's `message_id` (`-` if it has none); empty outside a call.
    message_id: String,
    /// The message's trace, when traces are exported.
    trace_id: Option<TraceId>,
}

impl CallTag {
    /// Starts the call on the message with `message_id` (`-` if none) in the trace
    /// `trace_id`. The text is reused from call to call: no allocation per message.
    pub(super) fn begin(&mut self, message_id: Option<&str>, trace_id: Option<TraceId>) {
        self.message_id.clear();
        self.message_id.push_str(message_id.unwrap_or("-"));
        self.trace_id = trace_id;
    }

    /// The message id, if a message is being handled.
    pub(super) fn message_id(&self) -> Option<&str> {
        (!self.message_id.is_empty()).then_some(self.message_id.as_str())
    }

    /// The trace id as log lines show it: 32 hex digits.
    pub(super) fn trace_id(&self) -> Option<tracing::field::DisplayValue<TraceId>> {
        self.trace_id.map(tracing::field::display)
    }
}

/// Shared by an instance's host state and its stderr stream.
pub(super) type SharedTag = Arc<Mutex<CallTag>>;

/// The tag, locked (a panic while it was held left nothing half-written that matters).
pub(super) fn lock(tag: &SharedTag) -> std::sync::MutexGuard<'_, CallTag> {
    tag.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A plugin's stderr: each line becomes a log event of warren's (target `warren::plugin`,
/// level warn, with the plugin's name), so that a panic message says which plugin it came
/// from and `--log-format json` stays one JSON object per line. (stdout stays the process's
/// stdout: printing is what the printer plugin is for.)
pub(super) struct PluginStderr(pub Arc<str>, pub Arc<LogLimiter>, pub SharedTag);

impl wasmtime_wasi::cli::IsTerminal for PluginStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginStderr {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(StderrLines {
            plugin: self.0.clone(),
            limiter: self.1.clone(),
            tag: self.2.clone(),
            partial: Vec::new(),
        })
    }
}

/// Longest stderr line kept before it is logged anyway (a plugin printing without newlines).
const STDERR_LINE_MAX: usize = 8192;

struct StderrLines {
    plugin: Arc<str>,
    limiter: Arc<LogLimiter>,
    tag: SharedTag,
    partial: Vec<u8>,
}

impl StderrLines {
    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() && self.limiter.admit(&self.plugin) {
            let line = one_log_line(line);
            let tag = lock(&self.tag);
            let (message_id, trace_id) = (tag.message_id(), tag.trace_id());
            tracing::warn!(target: "warren::plugin", plugin = &*self.plugin, message_id, trace_id, stream = "stderr", "{line}");
        }
        self.partial.clear();
    }
}

impl tokio::io::AsyncWrite for StderrLines {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        for &byte in buf {
            this.partial.push(byte);
            if byte == b'\n' || this.partial.len() >= STDERR_LINE_MAX {
                this.emit();
            }
        }
        std::task::Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        self.get_mut().emit();
        std::task::Poll::Ready(Ok(()))
    }
}

impl Drop for StderrLines {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_text_cannot_break_a_log_line() {
        assert_eq!(one_log_line("plain text"), "plain text");
        assert_eq!(
            one_log_line("ok\n2026-11-30 INFO warren: forged\r\u{1b}[31m"),
            "ok\\n2026-11-30 INFO warren: forged\\r\\u{1b}[31m"
        );
    }

    #[test]
    fn log_lines_are_rate_limited() {
        let limiter = LogLimiter::default();
        let admitted = (0..LOG_LINES_PER_SECOND + 500)
            .filter(|_| limiter.admit("p"))
            .count();
        assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
    }
}
