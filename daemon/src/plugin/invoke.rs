//! Calls a plugin's `handle` on one message, inside its limits, on a pooled instance.

use std::sync::Arc;
use std::task::Poll;
use std::time::Instant;

use tokio::time::error::Elapsed;
use wasmtime::component::Resource;
use wasmtime::{Store, StoreLimitsBuilder, Trap, UpdateDeadline};

use super::pool::Lease;
use super::{HostState, Plugin, Pre};
use crate::contract::{self, Message, Outgoing, Verdict};
use crate::trace::TraceId;

/// Extra time the async deadline gives a call beyond `timeout_ms`, so that a guest computing
/// is stopped by the epoch (a clean trap) and only a guest stuck in a host call by the deadline.
const ASYNC_DEADLINE_SLACK: std::time::Duration = super::EPOCH_TICK;

/// What a plugin decided for one message, with the messages it asked to publish.
#[derive(Debug)]
pub struct Outcome {
    /// The verdict `handle` returned.
    pub verdict: Verdict,
    /// Extra messages published during `handle`, in order.
    pub publishes: Vec<Outgoing>,
}

/// Why a plugin gave no verdict. Each case sends the message to the pipeline's `on_error`.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The guest trapped: a panic, an out-of-bounds access, a stack overflow, a denied memory grow.
    #[error("plugin trapped: {0}")]
    Trap(String),
    /// `handle` ran past `timeout_ms`.
    #[error("plugin timed out after {0} ms")]
    Timeout(u128),
    /// The body is larger than `max_body_bytes`; the plugin was not called.
    #[error("message body of {size} bytes is over the plugin's max_body_bytes ({limit})")]
    TooLarge {
        /// Body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A new instance could not be created or its `init` failed.
    #[error("plugin instance could not be started: {0}")]
    Start(String),
}

/// Handles an instance may hold beyond those it held after `init` (a stream a language's
/// runtime opens on first use and keeps) before it is replaced.
const LEAKED_HANDLES_MAX: usize = 16;

/// The exports of an instance, by the contract version it was built for.
enum Bindings {
    Current(contract::Plugin),
    V0_2(contract::v0_2::Plugin),
}

/// One instance of a plugin: its store and its exports.
pub(super) struct Instance {
    store: Store<HostState>,
    bindings: Bindings,
    /// Resource handles open once `init` returned.
    handles_after_init: usize,
}

impl Plugin {
    /// Runs `handle` on `message` and returns its verdict and publishes.
    ///
    /// `pipeline` tags the plugin's log lines. The message is lent, not copied by the host:
    /// it is moved into the instance for the call (where the plugin reads what it needs of
    /// it) and back, and the caller keeps it to settle or republish.
    pub async fn handle(
        &self,
        pipeline: &Arc<str>,
        message: &mut Box<Message>,
    ) -> Result<Outcome, PluginError> {
        self.handle_traced(pipeline, message, None).await
    }

    /// Like [`Plugin::handle`], for a message in the trace `trace_id`: the plugin's log lines
    /// name it, with the message id.
    pub async fn handle_traced(
        &self,
        pipeline: &Arc<str>,
        message: &mut Box<Message>,
        trace_id: Option<TraceId>,
    ) -> Result<Outcome, PluginError> {
        if message.body.len() > self.limits.max_body_bytes {
            return Err(PluginError::TooLarge {
                size: message.body.len(),
                limit: self.limits.max_body_bytes,
            });
        }
        // A new instance is rare (the pool reuses them), and its future is large: boxed, so
        // that it does not make every call's future as large.
        let instance = self.pool.lease(|| Box::pin(self.instantiate())).await?;
        self.call(instance, pipeline, message, trace_id).await
    }

    /// Takes `n` instances from the pool at once (creating those missing, up to
    /// `max_instances`), runs `message` through each, and puts them back: the pool then holds
    /// at least that many, each used once. For warming a pool before a burst, and for
    /// measuring what one instance costs (the benchmark).
    pub async fn warm(
        &self,
        n: usize,
        pipeline: &Arc<str>,
        message: &Message,
    ) -> Result<(), PluginError> {
        let n = self.limits.max_instances.map_or(n, |cap| n.min(cap.get()));
        let mut leases = Vec::with_capacity(n);
        for _ in 0..n {
            leases.push(self.pool.lease(|| self.instantiate()).await?);
        }
        let mut message = Box::new(message.clone());
        for lease in leases {
            self.call(lease, pipeline, &mut message, None).await?;
        }
        Ok(())
    }

    /// Instances of this version alive now, in use or idle.
    pub fn instances(&self) -> usize {
        self.pool.live()
    }

    /// Runs `handle` on the leased instance; puts it back unless the call failed.
    async fn call(
        &self,
        mut lease: Lease<'_, Instance>,
        pipeline: &Arc<str>,
        message: &mut Box<Message>,
        trace_id: Option<TraceId>,
    ) -> Result<Outcome, PluginError> {
        let instance = lease.get();
        let timeout = self.limits.timeout;
        let started = Instant::now();
        let state = instance.store.data_mut();
        state.deadline = started + timeout;
        state.pipeline = pipeline.clone();
        state.new_call(message.properties.message_id.as_deref(), trace_id);
        instance.store.set_epoch_deadline(1);

        let deadline = started + timeout + ASYNC_DEADLINE_SLACK;
        let result = match &instance.bindings {
            Bindings::Current(bindings) => {
                let lent = Lent::new(&mut instance.store, message);
                // The guest is lent the message of the call, `HostState::lent`; the handle's
                // number is not looked at.
                let delivery = Resource::new_borrow(0);
                let call = bindings
                    .warren_plugin_handler()
                    .call_handle(&mut *lent.store, delivery);
                bounded(call, deadline).await
            }
            Bindings::V0_2(bindings) => {
                let call = bindings
                    .warren_plugin_handler()
                    .call_handle(&mut instance.store, message);
                bounded(call, deadline).await
            }
        };
        match result {
            Ok(Ok(verdict)) => {
                let state = instance.store.data_mut();
                let publishes = std::mem::take(&mut state.pending);
                // An instance that keeps handles open from call to call (a leak: streams,
                // HTTP requests or responses never dropped) is not reused, so that what it
                // holds (sockets above all) is freed.
                if state.open_handles() <= instance.handles_after_init + LEAKED_HANDLES_MAX {
                    lease.release(started);
                } else {
                    tracing::debug!(
                        plugin = &*self.name,
                        "plugin instance keeps resource handles open between messages; replaced"
                    );
                }
                Ok(Outcome { verdict, publishes })
            }
            // The instance is dropped: after a trap its state cannot be trusted.
            Ok(Err(e)) if e.downcast_ref::<Trap>() == Some(&Trap::Interrupt) => {
                Err(PluginError::Timeout(timeout.as_millis()))
            }
            Ok(Err(e)) => Err(PluginError::Trap(one_line(&e))),
            // A future dropped mid-call leaves the store unusable: the instance goes with it.
            Err(_elapsed) => Err(PluginError::Timeout(timeout.as_millis())),
        }
    }

    /// Creates a store and instance and runs `init` with the plugin's config.
    pub(super) async fn instantiate(&self) -> Result<Instance, PluginError> {
        // Tables, instances and memories bounded too: a componentize-py plugin uses about 14
        // core instances, so these leave room for any real plugin and none for a runaway one.
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            .table_elements(1_000_000)
            .instances(200)
            .tables(200)
            .memories(200)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(
            &self.engine,
            HostState::new(
                self.name.clone(),
                limits,
                self.egress.clone(),
                self.log.clone(),
            ),
        );
        store.limiter(|state| &mut state.limits);
        store.epoch_deadline_callback(|ctx| {
            if Instant::now() >= ctx.data().deadline {
                Ok(UpdateDeadline::Interrupt)
            } else {
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.data_mut().deadline = Instant::now() + self.limits.timeout;
        store.set_epoch_deadline(1);

        let start = async {
            Ok::<_, wasmtime::Error>(match &self.pre {
                Pre::Current(pre) => {
                    let bindings = pre.instantiate_async(&mut store).await?;
                    let handler = bindings.warren_plugin_handler();
                    let init = handler.call_init(&mut store, &self.config).await?;
                    (Bindings::Current(bindings), init)
                }
                Pre::V0_2(pre) => {
                    let bindings = pre.instantiate_async(&mut store).await?;
                    let handler = bindings.warren_plugin_handler();
                    let init = handler.call_init(&mut store, &self.config).await?;
                    (Bindings::V0_2(bindings), init)
                }
            })
        };
        match tokio::time::timeout(self.limits.timeout + ASYNC_DEADLINE_SLACK, start).await {
            Ok(Ok((bindings, Ok(())))) => {
                let handles_after_init = store.data_mut().open_handles();
                Ok(Instance {
                    store,
                    bindings,
                    handles_after_init,
                })
            }
            Ok(Ok((_, Err(refused)))) => Err(PluginError::Start(format!(
                "init refused the configuration: {refused}"
            ))),
            Ok(Err(e)) => Err(PluginError::Start(one_line(&e))),
            Err(_) => Err(PluginError::Start(format!(
                "init did not finish within timeout_ms ({} ms)",
                self.limits.timeout.as_millis()
            ))),
        }
    }
}

/// Runs a call of `handle` until `deadline`.
///
/// The first step is taken without a timer: most calls end in it (the guest returns without
/// waiting on the host), and then no timer is set up and torn down. A guest that computes is
/// stopped by the epoch in either case.
async fn bounded<F: Future>(call: F, deadline: Instant) -> Result<F::Output, Elapsed> {
    let mut call = std::pin::pin!(call);
    match std::future::poll_fn(|cx| Poll::Ready(call.as_mut().poll(cx))).await {
        Poll::Ready(done) => Ok(done),
        Poll::Pending => tokio::time::timeout_at(deadline.into(), call).await,
    }
}

/// A message moved into a store for a call, as `HostState::lent`, and moved back when the
/// call ends, whichever way it ends: a trap, a timeout, a panic or the call dropped. (Boxes
/// are swapped: the message itself does not move.)
struct Lent<'a> {
    store: &'a mut Store<HostState>,
    message: &'a mut Box<Message>,
}

impl<'a> Lent<'a> {
    fn new(store: &'a mut Store<HostState>, message: &'a mut Box<Message>) -> Self {
        store.data_mut().lend(message);
        Lent { store, message }
    }
}

impl Drop for Lent<'_> {
    fn drop(&mut self) {
        self.store.data_mut().take_back(self.message);
    }
}

/// A trap as one log-friendly line: the trap code, or the innermost cause, without the wasm backtrace.
fn one_line(error: &wasmtime::Error) -> String {
    if let Some(trap) = error.downcast_ref::<Trap>() {
        return trap.to_string();
    }
    let root = error.root_cause().to_string();
    root.lines().next().unwrap_or_default().to_owned()
}
