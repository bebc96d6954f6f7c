//! Message traces: a delivery's `traceparent` is the parent of one span per message, whose
//! steps (handle, publish, settle) are its children, exported over OTLP/HTTP to a receiver in
//! the test; every message warren publishes for it carries a child `traceparent`; plugin log
//! lines carry the message id and the trace id. Without `[telemetry]`, trace headers pass
//! through untouched.

use std::collections::BTreeMap;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::support::*;

/// The trace id and parent span id of the producer's `traceparent`.
const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const TRACESTATE: &str = "vendor=warren-test";

/// The properties of a message with id `id` sent as a child of span `PARENT` of `trace`.
fn traced(id: &str, trace: &str) -> BasicProperties {
    let mut headers = FieldTable::default();
    let text = |s: String| AMQPValue::LongString(LongString::from(s));
    headers.insert(
        "traceparent".into(),
        text(format!("00-{trace}-{PARENT}-01")),
    );
    headers.insert("tracestate".into(), text(TRACESTATE.to_owned()));
    with_id(id).with_headers(headers)
}

/// The text of header `key`, if it is a string.
fn text(properties: &BasicProperties, key: &str) -> Option<String> {
    match header(properties, key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        other => panic!("{key} is not a string: {other:?}"),
    }
}

/// `00-TRACE-SPAN-01` split into the trace id and the span id, checked to be sampled.
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert!(
        parts.len() == 4 && parts[0] == "00" && parts[3] == "01",
        "a sampled W3C traceparent: {traceparent}"
    );
    (parts[1].to_owned(), parts[2].to_owned())
}

/// Takes `n` messages from `queue` (waiting for each), by message id.
async fn take_by_id(broker: &Broker, queue: &str, n: usize) -> BTreeMap<String, BasicProperties> {
    let mut taken = BTreeMap::new();
    for _ in 0..n {
        let m = broker.next(queue).await;
        let id = m
            .delivery
            .properties
            .message_id()
            .as_ref()
            .expect("a message id");
        taken.insert(id.to_string(), m.delivery.properties);
    }
    taken
}

/// The one span of `spans` named `name`.
fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found: Vec<&ReceivedSpan> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name:?} span in {spans:#?}");
    found[0]
}

/// The JSON log event of the line containing `needle` whose `message_id` field is `id`.
fn log_event(log: &str, needle: &str, id: &str) -> serde_json::Value {
    log.lines()
        .filter(|line| line.contains(needle))
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("a JSON log line"))
        .find(|event| event["fields"]["message_id"] == id)
        .unwrap_or_else(|| panic!("no log line {needle:?} with message_id {id}:\n{log}"))
}

/// A republished message: its span is the child of the producer's, with handle, publish and
/// settle under it; the republished copy's `traceparent` names that publish span, and keeps
/// the `tracestate`. A message without `traceparent` starts a trace of its own, continued the
/// same way. The plugin's log line for each carries its message id and trace id.
#[tokio::test]
async fn a_republished_message_continues_its_trace() {
    let receiver = OtlpReceiver::start();
    let broker = Broker::connect().await;
    let (queue, out) = (unique("traced"), unique("traced-out"));
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let plugin_config = format!(r#"mode = "republish", to = "{out}", log = "scripted handles it""#);
    let config = scripted(&queue, &plugin_config, "", "")
        .otlp(&receiver.endpoint, "warren-traces-test")
        .build();
    let mut daemon = LoggingDaemon::start(&config, &["--log-format", "json"]);
    daemon.wait_for("warren ready");
    broker
        .publish(&queue, b"one", traced("traced-1", TRACE))
        .await;
    broker.publish(&queue, b"two", with_id("fresh-1")).await;
    let copies = take_by_id(&broker, &out, 2).await;
    // SIGTERM: warren sends the spans it still holds before it exits.
    let log = daemon.stop();

    let copy = &copies["traced-1"];
    let (trace, publish_id) = ids(&text(copy, "traceparent").expect("a traceparent"));
    assert_eq!(trace, TRACE, "the copy is in the producer's trace");
    assert_eq!(
        text(copy, "tracestate").as_deref(),
        Some(TRACESTATE),
        "tracestate kept"
    );
    let spans = receiver.trace(TRACE);
    assert_eq!(
        spans.len(),
        4,
        "process, handle, publish, settle: {spans:#?}"
    );
    let message = one(&spans, &format!("process {queue}"));
    assert_eq!(
        message.parent_span_id, PARENT,
        "the producer's span is the parent"
    );
    assert_eq!(message.kind, SPAN_CONSUMER);
    assert_eq!(message.service, "warren-traces-test");
    assert_eq!(message.attribute("warren.pipeline"), queue);
    assert_eq!(message.attribute("warren.plugin"), "scripted");
    assert_eq!(
        message.attribute("warren.plugin.version").len(),
        crate::hardening::VERSION_DIGITS
    );
    assert_eq!(message.attribute("messaging.message.id"), "traced-1");
    assert_eq!(message.attribute("warren.verdict"), "republish");
    assert_eq!(message.attribute("warren.failure.reason"), "", "no failure");
    for step in ["handle", "publish", "settle"] {
        assert_eq!(
            one(&spans, step).parent_span_id,
            message.span_id,
            "{step} is a step of the message"
        );
    }
    let publish = one(&spans, "publish");
    assert_eq!(publish.kind, SPAN_PRODUCER);
    assert_eq!(
        publish.span_id, publish_id,
        "the copy's traceparent names the publish span"
    );
    assert_eq!(
        publish.attribute("messaging.rabbitmq.destination.routing_key"),
        out
    );
    assert_eq!(one(&spans, "settle").attribute("warren.settlement"), "ack");

    // Without a traceparent: a trace of its own, with no parent, continued in the copy.
    let fresh = &copies["fresh-1"];
    let (fresh_trace, fresh_publish) = ids(&text(fresh, "traceparent").expect("a traceparent"));
    assert_eq!(text(fresh, "tracestate"), None, "no tracestate to keep");
    let fresh_spans = receiver.trace(&fresh_trace);
    assert_eq!(
        one(&fresh_spans, &format!("process {queue}")).parent_span_id,
        "",
        "a root span"
    );
    assert_eq!(one(&fresh_spans, "publish").span_id, fresh_publish);

    for (id, trace) in [("traced-1", TRACE), ("fresh-1", fresh_trace.as_str())] {
        let event = log_event(&log, "scripted handles it", id);
        assert_eq!(event["fields"]["trace_id"], trace, "{event}");
        assert_eq!(event["fields"]["plugin"], "scripted", "{event}");
    }
    broker.cleanup().await;
}

/// A plugin that traps: the message span and its handle step fail, with the reason; the
/// dead-letter copy carries a `traceparent` that names its publish step; the plugin's panic
/// message (its stderr) carries the message id and the trace id.
#[tokio::test]
async fn a_failed_message_is_traced_to_its_dead_letter() {
    let receiver = OtlpReceiver::start();
    let broker = Broker::connect().await;
    let queue = unique("traced-trap");
    broker.forget_later_queue(&queue);
    let config = scripted(&queue, r#"mode = "trap""#, "", "")
        .otlp(&receiver.endpoint, "warren")
        .build();
    let mut daemon = LoggingDaemon::start(&config, &["--log-format", "json"]);
    daemon.wait_for("warren ready");
    let trace = "0af7651916cd43dd8448eb211c80319c";
    broker
        .publish(&queue, b"boom", traced("trap-1", trace))
        .await;
    let dead = broker.next(&format!("{queue}.dead")).await;
    let log = daemon.stop();

    let spans = receiver.trace(trace);
    let message = one(&spans, &format!("process {queue}"));
    // As the dead letter's x-warren-reason says it.
    let reason = message.attribute("warren.failure.reason");
    let header = text(&dead.delivery.properties, "x-warren-reason").expect("a reason");
    assert!(
        reason.starts_with("plugin failed: plugin trapped: "),
        "{message:#?}"
    );
    assert_eq!(reason, header);
    assert_eq!(message.status, STATUS_ERROR);
    assert_eq!(message.attribute("warren.verdict"), "error");
    assert_eq!(one(&spans, "handle").status, STATUS_ERROR);
    let (dead_trace, dead_publish) =
        ids(&text(&dead.delivery.properties, "traceparent").expect("a traceparent"));
    assert_eq!(dead_trace, trace);
    let publish = one(&spans, "publish");
    assert_eq!(
        publish.span_id, dead_publish,
        "the dead letter names its publish step"
    );
    assert_eq!(publish.parent_span_id, message.span_id);
    assert_eq!(
        publish.attribute("messaging.rabbitmq.destination.routing_key"),
        format!("{queue}.dead")
    );

    let event = log_event(&log, "scripted trap", "trap-1");
    assert_eq!(event["fields"]["stream"], "stderr", "{event}");
    assert_eq!(event["fields"]["trace_id"], trace, "{event}");
    broker.cleanup().await;
}

/// Without `[telemetry]`, warren adds no trace header and changes none: a republished
/// message keeps its producer's `traceparent` and `tracestate` as they were, and one without
/// gets none.
#[tokio::test]
async fn without_telemetry_trace_headers_pass_through() {
    let broker = Broker::connect().await;
    let (queue, out) = (unique("untraced"), unique("untraced-out"));
    broker.queue(&out).await;
    let config = scripted_config(&queue, &format!(r#"mode = "republish", to = "{out}""#), "");
    let daemon = start(&config).await;
    broker.forget_later_queue(&queue);
    broker
        .publish(&queue, b"one", traced("untraced-1", TRACE))
        .await;
    broker.publish(&queue, b"two", with_id("untraced-2")).await;
    let copies = take_by_id(&broker, &out, 2).await;
    daemon.stop().await.expect("clean stop");
    let (first, second) = (&copies["untraced-1"], &copies["untraced-2"]);
    assert_eq!(
        text(first, "traceparent"),
        Some(format!("00-{TRACE}-{PARENT}-01")),
        "the producer's traceparent, unchanged"
    );
    assert_eq!(text(first, "tracestate").as_deref(), Some(TRACESTATE));
    assert_eq!(header(second, "traceparent"), None, "none added");
    assert_eq!(header(second, "tracestate"), None);
    broker.cleanup().await;
}

/// `warren check` refuses an `otlp_endpoint` that is not an http:// URL, naming the key and
/// the file (exit code 78), and says where a good one sends the spans.
#[test]
fn check_refuses_a_bad_otlp_endpoint_and_shows_a_good_one() {
    let check = |endpoint: &str| {
        let config = scripted("q", r#"mode = "ack""#, "", "")
            .otlp(endpoint, "orders")
            .build();
        let (_dir, path) = write_config(&config);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["check", "--config", path.to_str().expect("a UTF-8 path")])
            .output()
            .expect("run warren check");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code(),
            text(&out.stdout),
            text(&out.stderr),
            path,
        )
    };
    let (code, _, stderr, path) = check("127.0.0.1:4318");
    assert_eq!(code, Some(i32::from(warren::exit::CONFIG)), "{stderr}");
    assert!(
        stderr.contains("telemetry.otlp_endpoint")
            && stderr.contains("http://127.0.0.1:4318")
            && stderr.contains(path.to_str().expect("a UTF-8 path")),
        "names the key, the fix and the file: {stderr}"
    );
    let (code, stdout, stderr, _) = check("http://127.0.0.1:4318");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stdout.contains(
            "traces   exported over OTLP/HTTP to http://127.0.0.1:4318/v1/traces as service \"orders\""
        ),
        "{stdout}"
    );
}
