//! Phase 4: plugin memory. Each measurement runs in a child process of its own, so that its
//! resident memory is that plugin's alone:
//! - per example plugin: the process's RSS before loading it, after loading it (code and one
//!   instance), and after `Plugin::warm` put [`WARM_INSTANCES`] instances in its pool, each
//!   having handled one message; the difference over the instances added is one instance;
//! - the Python router in a daemon at prefetch and concurrency [`AT_ONCE`], draining
//!   `--memory-messages`: RSS and instances alive once all are settled, with the default pool
//!   and with `max_instances` set.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, ensure};
use warren::config::Config;
use warren::plugin::Runtime;
use warren::plugin::cache::CacheSetting;

use crate::args::Args;
use crate::call::message;
use crate::in_process::{start_beside, wait_settled};
use crate::measure::proc_status_kib;
use crate::support::{
    BENCH_FAMILY, Broker, TestConfig, example_plugin, repo_root, rust_example_plugin,
    shipped_plugin, unique_in, write_config_with,
};
use crate::throughput::PUBLISH_WINDOW;

/// Instances each plugin's pool is warmed to.
const WARM_INSTANCES: usize = 9;
/// Prefetch and concurrency of the Python router's pipeline.
const AT_ONCE: usize = 100;
/// The cap of the second Python run.
const CAPPED: usize = 4;

/// An example plugin: its name, its file, its `config` table, extra lines, and a message
/// body it handles as in real use.
struct Example {
    name: &'static str,
    path: PathBuf,
    config: &'static str,
    extra: &'static str,
    body: &'static str,
}

fn examples() -> Vec<Example> {
    let route = r#"{"route": "elsewhere", "priority": 3}"#;
    vec![
        Example {
            name: "printer",
            path: shipped_plugin("printer"),
            config: "",
            extra: "",
            body: "Hello World!",
        },
        Example {
            name: "sleeper",
            path: shipped_plugin("sleeper"),
            config: "",
            extra: "",
            body: "no dots, no sleep",
        },
        Example {
            name: "http_executor",
            path: shipped_plugin("http_executor"),
            config: "",
            extra: "",
            // Refused by the egress policy (no allowed host): the request path, no network.
            body: r#"{"method": "GET", "url": "http://127.0.0.1:9/"}"#,
        },
        Example {
            name: "rust_router",
            path: rust_example_plugin("rust_router"),
            config: "audit = \"audit\"",
            extra: "",
            body: route,
        },
        Example {
            name: "python_router",
            path: example_plugin("python_router"),
            config: "audit = \"audit\"",
            extra: "",
            body: route,
        },
        Example {
            name: "js_router",
            path: example_plugin("js_router"),
            config: "audit = \"audit\"",
            extra: "",
            body: route,
        },
    ]
}

/// The compile cache the children share, so that only the first run compiles.
fn cache_dir() -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| repo_root().join("target"), PathBuf::from);
    target.join("warren-bench-cache")
}

/// Runs every measurement in a child process; returns the report's tables.
pub async fn phase(args: &Args) -> anyhow::Result<String> {
    let mut out = String::new();
    writeln!(
        out,
        "\n### Plugin memory (each in a child process)\n\n\
         | plugin | RSS before loading | after loading (code + 1 instance) | after {WARM_INSTANCES} instances | one instance |\n\
         |---|---:|---:|---:|---:|"
    )?;
    for example in examples() {
        let r = child(args, &format!("instances:{}", example.name)).await?;
        let mib = |key: &str| r[key].as_f64().unwrap_or(f64::NAN) / 1024.0;
        writeln!(
            out,
            "| {} | {:.1} MiB | {:.1} MiB | {:.1} MiB | **{:.2} MiB** |",
            example.name,
            mib("before_kib"),
            mib("loaded_kib"),
            mib("warm_kib"),
            mib("per_instance_kib"),
        )?;
    }
    writeln!(
        out,
        "\n| Python router, prefetch = concurrency = {AT_ONCE}, {} messages | RSS after | peak RSS | instances alive |\n|---|---:|---:|---:|",
        args.memory_messages
    )?;
    for cap in [None, Some(CAPPED)] {
        let spec = cap.map_or("drain:0".to_owned(), |c| format!("drain:{c}"));
        let r = child(args, &spec).await?;
        let mib = |key: &str| r[key].as_f64().unwrap_or(f64::NAN) / 1024.0;
        writeln!(
            out,
            "| {} | {:.1} MiB | {:.1} MiB | {} |",
            cap.map_or("default pool".to_owned(), |c| format!(
                "max_instances = {c}"
            )),
            mib("rss_kib"),
            mib("hwm_kib"),
            r["instances"]
        )?;
    }
    Ok(out)
}

/// Runs `--memory-child SPEC` and returns what it wrote.
async fn child(args: &Args, spec: &str) -> anyhow::Result<serde_json::Value> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("memory.json");
    eprintln!("memory: {spec}");
    let status = tokio::process::Command::new(std::env::current_exe()?)
        .arg("--url")
        .arg(&args.url)
        .arg("--memory-messages")
        .arg(args.memory_messages.to_string())
        .arg("--memory-child")
        .arg(spec)
        .arg("--memory-out")
        .arg(&out)
        .stdout(std::process::Stdio::null())
        .status()
        .await?;
    ensure!(status.success(), "the memory child {spec} failed: {status}");
    Ok(serde_json::from_slice(&std::fs::read(&out)?)?)
}

/// The child's part: `instances:NAME` or `drain:CAP` (0: no cap), results as JSON in `out`.
pub async fn child_main(args: &Args, spec: &str, out: &Path) -> anyhow::Result<()> {
    let result = match spec.split_once(':') {
        Some(("instances", name)) => instances(args, name).await?,
        Some(("drain", cap)) => drain(args, cap.parse()?).await?,
        _ => anyhow::bail!("unknown memory measurement {spec:?}"),
    };
    std::fs::write(out, serde_json::to_vec(&result)?)?;
    Ok(())
}

async fn instances(args: &Args, name: &str) -> anyhow::Result<serde_json::Value> {
    let example = examples()
        .into_iter()
        .find(|e| e.name == name)
        .with_context(|| format!("no example plugin {name}"))?;
    let file = format!("{name}.wasm");
    let bytes = std::fs::read(&example.path)?;
    let config = TestConfig::with_url(&args.url)
        .plugin(name, Path::new(&file), example.config, example.extra)
        .build();
    let (_dir, path) = write_config_with(&config, &[(&file, &bytes)]);
    let config = Config::load(&path)?;
    let before = proc_status_kib("VmRSS")?;
    let runtime = Runtime::new(&CacheSetting::Dir(cache_dir()))?;
    let plugin = runtime.load(&config.plugins[name]).await?;
    let mut message = Box::new(message(example.body.as_bytes().to_vec()));
    let pipeline: Arc<str> = Arc::from("bench");
    // The first instance handles a message too before the "loaded" figure.
    plugin.handle(&pipeline, &mut message).await?;
    let loaded = proc_status_kib("VmRSS")?;
    plugin.warm(WARM_INSTANCES, &pipeline, &message).await?;
    let warm = proc_status_kib("VmRSS")?;
    let added = plugin.instances().saturating_sub(1).max(1);
    Ok(serde_json::json!({
        "before_kib": before,
        "loaded_kib": loaded,
        "warm_kib": warm,
        "per_instance_kib": (warm.saturating_sub(loaded)) as f64 / added as f64,
    }))
}

async fn drain(args: &Args, cap: usize) -> anyhow::Result<serde_json::Value> {
    let broker = Broker::connect_as(&args.url, "warren-bench.control").await;
    let (queue, sink) = (
        unique_in(BENCH_FAMILY, "memory.python"),
        unique_in(BENCH_FAMILY, "memory.routed"),
    );
    broker.queue(&queue).await;
    broker.queue(&sink).await;
    let body = format!(r#"{{"route": "{sink}"}}"#);
    let bodies = std::iter::repeat_n(body.as_bytes(), args.memory_messages);
    broker
        .publish_many(&queue, bodies, args.properties(), PUBLISH_WINDOW)
        .await;
    let max_instances = if cap > 0 {
        format!("max_instances = {cap}")
    } else {
        String::new()
    };
    let config = TestConfig::with_url(&args.url)
        .connection_name("warren-bench.memory")
        .top_level(&format!("cache_dir = \"{}\"", cache_dir().display()))
        .plugin(
            "router",
            Path::new("python_router.wasm"),
            "",
            &max_instances,
        )
        .queue(&queue, "")
        .pipeline(
            "router",
            &queue,
            "router",
            &format!("prefetch = {AT_ONCE}\nconcurrency = {AT_ONCE}"),
        );
    let daemon = start_beside(&config, &[&example_plugin("python_router")]).await?;
    wait_settled(&daemon, args.memory_messages as u64).await?;
    let rss = proc_status_kib("VmRSS")?;
    let hwm = proc_status_kib("VmHWM")?;
    let instances = daemon.total("warren_plugin_instances", &[("plugin", "router")]);
    daemon.stop().await?;
    let routed = broker.ready(&sink).await;
    broker.cleanup().await;
    broker.close().await;
    ensure!(
        routed as usize == args.memory_messages,
        "{routed} of {} messages routed",
        args.memory_messages
    );
    Ok(serde_json::json!({ "rss_kib": rss, "hwm_kib": hwm, "instances": instances }))
}
