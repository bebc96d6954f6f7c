//! The per-instance host state, and the host functions a plugin imports (`log`, `publish`).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::egress::{EgressHooks, EgressPolicy};

use super::bindings::warren::plugin::{host, types};
use super::bindings::{Level, Outgoing};

/// Most extra messages one `handle` may publish; past it the call traps.
pub const MAX_PUBLISHES_PER_MESSAGE: usize = 1_000;

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
}

impl HostState {
    /// A fresh state: WASI with stdout/stderr forwarded to warren's and nothing else granted.
    /// `wasi:http` requests go through `egress`.
    pub fn new(plugin: Arc<str>, limits: StoreLimits, egress: Arc<EgressPolicy>) -> Self {
        let wasi = WasiCtxBuilder::new()
            .inherit_stdout()
            .stderr(PluginStderr(plugin.clone()))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        Self {
            wasi,
            http: WasiHttpCtx::new(),
            egress: EgressHooks::new(egress, plugin.clone()),
            table: ResourceTable::new(),
            limits,
            pending: Vec::new(),
            deadline: Instant::now(),
            pipeline: plugin.clone(),
            plugin,
        }
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
struct PluginStderr(Arc<str>);

impl wasmtime_wasi::cli::IsTerminal for PluginStderr {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl wasmtime_wasi::cli::StdoutStream for PluginStderr {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(StderrLines {
            plugin: self.0.clone(),
            partial: Vec::new(),
        })
    }
}

/// Longest stderr line kept before it is logged anyway (a plugin printing without newlines).
const STDERR_LINE_MAX: usize = 8192;

struct StderrLines {
    plugin: Arc<str>,
    partial: Vec<u8>,
}

impl StderrLines {
    fn emit(&mut self) {
        let line = String::from_utf8_lossy(&self.partial);
        let line = line.trim_end_matches(['\r', '\n']);
        if !line.is_empty() {
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
