//! Operations: metrics and admin endpoints, the systemd notify protocol, `warren plugin run`.

use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lapin::BasicProperties;

use crate::hardening::VERSION_DIGITS;
use crate::support::{
    Broker, KillOnDrop, PATIENCE, TestConfig, eventually, parse_scrape, sample, shipped_plugin,
    start, test_plugin, unique, warren_run, write_config,
};

/// A free TCP port on loopback.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// `GET path` on the admin endpoint: (status code, body). Async: the daemon may run on
/// this test's own runtime.
pub async fn http_get(port: u16, path: &str) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect admin");
    stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .await
        .expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The pipeline `ops` on `queue`, running the `scripted` plugin in `mode`, with the admin
/// endpoint on `port`.
fn ops_config(queue: &str, port: u16, mode: &str) -> String {
    let mode = format!("mode = \"{mode}\"");
    TestConfig::new()
        .default_grace()
        .admin(port)
        .plugin("scripted", &test_plugin("scripted"), &mode, "")
        .queue(queue, "")
        .pipeline("ops", queue, "scripted", "")
        .build()
}

/// The watchdog interval the notify test asks for (`WATCHDOG_USEC`): warren pings at half.
const WATCHDOG_USEC: &str = "400000";

/// How long the notify test waits for each notification.
const NOTIFY_PATIENCE: Duration = Duration::from_secs(30);

/// After a known run, `/metrics` (parsed as Prometheus text) counts exactly what happened,
/// and `/healthz`, `/readyz`, `/plugins` answer.
#[tokio::test]
async fn metrics_count_what_happened() {
    let broker = Broker::connect().await;
    let queue = unique("metrics");
    broker.forget_later_queue(&queue);
    let port = free_port();
    let daemon = start(&ops_config(&queue, port, "body")).await;
    let bodies: Vec<&[u8]> = vec![
        b"ack", b"ack", b"ack", b"reject", b"reject", b"trap", b"sleep:1",
    ];
    for body in &bodies {
        broker
            .publish(&queue, body, BasicProperties::default())
            .await;
    }
    broker.wait_ready(&queue, 0).await;
    // Wait until the acks (the last to settle: one sleeps first) are counted.
    let acks = [("pipeline", "ops"), ("verdict", "ack")];
    let acked = || async {
        let (status, text) = http_get(port, "/metrics").await;
        assert_eq!(status, 200);
        let scrape = parse_scrape(&text);
        // Verdicts are counted when decided; a message is out of flight once settled (a
        // reject after its copy to the dead-letter queue is confirmed).
        let in_flight = sample(&scrape, "warren_messages_in_flight", &[("pipeline", "ops")]);
        (sample(&scrape, "warren_messages_total", &acks) >= 4.0 && in_flight == 0.0)
            .then_some(scrape)
    };
    let scrape = eventually("four acks on /metrics", PATIENCE, acked).await;
    let verdict = |v| {
        sample(
            &scrape,
            "warren_messages_total",
            &[("pipeline", "ops"), ("verdict", v)],
        )
    };
    assert_eq!(verdict("ack"), 4.0, "three acks and one sleep-then-ack");
    assert_eq!(verdict("reject"), 2.0);
    assert_eq!(verdict("error"), 1.0);
    assert_eq!(verdict("requeue"), 0.0);
    assert_eq!(
        sample(
            &scrape,
            "warren_plugin_failures_total",
            &[("pipeline", "ops"), ("reason", "trap")]
        ),
        1.0
    );
    assert_eq!(
        sample(&scrape, "warren_messages_in_flight", &[("pipeline", "ops")]),
        0.0
    );
    assert_eq!(
        sample(
            &scrape,
            "warren_plugin_handle_seconds_count",
            &[("pipeline", "ops")]
        ),
        7.0
    );
    assert_eq!(sample(&scrape, "warren_broker_connected", &[]), 1.0);

    assert_eq!(http_get(port, "/healthz").await.0, 200);
    assert_eq!(http_get(port, "/readyz").await.0, 200);
    let (status, plugins) = http_get(port, "/plugins").await;
    assert_eq!(status, 200);
    let plugins: serde_json::Value = serde_json::from_str(&plugins).expect("JSON");
    assert_eq!(plugins[0]["name"], "scripted");
    assert_eq!(plugins[0]["pipelines"][0], "ops");
    assert_eq!(
        plugins[0]["version"].as_str().map(str::len),
        Some(VERSION_DIGITS)
    );
    assert!(
        matches!(plugins[0]["code"].as_str(), Some("compiled" | "cached")),
        "{plugins}"
    );
    assert!(plugins[0]["compile_ms"].is_u64(), "{plugins}");
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// Under `Type=notify`, systemd hears READY=1 once consuming, WATCHDOG=1 pings when asked
/// for, RELOADING=1 then READY=1 on SIGHUP, and STOPPING=1 on SIGTERM.
#[test]
fn notify_socket_receives_ready_watchdog_reloading_and_stopping() {
    let queue = unique("notify");
    let dir = tempfile::tempdir().expect("tmp");
    let socket_path = dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind notify socket");
    socket
        .set_read_timeout(Some(NOTIFY_PATIENCE))
        .expect("timeout");
    let (_config_dir, config) = write_config(&ops_config(&queue, free_port(), "ack"));
    let mut daemon = KillOnDrop::spawn(
        warren_run(&config)
            .env("NOTIFY_SOCKET", &socket_path)
            .env("WATCHDOG_USEC", WATCHDOG_USEC)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    let mut received = Vec::new();
    let mut buf = [0u8; 4096];
    let mut next = || {
        let n = socket.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    while !received.iter().any(|m: &String| m.contains("WATCHDOG=1")) {
        received.push(next());
    }
    assert!(
        received.iter().any(|m| m.lines().any(|l| l == "READY=1")),
        "{received:?}"
    );
    let ready_at = received.iter().position(|m| m.contains("READY=1"));
    let ping_at = received.iter().position(|m| m.contains("WATCHDOG=1"));
    assert!(
        ready_at < ping_at,
        "READY before the first ping: {received:?}"
    );
    // SIGHUP reloads: RELOADING=1 (with MONOTONIC_USEC, as Type=notify-reload wants), then
    // READY=1 again.
    let before = received.len();
    daemon.signal("HUP");
    loop {
        let message = next();
        let ready = message.lines().any(|l| l == "READY=1");
        received.push(message);
        if ready && received[before..].iter().any(|m| m.contains("RELOADING=1")) {
            break;
        }
    }
    let reloading = received[before..]
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .expect("RELOADING=1");
    assert!(
        reloading.contains("MONOTONIC_USEC="),
        "RELOADING=1 carries MONOTONIC_USEC: {reloading:?}"
    );
    daemon.signal("TERM");
    while !received.last().is_some_and(|m| m.contains("STOPPING=1")) {
        received.push(next());
    }
    assert!(daemon.wait().expect("exit").success());
    let _ = std::fs::remove_file(&socket_path);
    // The queue was declared by warren; let it expire (x-expires) rather than race a broker client here.
}

/// `warren plugin run` on the shipped plugins (printer, sleeper, http-executor) and a test
/// plugin: it prints the verdict and the publishes as JSON (and only that on stdout: the
/// plugin's own output is logged); a trap is a failure.
#[test]
fn plugin_run_reports_the_verdict() {
    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["plugin", "run"])
        .arg(shipped_plugin("printer"))
        .args(["--body", "Hello World!", "--config", "prefix=>>"])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // stdout holds the report alone; what the plugin printed is in the log, on stderr.
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            r#"warren::plugin: >> Hello World! plugin="printer" message_id="-" stream="stdout""#
        ),
        "{stderr}"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["verdict"], "ack");
    assert_eq!(report["publishes"], serde_json::json!([]));

    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["plugin", "run"])
        .arg(test_plugin("scripted"))
        .args([
            "--body",
            "ping",
            "-c",
            "mode=publish-ack",
            "-c",
            "to=replies",
        ])
        .args(["--correlation-id", "c-7"])
        .output()
        .expect("run");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON report");
    assert_eq!(report["publishes"][0]["body"], "extra:ping");
    assert_eq!(report["publishes"][0]["routing_key"], "replies");
    assert_eq!(
        report["publishes"][0]["properties"]["correlation_id"],
        "c-7"
    );

    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["plugin", "run"])
        .arg(shipped_plugin("sleeper"))
        .args(["--body", "two dots..", "-c", "seconds_per_dot=0.05"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(" [x] Done"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("\"verdict\": \"ack\""), "{stdout}");

    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["plugin", "run"])
        .arg(shipped_plugin("http_executor"))
        .args([
            "--body",
            "{\"url\": \"http://169.254.169.254/\"}",
            "--reply-to",
            "replies",
        ])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let json = &stdout[stdout.find('{').expect("JSON report")..];
    let report: serde_json::Value = serde_json::from_str(json).expect("JSON report");
    assert_eq!(
        report["verdict"], "reject",
        "no --allow-host: the request is denied"
    );
    assert_eq!(report["publishes"][0]["routing_key"], "replies");

    let out = Command::new(env!("CARGO_BIN_EXE_warren"))
        .args(["plugin", "run"])
        .arg(test_plugin("scripted"))
        .args(["--body", "x", "-c", "mode=trap"])
        .output()
        .expect("run");
    assert!(!out.status.success(), "a trap is a failure");
    assert!(String::from_utf8_lossy(&out.stderr).contains("plugin trapped"));
}

/// The shipped unit files (`warren.service`, and the template `warren@.service` as an
/// instance) pass `systemd-analyze verify` (with ExecStart pointed at the built binary), keep
/// the JIT allowed, give the drain more time than `shutdown_grace_ms`, and do not restart on a
/// bad config (exit code 78), and give warren its compile cache directory.
#[test]
fn shipped_unit_files_verify() {
    for (file, installed_as) in [
        ("warren.service", "warren.service"),
        ("warren@.service", "warren@orders.service"),
    ] {
        let unit = std::fs::read_to_string(crate::harness::repo_root().join("config").join(file))
            .unwrap_or_else(|e| panic!("config/{file}: {e}"));
        assert!(unit.contains("Type=notify"));
        assert!(unit.contains("ExecReload=/bin/kill -HUP $MAINPID"));
        assert!(unit.contains("RestartPreventExitStatus=78"), "{file}");
        assert!(
            !unit
                .lines()
                .any(|l| l.starts_with("MemoryDenyWriteExecute")),
            "wasmtime's JIT needs writable+executable memory"
        );
        let stop_secs: u64 = unit
            .lines()
            .find_map(|l| l.strip_prefix("TimeoutStopSec="))
            .and_then(|v| v.trim_end_matches('s').parse().ok())
            .expect("TimeoutStopSec");
        assert!(stop_secs * 1000 > warren::config::DEFAULT_SHUTDOWN_GRACE_MS);
        assert!(
            unit.lines().any(|l| l.starts_with("CacheDirectory=warren"))
                && unit.lines().any(|l| l == "CacheDirectoryMode=0700"),
            "the compile cache, private to warren: $CACHE_DIRECTORY"
        );

        // As shipped, and with the opt-in lockdown drop-in (a drop-in's lines apply after
        // the unit's, as if appended).
        let lockdown = std::fs::read_to_string(
            crate::harness::repo_root().join("config/warren-lockdown.conf"),
        )
        .expect("config/warren-lockdown.conf");
        assert!(lockdown.contains("IPAddressDeny=any"));
        for unit in [unit.clone(), format!("{unit}\n{lockdown}")] {
            let dir = tempfile::tempdir().expect("tmp");
            let path = dir.path().join(installed_as);
            std::fs::write(
                &path,
                unit.replace("/usr/local/bin/warren", env!("CARGO_BIN_EXE_warren")),
            )
            .expect("write unit");
            let out = Command::new("systemd-analyze")
                .arg("verify")
                .arg(&path)
                .output()
                .expect("systemd-analyze (Debian package systemd) must be installed");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success() && stderr.trim().is_empty(),
                "{file}: {stderr}"
            );
        }
    }
}

/// `GET path` with the header `Authorization: <authorization>`: the status code.
async fn http_get_authorized(port: u16, path: &str, authorization: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect admin");
    let request =
        format!("GET {path} HTTP/1.0\r\nHost: localhost\r\nAuthorization: {authorization}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    stream.read_to_string(&mut response).await.expect("read");
    response
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code")
}

/// A daemon with the admin endpoint on a free port, `admin_extra` lines in `[admin]`.
async fn with_admin(queue: &str, admin_extra: &str) -> (crate::harness::Running, u16) {
    let port = free_port();
    let config = crate::harness::TestConfig::new()
        .plugin("scripted", &test_plugin("scripted"), "mode = \"ack\"", "")
        .queue(queue, "")
        .pipeline(queue, queue, "scripted", "")
        .build();
    let config = format!("{config}\n[admin]\nlisten = \"127.0.0.1:{port}\"\n{admin_extra}\n");
    (start(&config).await, port)
}

/// With `admin.token`, every endpoint but `/healthz` — the status page and its JSON too —
/// needs the token: `Authorization: Bearer <token>`, or HTTP Basic with it as the password
/// (what a browser sends for the page).
#[tokio::test]
async fn the_admin_token_guards_every_endpoint_but_healthz() {
    let broker = Broker::connect().await;
    let queue = unique("admin-token");
    broker.forget_later_queue(&queue);
    let (daemon, port) = with_admin(&queue, "token = \"s3cret-token\"").await;
    // `admin:s3cret-token` and `admin:wrong`, base64.
    let (basic_right, basic_wrong) = ("Basic YWRtaW46czNjcmV0LXRva2Vu", "Basic YWRtaW46d3Jvbmc=");
    for path in ["/metrics", "/readyz", "/plugins", "/", "/status"] {
        assert_eq!(http_get(port, path).await.0, 401, "{path} without a token");
        for wrong in ["Bearer wrong", basic_wrong, "Bearer", "Basic !!"] {
            assert_eq!(
                http_get_authorized(port, path, wrong).await,
                401,
                "{path} {wrong}"
            );
        }
        for right in ["Bearer s3cret-token", basic_right] {
            assert_eq!(
                http_get_authorized(port, path, right).await,
                200,
                "{path} {right}"
            );
        }
    }
    assert_eq!(http_get(port, "/healthz").await.0, 200);
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// A slowloris client cannot pin the admin endpoint: connections over the limit are closed at
/// once, one that sends no complete request head is cut off after the header timeout, and
/// the endpoint then answers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_cannot_pin_the_admin_endpoint() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let broker = Broker::connect().await;
    let queue = unique("admin-slow");
    broker.forget_later_queue(&queue);
    let (daemon, port) = with_admin(&queue, "").await;
    let extra = 6;
    let mut slow = Vec::new();
    for _ in 0..warren::admin::MAX_CONNECTIONS + extra {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("send");
        slow.push(stream);
    }
    let started = Instant::now();
    let mut closed = 0;
    for stream in &mut slow {
        let mut byte = [0u8; 1];
        let read = tokio::time::timeout(
            warren::admin::HEADER_READ_TIMEOUT * 3,
            stream.read(&mut byte),
        )
        .await
        .expect("every slow connection is closed by the server");
        if matches!(read, Ok(0) | Err(_)) {
            closed += 1;
        }
    }
    assert_eq!(closed, slow.len(), "every slow connection was closed");
    assert!(
        started.elapsed() < warren::admin::HEADER_READ_TIMEOUT * 3,
        "cut off by the header timeout, not pinned"
    );
    assert_eq!(http_get(port, "/healthz").await.0, 200, "answers again");
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}
