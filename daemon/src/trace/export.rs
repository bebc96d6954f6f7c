//! The export of message traces over OTLP/HTTP (protobuf): spans batched and sent from a
//! thread of their own, and flushed when warren stops.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use opentelemetry::InstrumentationScope;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, SpanExporter, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::Tracer;
use crate::config::TelemetrySettings;

/// How long one export request may take before it is given up (its spans are dropped).
pub const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// How long warren waits, when it stops, for the last spans to be sent.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(5);

/// The span exporter: batches finished spans and sends them to the OTLP endpoint.
pub struct Exporter {
    provider: SdkTracerProvider,
}

impl Exporter {
    /// Starts exporting to `settings.endpoint`; returns the exporter and the tracer whose
    /// spans it sends. Fails only on a setting the exporter refuses: an endpoint that is
    /// down costs the spans of each failed export (logged), never a message.
    pub fn start(settings: &TelemetrySettings) -> anyhow::Result<(Self, Tracer)> {
        let exporter = SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(settings.endpoint.as_str())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .with_context(|| {
                format!(
                    "telemetry.otlp_endpoint: cannot export to {}",
                    settings.endpoint
                )
            })?;
        let resource = Resource::builder()
            .with_service_name(settings.service_name.clone())
            .build();
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let scope = InstrumentationScope::builder("warren")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build();
        let tracer = provider.tracer_with_scope(scope);
        tracing::info!(endpoint = %settings.endpoint, "message traces exported over OTLP");
        Ok((Self { provider }, Tracer(Some(Arc::new(tracer)))))
    }

    /// Sends the spans still waiting (for up to [`FLUSH_TIMEOUT`]) and stops the exporter.
    pub async fn shutdown(self) {
        let provider = self.provider;
        let done =
            tokio::task::spawn_blocking(move || provider.shutdown_with_timeout(FLUSH_TIMEOUT))
                .await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the last message traces could not all be exported")
            }
            Err(e) => tracing::warn!(error = %e, "stopping the trace exporter failed"),
        }
    }
}
