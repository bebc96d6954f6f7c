//! Hot-reload latency: the time from a new plugin file landing (an atomic `mv`) to the first
//! message handled by the new version, under a steady load.
//!
//! Needs RabbitMQ (`127.0.0.1:5672` as guest, or `WARREN_BENCH_URL`) and `plugins/build`
//! (it swaps the test plugins `tag_a` and `tag_b`, which tag each message they republish).
//! Run: `cargo bench -p warren --bench reload`. Results: `BENCHMARKS.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::options::{
    BasicConsumeOptions, BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, ConnectionProperties};
use tokio_util::sync::CancellationToken;
use warren::app::Daemon;
use warren::config::Config;

/// Swaps measured.
const SWAPS: usize = 10;
/// Interval between two messages of the steady load.
const LOAD_INTERVAL: Duration = Duration::from_millis(2);

fn repo() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}

fn replace(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("landing");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("WARREN_BENCH_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned());
    let builds = [
        (
            "a",
            std::fs::read(repo().join("tests/plugins/dist/tag_a.wasm"))?,
        ),
        (
            "b",
            std::fs::read(repo().join("tests/plugins/dist/tag_b.wasm"))?,
        ),
    ];
    let id = format!(
        "{}.{}",
        std::process::id(),
        Instant::now().elapsed().as_nanos()
    );
    let queue = format!("warren-bench.reload.{id}");
    let out = format!("warren-bench.reload-out.{id}");
    let dir = tempfile::tempdir()?;
    let plugin = dir.path().join("tagged.wasm");
    std::fs::write(&plugin, &builds[0].1)?;
    let config_path = dir.path().join("warren.toml");
    std::fs::write(
        &config_path,
        format!(
            // No compile cache: every swap compiles, as the figures in BENCHMARKS.md did
            // before there was one (with it, tag_a and tag_b are cached after the first two).
            "cache_dir = false\n[broker]\nurl = \"{url}\"\n\n[plugins.tagged]\npath = \"tagged.wasm\"\nconfig = {{ to = \"{out}\" }}\n\n\
             [[queues]]\nname = \"{queue}\"\n\n[[pipelines]]\nname = \"reload\"\nqueue = \"{queue}\"\nplugin = \"tagged\"\n"
        ),
    )?;

    let connection = lapin::Connection::connect(&url, ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .queue_declare(
            out.as_str().into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(Config::load(&config_path)?, shutdown.clone()).await?;
    let running = tokio::spawn(daemon.wait());

    // Steady load.
    let load = {
        let channel = connection.create_channel().await?;
        let queue = queue.clone();
        let stop = shutdown.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(LOAD_INTERVAL);
            while !stop.is_cancelled() {
                tick.tick().await;
                let _ = channel
                    .basic_publish(
                        "".into(),
                        queue.as_str().into(),
                        BasicPublishOptions::default(),
                        b"load",
                        BasicProperties::default(),
                    )
                    .await;
            }
        })
    };
    let mut consumer = channel
        .basic_consume(
            out.as_str().into(),
            "reload-bench".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;

    let mut latencies = Vec::new();
    for swap in 0..SWAPS {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (tag, bytes) = &builds[(swap + 1) % 2];
        let landed = Instant::now();
        replace(&plugin, bytes)?;
        loop {
            let delivery = consumer
                .next()
                .await
                .ok_or_else(|| anyhow::anyhow!("consumer ended"))??;
            let tagged = delivery
                .properties
                .headers()
                .as_ref()
                .and_then(|h| h.inner().get("tag").cloned());
            if let Some(AMQPValue::LongString(t)) = tagged
                && t.to_string() == *tag
            {
                latencies.push(landed.elapsed());
                break;
            }
        }
    }
    shutdown.cancel();
    let _ = load.await;
    running.await??;
    for q in [&queue, &out] {
        let _ = channel
            .queue_delete(q.as_str().into(), QueueDeleteOptions::default())
            .await;
    }

    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!("| swaps | median | min | max |");
    println!("|---|---|---|---|");
    println!(
        "| {} | {:.0} ms | {:.0} ms | {:.0} ms |",
        latencies.len(),
        ms(latencies[latencies.len() / 2]),
        ms(latencies[0]),
        ms(latencies[latencies.len() - 1])
    );
    Ok(())
}
