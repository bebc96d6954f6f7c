//! Message traces (W3C trace context): one span per message, parented by its `traceparent`
//! header, with a child span per step (handle, each publish, settle); every message warren
//! publishes for it carries a child `traceparent`. Off unless `[telemetry] otlp_endpoint` is
//! set, and then free: no span is made and no header read.

mod export;
mod propagate;

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{Span as _, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};

pub use export::Exporter;
pub use opentelemetry::trace::TraceId;

use crate::broker::{PublishError, Publisher, Settlement};
use crate::decision::Kind;
use crate::message::{Message, Outgoing};
use crate::plugin::Plugin;

/// Span attribute: the pipeline that handled the message.
pub const PIPELINE: &str = "warren.pipeline";
/// Span attribute: the plugin that handled it.
pub const PLUGIN: &str = "warren.plugin";
/// Span attribute: the version of that plugin (12 hex digits of its SHA-256).
pub const PLUGIN_VERSION: &str = "warren.plugin.version";
/// Span attribute: the message's `message_id`.
pub const MESSAGE_ID: &str = "messaging.message.id";
/// Span attribute: what the plugin said (`ack`, `reject`, `requeue`, `republish`, `error`).
pub const VERDICT: &str = "warren.verdict";
/// Span attribute: why the message failed (as its `x-warren-reason` would say it).
pub const FAILURE_REASON: &str = "warren.failure.reason";
/// Span attribute of the settle step: `ack`, `reject` or `requeue`.
pub const SETTLEMENT: &str = "warren.settlement";

/// Starts the trace of each message, when traces are exported; clones share the exporter.
/// [`Tracer::off`] (the default) makes no span and reads no header.
#[derive(Clone, Default)]
pub struct Tracer(Option<Arc<SdkTracer>>);

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "Tracer(on)"
        } else {
            "Tracer(off)"
        })
    }
}

impl Tracer {
    /// No traces.
    pub fn off() -> Self {
        Self(None)
    }

    /// Starts the span of `message`: a child of the span its `traceparent` header names, in
    /// that trace and with its `tracestate`; without one (or a malformed one), a new trace.
    pub fn start(
        &self,
        pipeline: &Arc<str>,
        plugin: &Plugin,
        message: &Message,
    ) -> MessageTrace<'_> {
        let Some(tracer) = &self.0 else {
            return MessageTrace(None);
        };
        let parent =
            TraceContextPropagator::new().extract(&propagate::Reader(&message.properties.headers));
        let mut attributes = vec![
            KeyValue::new("messaging.system", "rabbitmq"),
            KeyValue::new("messaging.destination.name", message.queue.clone()),
            KeyValue::new(PIPELINE, pipeline.clone()),
            KeyValue::new(PLUGIN, plugin.name().to_owned()),
            KeyValue::new(PLUGIN_VERSION, plugin.version().to_owned()),
        ];
        if let Some(id) = &message.properties.message_id {
            attributes.push(KeyValue::new(MESSAGE_ID, id.clone()));
        }
        let span = tracer
            .span_builder(format!("process {}", message.queue))
            .with_kind(SpanKind::Consumer)
            .with_attributes(attributes)
            .start_with_context(&**tracer, &parent);
        MessageTrace(Some(Active {
            cx: parent.with_span(span),
            tracer,
            failed: AtomicBool::new(false),
        }))
    }
}

/// The trace of one message: its span, the parent of its steps. A no-op when traces are off.
pub struct MessageTrace<'a>(Option<Active<'a>>);

struct Active<'a> {
    cx: Context,
    tracer: &'a SdkTracer,
    /// A failure reason was recorded (the first one is kept).
    failed: AtomicBool,
}

impl MessageTrace<'_> {
    /// The trace id, for log lines.
    pub fn trace_id(&self) -> Option<TraceId> {
        let active = self.0.as_ref()?;
        Some(active.cx.span().span_context().trace_id())
    }

    /// Records what the plugin said.
    pub fn verdict(&self, kind: Kind) {
        if let Some(active) = &self.0 {
            active
                .cx
                .span()
                .set_attribute(KeyValue::new(VERDICT, kind.as_str()));
        }
    }

    /// Records why the message failed, and marks its span as failed; only the first reason
    /// given is kept (later ones are its consequences).
    pub fn failed(&self, reason: &dyn Display) {
        if let Some(active) = &self.0
            && !active.failed.swap(true, Ordering::Relaxed)
        {
            let span = active.cx.span();
            span.set_attribute(KeyValue::new(FAILURE_REASON, reason.to_string()));
            span.set_status(Status::error(reason.to_string()));
        }
    }

    /// Starts a child step (`handle`, `settle`); it ends when dropped or [`Step::end`]ed.
    pub fn step(&self, name: &'static str) -> Step {
        Step(
            self.0
                .as_ref()
                .map(|active| active.tracer.start_with_context(name, &active.cx)),
        )
    }

    /// Starts the step that publishes `message`, and writes that step's context into its
    /// `traceparent` / `tracestate` headers (replacing any it had).
    fn publish_step(&self, message: &mut Outgoing) -> Step {
        Step(self.0.as_ref().map(|active| {
            let span = active
                .tracer
                .span_builder("publish")
                .with_kind(SpanKind::Producer)
                .with_attributes([
                    KeyValue::new("messaging.destination.name", message.exchange.clone()),
                    KeyValue::new(
                        "messaging.rabbitmq.destination.routing_key",
                        message.routing_key.clone(),
                    ),
                ])
                .start_with_context(active.tracer, &active.cx);
            let cx = active
                .cx
                .with_remote_span_context(span.span_context().clone());
            TraceContextPropagator::new()
                .inject_context(&cx, &mut propagate::Writer(&mut message.properties.headers));
            span
        }))
    }

    /// Publishes `message` (see [`Publisher::publish`]), traced as a `publish` step whose
    /// context the message carries.
    pub async fn publish(
        &self,
        publisher: &Publisher,
        mut message: Outgoing,
    ) -> Result<(), PublishError> {
        let step = self.publish_step(&mut message);
        let result = publisher.publish(&message).await;
        step.end(result.as_ref().err());
        result
    }

    /// Publishes every message (see [`Publisher::publish_all`]), each traced as a `publish`
    /// step whose context it carries.
    pub async fn publish_all(
        &self,
        publisher: &Publisher,
        messages: &mut [Outgoing],
    ) -> Result<(), PublishError> {
        if self.0.is_none() || messages.is_empty() {
            return publisher.publish_all(messages).await;
        }
        let steps: Vec<Step> = messages.iter_mut().map(|m| self.publish_step(m)).collect();
        let publishes = messages
            .iter()
            .zip(steps)
            .map(|(message, step)| async move {
                let result = publisher.publish(message).await;
                step.end(result.as_ref().err());
                result
            });
        futures_util::future::join_all(publishes)
            .await
            .into_iter()
            .collect()
    }

    /// Starts the `settle` step for `settlement`.
    pub fn settle_step(&self, settlement: Settlement) -> Step {
        let mut step = self.step("settle");
        if let Some(span) = &mut step.0 {
            let name = match settlement {
                Settlement::Ack => "ack",
                Settlement::Reject => "reject",
                Settlement::Requeue => "requeue",
            };
            span.set_attribute(KeyValue::new(SETTLEMENT, name));
        }
        step
    }
}

/// One step of a message's trace (a child span); ended when dropped.
pub struct Step(Option<Span>);

impl Step {
    /// Ends the step, failed with `error` if there is one.
    pub fn end(self, error: Option<&impl Display>) {
        if let (Some(mut span), Some(error)) = (self.0, error) {
            span.set_status(Status::error(error.to_string()));
        }
    }
}
