//! The sleeper plugin: sleeping plugins hold no thread, ack only after sleeping, and a
//! `kill -9` mid-sleep loses nothing.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::BasicProperties;

use crate::harness::{
    Broker, QUEUE_EXPIRES_MS, broker_url, shipped_plugin, start, unique, write_config,
};

fn sleeper_config(queue: &str, grace_ms: u64) -> String {
    format!(
        r#"shutdown_grace_ms = {grace_ms}

[broker]
url = "{url}"

[plugins.sleeper]
path = "{plugin}"
config = {{ seconds_per_dot = "1.0" }}

[[queues]]
name = "{queue}"
arguments = {{ "x-expires" = {expires} }}

[[pipelines]]
name = "sleeper"
queue = "{queue}"
plugin = "sleeper"
prefetch = 20
concurrency = 20
"#,
        url = broker_url(),
        plugin = shipped_plugin("sleeper").display(),
        expires = QUEUE_EXPIRES_MS,
    )
}

/// Nothing is acked before its sleep ends (a stop mid-sleep gives every message back), and
/// twenty one-second sleeps at concurrency 20 end together, not one after another.
#[tokio::test]
async fn sleepers_ack_after_sleeping_and_sleep_concurrently() {
    let broker = Broker::connect().await;
    let queue = unique("sleeper");
    broker.forget_later_queue(&queue);
    let first = start(&sleeper_config(&queue, 0)).await;
    for _ in 0..20 {
        broker
            .publish(&queue, b"task.", BasicProperties::default())
            .await;
    }
    broker.wait_ready(&queue, 0).await; // all twenty are inside the plugin, sleeping
    first.stop().await.expect("clean stop");
    assert_eq!(
        broker.ready(&queue).await,
        20,
        "a message was acked before its sleep ended"
    );

    let started = Instant::now();
    let second = start(&sleeper_config(&queue, 30_000)).await;
    second
        .wait_metric(
            "warren_messages_in_flight",
            &[("pipeline", "sleeper")],
            20.0,
        )
        .await;
    second.stop().await.expect("clean stop"); // waits for the sleeping ones to ack
    let took = started.elapsed();
    assert_eq!(broker.ready(&queue).await, 0, "every message was acked");
    assert!(
        took < Duration::from_secs(8),
        "20 × 1 s at concurrency 20 took {took:?}: the sleeps did not overlap"
    );
    broker.cleanup().await;
}

fn spawn_daemon(config: &std::path::Path) -> crate::harness::KillOnDrop {
    crate::harness::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["run", "--config", config.to_str().expect("utf-8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start warren"),
    )
}

/// The number of threads of process `pid` (from `/proc`).
fn threads(pid: u32) -> usize {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .expect("/proc status")
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .expect("a Threads line")
}

/// A sleeping plugin holds no thread: with 100 messages asleep in the sleeper at once, the
/// daemon process has no more threads than when idle (a thread per sleep would add 100).
#[tokio::test]
async fn a_sleeping_message_holds_no_thread() {
    let broker = Broker::connect().await;
    let queue = unique("sleeper-threads");
    broker.queue(&queue).await; // as warren declares it; there to be watched before it starts
    let config = sleeper_config(&queue, 30_000)
        .replace(
            "prefetch = 20\nconcurrency = 20",
            "prefetch = 100\nconcurrency = 100",
        )
        .replace("seconds_per_dot = \"1.0\"", "seconds_per_dot = \"2.0\"");
    let (_dir, path) = write_config(&config);
    let mut daemon = spawn_daemon(&path);
    let stdout = BufReader::new(daemon.stdout.take().expect("stdout"));
    broker.wait_consumers(&queue, 1).await;
    let idle = threads(daemon.id());
    for _ in 0..100 {
        broker
            .publish(&queue, b"task.", BasicProperties::default())
            .await;
    }
    // All hundred have printed " [x] Received": they are asleep (2 s each) in the plugin.
    let received = tokio::task::spawn_blocking(move || {
        let mut lines = stdout.lines().map_while(Result::ok);
        let received = lines
            .by_ref()
            .filter(|l| l.contains("[x] Received"))
            .take(100)
            .count();
        (received, lines.count())
    });
    let pid = daemon.id();
    let mut asleep = 0;
    let deadline = Instant::now() + Duration::from_secs(20);
    while asleep < 100 {
        assert!(Instant::now() < deadline, "the hundred did not all start");
        tokio::time::sleep(Duration::from_millis(20)).await;
        asleep = crate::harness::queue_counts(&queue).await.1;
    }
    let busy = threads(pid);
    eprintln!("threads: {idle} idle, {busy} with 100 messages asleep in the plugin");
    assert!(
        busy <= idle + 4,
        "{busy} threads with 100 sleeping messages, {idle} idle: sleeps hold threads"
    );
    Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(daemon.wait().expect("exit").success());
    let (received, _) = received.await.expect("reader");
    assert_eq!(received, 100);
    assert_eq!(broker.ready(&queue).await, 0, "all acked after their sleep");
    broker.cleanup().await;
}

/// `kill -9` while messages sleep in the plugin: the broker redelivers them all, and a
/// restarted daemon finishes every one.
#[tokio::test]
async fn kill_9_mid_sleep_loses_nothing() {
    let broker = Broker::connect().await;
    let queue = unique("sleeper-kill");
    broker.forget_later_queue(&queue);
    let (_dir, config) = write_config(&sleeper_config(&queue, 30_000));
    let mut daemon = spawn_daemon(&config);
    let mut stdout = BufReader::new(daemon.stdout.take().expect("stdout")).lines();
    // Wait until it consumes (the queue exists once it declared it), then publish.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let channel_ok = tokio::process::Command::new("rabbitmqctl")
            .args(["-q", "list_queues", "name", "consumers"])
            .output()
            .await
            .map(|o| String::from_utf8_lossy(&o.stdout).contains(&format!("{queue}\t1")))
            .unwrap_or(false);
        if channel_ok {
            break;
        }
        assert!(Instant::now() < deadline, "warren did not start consuming");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for i in 0..10 {
        broker
            .publish(
                &queue,
                format!("job {i} ...").as_bytes(),
                BasicProperties::default(),
            )
            .await;
    }
    // The first " [x] Received" line: messages are inside the plugin, sleeping 3 s.
    let received = tokio::task::spawn_blocking(move || {
        let line = stdout.next();
        (line, stdout)
    });
    let (line, _stdout) = received.await.expect("reader");
    assert!(
        line.expect("a line")
            .expect("utf-8")
            .starts_with(" [x] Received")
    );
    let killed = Command::new("kill")
        .args(["-9", &daemon.id().to_string()])
        .status()
        .expect("kill -9");
    assert!(killed.success());
    let _ = daemon.wait();
    broker.wait_ready(&queue, 10).await; // every one came back

    let mut again = spawn_daemon(&config);
    let stdout = BufReader::new(again.stdout.take().expect("stdout"));
    let done = tokio::task::spawn_blocking(move || {
        stdout
            .lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("[x] Done"))
            .take(10)
            .count()
    });
    let done = tokio::time::timeout(Duration::from_secs(60), done)
        .await
        .expect("ten messages finished within 60 s")
        .expect("reader");
    assert_eq!(done, 10);
    Command::new("kill")
        .args(["-TERM", &again.id().to_string()])
        .status()
        .expect("kill");
    assert!(again.wait().expect("exit").success());
    assert_eq!(broker.ready(&queue).await, 0, "all acked after the restart");
    broker.cleanup().await;
}
