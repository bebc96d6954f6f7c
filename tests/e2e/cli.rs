//! The `warren` command: `check` on the shipped config and on bad configs, `publish`, `run`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{
    Broker, KillOnDrop, LoggingDaemon, TestConfig, broker_url, repo_root, scripted_config,
    shipped_plugin, stderr_lines, test_plugin, unique, until, warren_run, write_config,
};

fn warren(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .output()
        .expect("run warren")
}

/// `warren check --config CONFIG`, its output.
pub(crate) fn check(config: &Path) -> Output {
    warren(&["check", "--config", config.to_str().expect("utf-8 path")])
}

/// The shipped `config/warren.toml` is valid and every plugin it names compiles and initialises.
#[test]
fn shipped_config_passes_check() {
    shipped_plugin("printer");
    let out = check(&repo_root().join("config/warren.toml"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "warren check failed: {}{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("pipeline hello: queue hello -> plugin printer"),
        "{stdout}"
    );
    assert!(stdout.contains("plugin   printer:"), "{stdout}");
    assert!(
        !stdout.contains("guest:guest"),
        "the password is never printed: {stdout}"
    );
    assert!(
        stdout.contains("rejected -> hello.dead") && stdout.contains("queue    hello.dead"),
        "rejected messages of hello go to hello.dead, which is declared: {stdout}"
    );
    assert!(!stdout.contains("will be dropped"), "{stdout}");
    assert!(stdout.contains("traces   off"), "no [telemetry]: {stdout}");
}

/// Opting out of the dead-letter queue is said out loud by `check`.
#[test]
fn check_warns_when_rejected_messages_would_be_dropped() {
    let config = Valid {
        pipeline_extra: "prefetch = 5\ndead_letter_queue = false",
        ..Valid::default()
    };
    let (_dir, path) = write_config(&config.build());
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(
            "warning  pipeline pipe: dead_letter_queue = false and queue q has no dead_letter_exchange: rejected messages will be dropped"
        ),
        "{stdout}"
    );
    assert!(stdout.contains("rejected -> dropped"), "{stdout}");
}

/// A valid config for `warren check`, with a password to look for: the pipeline `pipe`
/// from the queue `q` to the plugin `p` (`scripted`, mode `ack`). The bad-config cases each
/// change one of its parts.
struct Valid {
    url: &'static str,
    plugin_path: PathBuf,
    mode: &'static str,
    plugin_extra: &'static str,
    queue: &'static str,
    plugin: &'static str,
    pipeline_extra: &'static str,
}

impl Default for Valid {
    fn default() -> Self {
        Self {
            url: "amqp://user:s3cret-pw@127.0.0.1:5672/%2f",
            plugin_path: test_plugin("scripted"),
            mode: "ack",
            plugin_extra: "",
            queue: "q",
            plugin: "p",
            pipeline_extra: "prefetch = 5",
        }
    }
}

impl Valid {
    fn build(&self) -> String {
        let mode = format!("mode = \"{}\"", self.mode);
        TestConfig::with_url(self.url)
            .default_grace()
            .plugin("p", &self.plugin_path, &mode, self.plugin_extra)
            .queue_exact("q", "", "")
            .pipeline("pipe", self.queue, self.plugin, self.pipeline_extra)
            .build()
    }
}

/// The valid config, as text.
fn valid_config() -> String {
    Valid::default().build()
}

/// Runs `warren check` on `config` and returns its stderr, asserting it failed without
/// showing the password.
fn refused(config: &str) -> String {
    let (_dir, path) = write_config(config);
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(i32::from(warren::exit::CONFIG)),
        "warren check must refuse a bad config with EX_CONFIG:\n{config}"
    );
    assert!(
        stderr.contains(path.to_str().expect("utf-8")),
        "the error names the file: {stderr}"
    );
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password leaked: {stderr}"
    );
    stderr
}

/// The baseline for the bad-config cases is itself valid.
#[test]
fn valid_config_passes_check() {
    let (_dir, path) = write_config(&Valid::default().build());
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A change to one part of the [`Valid`] config.
type Change = fn(&mut Valid);

/// Every kind of bad config is refused with the key (or path) and the file named.
#[test]
fn bad_configs_name_the_key() {
    // Each case changes one part of the valid config; the error names the key.
    let cases: [(Change, &str); 9] = [
        (
            |c| c.pipeline_extra = "prefetch = 5\nprefetchx = 1",
            "prefetchx",
        ),
        (|c| c.pipeline_extra = "prefetch = \"five\"", "prefetch"),
        (|c| c.plugin = "nope", "pipelines[0].plugin"),
        (|c| c.queue = "other", "pipelines[0].queue"),
        (
            |c| c.pipeline_extra = "prefetch = 0",
            "pipelines[0].prefetch",
        ),
        (
            |c| c.plugin_path = "missing/nothing.wasm".into(),
            "plugins.p.path",
        ),
        (|c| c.mode = "nonsense", "plugins.p"),
        (
            |c| c.url = "http://user:s3cret-pw@127.0.0.1:5672/%2f",
            "broker.url",
        ),
        (
            |c| c.plugin_extra = "max_body_bytes = 0",
            "plugins.p.max_body_bytes",
        ),
    ];
    for (change, key) in cases {
        let mut config = Valid::default();
        change(&mut config);
        let stderr = refused(&config.build());
        assert!(stderr.contains(key), "error should name {key}:\n{stderr}");
    }
}

/// A plugin file that is not a WebAssembly component is refused, naming the key and the path.
#[test]
fn invalid_plugin_file_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm this is not a component").expect("write");
    let config = Valid {
        plugin_path: bogus,
        ..Valid::default()
    };
    let stderr = refused(&config.build());
    assert!(stderr.contains("plugins.p"), "{stderr}");
    assert!(stderr.contains("bogus.wasm"), "{stderr}");
}

/// A plugin whose `init` refuses its config is refused at start-up.
#[test]
fn plugin_init_error_is_reported() {
    let config = Valid {
        mode: "nonsense",
        ..Valid::default()
    };
    let stderr = refused(&config.build());
    assert!(stderr.contains("unknown mode"), "{stderr}");
}

/// `warren run` with a broker that refuses the credentials fails without printing the password.
#[test]
fn run_never_prints_the_password() {
    let (_dir, path) = write_config(&Valid::default().build());
    let out = warren_run(&path).output().expect("run warren");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password leaked: {stderr}"
    );
    assert!(stderr.contains("***"), "{stderr}");
}

/// The quick start: `warren run` with the printer, `warren publish` a line, the printer prints
/// it (in warren's log).
#[tokio::test]
async fn publish_and_printer_quick_start() {
    let broker = Broker::connect().await;
    let queue = unique("hello");
    broker.forget_later_queue(&queue);
    let config = TestConfig::new()
        .default_grace()
        .plugin(
            "printer",
            &shipped_plugin("printer"),
            r#"prefix = " [x] Received""#,
            "",
        )
        .queue(&queue, "")
        .pipeline("hello", &queue, "printer", "");
    let (_dir, path) = write_config(&config.build());
    let mut daemon = KillOnDrop::spawn(
        warren_run(&path)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped()),
    );
    let log = stderr_lines(daemon.stderr.take().expect("stderr"));
    until(&log, "warren ready");

    let publish = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["publish", "--url", &broker_url(), "--queue", &queue])
        .stdin(Stdio::piped())
        .output_with_input(b"Hello World!\nsecond line\n");
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );

    // What the printer prints is in warren's log, one line each, naming the plugin and the
    // message (`-`: these have no message id).
    let printed: Vec<String> = (0..2).map(|_| until(&log, "warren::plugin: ").0).collect();
    let mut printed: Vec<&str> = printed
        .iter()
        .map(|line| {
            let (_, text) = line.split_once("warren::plugin: ").expect("a plugin line");
            text
        })
        .collect();
    // Concurrency 10: the two may be printed in either order.
    printed.sort();
    assert_eq!(
        printed,
        [
            r#" [x] Received Hello World! plugin="printer" message_id="-" stream="stdout""#,
            r#" [x] Received second line plugin="printer" message_id="-" stream="stdout""#
        ]
    );

    // SIGTERM stops it cleanly.
    let exit = daemon.terminate();
    assert!(exit.success(), "warren run exits 0 on SIGTERM: {exit:?}");
    assert_eq!(broker.ready(&queue).await, 0);
    broker.cleanup().await;
}

trait OutputWithInput {
    fn output_with_input(&mut self, input: &[u8]) -> Output;
}

impl OutputWithInput for Command {
    fn output_with_input(&mut self, input: &[u8]) -> Output {
        let mut child = self
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input)
            .expect("write stdin");
        child.wait_with_output().expect("wait")
    }
}

/// An unroutable republish is logged by warren (exchange, routing key, reply) but the message
/// body never reaches the log, not even through lapin's own line for returned messages.
#[tokio::test]
async fn unroutable_publish_is_logged_without_the_body() {
    let broker = Broker::connect().await;
    let queue = unique("unroutable-log");
    broker.forget_later_queue(&queue);
    let nowhere = unique("nowhere");
    let config = scripted_config(
        &queue,
        &format!(r#"mode = "republish", to = "{nowhere}""#),
        "",
    );
    let mut daemon = LoggingDaemon::start(&config, &[]);
    daemon.wait_for("warren ready");
    let secret = "payload-that-must-not-be-logged";
    broker
        .publish(&queue, secret.as_bytes(), lapin::BasicProperties::default())
        .await;
    daemon.wait_for("unroutable");
    let log = daemon.stop();
    assert!(
        log.contains(&nowhere),
        "the failed publish names its routing key: {log}"
    );
    // As text, or as the list of bytes a `Debug` print of the message shows.
    let as_bytes = format!("{:?}", secret.as_bytes());
    let as_bytes = as_bytes.trim_matches(|c| c == '[' || c == ']');
    assert!(
        !log.contains(secret) && !log.contains(as_bytes),
        "the body leaked into the log: {log}"
    );
    assert_eq!(broker.ready(&queue).await, 0, "rejected (on_error)");
    broker.cleanup().await;
}

/// `--log-format json`: one JSON object per line, the plugin's own panic message (its stderr)
/// included; a failed message gets one line with its pipeline, plugin, plugin version, message
/// id and error; the password never appears.
#[tokio::test]
async fn json_logs_name_the_failed_message() {
    let broker = Broker::connect().await;
    let queue = unique("json-log");
    broker.forget_later_queue(&queue);
    let config = scripted_config(&queue, r#"mode = "trap""#, "");
    let mut daemon = LoggingDaemon::start(&config, &["--log-format", "json"]);
    daemon.wait_for("warren ready");
    broker
        .publish(
            &queue,
            b"boom",
            lapin::BasicProperties::default().with_message_id("m-42".into()),
        )
        .await;
    let line = daemon.wait_for("plugin failed on a message");
    let log = daemon.stop();
    let event: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    let fields = &event["fields"];
    assert_eq!(fields["pipeline"], queue.as_str(), "{line}");
    assert_eq!(fields["plugin"], "scripted", "{line}");
    assert_eq!(fields["message_id"], "m-42", "{line}");
    assert!(
        fields["version"]
            .as_str()
            .is_some_and(|v| v.len() == crate::hardening::VERSION_DIGITS),
        "the plugin version (12 hex digits): {line}"
    );
    assert!(
        fields["error"].as_str().is_some_and(|e| e.contains("trap")),
        "{line}"
    );
    let events: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(
        events.iter().any(|e| e["fields"]["stream"] == "stderr"
            && e["fields"]["plugin"] == "scripted"
            && e["fields"]["message"] == "scripted trap"),
        "the plugin's panic message is a log event naming the plugin: {log}"
    );
    assert!(!log.contains(":guest@"), "the password leaked: {log}");
    broker.cleanup().await;
}

/// `warren publish` sets what its flags say: exchange and routing key (through a fanout
/// exchange bound to the queue), priority, reply-to, correlation id, content type, and
/// persistent unless `--transient`.
#[tokio::test]
async fn publish_flags_reach_the_message() {
    let broker = Broker::connect().await;
    let queue = unique("publish-flags");
    let exchange = unique("publish-flags-x");
    broker.queue(&queue).await;
    broker.fanout_to(&exchange, &queue).await;
    let publish = |extra: &[&str], body: &[u8]| {
        let out = Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["publish", "--url", &broker_url()])
            .args(extra)
            .stdin(Stdio::piped())
            .output_with_input(body);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    publish(
        &[
            "--exchange",
            &exchange,
            "--routing-key",
            "ignored-by-fanout",
            "--priority",
            "7",
            "--reply-to",
            "answers",
            "--correlation-id",
            "c-1",
            "--content-type",
            "application/json",
        ],
        b"{}\n",
    );
    let m = broker.next(&queue).await;
    let p = &m.delivery.properties;
    assert_eq!(m.delivery.data, b"{}");
    assert_eq!(m.delivery.exchange.as_str(), exchange);
    assert_eq!(m.delivery.routing_key.as_str(), "ignored-by-fanout");
    assert_eq!(*p.priority(), Some(7));
    assert_eq!(p.reply_to().as_ref().map(|s| s.as_str()), Some("answers"));
    assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("c-1"));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(*p.delivery_mode(), Some(2), "persistent by default");
    publish(&["--queue", &queue, "--transient"], b"light\n");
    let m = broker.next(&queue).await;
    assert_eq!(m.delivery.data, b"light");
    assert_eq!(*m.delivery.properties.delivery_mode(), Some(1));
    broker.cleanup().await;
}

/// `warren run` exits 78 (EX_CONFIG, not restarted by the unit) on a bad config, and 69
/// (EX_UNAVAILABLE) when the broker stays unreachable past `startup_timeout_ms`.
#[test]
fn exit_codes_say_what_failed() {
    let (_dir, path) = write_config("[[pipelines]]\nname = \"p\"\n");
    let out = warren(&["run", "--config", path.to_str().expect("utf-8")]);
    assert_eq!(out.status.code(), Some(i32::from(warren::exit::CONFIG)));

    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("addr").port();
    drop(closed);
    let config = valid_config().replace(
        "url = \"amqp://user:s3cret-pw@127.0.0.1:5672/%2f\"",
        &format!("url = \"amqp://guest:guest@127.0.0.1:{port}/%2f\"\nstartup_timeout_ms = 1500"),
    );
    let (_dir, path) = write_config(&config);
    let started = Instant::now();
    let out = warren(&["run", "--config", path.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(i32::from(warren::exit::UNAVAILABLE)),
        "{stderr}"
    );
    assert!(stderr.contains("startup_timeout_ms"), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(20));
}

/// `${NAME}` in any string takes the environment variable (an unset one is an error naming
/// the variable and the key); `url_file` takes the broker URL from a file; `WARREN_CONFIG`
/// is the default of `--config`.
#[test]
fn secrets_come_from_the_environment_and_files() {
    let config = valid_config().replace(
        "url = \"amqp://user:s3cret-pw@127.0.0.1:5672/%2f\"",
        "url = \"amqp://user:${WARREN_TEST_BROKER_PW}@127.0.0.1:5672/%2f\"",
    );
    let (_dir, path) = write_config(&config);
    let check_with = |pw: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_warren"));
        command.arg("check").env("WARREN_CONFIG", &path);
        match pw {
            Some(pw) => command.env("WARREN_TEST_BROKER_PW", pw),
            None => command.env_remove("WARREN_TEST_BROKER_PW"),
        };
        command.output().expect("run warren check")
    };
    let out = check_with(Some("from-env"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("amqp://user:***@127.0.0.1:5672/%2f"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("from-env"),
        "the password is never shown: {stdout}"
    );
    let out = check_with(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(i32::from(warren::exit::CONFIG)));
    assert!(
        stderr.contains("broker.url: environment variable WARREN_TEST_BROKER_PW is not set"),
        "{stderr}"
    );

    let dir = tempfile::tempdir().expect("tmp");
    std::fs::write(
        dir.path().join("broker-url"),
        "amqp://user:in-a-file@127.0.0.1:5672/%2f\n",
    )
    .expect("write");
    let config = valid_config().replace(
        "url = \"amqp://user:s3cret-pw@127.0.0.1:5672/%2f\"",
        &format!("url_file = \"{}\"", dir.path().join("broker-url").display()),
    );
    let (_dir, path) = write_config(&config);
    let out = check(&path);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("amqp://user:***@127.0.0.1:5672/%2f"),
        "{stdout}"
    );
    assert!(!stdout.contains("in-a-file"), "{stdout}");
    let missing = valid_config().replace(
        "url = \"amqp://user:s3cret-pw@127.0.0.1:5672/%2f\"",
        "url_file = \"/nonexistent/broker-url\"",
    );
    assert!(refused(&missing).contains("broker.url_file: cannot read /nonexistent/broker-url"));
}

/// Sends `signal` (`TERM`, `HUP`) to the process `pid`.
fn send(signal: &str, pid: u32) {
    let status = Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .expect("kill");
    assert!(status.success(), "kill -{signal} {pid}");
}

/// Signals are heard from the start: a SIGTERM while warren is still trying to reach the
/// broker ends it cleanly (exit code 0), without waiting for the start-up limit.
#[test]
fn sigterm_during_broker_retries_exits_cleanly() {
    let config = valid_config().replace(
        "url = \"amqp://user:s3cret-pw@127.0.0.1:5672/%2f\"",
        &format!(
            "url = \"amqp://guest:guest@127.0.0.1:{}/%2f\"\nstartup_timeout_ms = 120000",
            crate::operations::free_port()
        ),
    );
    let (_dir, path) = write_config(&config);
    let mut daemon = crate::harness::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["run", "--config", path.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warren run"),
    );
    let log = stderr_lines(daemon.stderr.take().expect("stderr"));
    until(&log, "broker unavailable; retrying");
    send("TERM", daemon.id());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = daemon.try_wait().expect("wait") {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(10),
            "SIGTERM was not heard"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(0));
}

/// A SIGHUP that arrives while warren is still starting (here: waiting for the broker) is not
/// lost: once running, warren reloads the config and starts the pipeline added meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_during_start_up_is_applied_once_running() {
    let broker = Broker::connect().await;
    let (first, second) = (unique("hup-first"), unique("hup-second"));
    broker.queue(&first).await;
    broker.queue(&second).await;
    let port = crate::operations::free_port();
    let config = |queues: &[&str]| {
        let mut config = crate::harness::TestConfig::with_url(&format!(
            "amqp://guest:guest@127.0.0.1:{port}/%2f"
        ))
        .plugin("printer", &shipped_plugin("printer"), "", "");
        for queue in queues {
            config = config
                .queue(queue, "")
                .pipeline(queue, queue, "printer", "");
        }
        config.build()
    };
    let (_dir, path) = write_config(&config(&[&first]));
    let mut daemon = crate::harness::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["run", "--config", path.to_str().expect("utf-8")])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start warren run"),
    );
    // Still starting: the broker is not reachable at that port yet.
    tokio::time::sleep(Duration::from_secs(2)).await;
    std::fs::write(&path, config(&[&first, &second])).expect("rewrite config");
    send("HUP", daemon.id());
    // Now let warren reach the broker, through a forwarder on that port.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind the forwarder");
    tokio::spawn(async move {
        while let Ok((mut client, _)) = listener.accept().await {
            tokio::spawn(async move {
                if let Ok(mut server) = tokio::net::TcpStream::connect("127.0.0.1:5672").await {
                    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                }
            });
        }
    });
    broker.wait_consumers(&first, 1).await;
    broker.wait_consumers(&second, 1).await;
    assert!(
        daemon.try_wait().expect("wait").is_none(),
        "warren is running"
    );
    send("TERM", daemon.id());
    let _ = daemon.wait();
    broker.cleanup().await;
}
