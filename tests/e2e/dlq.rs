//! `warren dlq`: dead-lettered messages listed by reason, and replayed to their queue.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable};
use serde_json::json;

use crate::harness::{
    Broker, TestConfig, collect_ids, drain_ids, header, start, test_plugin, unique, write_config,
};

/// A config whose one pipeline (named as its queue) runs the `router` test plugin to `out`.
fn config(queue: &str, out: &str) -> String {
    TestConfig::new()
        .plugin(
            "router",
            &test_plugin("router"),
            &format!("to = \"{out}\""),
            "",
        )
        .queue(queue, "")
        .pipeline(queue, queue, "router", "")
        .build()
}

fn warren(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .output()
        .expect("run warren")
}

/// `list` counts the dead-lettered messages by reason and shows their ids, taking none;
/// `replay --reason` moves only those back to the queue, unchanged but for warren's headers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_and_replayed() {
    let broker = Broker::connect().await;
    let (queue, out) = (unique("dlq"), unique("dlq-out"));
    let dead = format!("{queue}.dead");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let text = config(&queue, &out);
    let daemon = start(&text).await;
    let mut app = FieldTable::default();
    app.insert("app".into(), AMQPValue::LongString("kept".into()));
    let reject = json!({ "verdict": "reject" }).to_string();
    let too_long = json!({ "routing_key": "r".repeat(300) }).to_string();
    for i in 0..30 {
        let id = BasicProperties::default()
            .with_message_id(format!("r-{i}").into())
            .with_headers(app.clone());
        broker.publish(&queue, reject.as_bytes(), id).await;
    }
    for i in 0..10 {
        let id = BasicProperties::default().with_message_id(format!("l-{i}").into());
        broker.publish(&queue, too_long.as_bytes(), id).await;
    }
    broker.wait_ready(&dead, 40).await;
    // Read every 10 s.
    let depth = [("pipeline", queue.as_str())];
    daemon
        .wait_metric_for(
            "warren_dead_letter_depth",
            &depth,
            40.0,
            Duration::from_secs(30),
        )
        .await;
    let versions = daemon.scrape();
    assert!(
        versions
            .samples
            .iter()
            .any(|s| s.metric == "warren_plugin_info"
                && s.labels.get("plugin") == Some("router")
                && s.labels.get("version").is_some_and(|v| v.len() == 12)),
        "warren_plugin_info names the router's version"
    );
    daemon.stop().await.expect("clean stop");

    let (_dir, path) = write_config(&text);
    let path = path.to_str().expect("utf-8");
    let listed = warren(&["dlq", "list", "--config", path, "--pipeline", &queue]);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(
        stdout.contains(&format!("{dead} holds 40 messages")),
        "{stdout}"
    );
    assert!(
        stdout.contains("     30  rejected by the plugin"),
        "{stdout}"
    );
    assert!(
        stdout.contains("     10  invalid publish: routing_key is 300 bytes long"),
        "{stdout}"
    );
    assert!(stdout.contains("  r-0  rejected by the plugin"), "{stdout}");
    broker.wait_ready(&dead, 40).await;

    let replayed = warren(&[
        "dlq",
        "replay",
        "--config",
        path,
        "--pipeline",
        &queue,
        "--reason",
        "rejected",
    ]);
    assert!(
        replayed.status.success(),
        "{}",
        String::from_utf8_lossy(&replayed.stderr)
    );
    broker.wait_ready(&queue, 30).await;
    broker.wait_ready(&dead, 10).await;
    let back = broker.next(&queue).await;
    let p = &back.delivery.properties;
    assert_eq!(back.delivery.data, reject.as_bytes());
    assert!(matches!(header(p, "app"), Some(AMQPValue::LongString(s)) if s.as_bytes() == b"kept"));
    for gone in [
        "x-warren-reason",
        "x-warren-pipeline",
        "x-warren-plugin-version",
        "x-warren-time",
    ] {
        assert!(header(p, gone).is_none(), "{gone} is dropped");
    }
    broker.cleanup().await;
}

/// A replay killed (-9) in the middle loses nothing: every message is in the queue or still
/// in the dead-letter queue, and at most one replay window is in both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_replay_loses_nothing() {
    const N: usize = 5_000;
    let broker = Broker::connect().await;
    let (queue, out) = (unique("dlq-kill"), unique("dlq-kill-out"));
    let dead = format!("{queue}.dead");
    broker.queue(&queue).await;
    broker.queue(&dead).await;
    let mut reason = FieldTable::default();
    reason.insert(
        "x-warren-reason".into(),
        AMQPValue::LongString("rejected by the plugin".into()),
    );
    for i in 0..N {
        let properties = BasicProperties::default()
            .with_message_id(format!("d-{i}").into())
            .with_headers(reason.clone());
        broker.publish(&dead, b"x", properties).await;
    }
    let (_dir, path) = write_config(&config(&queue, &out));
    let mut replay = crate::harness::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["dlq", "replay", "--config", path.to_str().expect("utf-8")])
            .args(["--pipeline", &queue])
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warren dlq replay"),
    );
    let stderr = BufReader::new(replay.stderr.take().expect("stderr"));
    for line in stderr.lines().map_while(Result::ok) {
        let moved: Option<usize> = line
            .strip_prefix("replayed ")
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok());
        if moved.is_some_and(|n| n >= N / 5) {
            break;
        }
    }
    replay.kill().expect("kill -9");
    let _ = replay.wait();
    // The killed replay's unacked messages return to the dead-letter queue as its connection
    // closes.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut seen = collect_ids(&broker, &queue, 1).await;
    drain_ids(&broker, &dead, &mut seen).await;
    assert_eq!(seen.len(), N, "lost messages");
    let twice: usize = seen.values().map(|n| n - 1).sum();
    assert!(
        twice <= warren::dlq::REPLAY_WINDOW,
        "{twice} repeated, more than one window"
    );
    eprintln!("dlq replay killed mid-way: {N} messages, 0 lost, {twice} repeated");
    broker.cleanup().await;
}
