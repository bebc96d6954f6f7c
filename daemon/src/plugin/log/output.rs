//! A plugin's stdout and stderr read as log lines: one event of warren's per line written.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::{LogLimiter, SharedTag, lock, one_log_line};

/// Longest stdout or stderr line kept before it is logged anyway (a plugin printing without
/// newlines).
const LINE_MAX: usize = 8192;

/// Which of a plugin's output streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::plugin) enum Stream {
    /// Its stdout (where the printer prints): lines at level info.
    Stdout,
    /// Its stderr (where a Rust plugin's panic message goes): lines at level warn.
    Stderr,
}

/// A plugin's stdout or stderr: each line becomes a log event of warren's (target
/// `warren::plugin`, with the plugin's name, the message being handled and `stream`), so that
/// it says which plugin and message it came from, it cannot pass for a line of warren's, and
/// `--log-format json` stays one JSON object per line.
pub(in crate::plugin) struct PluginOutput {
    pub(in crate::plugin) stream: Stream,
    pub(in crate::plugin) limiter: Arc<LogLimiter>,
    pub(in crate::plugin) tag: SharedTag,
}

impl wasmtime_wasi::cli::IsTerminal for PluginOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(Lines {
            stream: self.stream,
            limiter: self.limiter.clone(),
            tag: self.tag.clone(),
            partial: Vec::new(),
        })
    }
}

/// The text written so far, logged a line at a time.
struct Lines {
    stream: Stream,
    limiter: Arc<LogLimiter>,
    tag: SharedTag,
    partial: Vec<u8>,
}

impl Lines {
    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() && self.limiter.admit() {
            let line = one_log_line(line);
            let plugin = &*self.limiter.plugin;
            let tag = lock(&self.tag);
            let (message_id, trace_id) = (tag.message_id(), tag.trace_id());
            match self.stream {
                Stream::Stdout => {
                    tracing::info!(target: "warren::plugin", plugin, message_id, trace_id, stream = "stdout", "{line}");
                }
                Stream::Stderr => {
                    tracing::warn!(target: "warren::plugin", plugin, message_id, trace_id, stream = "stderr", "{line}");
                }
            }
        }
        self.partial.clear();
    }
}

impl tokio::io::AsyncWrite for Lines {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        for &byte in buf {
            this.partial.push(byte);
            if byte == b'\n' || this.partial.len() >= LINE_MAX {
                this.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.get_mut().emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for Lines {
    fn drop(&mut self) {
        self.emit();
    }
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncWriteExt;

    use super::super::tests::{limiter, logged};
    use super::*;

    /// What `stream` of plugin `p` logs when `bytes` are written to it while `message_id` is
    /// being handled, then the stream goes away.
    fn written(stream: Stream, message_id: Option<&str>, bytes: &[u8]) -> Vec<String> {
        let output = PluginOutput {
            stream,
            limiter: limiter().0,
            tag: SharedTag::default(),
        };
        if let Some(id) = message_id {
            lock(&output.tag).begin(Some(id), None);
        }
        let lines = logged(|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut out =
                    Box::into_pin(wasmtime_wasi::cli::StdoutStream::async_stream(&output));
                out.write_all(bytes).await.expect("write");
                drop(out);
            });
        });
        lines
            .into_iter()
            .filter(|l| l.contains("warren::plugin"))
            .collect()
    }

    #[test]
    fn stdout_becomes_one_escaped_log_line_per_line() {
        let forged = b"one\ntwo \x1b[2K\r2026-11-30 INFO warren: forged\nthree, unfinished";
        let lines = written(Stream::Stdout, None, forged);
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[0].contains(" INFO warren::plugin: one"), "{lines:?}");
        assert!(
            lines[1].contains(
                "two \\u{1b}[2K\\r2026-11-30 INFO warren: forged plugin=\"p\" stream=\"stdout\""
            ),
            "{lines:?}"
        );
        // A line without its newline is logged when the stream goes away.
        assert!(lines[2].contains("three, unfinished"), "{lines:?}");
    }

    #[test]
    fn stderr_lines_name_the_message_being_handled() {
        let lines = written(Stream::Stderr, Some("m-1"), b"panicked at lib.rs\n");
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(
                " WARN warren::plugin: panicked at lib.rs plugin=\"p\" message_id=\"m-1\" stream=\"stderr\""
            ),
            "{lines:?}"
        );
    }
}
