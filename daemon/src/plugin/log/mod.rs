//! A plugin's text on its way into warren's log: its `log` calls, stdout and stderr become log
//! lines of warren's own, one per line, control characters escaped, rate limited per plugin,
//! and tagged with the message its instance is handling.

mod output;

use std::borrow::Cow;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;

use crate::trace::TraceId;

pub(super) use output::{PluginOutput, Stream};

/// Most bytes of `log` text one `handle` may write; the rest is dropped, with one line saying
/// so. (stdout and stderr lines are bounded by the rate limit and their length.)
pub const MAX_LOG_BYTES_PER_MESSAGE: usize = 64 * 1024;

/// Log lines a plugin may write per second, all its instances and streams together (a burst of
/// as many is allowed); lines over the rate are dropped, counted, and their number logged.
pub const LOG_LINES_PER_SECOND: u32 = 1_000;

/// The window of [`LOG_LINES_PER_SECOND`].
const WINDOW: Duration = Duration::from_secs(1);

/// Where each plugin's log lines dropped over [`LOG_LINES_PER_SECOND`] are counted (the
/// daemon's metrics).
pub trait LogCounter: Send + Sync {
    /// The counter of the lines `plugin` had dropped.
    fn dropped_lines(&self, plugin: &str) -> Counter;
}

/// Shares out a plugin's log lines: a token bucket refilled at [`LOG_LINES_PER_SECOND`].
#[derive(Debug)]
pub struct LogLimiter {
    plugin: Arc<str>,
    /// Every line dropped, for `warren_plugin_log_lines_dropped_total`.
    dropped_total: Counter,
    state: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: u32,
    refilled: Instant,
    /// Lines dropped in the current window.
    dropped: u64,
}

impl LogLimiter {
    /// A full bucket for `plugin`, counting what it drops in `dropped_total`.
    pub fn new(plugin: Arc<str>, dropped_total: Counter) -> Self {
        Self {
            plugin,
            dropped_total,
            state: Mutex::new(Bucket {
                tokens: LOG_LINES_PER_SECOND,
                refilled: Instant::now(),
                dropped: 0,
            }),
        }
    }

    /// The counter of the lines dropped (shared by every limiter of the plugin's name).
    pub(super) fn dropped_total(&self) -> Counter {
        self.dropped_total.clone()
    }

    /// True if one more line may be written now. The first line dropped in a window is
    /// announced; when the bucket refills, how many were dropped is logged.
    pub(super) fn admit(&self) -> bool {
        let mut bucket = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if bucket.refilled.elapsed() >= WINDOW {
            self.report(bucket.dropped);
            *bucket = Bucket {
                tokens: LOG_LINES_PER_SECOND,
                refilled: Instant::now(),
                dropped: 0,
            };
        }
        if bucket.tokens > 0 {
            bucket.tokens -= 1;
            return true;
        }
        if bucket.dropped == 0 {
            tracing::warn!(
                target: "warren::plugin",
                plugin = &*self.plugin,
                "plugin writes more than {LOG_LINES_PER_SECOND} log lines per second: dropping the rest of this second's"
            );
        }
        bucket.dropped += 1;
        self.dropped_total.inc();
        false
    }

    /// Logs how many lines a window dropped, if any.
    fn report(&self, dropped: u64) {
        if dropped > 0 {
            tracing::warn!(
                target: "warren::plugin",
                plugin = &*self.plugin,
                dropped,
                "plugin log lines dropped: over {LOG_LINES_PER_SECOND} lines per second"
            );
        }
    }
}

impl Drop for LogLimiter {
    /// A plugin version unloaded within a window that dropped lines still says how many.
    fn drop(&mut self) {
        let bucket = self.state.get_mut().unwrap_or_else(PoisonError::into_inner);
        let dropped = std::mem::take(&mut bucket.dropped);
        self.report(dropped);
    }
}

/// A plugin's text made safe for one log line: line breaks, ANSI escapes and every other
/// control character, and the Unicode line separators and direction overrides, are escaped
/// (`\n`, `\u{1b}`), so a plugin cannot forge a line of warren's own or repaint one.
pub fn one_log_line(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{2028}' | '\u{2029}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// The message an instance is handling, named in the plugin's log lines (its `log` calls, its
/// stdout and stderr); empty outside `handle` (during `init`).
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

/// Shared by an instance's host state and its stdout and stderr streams.
pub(super) type SharedTag = Arc<Mutex<CallTag>>;

/// The tag, locked (a panic while it was held left nothing half-written that matters).
pub(super) fn lock(tag: &SharedTag) -> MutexGuard<'_, CallTag> {
    tag.lock().unwrap_or_else(PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `run` logged, as text lines (the default format, without time or colours).
    pub(in crate::plugin::log) fn logged(run: impl FnOnce()) -> Vec<String> {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let sink = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .without_time()
            .with_ansi(false)
            .with_writer(move || Sink(sink.clone()))
            .finish();
        tracing::subscriber::with_default(subscriber, run);
        let text = out.lock().expect("log").clone();
        String::from_utf8_lossy(&text)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("log").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A limiter for plugin `p`, and its dropped-lines counter.
    pub(in crate::plugin::log) fn limiter() -> (Arc<LogLimiter>, Counter) {
        let dropped = Counter::default();
        (
            Arc::new(LogLimiter::new("p".into(), dropped.clone())),
            dropped,
        )
    }

    #[test]
    fn plugin_text_cannot_break_a_log_line() {
        assert_eq!(one_log_line("plain text é"), "plain text é");
        assert_eq!(
            one_log_line("ok\n2026-11-30 INFO warren: forged\r\u{1b}[31m\u{7f}"),
            "ok\\n2026-11-30 INFO warren: forged\\r\\u{1b}[31m\\u{7f}"
        );
        assert_eq!(
            one_log_line("a\u{2028}b\u{202e}c\u{85}d"),
            "a\\u{2028}b\\u{202e}c\\u{85}d"
        );
    }

    #[test]
    fn lines_over_the_rate_are_dropped_counted_and_logged() {
        let (limiter, dropped) = limiter();
        let lines = logged(|| {
            let admitted = (0..LOG_LINES_PER_SECOND + 500)
                .filter(|_| limiter.admit())
                .count();
            assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
            assert_eq!(dropped.get(), 500);
            // The next window: admitted again, and the count of the last one is logged.
            limiter.state.lock().expect("bucket").refilled -= WINDOW;
            assert!(limiter.admit());
        });
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(lines[0].contains("dropping the rest"), "{lines:?}");
        assert!(
            lines[1].contains("plugin log lines dropped") && lines[1].contains("dropped=500"),
            "{lines:?}"
        );
    }

    #[test]
    fn a_limiter_dropped_mid_window_logs_its_count() {
        let (limiter, _) = limiter();
        let lines = logged(|| {
            (0..=LOG_LINES_PER_SECOND).for_each(|_| {
                limiter.admit();
            });
            drop(limiter);
        });
        assert!(
            lines.last().is_some_and(|l| l.contains("dropped=1")),
            "{lines:?}"
        );
    }
}
