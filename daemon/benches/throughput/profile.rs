//! The bench's halves of `daemon/benches/profile.sh`, which counts the instructions a message
//! costs under callgrind: `--fill QUEUE` fills a queue (run natively), `--drain-bare QUEUE`
//! drains it with the `multiple`-ack consumer (run under valgrind), each on its own so that
//! the profiled process does nothing but drain.

use crate::args::Args;
use crate::support::Broker;
use crate::throughput::{Drainer, PUBLISH_WINDOW, drain_bare};

/// Declares `queue` (durable, expiring as the kit's queues do) and publishes `--messages`
/// bodies of `--size` bytes to it, confirmed.
pub async fn fill(args: &Args, queue: &str) -> anyhow::Result<()> {
    let broker = Broker::connect_as(&args.url, "warren-bench.profile.fill").await;
    broker.queue(queue).await;
    let body = vec![b'x'; args.size];
    let bodies = std::iter::repeat_n(&body, args.messages);
    broker
        .publish_many(queue, bodies, args.properties(), PUBLISH_WINDOW)
        .await;
    broker.close().await;
    eprintln!("filled {queue} with {} messages", args.messages);
    Ok(())
}

/// Drains `--messages` from `queue` with baseline (c), at the first `--prefetch`.
pub async fn drain(args: &Args, queue: &str) -> anyhow::Result<()> {
    let prefetch = first_prefetch(args);
    let sample = drain_bare(args, queue, prefetch, Drainer::AckMultiple).await?;
    eprintln!(
        "drained {} messages from {queue} at prefetch {prefetch}: {:.0} msgs/s",
        args.messages, sample.rate
    );
    Ok(())
}

fn first_prefetch(args: &Args) -> u16 {
    args.prefetch.first().copied().unwrap_or(100)
}
