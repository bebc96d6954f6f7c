//! The status page's JSON (`/status`): broker nodes, pipelines with their counts and rates,
//! the last failures (never a body), the reload history; and `secret_config`, which reaches
//! the plugin but is never shown.

use std::process::Stdio;
use std::time::Duration;

use lapin::BasicProperties;
use serde_json::Value;

use crate::hardening::VERSION_DIGITS;
use crate::operations::{free_port, http_get};
use crate::support::{
    Broker, KillOnDrop, PATIENCE, TestConfig, broker_url, eventually, replace_file, shipped_plugin,
    shown, start, start_at, stderr_lines, test_plugin, unique, until, warren_run, with_id,
    write_config, write_config_with,
};

/// `GET /status`, parsed.
pub async fn status(port: u16) -> Value {
    let (code, body) = http_get(port, "/status").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/status is not JSON ({e}): {body}"))
}

/// The entry of `list` whose `key` is `value`.
fn entry<'a>(list: &'a Value, key: &str, value: &str) -> Option<&'a Value> {
    list.as_array()?.iter().find(|item| item[key] == value)
}

/// A daemon with the admin endpoint on a free port (returned) and the pipeline `pipeline`
/// (with `extra` lines) on `queue`, the `scripted` plugin taking each body as its command.
pub async fn with_body_pipeline(
    broker: &Broker,
    queue: &str,
    pipeline: &str,
    extra: &str,
) -> (crate::support::Running, u16) {
    broker.forget_later_queue(queue);
    let port = free_port();
    let config = TestConfig::new()
        .admin(port)
        .plugin("scripted", &test_plugin("scripted"), "mode = \"body\"", "")
        .queue(queue, "")
        .pipeline(pipeline, queue, "scripted", extra)
        .build();
    (start(&config).await, port)
}

/// The dead-letter depth is read every 10 s: a little longer than that.
const DEPTH_PATIENCE: Duration = Duration::from_secs(30);

/// After known messages, `/status` shows the broker node, the pipeline (queue, plugin and
/// version, prefetch, concurrency, verdicts, failures by reason, its dead-letter queue and
/// depth, rates) and the failures with their message ids and reasons (no reject: that is a
/// verdict).
#[tokio::test]
async fn status_reports_pipelines_and_failures() {
    let (broker, queue) = (Broker::connect().await, unique("status"));
    let (daemon, port) =
        with_body_pipeline(&broker, &queue, "flow", "prefetch = 7\nconcurrency = 3").await;
    for (id, body) in [
        ("m-ack-0", "ack"),
        ("m-ack-1", "ack"),
        ("m-ack-2", "ack"),
        ("m-reject", "reject"),
        ("m-trap", "trap"),
    ] {
        broker.publish(&queue, body.as_bytes(), with_id(id)).await;
    }
    let settled = || async {
        let s = status(port).await;
        let flow = entry(&s["pipelines"], "name", "flow")?;
        // All five received, not only the three acks done: the acks can be settled before
        // the broker has delivered the last two.
        let done = flow["received"] == 5 && flow["verdicts"]["ack"] == 3 && flow["in_flight"] == 0;
        done.then(|| s.clone())
    };
    let s = eventually("five messages settled on /status", PATIENCE, settled).await;
    let node = &s["broker"][0];
    assert_eq!(node["url"], shown(&broker_url()), "the password hidden");
    assert_eq!(node["consume"], "connected");
    assert_eq!(node["publish"], "connected");
    assert_eq!(s["ready"], true);
    assert_pipeline(
        entry(&s["pipelines"], "name", "flow").expect("the pipeline"),
        &queue,
    );
    assert_failures(&s["failures"]);

    // Rates and the dead-letter depth come from background readings: wait for them.
    let counted = || async {
        let s = status(port).await;
        let flow = entry(&s["pipelines"], "name", "flow")?.clone();
        let rated = flow["rate_in"]["last_minute"].as_f64()? > 0.0
            && flow["rate_out"]["last_minute"].as_f64()? > 0.0;
        (rated && flow["dead_letter_depth"] == 2).then_some(())
    };
    eventually(
        "rates and the dead-letter depth of 2",
        DEPTH_PATIENCE,
        counted,
    )
    .await;
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// The pipeline of [`status_reports_pipelines_and_failures`], on `queue`, after 3 acks, a
/// reject and a trap.
fn assert_pipeline(flow: &Value, queue: &str) {
    assert_eq!(flow["state"], "consuming");
    assert_eq!(flow["queue"], queue);
    assert_eq!(flow["plugin"], "scripted");
    assert_eq!(
        flow["plugin_version"].as_str().map(str::len),
        Some(VERSION_DIGITS)
    );
    assert_eq!(
        (&flow["prefetch"], &flow["concurrency"]),
        (&7.into(), &3.into())
    );
    assert_eq!(flow["received"], 5);
    let verdicts = &flow["verdicts"];
    assert_eq!(
        (&verdicts["reject"], &verdicts["error"]),
        (&1.into(), &1.into())
    );
    assert_eq!(flow["failures"]["trap"], 1);
    assert_eq!(flow["failures"]["timeout"], 0);
    assert_eq!(flow["dead_lettered"]["rejected"], 1);
    assert_eq!(flow["dead_lettered"]["plugin_error"], 1);
    assert_eq!(flow["dead_letter"], "queue");
    assert_eq!(flow["dead_letter_queue"], format!("{queue}.dead"));
    assert!(flow["rate_in"]["last_minute"].is_number(), "{flow}");
}

/// One failure: the trap, by message id; a failure carries no body, only these fields.
fn assert_failures(failures: &Value) {
    let failures = failures.as_array().expect("a list");
    assert_eq!(
        failures.len(),
        1,
        "the reject is a verdict, not a failure: {failures:?}"
    );
    let trap = &failures[0];
    assert_eq!(
        (&trap["pipeline"], &trap["message_id"]),
        (&"flow".into(), &"m-trap".into())
    );
    let reason = trap["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("plugin trapped"), "{reason}");
    let mut fields: Vec<&str> = trap
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(fields, ["message_id", "pipeline", "reason", "time_ms"]);
}

/// The reload history on `/status`: the plugin loaded at start, then swapped for another
/// build (from and to versions), then a broken file refused (the old version serving, why).
#[tokio::test]
async fn status_reports_the_reload_history() {
    let broker = Broker::connect().await;
    let queue = unique("status-tagged");
    let out = unique("status-out");
    broker.forget_later_queue(&queue);
    broker.queue(&out).await;
    let port = free_port();
    let config = TestConfig::new()
        .admin(port)
        .tagged_beside("tagged", &queue, &out, "")
        .build();
    let tag_a = std::fs::read(test_plugin("tag_a")).expect("tag_a");
    let (dir, path) = write_config_with(&config, &[("tagged.wasm", &tag_a)]);
    let plugin_file = dir.path().join("tagged.wasm");
    let daemon = start_at(dir, &path).await;
    let s = status(port).await;
    let loaded = entry(&s["reloads"], "plugin", "tagged").expect("loaded at start");
    assert_eq!(loaded["result"], "loaded");
    let version_a = loaded["to"].clone();

    let newest = |result: &'static str| {
        move || async move {
            let s = status(port).await;
            let newest = s["reloads"][0].clone();
            (newest["plugin"] == "tagged" && newest["result"] == result).then_some(newest)
        }
    };
    let tag_b = std::fs::read(test_plugin("tag_b")).expect("tag_b");
    replace_file(&plugin_file, &tag_b);
    let reload = eventually("the reload in the history", PATIENCE, newest("reloaded")).await;
    assert_eq!(reload["from"], version_a);
    assert_ne!(reload["to"], version_a);
    replace_file(&plugin_file, b"\0asm\x0d\0\x01\0 not a component");
    let failed = eventually(
        "the failed reload in the history",
        PATIENCE,
        newest("failed"),
    )
    .await;
    assert_eq!(
        failed["from"], reload["to"],
        "the old version keeps serving"
    );
    let detail = failed["detail"].as_str().expect("why");
    assert!(
        detail.contains("not a valid WebAssembly component"),
        "{detail}"
    );
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// A value in `secret_config` reaches the plugin's `init` (the printer prints it, and its
/// stdout is a log line of the plugin's), but warren shows it nowhere: not `warren check`,
/// `/plugins`, `/status`, the page, nor any log line of warren's own.
#[tokio::test]
async fn secret_config_reaches_the_plugin_but_is_never_shown() {
    const SECRET: &str = "hunter2-8c1f5e";
    let broker = Broker::connect().await;
    let queue = unique("secret");
    broker.forget_later_queue(&queue);
    let port = free_port();
    let config = TestConfig::new()
        .admin(port)
        .plugin(
            "printer",
            &shipped_plugin("printer"),
            "",
            &format!("secret_config = {{ prefix = \"{SECRET}\" }}"),
        )
        .queue(&queue, "")
        .pipeline("print", &queue, "printer", "")
        .build();
    let (_dir, path) = write_config(&config);

    let check = crate::cli::check(&path);
    let checked = String::from_utf8_lossy(&check.stdout);
    assert!(
        check.status.success(),
        "{checked}{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(
        checked.contains("config   printer: prefix=(secret)"),
        "{checked}"
    );
    assert!(!checked.contains(SECRET), "{checked}");

    let mut warren = KillOnDrop::spawn(
        warren_run(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = stderr_lines(warren.stderr.take().expect("stderr"));
    // Not listening until it has started: a refused connection is "not yet".
    let ready = || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        (http_get(port, "/readyz").await.0 == 200).then_some(())
    };
    eventually("warren ready", PATIENCE, ready).await;
    broker
        .publish(&queue, b"hello", BasicProperties::default())
        .await;
    // The printer's stdout is in warren's log, as a line of the plugin's.
    let (printed, mut seen) = until(&log, r#"stream="stdout""#);
    let printed_line = format!(
        r#"warren::plugin: {SECRET} hello plugin="printer" message_id="-" stream="stdout""#
    );
    assert!(
        printed.contains(&printed_line),
        "init got the secret value: {printed}"
    );

    for path in ["/plugins", "/status", "/"] {
        let (code, body) = http_get(port, path).await;
        assert_eq!(code, 200, "{path}");
        assert!(!body.contains(SECRET), "{path} shows the secret: {body}");
    }
    let (_, plugins) = http_get(port, "/plugins").await;
    let plugins: Value = serde_json::from_str(&plugins).expect("JSON");
    assert_eq!(plugins[0]["secret_config"], serde_json::json!(["prefix"]));
    assert_eq!(plugins[0]["config"], serde_json::json!({}));
    assert!(warren.terminate().success());
    // The plugin printed the value itself; warren's own lines never show it.
    seen.extend(log.iter());
    let shown: Vec<&String> = seen.iter().filter(|line| line.contains(SECRET)).collect();
    assert!(shown.is_empty(), "the log shows the secret: {shown:?}");
    broker.cleanup().await;
}
