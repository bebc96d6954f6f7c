//! The per-instance host state, and the host functions a plugin imports (`log`, `publish`).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::egress::EgressHooks;

use crate::contract::warren::plugin::{host, types};
use crate::contract::{Level, Outgoing};

/// Most extra messages one `handle` may publish; past it the call traps.
pub const MAX_PUBLISHES_PER_MESSAGE: usize = 1_000;

/// Resource handles one store may hold at once; past it, creating one fails in the guest.
const HANDLES_MAX: usize = 10_000;

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
    fn admit(&self, plugin: &str) -> bool {
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

/// The log budget of the current `handle`, and the plugin's shared rate limit.
struct LogBudget {
    limiter: Arc<LogLimiter>,
    /// Bytes written during the current call.
    bytes: usize,
    /// The "truncated" line was written for the current call.
    cut: bool,
}

/// What the host keeps for one plugin instance (one `Store`).
pub struct HostState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    egress: EgressHooks,
    table: ResourceTable,
    /// Memory limits enforced by the store.
    pub(super) limits: StoreLimits,
    /// Messages published during the current `handle`, held until it returns.
    pub(super) pending: Vec<Outgoing>,
    /// When the current call must end; checked at every epoch tick.
    pub(super) deadline: Instant,
    /// The plugin's name, for logs.
    plugin: Arc<str>,
    /// The pipeline the current message came from, for logs.
    pub(super) pipeline: Arc<str>,
    log: LogBudget,
}

impl HostState {
    /// A fresh state: WASI with stdout/stderr forwarded to warren's and nothing else granted.
    /// `wasi:http` requests go through the `egress` hooks.
    pub fn new(
        plugin: Arc<str>,
        limits: StoreLimits,
        egress: EgressHooks,
        log: Arc<LogLimiter>,
    ) -> Self {
        let wasi = WasiCtxBuilder::new()
            .inherit_stdout()
            .stderr(PluginStderr(plugin.clone(), log.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            egress,
            table: {
                let mut table = ResourceTable::new();
                table.set_max_capacity(HANDLES_MAX);
                table
            },
            limits,
            pending: Vec::new(),
            deadline: Instant::now(),
            pipeline: plugin.clone(),
            plugin,
            log: LogBudget {
                limiter: log,
                bytes: 0,
                cut: false,
            },
        }
    }

    /// Starts the budget of a new call.
    pub(super) fn new_call(&mut self) {
        self.log.bytes = 0;
        self.log.cut = false;
    }

    /// Resource handles (WASI streams, HTTP requests and responses, ...) the guest holds.
    pub(super) fn open_handles(&mut self) -> usize {
        self.table.iter_mut().count()
    }

    /// True if a line of `len` bytes may be logged for the current call.
    fn may_log(&mut self, len: usize) -> bool {
        self.log.bytes = self.log.bytes.saturating_add(len);
        if self.log.bytes > MAX_LOG_BYTES_PER_MESSAGE {
            if !self.log.cut {
                self.log.cut = true;
                tracing::warn!(
                    target: "warren::plugin",
                    plugin = &*self.plugin,
                    pipeline = &*self.pipeline,
                    "plugin log output for this message cut at {MAX_LOG_BYTES_PER_MESSAGE} bytes"
                );
            }
            return false;
        }
        self.log.limiter.admit(&self.plugin)
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for HostState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.egress,
        }
    }
}

impl types::Host for HostState {}

impl host::Host for HostState {
    fn log(&mut self, level: Level, text: String) -> wasmtime::Result<()> {
        if !self.may_log(text.len()) {
            return Ok(());
        }
        let text = one_log_line(&text);
        let (plugin, pipeline) = (&*self.plugin, &*self.pipeline);
        match level {
            Level::Trace => tracing::trace!(target: "warren::plugin", plugin, pipeline, "{text}"),
            Level::Debug => tracing::debug!(target: "warren::plugin", plugin, pipeline, "{text}"),
            Level::Info => tracing::info!(target: "warren::plugin", plugin, pipeline, "{text}"),
            Level::Warn => tracing::warn!(target: "warren::plugin", plugin, pipeline, "{text}"),
            Level::Error => tracing::error!(target: "warren::plugin", plugin, pipeline, "{text}"),
        }
        Ok(())
    }

    fn publish(&mut self, message: Outgoing) -> wasmtime::Result<()> {
        if self.pending.len() >= MAX_PUBLISHES_PER_MESSAGE {
            return Err(wasmtime::format_err!(
                "plugin published more than {MAX_PUBLISHES_PER_MESSAGE} messages for one message"
            ));
        }
        self.pending.push(message);
        Ok(())
    }
}

/// A plugin's stderr: each line becomes a log event of warren's (target `warren::plugin`,
/// level warn, with the plugin's name), so that a panic message says which plugin it came
/// from and `--log-format json` stays one JSON object per line. (stdout stays the process's
/// stdout: printing is what the printer plugin is for.)
struct PluginStderr(Arc<str>, Arc<LogLimiter>);

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
            partial: Vec::new(),
        })
    }
}

/// Longest stderr line kept before it is logged anyway (a plugin printing without newlines).
const STDERR_LINE_MAX: usize = 8192;

struct StderrLines {
    plugin: Arc<str>,
    limiter: Arc<LogLimiter>,
    partial: Vec<u8>,
}

impl StderrLines {
    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() && self.limiter.admit(&self.plugin) {
            let line = one_log_line(line);
            tracing::warn!(target: "warren::plugin", plugin = &*self.plugin, stream = "stderr", "{line}");
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
