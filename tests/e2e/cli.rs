//! The `warren` command: `check` on the shipped config and on bad configs, `publish`, `run`.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    Broker, broker_url, repo_root, shipped_plugin, test_plugin, unique, write_config,
};

fn warren(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(args)
        .output()
        .expect("run warren")
}

fn check(config: &Path) -> Output {
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
}

fn valid_config() -> String {
    format!(
        r#"[broker]
url = "amqp://user:s3cret-pw@127.0.0.1:5672/%2f"

[plugins.p]
path = "{}"

[[queues]]
name = "q"

[[pipelines]]
name = "pipe"
queue = "q"
plugin = "p"
prefetch = 5
"#,
        test_plugin("scripted").display()
    )
    .replace(
        "[plugins.p]\npath",
        "[plugins.p]\nconfig = { mode = \"ack\" }\npath",
    )
}

/// Runs `warren check` on `config` and returns its stderr, asserting it failed without
/// showing the password.
fn refused(config: &str) -> String {
    let (_dir, path) = write_config(config);
    let out = check(&path);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "warren check accepted a bad config:\n{config}"
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
    let (_dir, path) = write_config(&valid_config());
    let out = check(&path);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Every kind of bad config is refused with the key (or path) and the file named.
#[test]
fn bad_configs_name_the_key() {
    let base = valid_config();
    let cases: Vec<(String, &str)> = vec![
        (
            base.replace("prefetch = 5", "prefetch = 5\nprefetchx = 1"),
            "prefetchx",
        ),
        (
            base.replace("prefetch = 5", "prefetch = \"five\""),
            "prefetch",
        ),
        (
            base.replace("plugin = \"p\"", "plugin = \"nope\""),
            "pipelines[0].plugin",
        ),
        (
            base.replace("queue = \"q\"", "queue = \"other\""),
            "pipelines[0].queue",
        ),
        (
            base.replace("prefetch = 5", "prefetch = 0"),
            "pipelines[0].prefetch",
        ),
        (
            base.replace(
                &test_plugin("scripted").display().to_string(),
                "missing/nothing.wasm",
            ),
            "plugins.p.path",
        ),
        (
            base.replace("mode = \"ack\"", "mode = \"nonsense\""),
            "plugins.p",
        ),
        (base.replace("amqp://user", "http://user"), "broker.url"),
        (
            base.replace("mode = \"ack\" }", "mode = \"ack\" }\nmax_body_bytes = 0"),
            "plugins.p.max_body_bytes",
        ),
    ];
    for (config, key) in cases {
        let stderr = refused(&config);
        assert!(stderr.contains(key), "error should name {key}:\n{stderr}");
    }
}

/// A plugin file that is not a WebAssembly component is refused, naming the key and the path.
#[test]
fn invalid_plugin_file_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let bogus = dir.path().join("bogus.wasm");
    std::fs::write(&bogus, b"\0asm this is not a component").expect("write");
    let config = valid_config().replace(
        &test_plugin("scripted").display().to_string(),
        &bogus.display().to_string(),
    );
    let stderr = refused(&config);
    assert!(stderr.contains("plugins.p"), "{stderr}");
    assert!(stderr.contains("bogus.wasm"), "{stderr}");
}

/// A plugin whose `init` refuses its config is refused at start-up.
#[test]
fn plugin_init_error_is_reported() {
    let config = valid_config().replace("mode = \"ack\"", "mode = \"nonsense\"");
    let stderr = refused(&config);
    assert!(stderr.contains("unknown mode"), "{stderr}");
}

/// `warren run` with a broker that refuses the credentials fails without printing the password.
#[test]
fn run_never_prints_the_password() {
    let config = valid_config();
    let (_dir, path) = write_config(&config);
    let out = warren(&["run", "--config", path.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(
        !stderr.contains("s3cret-pw"),
        "the password leaked: {stderr}"
    );
    assert!(stderr.contains("***"), "{stderr}");
}

/// The quick start: `warren run` with the printer, `warren publish` a line, the printer prints it.
#[tokio::test]
async fn publish_and_printer_quick_start() {
    let broker = Broker::connect().await;
    let queue = unique("hello");
    broker.forget_later_queue(&queue);
    let config = format!(
        r#"[broker]
url = "{url}"

[plugins.printer]
path = "{printer}"
config = {{ prefix = " [x] Received" }}

[[queues]]
name = "{queue}"
arguments = {{ "x-expires" = 120000 }}

[[pipelines]]
name = "hello"
queue = "{queue}"
plugin = "printer"
"#,
        url = broker_url(),
        printer = shipped_plugin("printer").display(),
    );
    let (_dir, path) = write_config(&config);
    let mut daemon = crate::harness::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["run", "--config", path.to_str().expect("utf-8")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warren run"),
    );
    let stderr = BufReader::new(daemon.stderr.take().expect("stderr"));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("warren ready") {
                let _ = ready_tx.send(());
            }
        }
    });
    ready_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("warren run becomes ready");

    let publish = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["publish", "--url", &broker_url(), "--queue", &queue])
        .stdin(Stdio::piped())
        .output_with_input(b"Hello World!\nsecond line\n");
    assert!(
        publish.status.success(),
        "{}",
        String::from_utf8_lossy(&publish.stderr)
    );

    let stdout = BufReader::new(daemon.stdout.take().expect("stdout"));
    let mut lines = stdout.lines();
    let start = Instant::now();
    let mut printed = vec![
        lines.next().expect("a line").expect("utf-8"),
        lines.next().expect("a line").expect("utf-8"),
    ];
    assert!(start.elapsed() < Duration::from_secs(20));
    // Concurrency 10: the two may be printed in either order.
    printed.sort();
    assert_eq!(
        printed,
        [" [x] Received Hello World!", " [x] Received second line"]
    );

    // SIGTERM stops it cleanly.
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let exit = daemon.wait().expect("wait");
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
    let config = crate::harness::scripted_config(
        &queue,
        &format!(r#"mode = "republish", to = "{nowhere}""#),
        "",
    );
    let (_dir, path) = write_config(&config);
    let mut daemon = crate::harness::KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_warren"))
            .args(["run", "--config", path.to_str().expect("utf-8")])
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start warren run"),
    );
    let stderr = BufReader::new(daemon.stderr.take().expect("stderr"));
    let (lines_tx, lines_rx) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut all = String::new();
        for line in stderr.lines().map_while(Result::ok) {
            let _ = lines_tx.send(line.clone());
            all.push_str(&line);
            all.push('\n');
        }
        all
    });
    let wait_for = |needle: &str| {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(30) {
            if let Ok(line) = lines_rx.recv_timeout(Duration::from_millis(100))
                && line.contains(needle)
            {
                return;
            }
        }
        panic!("warren never logged {needle:?}");
    };
    wait_for("warren ready");
    let secret = "payload-that-must-not-be-logged";
    broker
        .publish(&queue, secret.as_bytes(), lapin::BasicProperties::default())
        .await;
    wait_for("unroutable");
    let status = Command::new("kill")
        .args(["-TERM", &daemon.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(daemon.wait().expect("wait").success());
    let log = reader.join().expect("stderr reader");
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
