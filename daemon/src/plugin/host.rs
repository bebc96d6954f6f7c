//! The per-instance host state, and the host functions a plugin imports (`log`, `publish`).

use std::sync::Arc;
use std::time::Instant;

use wasmtime::StoreLimits;
use wasmtime_wasi::{ResourceTable, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::egress::EgressHooks;
use super::log::{
    LogLimiter, MAX_LOG_BYTES_PER_MESSAGE, PluginOutput, SharedTag, Stream, lock, one_log_line,
};

use bytes::Bytes;
use wasmtime::component::Resource;

use crate::contract::v0_2::warren::plugin::host as host_v0_2;
use crate::contract::warren::plugin::{delivery, host, types};
use crate::contract::{Delivery, Header, Level, Message, Outgoing, Properties};
use crate::trace::TraceId;

/// Most extra messages one `handle` may publish; past it the call traps.
pub const MAX_PUBLISHES_PER_MESSAGE: usize = 1_000;

/// Resource handles one store may hold at once; past it, creating one fails in the guest.
const HANDLES_MAX: usize = 10_000;

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
    /// The message lent to the current `handle` (through the `delivery` the guest is given),
    /// moved here for the call and back out after it; an empty message between calls.
    pub(super) lent: Box<Message>,
    /// The body of [`HostState::lent`] once the plugin has read it with `body()`: taken out of
    /// the message and shared with what is copied into the guest, so that `body()` costs the
    /// host no copy (`message()` does copy it); put back by [`HostState::give_back_body`] when
    /// the call ends.
    lent_body: Option<Bytes>,
    /// When the current call must end; checked at every epoch tick.
    pub(super) deadline: Instant,
    /// The plugin's name, for logs.
    plugin: Arc<str>,
    /// The pipeline the current message came from, for logs.
    pub(super) pipeline: Arc<str>,
    /// The message being handled, for logs.
    tag: SharedTag,
    log: LogBudget,
}

impl HostState {
    /// A fresh state: WASI with stdout and stderr going to warren's log, and nothing else
    /// granted. `wasi:http` requests go through the `egress` hooks.
    pub fn new(
        plugin: Arc<str>,
        limits: StoreLimits,
        egress: EgressHooks,
        log: Arc<LogLimiter>,
    ) -> Self {
        let tag = SharedTag::default();
        let output = |stream| PluginOutput {
            stream,
            limiter: log.clone(),
            tag: tag.clone(),
        };
        let wasi = WasiCtxBuilder::new()
            .stdout(output(Stream::Stdout))
            .stderr(output(Stream::Stderr))
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
            lent: Box::new(empty_message()),
            lent_body: None,
            deadline: Instant::now(),
            pipeline: plugin.clone(),
            plugin,
            tag,
            log: LogBudget {
                limiter: log,
                bytes: 0,
                cut: false,
            },
        }
    }

    /// Starts the budget of a new call, on the message with `message_id` in the trace
    /// `trace_id` (which the plugin's log lines name).
    pub(super) fn new_call(&mut self, message_id: Option<&str>, trace_id: Option<TraceId>) {
        self.log.bytes = 0;
        self.log.cut = false;
        lock(&self.tag).begin(message_id, trace_id);
    }

    /// Lends `message` for a call: swaps it with the empty message the state holds between
    /// calls. A body left from an earlier lend (none is: it is given back when a call ends)
    /// is dropped, so that it can never be given to this message in place of its own.
    pub(super) fn lend(&mut self, message: &mut Box<Message>) {
        debug_assert!(self.lent_body.is_none(), "a body left from an earlier call");
        self.lent_body = None;
        std::mem::swap(&mut self.lent, message);
    }

    /// Takes the lent message back once the call is over (its body given back first): the
    /// reverse of [`HostState::lend`].
    pub(super) fn take_back(&mut self, message: &mut Box<Message>) {
        self.give_back_body();
        std::mem::swap(&mut self.lent, message);
    }

    /// The body of the lent message, shared, not copied (see [`HostState::lent_body`]).
    pub(super) fn lent_body(&mut self) -> Bytes {
        let lent = &mut self.lent;
        self.lent_body
            .get_or_insert_with(|| Bytes::from(std::mem::take(&mut lent.body)))
            .clone()
    }

    /// Puts the body the plugin read back into the lent message. Once the call is over the
    /// copies into the guest are gone, so the body's buffer is the message's again, as it was.
    fn give_back_body(&mut self) {
        if let Some(body) = self.lent_body.take() {
            self.lent.body = Vec::from(body);
        }
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
        self.log.limiter.admit()
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

impl delivery::Host for HostState {}

/// The `delivery` a guest is lent is always the message of the current call, [`HostState::lent`]:
/// a borrow cannot outlive the call, and the contract has no way to make a `delivery`, so
/// the handle itself is never looked at.
impl delivery::HostDelivery for HostState {
    // Not called: the linker has `body` return the shared body instead (see
    // `plugin::link_delivery_body`); the same result.
    fn body(&mut self, _: Resource<Delivery>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.lent_body().to_vec())
    }

    fn exchange(&mut self, _: Resource<Delivery>) -> wasmtime::Result<String> {
        Ok(self.lent.exchange.clone())
    }

    fn routing_key(&mut self, _: Resource<Delivery>) -> wasmtime::Result<String> {
        Ok(self.lent.routing_key.clone())
    }

    fn queue(&mut self, _: Resource<Delivery>) -> wasmtime::Result<String> {
        Ok(self.lent.queue.clone())
    }

    fn redelivered(&mut self, _: Resource<Delivery>) -> wasmtime::Result<bool> {
        Ok(self.lent.redelivered)
    }

    fn delivery_count(&mut self, _: Resource<Delivery>) -> wasmtime::Result<Option<u32>> {
        Ok(self.lent.delivery_count)
    }

    fn properties(&mut self, _: Resource<Delivery>) -> wasmtime::Result<Properties> {
        Ok(self.lent.properties.clone())
    }

    fn header(&mut self, _: Resource<Delivery>, key: String) -> wasmtime::Result<Option<Header>> {
        let headers = &self.lent.properties.headers;
        Ok(headers.iter().find(|header| header.key == key).cloned())
    }

    fn message(&mut self, _: Resource<Delivery>) -> wasmtime::Result<Message> {
        let mut message = Message::clone(&self.lent);
        if let Some(body) = &self.lent_body {
            message.body = body.to_vec();
        }
        Ok(message)
    }

    fn drop(&mut self, _: Resource<Delivery>) -> wasmtime::Result<()> {
        Ok(())
    }
}

/// A message with nothing in it (and nothing allocated): what [`HostState::lent`] holds
/// between calls.
pub(super) fn empty_message() -> Message {
    Message {
        body: Vec::new(),
        exchange: String::new(),
        routing_key: String::new(),
        queue: String::new(),
        redelivered: false,
        delivery_count: None,
        properties: crate::message::empty_properties(),
    }
}

/// Contract 0.2.0's `host` is the current one under another version.
impl host_v0_2::Host for HostState {
    fn log(&mut self, level: Level, text: String) -> wasmtime::Result<()> {
        host::Host::log(self, level, text)
    }

    fn publish(&mut self, message: Outgoing) -> wasmtime::Result<()> {
        host::Host::publish(self, message)
    }
}

impl host::Host for HostState {
    fn log(&mut self, level: Level, text: String) -> wasmtime::Result<()> {
        if !self.may_log(text.len()) {
            return Ok(());
        }
        let text = one_log_line(&text);
        let (plugin, pipeline) = (&*self.plugin, &*self.pipeline);
        let tag = lock(&self.tag);
        let (message_id, trace_id) = (tag.message_id(), tag.trace_id());
        macro_rules! log {
            ($level:ident) => {
                tracing::$level!(target: "warren::plugin", plugin, pipeline, message_id, trace_id, "{text}")
            };
        }
        match level {
            Level::Trace => log!(trace),
            Level::Debug => log!(debug),
            Level::Info => log!(info),
            Level::Warn => log!(warn),
            Level::Error => log!(error),
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use prometheus_client::metrics::counter::Counter;
    use wasmtime::StoreLimitsBuilder;
    use wasmtime::component::Resource;

    use super::*;
    use crate::contract::warren::plugin::delivery::HostDelivery;
    use crate::plugin::egress::{EgressHooks, EgressPolicy};

    fn state() -> HostState {
        let plugin: Arc<str> = Arc::from("p");
        HostState::new(
            plugin.clone(),
            StoreLimitsBuilder::new().build(),
            EgressHooks::new(Arc::new(EgressPolicy::deny_all()), plugin.clone()),
            Arc::new(LogLimiter::new(plugin, Counter::default())),
        )
    }

    /// The body read by the plugin is shared, not copied, and is the message's again after
    /// the call, in the same buffer; `message()` after `body()` still has it; the state holds
    /// an empty message again between calls.
    #[test]
    fn a_lent_body_is_shared_and_given_back_whole() {
        let mut state = state();
        let mut message = Box::new(empty_message());
        message.body = b"payload".to_vec();
        message.routing_key = "rk".into();
        let buffer = message.body.as_ptr();
        state.lend(&mut message);
        assert!(
            message.body.is_empty(),
            "the caller holds the empty message"
        );
        let read = state.lent_body();
        assert_eq!(&read[..], b"payload");
        assert_eq!(read.as_ptr(), buffer, "shared, not copied");
        assert_eq!(&state.lent_body()[..], b"payload", "read twice");
        let whole = state.message(Resource::new_borrow(0)).expect("message");
        assert_eq!(
            whole.body, b"payload",
            "message() after body() has the body"
        );
        assert_eq!(whole.routing_key, "rk");
        drop(read);
        state.take_back(&mut message);
        assert_eq!(message.body, b"payload");
        assert_eq!(message.routing_key, "rk");
        assert_eq!(message.body.as_ptr(), buffer, "the same buffer, given back");
        assert!(state.lent.body.is_empty() && state.lent.routing_key.is_empty());

        // The next call is lent its own body, not the last one's.
        let mut next = Box::new(empty_message());
        next.body = b"second".to_vec();
        state.lend(&mut next);
        assert_eq!(&state.lent_body()[..], b"second");
        state.take_back(&mut next);
        assert_eq!(next.body, b"second");
        assert_eq!(message.body, b"payload");
    }
}
