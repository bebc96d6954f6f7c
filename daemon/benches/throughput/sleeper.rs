//! Phase 3: the sleeper case and peak RSS, in a child process so that the peak is this
//! phase's alone: the sleeper plugin alone, then the three shipped plugins together.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::ensure;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

use crate::args::Args;
use crate::in_process::{start_beside, wait_settled};
use crate::measure::proc_status_kib;
use crate::support::{BENCH_FAMILY, Broker, TestConfig, shipped_plugin, unique_in};
use crate::throughput::PUBLISH_WINDOW;

/// How long the local HTTP server of the sleeper phase waits before it answers.
const HTTP_DELAY: Duration = Duration::from_secs(1);

/// Prefetch and concurrency of every pipeline of this phase: messages asleep at once.
const AT_ONCE: u32 = 100;

/// Runs the sleeper phase in a child process (its stdout, where the plugins print, is
/// discarded) so that the peak RSS it reports is that of this phase alone.
pub async fn phase(args: &Args) -> anyhow::Result<String> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("sleeper.json");
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--url")
        .arg(&args.url)
        .arg("--sleeper-messages")
        .arg(args.sleeper_messages.to_string())
        .arg("--sleeper-child")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    ensure!(status.success(), "the sleeper child failed: {status}");
    let r: serde_json::Value = serde_json::from_slice(&std::fs::read(&out)?)?;
    let num = |key: &str| r[key].as_f64().unwrap_or(f64::NAN);
    let mut out = String::new();
    writeln!(
        out,
        "\n### Sleeper case and peak RSS (child process, warren in-process)\n\n| what | value |\n|---|---:|"
    )?;
    writeln!(
        out,
        "| {} one-dot messages through sleeper.wasm (seconds_per_dot = 1.0), prefetch {AT_ONCE}, concurrency {AT_ONCE}: ready → all acked | {:.2} s |",
        args.sleeper_messages,
        num("sleeper_secs")
    )?;
    writeln!(
        out,
        "| three shipped plugins at concurrency {AT_ONCE} ({} printer, {} sleeper, {} http_executor messages, HTTP answers after {} s): ready → all acked | {:.2} s |",
        num("mixed_printer"),
        num("mixed_sleeper"),
        num("mixed_http"),
        HTTP_DELAY.as_secs(),
        num("mixed_secs")
    )?;
    writeln!(
        out,
        "| process RSS before the first daemon started | {:.1} MiB |",
        num("rss_start_kib") / 1024.0
    )?;
    writeln!(
        out,
        "| peak RSS (VmHWM) after the sleeper case | {:.1} MiB |",
        num("hwm_sleeper_kib") / 1024.0
    )?;
    writeln!(
        out,
        "| peak RSS (VmHWM) after the three-plugin run | {:.1} MiB |",
        num("hwm_mixed_kib") / 1024.0
    )?;
    writeln!(
        out,
        "\nThe daemon runs inside the bench process, so VmHWM is the peak of the whole process: daemon + \
         the bench's own broker connections and the local HTTP server (small)."
    )?;
    Ok(out)
}

/// The child's part: both runs, with results written to `out` as JSON.
pub async fn child(args: &Args, out: &Path) -> anyhow::Result<()> {
    let rss_start = proc_status_kib("VmRSS")?;
    let broker = Broker::connect_as(&args.url, "warren-bench.control").await;
    let n = args.sleeper_messages;
    let sleeper = shipped_plugin("sleeper");
    let printer = shipped_plugin("printer");
    let http = shipped_plugin("http_executor");
    let at_once = format!("prefetch = {AT_ONCE}\nconcurrency = {AT_ONCE}");
    let one_second_a_dot = "seconds_per_dot = \"1.0\"";

    // 1. The sleeper alone.
    let queue = unique_in(BENCH_FAMILY, "sleeper");
    broker.queue(&queue).await;
    let dots = (0..n).map(|_| b".");
    broker
        .publish_many(&queue, dots, args.properties(), PUBLISH_WINDOW)
        .await;
    let config = TestConfig::with_url(&args.url)
        .connection_name("warren-bench.sleeper")
        .plugin("sleeper", Path::new("sleeper.wasm"), one_second_a_dot, "")
        .queue(&queue, "")
        .pipeline("sleeper", &queue, "sleeper", &at_once);
    eprintln!("sleeper: {n} one-dot messages, prefetch {AT_ONCE}, concurrency {AT_ONCE}");
    let daemon = start_beside(&config, &[&sleeper]).await?;
    wait_settled(&daemon, n as u64).await?;
    let sleeper_secs = daemon.ready_at.elapsed().as_secs_f64();
    daemon.stop().await?;
    ensure!(broker.ready(&queue).await == 0, "sleeper left messages");
    let hwm_sleeper = proc_status_kib("VmHWM")?;
    eprintln!("sleeper: {sleeper_secs:.2} s, VmHWM {hwm_sleeper} KiB");

    // 2. The three shipped plugins, each at concurrency 100, all busy.
    let server = SlowHttp::start(HTTP_DELAY).await?;
    let (q_print, q_sleep, q_http) = (
        unique_in(BENCH_FAMILY, "mixed.printer"),
        unique_in(BENCH_FAMILY, "mixed.sleeper"),
        unique_in(BENCH_FAMILY, "mixed.http"),
    );
    let (n_print, n_sleep, n_http) = (n, n, n / 2);
    for q in [&q_print, &q_sleep, &q_http] {
        broker.queue(q).await;
    }
    let hellos = (0..n_print).map(|i| format!("hello {i}"));
    let request = format!(r#"{{"method": "GET", "url": "http://{}/"}}"#, server.addr);
    let requests = (0..n_http).map(|_| request.as_bytes());
    let (properties, window) = (args.properties(), PUBLISH_WINDOW);
    broker
        .publish_many(&q_print, hellos, properties.clone(), window)
        .await;
    let dots = (0..n_sleep).map(|_| b".");
    broker
        .publish_many(&q_sleep, dots, properties.clone(), window)
        .await;
    broker
        .publish_many(&q_http, requests, properties, window)
        .await;
    let allowed = format!("allowed_hosts = [\"{}\"]", server.addr);
    let config = TestConfig::with_url(&args.url)
        .connection_name("warren-bench.mixed")
        .plugin("printer", Path::new("printer.wasm"), "", "")
        .plugin("sleeper", Path::new("sleeper.wasm"), one_second_a_dot, "")
        .plugin("http", Path::new("http_executor.wasm"), "", &allowed)
        .queue(&q_print, "")
        .queue(&q_sleep, "")
        .queue(&q_http, "")
        .pipeline("printer", &q_print, "printer", &at_once)
        .pipeline("sleeper", &q_sleep, "sleeper", &at_once)
        .pipeline("http", &q_http, "http", &at_once);
    eprintln!("mixed: printer {n_print}, sleeper {n_sleep}, http {n_http} messages");
    let daemon = start_beside(&config, &[&printer, &sleeper, &http]).await?;
    let total = (n_print + n_sleep + n_http) as u64;
    wait_settled(&daemon, total).await?;
    let mixed_secs = daemon.ready_at.elapsed().as_secs_f64();
    let acked = daemon.total("warren_messages_total", &[("verdict", "ack")]) as u64;
    daemon.stop().await?;
    let hwm_mixed = proc_status_kib("VmHWM")?;
    eprintln!(
        "mixed: {mixed_secs:.2} s, VmHWM {hwm_mixed} KiB, {} requests served",
        server.served.load(Ordering::Relaxed)
    );
    for q in [&q_print, &q_sleep, &q_http] {
        ensure!(broker.ready(q).await == 0, "{q}: messages left");
    }
    // Every queue of this phase, and the dead-letter queues warren declared beside them.
    broker.cleanup().await;
    broker.close().await;
    ensure!(
        acked == total,
        "mixed: {acked} messages acked, expected {total}"
    );

    let result = serde_json::json!({
        "sleeper_secs": sleeper_secs,
        "mixed_secs": mixed_secs,
        "mixed_printer": n_print,
        "mixed_sleeper": n_sleep,
        "mixed_http": n_http,
        "rss_start_kib": rss_start,
        "hwm_sleeper_kib": hwm_sleeper,
        "hwm_mixed_kib": hwm_mixed,
    });
    std::fs::write(out, serde_json::to_vec(&result)?)?;
    Ok(())
}

/// A local HTTP server that answers every request `200 ok` after a delay, one connection each.
struct SlowHttp {
    addr: std::net::SocketAddr,
    served: Arc<AtomicU64>,
    stop: CancellationToken,
}

impl SlowHttp {
    async fn start(delay: Duration) -> anyhow::Result<Self> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let served = Arc::new(AtomicU64::new(0));
        let stop = CancellationToken::new();
        let (count, until) = (served.clone(), stop.clone());
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    () = until.cancelled() => return,
                    accepted = listener.accept() => accepted,
                };
                let Ok((mut socket, _)) = accepted else {
                    continue;
                };
                let count = count.clone();
                tokio::spawn(async move {
                    let mut request = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                        match socket.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(k) => request.extend_from_slice(&buf[..k]),
                        }
                    }
                    tokio::time::sleep(delay).await;
                    let response =
                        "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
                    if socket.write_all(response.as_bytes()).await.is_ok() {
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    let _ = socket.shutdown().await;
                });
            }
        });
        Ok(Self { addr, served, stop })
    }
}

impl Drop for SlowHttp {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
