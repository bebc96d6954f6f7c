//! Phase 2: the plugin call path, broker-free: `Plugin::handle` on a pooled instance, and the
//! first call on a fresh one.

use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, ensure};
use warren::broker::Settlement;
use warren::config::Config;
use warren::decision::Kind;
use warren::message::{Message, Verdict, empty_properties};
use warren::plugin::{Plugin, PluginError, Runtime};
use warren::trace::Tracer;

use crate::args::Args;
use crate::stats::Percentiles;
use crate::support::{TestConfig, test_plugin, write_config_with};

/// Calls before the timed ones in the call benchmark.
const WARM_UP_CALLS: usize = 10_000;
/// Calls that warm up the instance pool before the first-call samples.
const POOL_WARM_UP_CALLS: usize = 1_000;
/// First calls on fresh instances measured.
const FIRST_CALL_SAMPLES: usize = 200;
/// Messages whose trace hooks are timed with traces off, per timed call.
const TRACE_OFF_PER_CALL: usize = 100;

/// A message as the queue `bench` delivers it, with `body` and no properties.
pub fn message(body: Vec<u8>) -> Message {
    Message {
        body,
        exchange: String::new(),
        routing_key: "bench".to_owned(),
        queue: "bench".to_owned(),
        redelivered: false,
        delivery_count: None,
        properties: empty_properties(),
    }
}

/// Times `handle` on scripted.wasm; returns the report's table.
pub async fn phase(args: &Args) -> anyhow::Result<String> {
    let scripted = std::fs::read(test_plugin("scripted"))?;
    let wasm = Path::new("scripted.wasm");
    let config = TestConfig::with_url(&args.url)
        .plugin("ack", wasm, "mode = \"ack\"", "")
        .plugin("body", wasm, "mode = \"body\"", "")
        .build();
    let (_dir, path) = write_config_with(&config, &[("scripted.wasm", &scripted)]);
    let config = Config::load(&path)?;
    // No compile cache, so that the load time below is a compile, as before the cache.
    let runtime = Runtime::new(&warren::plugin::cache::CacheSetting::Off)?;
    let loading = Instant::now();
    let ack = runtime.load(&config.plugins["ack"]).await?;
    let load_ms = loading.elapsed().as_secs_f64() * 1e3;
    let pipeline: Arc<str> = Arc::from("bench");
    let mut kib = Box::new(message(vec![b'x'; args.size]));

    eprintln!("call: {WARM_UP_CALLS} warm-up + {} timed calls", args.calls);
    for _ in 0..WARM_UP_CALLS {
        ack.handle(&pipeline, &mut kib).await?;
    }
    let mut samples = Vec::with_capacity(args.calls);
    let all = Instant::now();
    for _ in 0..args.calls {
        let t = Instant::now();
        let outcome = ack.handle(&pipeline, &mut kib).await?;
        samples.push(t.elapsed().as_secs_f64() * 1e6);
        ensure!(
            matches!(outcome.verdict, Verdict::Ack),
            "scripted did not ack"
        );
    }
    let mean = all.elapsed().as_secs_f64() * 1e6 / args.calls as f64;
    let steady = Percentiles::of(&mut samples);
    let trace_off_ns = trace_hooks_off(&pipeline, &ack, &kib, args.calls * TRACE_OFF_PER_CALL);

    // First call on a fresh instance: a trap (stack overflow, which prints nothing) throws the
    // pooled instance away, so the next `handle` instantiates and `init`s a new one first.
    let body = runtime.load(&config.plugins["body"]).await?;
    let mut recurse = Box::new(message(b"recurse".to_vec()));
    let mut ack_body = Box::new(message(b"ack".to_vec()));
    for _ in 0..POOL_WARM_UP_CALLS {
        body.handle(&pipeline, &mut ack_body).await?;
    }
    let mut warm = Vec::with_capacity(FIRST_CALL_SAMPLES);
    let mut first = Vec::with_capacity(FIRST_CALL_SAMPLES);
    for _ in 0..FIRST_CALL_SAMPLES {
        let t = Instant::now();
        body.handle(&pipeline, &mut ack_body).await?;
        warm.push(t.elapsed().as_secs_f64() * 1e6);
        match body.handle(&pipeline, &mut recurse).await {
            Err(PluginError::Trap(_)) => {}
            other => bail!("expected a trap from body 'recurse', got {other:?}"),
        }
        let t = Instant::now();
        body.handle(&pipeline, &mut ack_body).await?;
        first.push(t.elapsed().as_secs_f64() * 1e6);
    }
    let warm = Percentiles::of(&mut warm);
    let first = Percentiles::of(&mut first);

    let mut out = String::new();
    writeln!(
        out,
        "\n### Plugin call path (`Plugin::handle`, scripted.wasm, broker-free)\n\n\
         | what | median µs | p99 µs | mean µs |\n|---|---:|---:|---:|"
    )?;
    writeln!(
        out,
        "| `handle`, {} B body, mode=ack, {} calls after {WARM_UP_CALLS} warm-up | {:.2} | {:.2} | {:.2} |",
        args.size, args.calls, steady.p50, steady.p99, mean
    )?;
    writeln!(
        out,
        "| `handle`, 3 B body, mode=body, pooled instance | {:.2} | {:.2} | {:.2} |",
        warm.p50, warm.p99, warm.mean
    )?;
    writeln!(
        out,
        "| first `handle` on a fresh instance (instantiate + init + handle), {FIRST_CALL_SAMPLES} samples | {:.2} | {:.2} | {:.2} |",
        first.p50, first.p99, first.mean
    )?;
    writeln!(
        out,
        "| the trace hooks of one message with traces off (start, handle step, verdict, settle step) | {trace_off_ns:.4} (mean of {} messages) | | |",
        args.calls * TRACE_OFF_PER_CALL
    )?;
    writeln!(
        out,
        "\nLoading scripted.wasm (read, compile, link, first instance + init): {load_ms:.0} ms."
    )?;
    Ok(out)
}

/// Mean µs per message of the trace hooks a pipeline runs for each message when traces are
/// off (no `[telemetry]`): what traces cost a message that is not traced.
fn trace_hooks_off(pipeline: &Arc<str>, plugin: &Plugin, message: &Message, n: usize) -> f64 {
    use std::hint::black_box;
    let tracer = Tracer::off();
    let t = Instant::now();
    for _ in 0..n {
        let trace = tracer.start(black_box(pipeline), plugin, black_box(message));
        trace.step("handle").end(None::<&String>);
        trace.verdict(Kind::Ack);
        black_box(trace.settle_step(Settlement::Ack));
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}
