//! Phase 4: what message traces cost. warren drains the same messages, each carrying a
//! `traceparent`, without `[telemetry]` (traces off: no span, no header read) and with it (a
//! span per message and its handle and settle steps, exported to an OTLP/HTTP receiver in
//! this process that answers without decoding), alternating within each round; the ratio of
//! the two rates is taken per round.

use std::fmt::Write as _;

use lapin::types::{AMQPValue, FieldTable, LongString};

use crate::args::Args;
use crate::stats::Spread;
use crate::support::{BENCH_FAMILY, Broker, OtlpReceiver, test_plugin, unique_in};
use crate::throughput::{PUBLISH_WINDOW, drain_warren};

/// The `traceparent` every message of the phase carries (a sampled parent).
const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

/// Drains at every prefetch, untraced then traced (the order alternating from round to
/// round), `--rounds` times; returns the report's table.
pub async fn phase(args: &Args) -> anyhow::Result<String> {
    let broker = Broker::connect_as(&args.url, "warren-bench.control").await;
    let receiver = OtlpReceiver::discarding();
    let plugin = test_plugin("scripted");
    let body = vec![b'x'; args.size];
    let mut headers = FieldTable::default();
    headers.insert(
        "traceparent".into(),
        AMQPValue::LongString(LongString::from(TRACEPARENT)),
    );
    let properties = args.properties().with_headers(headers);
    // [prefetch][off, on] = one sample per round
    let mut rates = vec![[Vec::new(), Vec::new()]; args.prefetch.len()];
    let mut cpu = rates.clone();
    let mut ratios = vec![Vec::new(); args.prefetch.len()];
    for round in 0..args.rounds {
        for (pi, &prefetch) in args.prefetch.iter().enumerate() {
            let mut pair = [0.0; 2];
            for k in 0..2 {
                let traced = (k + round) % 2 == 1;
                let what = format!("traces.{}.p{prefetch}", if traced { "on" } else { "off" });
                let queue = unique_in(BENCH_FAMILY, &what);
                broker.queue(&queue).await;
                let bodies = std::iter::repeat_n(&body, args.messages);
                broker
                    .publish_many(&queue, bodies, properties.clone(), PUBLISH_WINDOW)
                    .await;
                let otlp = traced.then_some(receiver.endpoint.as_str());
                let sample =
                    drain_warren(args, &broker, &plugin, &queue, prefetch, true, otlp).await?;
                broker.delete_queue(&queue).await;
                eprintln!(
                    "round {}/{} prefetch {prefetch:>4} traces {:<3} {:>8.0} msgs/s",
                    round + 1,
                    args.rounds,
                    if traced { "on" } else { "off" },
                    sample.rate
                );
                let i = usize::from(traced);
                pair[i] = sample.rate;
                rates[pi][i].push(sample.rate);
                cpu[pi][i].push(sample.own_us);
            }
            ratios[pi].push(pair[1] / pair[0]);
        }
    }
    broker.cleanup().await;
    broker.close().await;

    let mut out = String::new();
    writeln!(
        out,
        "\n### Message traces: warren (coalesce_acks = true) with and without `[telemetry]`, \
         {} rounds of {} x {} B, each message with a `traceparent`\n\n\
         | prefetch | traces off, msgs/s | traces on, msgs/s | on / off, same round | CPU µs/msg off / on |\n\
         |---:|---:|---:|---:|---:|",
        args.rounds, args.messages, args.size
    )?;
    for (pi, &prefetch) in args.prefetch.iter().enumerate() {
        writeln!(
            out,
            "| {prefetch} | {} | {} | {} | {:.1} / {:.1} |",
            Spread::of(&rates[pi][0]).rate(),
            Spread::of(&rates[pi][1]).rate(),
            Spread::of(&ratios[pi]).ratio(),
            Spread::of(&cpu[pi][0]).median,
            Spread::of(&cpu[pi][1]).median,
        )?;
    }
    writeln!(
        out,
        "\nThe receiver took {} export requests (3 spans per message: process, handle, settle).",
        receiver.requests()
    )?;
    Ok(out)
}
