//! A plugin's output in warren's log: stdout and stderr become log lines of warren's, each
//! naming the plugin, with line breaks and escape sequences escaped (so a plugin cannot forge
//! or repaint a line of warren's), and rate limited per plugin, the dropped lines counted.

use std::process::Stdio;
use std::time::Duration;

use lapin::BasicProperties;

use crate::support::{
    Broker, KillOnDrop, scripted_config, start, stderr_lines, unique, until, warren_run,
    write_config,
};

/// What a hostile plugin prints: its own line, then what looks like one of warren's on a new
/// line, with a carriage return and ANSI escapes to repaint the line it is on.
const FORGED: &str = "fine\n2026-11-30T12:00:00.000000Z  INFO warren::app: FORGED warren ready\r\u{1b}[2K\u{1b}[31mred";

/// A plugin writing a fake warren line after a `\n`, with `\r` and ANSI escapes, to stdout and
/// stderr: each of its lines is a log line of warren's (time, level, `warren::plugin`, then its
/// text, plugin and stream), with every control character escaped and no colours in a log that
/// is not a terminal; over the rate limit its lines are dropped, announced, then counted.
#[tokio::test]
async fn plugin_output_cannot_forge_a_log_line() {
    let broker = Broker::connect().await;
    let queue = unique("logs");
    broker.forget_later_queue(&queue);
    let (_dir, path) = write_config(&scripted_config(&queue, r#"mode = "body""#, ""));
    let mut daemon = KillOnDrop::spawn(
        warren_run(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let lines = stderr_lines(daemon.stderr.take().expect("stderr"));
    until(&lines, "warren ready");

    for stream in ["stdout", "stderr"] {
        let body = format!("{stream}:{FORGED}");
        broker
            .publish(&queue, body.as_bytes(), BasicProperties::default())
            .await;
        let (line, before) = until(&lines, "FORGED");
        for line in before.iter().chain([&line]) {
            assert!(
                !line.contains(['\r', '\u{1b}']),
                "a raw control character reached the log: {line:?}"
            );
        }
        // The plugin's second line is a line of its own, but one of warren's: time, level,
        // target `warren::plugin`, then the text, with the plugin's name, the message's id
        // (`-`: it has none) and the stream.
        assert!(
            line.contains(&format!(
                r#"plugin="scripted" message_id="-" stream="{stream}""#
            )),
            "{line}"
        );
        let at = |needle: &str| {
            line.find(needle)
                .unwrap_or_else(|| panic!("{needle:?} in {line}"))
        };
        assert!(at("warren::plugin: ") < at("2026-11-30T12:00:00"), "{line}");
        assert!(!line.starts_with("2026-11-30T12:00:00"), "forged: {line}");
        assert!(line.contains("\\r\\u{1b}[2K\\u{1b}[31mred"), "{line}");
        assert!(
            before.iter().any(|l| l.contains("warren::plugin: fine")),
            "the first line: {before:?}"
        );
    }

    // Over the rate limit: the first line dropped is announced at once, the count once the
    // second is over (the next line the plugin writes).
    broker
        .publish(&queue, b"spam:3000", BasicProperties::default())
        .await;
    until(&lines, "dropping the rest");
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    broker
        .publish(&queue, b"stdout:after", BasicProperties::default())
        .await;
    let (line, _) = until(&lines, "plugin log lines dropped");
    assert!(line.contains("plugin=\"scripted\" dropped="), "{line}");
    assert!(daemon.terminate().success());
    broker.cleanup().await;
}

/// Lines over the rate limit are counted in `warren_plugin_log_lines_dropped_total`, by plugin.
#[tokio::test]
async fn dropped_plugin_log_lines_are_counted() {
    let broker = Broker::connect().await;
    let queue = unique("log-drops");
    broker.forget_later_queue(&queue);
    let daemon = start(&scripted_config(&queue, r#"mode = "body""#, "")).await;
    broker
        .publish(&queue, b"spam:5000", BasicProperties::default())
        .await;
    // At most 1,000 lines a second pass: of 5,000 written within a second or two, at least
    // 3,000 are dropped.
    let labels = [("plugin", "scripted")];
    daemon
        .wait_metric("warren_plugin_log_lines_dropped_total", &labels, 3000.0)
        .await;
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}
