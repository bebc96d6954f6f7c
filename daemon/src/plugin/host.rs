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
            .inherit_stderr()
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
