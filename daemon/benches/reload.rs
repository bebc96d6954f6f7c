//! Hot-reload latency: the time from a new plugin file landing (an atomic `mv`) to the first
//! message handled by the new version, under a steady load.
//!
//! Needs RabbitMQ (`127.0.0.1:5672` as guest, or `WARREN_BENCH_URL`); it swaps the test plugins
//! `tag_a` and `tag_b` (built by `plugins/build` when missing or stale), which tag each message
//! they republish. Run: `cargo bench -p warren --bench reload`. Results: `BENCHMARKS.md`.

// The test kit shared with the end-to-end and fault tests.
#[path = "../../tests/support/mod.rs"]
mod support;

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use lapin::BasicProperties;
use lapin::options::BasicConsumeOptions;
use lapin::types::{AMQPValue, FieldTable};
use tokio_util::sync::CancellationToken;

use support::{
    BENCH_FAMILY, Broker, TestConfig, broker_url, connect, replace_file, start_at, test_plugin,
    unique_in, write_config_with,
};

/// Swaps measured.
const SWAPS: usize = 10;
/// Interval between two messages of the steady load.
const LOAD_INTERVAL: Duration = Duration::from_millis(2);
/// Time between two swaps: the load flows through the version just deployed meanwhile.
const SWAP_EVERY: Duration = Duration::from_millis(300);

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let url = std::env::var("WARREN_BENCH_URL").unwrap_or_else(|_| broker_url());
    let builds = [
        ("a", std::fs::read(test_plugin("tag_a"))?),
        ("b", std::fs::read(test_plugin("tag_b"))?),
    ];
    let queue = unique_in(BENCH_FAMILY, "reload");
    let out = unique_in(BENCH_FAMILY, "reload-out");
    let broker = Broker::connect_as(&url, "warren-bench.control").await;
    broker.queue(&out).await;
    // No compile cache: every swap compiles, as the figures in BENCHMARKS.md did before
    // there was one (with it, tag_a and tag_b are cached after the first two).
    let config = TestConfig::with_url(&url)
        .default_grace()
        .top_level("cache_dir = false")
        .tagged_beside("reload", &queue, &out, "");
    let (dir, config_path) = write_config_with(&config.build(), &[("tagged.wasm", &builds[0].1)]);
    let plugin = dir.path().join("tagged.wasm");
    let daemon = start_at(dir, &config_path).await;

    // Steady load.
    let loading = CancellationToken::new();
    let load = tokio::spawn({
        let (url, queue, loading) = (url.clone(), queue.clone(), loading.clone());
        async move {
            let producer = Broker::connect_as(&url, "warren-bench.load").await;
            let mut tick = tokio::time::interval(LOAD_INTERVAL);
            while !loading.is_cancelled() {
                tick.tick().await;
                producer
                    .publish(&queue, b"load", BasicProperties::default())
                    .await;
            }
            producer.close().await;
        }
    });
    let connection = connect(&url, "warren-bench.reload").await;
    let channel = connection.create_channel().await?;
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
        tokio::time::sleep(SWAP_EVERY).await;
        let (tag, bytes) = &builds[(swap + 1) % 2];
        let landed = Instant::now();
        replace_file(&plugin, bytes);
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
    loading.cancel();
    let _ = load.await;
    daemon.stop().await?;
    let _ = connection.close(200, "done".into()).await;
    // Both queues, and the dead-letter queue warren declared beside its own.
    broker.forget_later_queue(&queue);
    broker.cleanup().await;
    broker.close().await;

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
