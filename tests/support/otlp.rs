//! An OTLP/HTTP trace receiver in the test's process: it takes what warren exports to
//! `/v1/traces` (protobuf), and keeps the spans for the test to look at.
//!
//! It serves from a thread and a runtime of its own, so that it answers while the test's
//! runtime is blocked (waiting for a `warren run` to exit, which flushes its spans then).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use prost::Message as _;

/// A span as the receiver got it: ids in lower-case hex, string attributes by key.
#[derive(Debug, Clone)]
pub struct ReceivedSpan {
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    pub name: String,
    /// OTLP's `SpanKind`: 1 internal, 4 producer, 5 consumer.
    pub kind: i32,
    pub attributes: BTreeMap<String, String>,
    /// OTLP's status code: 0 unset, 1 ok, 2 error.
    pub status: i32,
    /// The `service.name` of the resource that sent it.
    pub service: String,
}

impl ReceivedSpan {
    /// The string attribute `key`, or "" if it has none.
    pub fn attribute(&self, key: &str) -> &str {
        self.attributes.get(key).map_or("", String::as_str)
    }
}

/// The OTLP span kinds a test checks.
pub const SPAN_INTERNAL: i32 = 1;
pub const SPAN_PRODUCER: i32 = 4;
pub const SPAN_CONSUMER: i32 = 5;
/// OTLP's error status code.
pub const STATUS_ERROR: i32 = 2;

#[derive(Default)]
struct Received {
    /// Spans decoded; none kept when discarding.
    spans: Mutex<Vec<ReceivedSpan>>,
    /// Export requests taken.
    requests: AtomicU64,
    keep: bool,
}

/// A receiver listening on a free port of 127.0.0.1 until dropped.
pub struct OtlpReceiver {
    /// What to set `[telemetry] otlp_endpoint` to.
    pub endpoint: String,
    received: Arc<Received>,
    stop: tokio_util::sync::CancellationToken,
}

impl OtlpReceiver {
    /// A receiver that decodes and keeps every span.
    pub fn start() -> Self {
        Self::listen(true)
    }

    /// A receiver that answers every export without decoding it (for the bench: a sink
    /// whose own cost is small).
    pub fn discarding() -> Self {
        Self::listen(false)
    }

    fn listen(keep: bool) -> Self {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the OTLP receiver");
        listener
            .set_nonblocking(true)
            .expect("a non-blocking socket");
        let address = listener.local_addr().expect("its address");
        let received = Arc::new(Received {
            keep,
            ..Received::default()
        });
        let app = Router::new()
            .route("/v1/traces", post(take))
            .with_state(received.clone());
        let stop = tokio_util::sync::CancellationToken::new();
        let stopped = stop.clone().cancelled_owned();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("the receiver's runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
                let _ = axum::serve(listener, app)
                    .with_graceful_shutdown(stopped)
                    .await;
            });
        });
        Self {
            endpoint: format!("http://{address}"),
            received,
            stop,
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.received.spans.lock().expect("lock").clone()
    }

    /// The spans of trace `trace_id` (hex).
    pub fn trace(&self, trace_id: &str) -> Vec<ReceivedSpan> {
        let spans = self.received.spans.lock().expect("lock");
        spans
            .iter()
            .filter(|s| s.trace_id == trace_id)
            .cloned()
            .collect()
    }

    /// Export requests received so far.
    pub fn requests(&self) -> u64 {
        self.received.requests.load(Ordering::Relaxed)
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Takes one export request; a body that is not an `ExportTraceServiceRequest` fails the
/// export (400), so a test sees it.
async fn take(
    State(received): State<Arc<Received>>,
    body: Bytes,
) -> (axum::http::StatusCode, Vec<u8>) {
    received.requests.fetch_add(1, Ordering::Relaxed);
    if !received.keep {
        return (axum::http::StatusCode::OK, Vec::new());
    }
    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
        return (axum::http::StatusCode::BAD_REQUEST, Vec::new());
    };
    let mut spans = Vec::new();
    for resource_spans in request.resource_spans {
        let resource = resource_spans
            .resource
            .map(|r| strings(r.attributes))
            .unwrap_or_default();
        let service = resource.get("service.name").cloned().unwrap_or_default();
        for span in resource_spans.scope_spans.into_iter().flat_map(|s| s.spans) {
            spans.push(ReceivedSpan {
                trace_id: hex(&span.trace_id),
                span_id: hex(&span.span_id),
                parent_span_id: hex(&span.parent_span_id),
                name: span.name,
                kind: span.kind,
                attributes: strings(span.attributes),
                status: span.status.map_or(0, |s| s.code),
                service: service.clone(),
            });
        }
    }
    received.spans.lock().expect("lock").extend(spans);
    (axum::http::StatusCode::OK, Vec::new())
}

/// The attributes whose values are strings (other values shown in their debug form).
fn strings(
    attributes: Vec<opentelemetry_proto::tonic::common::v1::KeyValue>,
) -> BTreeMap<String, String> {
    attributes
        .into_iter()
        .map(|kv| {
            let value = match kv.value.and_then(|v| v.value) {
                Some(Value::StringValue(s)) => s,
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (kv.key, value)
        })
        .collect()
}

/// Bytes as lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
