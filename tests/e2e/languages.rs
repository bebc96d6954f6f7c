//! Plugins in other languages, through the daemon on the real broker: the Python and
//! JavaScript example routers (`plugins/examples/`), the same router in Rust as the baseline,
//! a plugin built against contract 0.2.0, which warren still runs, and plugins built
//! against contract versions it does not speak, which it refuses.

use std::path::PathBuf;
use std::process::Command;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};

use crate::support::{
    Broker, Running, TestConfig, dead_letters_to, example_plugin, rust_example_plugin, start,
    test_plugin, unique, write_config,
};

/// The sum (in seconds) and the count of `pipeline`'s `warren_plugin_handle_seconds`.
fn handle_seconds(daemon: &Running, pipeline: &str) -> (f64, f64) {
    let labels = [("pipeline", pipeline)];
    (
        daemon.metric("warren_plugin_handle_seconds_sum", &labels),
        daemon.metric("warren_plugin_handle_seconds_count", &labels),
    )
}

/// The highest priority of the router's output queue.
const MAX_PRIORITY: u8 = 10;
/// The priority the routed message asks for.
const PRIORITY: u8 = 7;

/// Messages routed after the first, to measure the plugin's per-message `handle` time.
const TIMED_MESSAGES: u32 = 50;

/// Runs one example router in the daemon, with config `audit` set, on a queue that
/// dead-letters, and checks what reaches the broker:
/// - `{"route": OUT, "priority": 7}`, with headers of every AMQP type (nested too), arrives
///   on OUT (`x-max-priority` 10) with priority 7, persistent, body and headers unchanged,
///   and `routed:OUT` arrives on the audit queue with the same headers, copied by the plugin
///   in its own language, plus `x-routed-to: OUT`;
/// - a body that is not JSON, and a JSON body without `route`, are dead-lettered;
/// - nothing is left in the source queue.
///
/// Then routes [`TIMED_MESSAGES`] more, one at a time (prefetch 1), and prints the mean
/// `handle` time from the daemon's `warren_plugin_handle_seconds` histogram.
async fn routes_audits_and_dead_letters(plugin: PathBuf, what: &str) {
    let broker = Broker::connect().await;
    let queue = unique(what);
    let out = unique(&format!("{what}-out"));
    let audit = unique(&format!("{what}-audit"));
    let dlq = unique(&format!("{what}-dlq"));
    let dlx = unique(&format!("{what}-dlx"));
    let mut args = FieldTable::default();
    args.insert(
        "x-max-priority".into(),
        AMQPValue::LongInt(MAX_PRIORITY.into()),
    );
    broker.queue_with(&out, args).await;
    broker.queue(&audit).await;
    broker.queue(&dlq).await;
    broker.fanout_to(&dlx, &dlq).await;
    broker.forget_later_queue(&queue);
    let config = TestConfig::new()
        .plugin("router", &plugin, &format!(r#"audit = "{audit}""#), "")
        .queue(&queue, &dead_letters_to(&dlx))
        .pipeline(&queue, &queue, "router", "prefetch = 1");
    let daemon = start(&config.build()).await;

    let body = format!(r#"{{"route": "{out}", "priority": {PRIORITY}, "order": 42}}"#);
    let headers = crate::headers::every_type(&[]);
    broker
        .publish(
            &queue,
            body.as_bytes(),
            BasicProperties::default()
                .with_delivery_mode(1)
                .with_headers(headers.clone()),
        )
        .await;
    let routed = broker.next(&out).await;
    assert_eq!(
        routed.delivery.data,
        body.as_bytes(),
        "the body is unchanged"
    );
    assert_eq!(*routed.delivery.properties.priority(), Some(PRIORITY));
    assert_eq!(
        *routed.delivery.properties.delivery_mode(),
        Some(2),
        "republished messages are persistent"
    );
    assert_eq!(
        routed.delivery.properties.headers().as_ref(),
        Some(&headers),
        "headers kept type for type"
    );
    let audited = broker.next(&audit).await;
    assert_eq!(
        String::from_utf8_lossy(&audited.delivery.data),
        format!("routed:{out}")
    );
    let mut audit_headers = headers.clone();
    audit_headers.insert(
        "x-routed-to".into(),
        AMQPValue::LongString(out.as_str().into()),
    );
    assert_eq!(
        audited.delivery.properties.headers().as_ref(),
        Some(&audit_headers),
        "the plugin copied every header, type for type, and added x-routed-to"
    );

    broker
        .publish(&queue, b"not json {", BasicProperties::default())
        .await;
    assert_eq!(broker.next(&dlq).await.delivery.data, b"not json {");
    broker
        .publish(&queue, br#"{"priority": 1}"#, BasicProperties::default())
        .await;
    assert_eq!(
        broker.next(&dlq).await.delivery.data,
        br#"{"priority": 1}"#,
        "a body without `route` is dead-lettered"
    );

    let (sum_before, count_before) = handle_seconds(&daemon, &queue);
    for i in 0..TIMED_MESSAGES {
        broker
            .publish(
                &queue,
                format!(r#"{{"route": "{out}", "n": {i}}}"#).as_bytes(),
                BasicProperties::default(),
            )
            .await;
    }
    broker.wait_ready(&out, TIMED_MESSAGES).await;
    broker.wait_ready(&audit, TIMED_MESSAGES).await;
    let (sum, count) = handle_seconds(&daemon, &queue);
    assert_eq!(count - count_before, f64::from(TIMED_MESSAGES));
    eprintln!(
        "{what}: mean handle time over {TIMED_MESSAGES} messages: {:.1} µs",
        (sum - sum_before) / f64::from(TIMED_MESSAGES) * 1e6
    );

    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0, "every message was settled");
    assert_eq!(
        broker.ready(&dlq).await,
        0,
        "only the two bad bodies were dead-lettered"
    );
    broker.cleanup().await;
}

/// The same router in Rust (`plugins/examples/rust-router`, built by `plugins/build`): the
/// baseline the other languages are measured against.
#[tokio::test]
async fn rust_router_routes_audits_and_dead_letters() {
    routes_audits_and_dead_letters(rust_example_plugin("rust_router"), "rust-router").await;
}

/// The Python example (componentize-py) routes by the JSON body with its priority, publishes
/// the audit message, and rejects unparsable bodies to the dead-letter queue.
#[tokio::test]
async fn python_router_routes_audits_and_dead_letters() {
    routes_audits_and_dead_letters(example_plugin("python_router"), "python-router").await;
}

/// The JavaScript example (componentize-js) does the same, observed the same way.
#[tokio::test]
async fn js_router_routes_audits_and_dead_letters() {
    routes_audits_and_dead_letters(example_plugin("js_router"), "js-router").await;
}

/// Runs `warren check` on a config with `plugin` and returns its stderr, asserting it failed.
fn check_refuses(plugin: &str) -> String {
    let config = TestConfig::new()
        .default_grace()
        .plugin("other", &test_plugin(plugin), "", "");
    let (_dir, path) = write_config(&config.build());
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["check", "--config", path.to_str().expect("utf-8 path")])
        .output()
        .expect("run warren check");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "check accepted it: {stderr}");
    assert!(
        stderr.contains("rebuild the plugin against the SDK of this warren")
            && !stderr.contains("linker"),
        "a clear error, not a linker dump: {stderr}"
    );
    stderr
}

/// `warren check` refuses a plugin built against `warren:plugin@0.9.0`: non-zero exit, and
/// the error names both the plugin's contract version and the one warren speaks.
#[test]
fn check_refuses_a_plugin_of_another_contract_version() {
    let stderr = check_refuses("contract_v2");
    assert!(
        stderr.contains("built against contract warren:plugin@0.9.0")
            && stderr.contains("speaks warren:plugin@0.3.0 (and runs plugins built for 0.2.0)"),
        "the error names both versions: {stderr}"
    );
}

/// A plugin built for contract 0.1.0 (headers before they were lossless), not rebuilt, is
/// refused the same way: both versions named, and the fix.
#[test]
fn check_refuses_a_plugin_built_for_contract_0_1_0() {
    let stderr = check_refuses("contract_v1");
    assert!(
        stderr.contains("built against contract warren:plugin@0.1.0")
            && stderr.contains("speaks warren:plugin@0.3.0"),
        "the error names both versions: {stderr}"
    );
}

/// Messages through the plugin built for contract 0.2.0.
const V0_2_MESSAGES: usize = 200;

/// A plugin built against contract 0.2.0 (`tests/plugins/contract-0-2`, where `handle` takes
/// the message as a record), never rebuilt, still runs: each of [`V0_2_MESSAGES`] messages,
/// counted by id, is republished with its body and headers and the fields the plugin read
/// (queue, routing key, redelivered), and the extra message it published arrives too.
#[tokio::test]
async fn a_plugin_built_for_contract_0_2_0_still_runs() {
    let broker = Broker::connect().await;
    let queue = unique("v0-2");
    let out = unique("v0-2-out");
    let extra = format!("{out}.extra");
    broker.queue(&out).await;
    broker.queue(&extra).await;
    broker.forget_later_queue(&queue);
    let config = TestConfig::new()
        .plugin(
            "old",
            &test_plugin("contract_0_2"),
            &format!(r#"to = "{out}""#),
            "",
        )
        .queue(&queue, "")
        .pipeline(&queue, &queue, "old", "");
    let daemon = start(&config.build()).await;

    let mut headers = FieldTable::default();
    headers.insert("tenant".into(), AMQPValue::LongString("acme".into()));
    let messages: Vec<(Vec<u8>, BasicProperties)> = (0..V0_2_MESSAGES)
        .map(|i| {
            let properties = BasicProperties::default()
                .with_message_id(format!("m{i}").into())
                .with_headers(headers.clone());
            (format!("body {i}").into_bytes(), properties)
        })
        .collect();
    broker.publish_each(&queue, messages, 100).await;

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..V0_2_MESSAGES {
        let routed = broker.next(&out).await;
        let id = routed
            .delivery
            .properties
            .message_id()
            .as_ref()
            .expect("the message id is kept")
            .to_string();
        let i = id.trim_start_matches('m');
        assert_eq!(routed.delivery.data, format!("body {i}").into_bytes());
        let got = routed
            .delivery
            .properties
            .headers()
            .clone()
            .unwrap_or_default();
        assert_eq!(
            got.inner().get("tenant"),
            Some(&AMQPValue::LongString("acme".into()))
        );
        assert_eq!(
            got.inner().get("seen"),
            Some(&AMQPValue::LongString(
                format!("{queue}/{queue}/false").into()
            )),
            "the plugin read the queue, routing key and redelivered flag"
        );
        assert!(seen.insert(id.clone()), "{id} came twice");
        let extra_message = broker.next(&extra).await;
        assert!(extra_message.delivery.data.starts_with(b"extra:body "));
    }
    assert_eq!(seen.len(), V0_2_MESSAGES, "every message came, once");

    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&queue).await, 0, "every message was settled");
    assert_eq!(
        broker.ready(&out).await,
        0,
        "nothing more than one per message"
    );
    broker.cleanup().await;
}
