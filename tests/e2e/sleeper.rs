//! The sleeper plugin: sleeping plugins hold no thread, ack only after sleeping, and a
//! `kill -9` mid-sleep loses nothing.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use lapin::BasicProperties;

use crate::support::{
    Broker, KillOnDrop, PATIENCE, TestConfig, eventually, queue_counts, shipped_plugin, start,
    unique, warren_run, write_config,
};

/// Messages of the concurrency test: its prefetch and concurrency, and how many it sends.
const TWENTY: u32 = 20;
/// Messages asleep at once in the thread test: its prefetch and concurrency.
const HUNDRED: u32 = 100;
/// Threads the daemon may start besides while a hundred messages sleep (runtime, timers).
const THREAD_SLACK: usize = 4;
/// How long each of the hundred sleeps in the thread test (seconds per dot, one dot).
const ASLEEP_SECONDS: &str = "8.0";
/// Grace period of a stop that waits for every sleep to end.
const WAIT_FOR_SLEEPS_MS: u64 = 30_000;
/// Messages asleep at the `kill -9`.
const KILLED: u32 = 10;
/// How long a restarted daemon may take to finish the messages of the `kill -9`.
const FINISHED_WITHIN: Duration = Duration::from_secs(60);

/// The pipeline `sleeper` on `queue`, running the sleeper plugin with `seconds_per_dot`, at
/// prefetch and concurrency `at_once`, with a grace period of `grace_ms`.
fn sleeper_config(queue: &str, grace_ms: u64, seconds_per_dot: &str, at_once: u32) -> String {
    let config = format!("seconds_per_dot = \"{seconds_per_dot}\"");
    let window = format!("prefetch = {at_once}\nconcurrency = {at_once}");
    TestConfig::new()
        .grace_ms(grace_ms)
        .plugin("sleeper", &shipped_plugin("sleeper"), &config, "")
        .queue(queue, "")
        .pipeline("sleeper", queue, "sleeper", &window)
        .build()
}

/// Twenty one-second sleeps that overlap end well within this; one after another they take 20 s.
const OVERLAPPING: Duration = Duration::from_secs(8);

/// Nothing is acked before its sleep ends (a stop mid-sleep gives every message back), and
/// twenty one-second sleeps at concurrency 20 end together, not one after another.
#[tokio::test]
async fn sleepers_ack_after_sleeping_and_sleep_concurrently() {
    let broker = Broker::connect().await;
    let queue = unique("sleeper");
    broker.forget_later_queue(&queue);
    let first = start(&sleeper_config(&queue, 0, "1.0", TWENTY)).await;
    for _ in 0..TWENTY {
        broker
            .publish(&queue, b"task.", BasicProperties::default())
            .await;
    }
    broker.wait_ready(&queue, 0).await; // all twenty are inside the plugin, sleeping
    first.stop().await.expect("clean stop");
    assert_eq!(
        broker.ready(&queue).await,
        TWENTY,
        "a message was acked before its sleep ended"
    );

    let started = Instant::now();
    let config = sleeper_config(&queue, WAIT_FOR_SLEEPS_MS, "1.0", TWENTY);
    let second = start(&config).await;
    second
        .wait_metric(
            "warren_messages_in_flight",
            &[("pipeline", "sleeper")],
            f64::from(TWENTY),
        )
        .await;
    second.stop().await.expect("clean stop"); // waits for the sleeping ones to ack
    let took = started.elapsed();
    assert_eq!(broker.ready(&queue).await, 0, "every message was acked");
    assert!(
        took < OVERLAPPING,
        "20 × 1 s at concurrency 20 took {took:?}: the sleeps did not overlap"
    );
    broker.cleanup().await;
}

/// `warren run` on `config`, its log piped: what the sleeper prints is in it, one log line
/// each (`... [x] Received task. plugin="sleeper" message_id=... stream="stdout"`).
fn spawn_daemon(config: &std::path::Path) -> KillOnDrop {
    KillOnDrop::spawn(
        warren_run(config)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    )
}

/// `warren run` on [`sleeper_config`] for `queue`, returned once it consumes, with its config
/// file (to start it again). The queue is declared first, as warren declares it, so that its
/// consumer can be awaited.
async fn run_consuming(
    broker: &Broker,
    queue: &str,
    seconds_per_dot: &str,
    at_once: u32,
) -> (tempfile::TempDir, std::path::PathBuf, KillOnDrop) {
    broker.queue(queue).await;
    let config = sleeper_config(queue, WAIT_FOR_SLEEPS_MS, seconds_per_dot, at_once);
    let (dir, path) = write_config(&config);
    let daemon = spawn_daemon(&path);
    broker.wait_consumers(queue, 1).await;
    (dir, path, daemon)
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
    // Each sleeps long enough that the hundredth is delivered before the first wakes, even on
    // a loaded machine (the count of unacked deliveries must reach all hundred).
    let (_dir, _, mut daemon) = run_consuming(&broker, &queue, ASLEEP_SECONDS, HUNDRED).await;
    let log = BufReader::new(daemon.stderr.take().expect("stderr"));
    let idle = threads(daemon.id());
    for _ in 0..HUNDRED {
        broker
            .publish(&queue, b"task.", BasicProperties::default())
            .await;
    }
    // All hundred have printed " [x] Received": they are asleep in the plugin.
    let received = tokio::task::spawn_blocking(move || {
        let mut lines = log.lines().map_while(Result::ok);
        let received = lines
            .by_ref()
            .filter(|l| l.contains("[x] Received"))
            .take(HUNDRED as usize)
            .count();
        (received, lines.count())
    });
    let pid = daemon.id();
    let all_asleep = || async { (queue_counts(&queue).await.1 == HUNDRED as usize).then_some(()) };
    eventually("the hundred all delivered, asleep", PATIENCE, all_asleep).await;
    let busy = threads(pid);
    eprintln!("threads: {idle} idle, {busy} with 100 messages asleep in the plugin");
    assert!(
        busy <= idle + THREAD_SLACK,
        "{busy} threads with 100 sleeping messages, {idle} idle: sleeps hold threads"
    );
    assert!(daemon.terminate().success());
    let (received, _) = received.await.expect("reader");
    assert_eq!(received, HUNDRED as usize);
    assert_eq!(broker.ready(&queue).await, 0, "all acked after their sleep");
    broker.cleanup().await;
}

/// `kill -9` while messages sleep in the plugin: the broker redelivers them all, and a
/// restarted daemon finishes every one.
#[tokio::test]
async fn kill_9_mid_sleep_loses_nothing() {
    let broker = Broker::connect().await;
    let queue = unique("sleeper-kill");
    let (_dir, config, mut daemon) = run_consuming(&broker, &queue, "1.0", TWENTY).await;
    let mut log = BufReader::new(daemon.stderr.take().expect("stderr")).lines();
    for i in 0..KILLED {
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
        let line = log
            .by_ref()
            .map_while(Result::ok)
            .find(|l| l.contains("[x] Received"));
        (line, log)
    });
    let (line, _log) = received.await.expect("reader");
    assert!(line.is_some(), "the sleeper printed");
    daemon.signal("9");
    let _ = daemon.wait();
    broker.wait_ready(&queue, KILLED).await; // every one came back

    let mut again = spawn_daemon(&config);
    let log = BufReader::new(again.stderr.take().expect("stderr"));
    let done = tokio::task::spawn_blocking(move || {
        log.lines()
            .map_while(Result::ok)
            .filter(|l| l.contains("[x] Done"))
            .take(KILLED as usize)
            .count()
    });
    let done = tokio::time::timeout(FINISHED_WITHIN, done)
        .await
        .expect("every message finished in time")
        .expect("reader");
    assert_eq!(done, KILLED as usize);
    assert!(again.terminate().success());
    assert_eq!(broker.ready(&queue).await, 0, "all acked after the restart");
    broker.cleanup().await;
}
