//! One pipeline is one failure domain: the broker's `consumer_timeout` closes one pipeline's
//! channel and another pipeline's queue is deleted (then declared again); each of the two is
//! restarted alone, and a third pipeline under load all the while is not disturbed.

use std::time::{Duration, Instant};

use lapin::BasicProperties;

use super::bounded;
use crate::support::{
    Broker, Node, NodeSpec, PATIENCE, Running, TestConfig, collect_ids, eventually, find_sample,
    sample, start, test_plugin, total, unique, with_id,
};

/// The node's `consumer_timeout` (RabbitMQ's default is 30 min).
const SHORT_CONSUMER_TIMEOUT_MS: u32 = 2_000;
/// How often the node's channels check their consumer timeout (RabbitMQ's default is a
/// minute, which would make the test slow).
const CHANNEL_TICK: &str = "{rabbit, [{channel_tick_interval, 500}]}";

/// How long the broker may take to close a channel past its consumer timeout, and warren to
/// notice it.
const TIMEOUT_NOTICED: Duration = Duration::from_secs(60);
/// The calm pipeline gets a message this often, all the while.
const CALM_EVERY: Duration = Duration::from_millis(10);
/// How long the calm pipeline's throughput is measured before the faults.
const BASELINE: Duration = Duration::from_secs(5);
/// How often the calm pipeline's count of handled messages is read.
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// The calm pipeline must handle at least this share of its baseline rate while the others
/// fail. Its load is a steady stream, so undisturbed it keeps pace with the producer: the
/// runs measured so far were within a few percent of the baseline (see the test's output).
const MIN_RATE_SHARE: f64 = 0.8;
/// The longest the calm pipeline may go without handling a message while the others fail (a
/// message comes every [`CALM_EVERY`]; a reconnect of everything stalls it for longer).
const MAX_STALL: Duration = Duration::from_secs(2);

/// Three pipelines on a node of the test's own: `slow` holds a message past the node's
/// consumer timeout, so the broker closes its channel; `doomed`'s queue is deleted under it
/// and declared again. Each is restarted alone (the slow message is redelivered), warren
/// never reconnects, and the `calm` pipeline, under a steady load all along, handles each of
/// its messages exactly once, at its baseline rate, without a stall.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_pipeline_failing_leaves_the_others_alone() {
    bounded(failure_domain()).await;
}

async fn failure_domain() {
    let spec = NodeSpec::plain()
        .conf(&format!("consumer_timeout = {SHORT_CONSUMER_TIMEOUT_MS}"))
        .advanced(CHANNEL_TICK);
    let node = Node::start("failure-domain", &spec).await;
    let broker = Broker::connect_to(&node.url()).await;
    let [slow, doomed, doomed_out, calm, calm_out] = [
        "fd-slow",
        "fd-doomed",
        "fd-doomed-out",
        "fd-calm",
        "fd-calm-out",
    ]
    .map(unique);
    broker.queue(&calm_out).await;
    broker.queue(&doomed_out).await;
    // The slow plugin may take far longer than the consumer timeout.
    let config = TestConfig::with_url(&node.url())
        .grace_ms(100)
        .plugin(
            "slow",
            &test_plugin("scripted"),
            "mode = \"body\"",
            "timeout_ms = 300000",
        )
        .queue(&slow, "")
        .pipeline("slow", &slow, "slow", "")
        .tagged("doomed", &doomed, &doomed_out, "")
        .tagged("calm", &calm, &calm_out, "");
    let daemon = start(&config.build()).await;
    let load = SteadyLoad::start(&node.url(), &calm, &doomed);
    let baseline = Throughput::measure(&daemon, BASELINE).await;

    // The faults: one message held past the consumer timeout; the other queue deleted.
    let faults = Throughput::start(&daemon);
    broker
        .publish(&slow, b"sleep:250000", BasicProperties::default())
        .await;
    broker.delete_queue(&doomed).await;
    let restarted = |pipeline: &'static str| {
        let daemon = &daemon;
        move || async move {
            let scrape = daemon.scrape();
            let labels = [("pipeline", pipeline)];
            let restarts = find_sample(&scrape, "warren_pipeline_restarts_total", &labels);
            (restarts >= Some(1.0)).then_some(())
        }
    };
    eventually(
        "the doomed pipeline restarted",
        PATIENCE,
        restarted("doomed"),
    )
    .await;
    broker.queue(&doomed).await;
    let slow_labels = [("pipeline", "slow")];
    daemon
        .wait_metric_for(
            "warren_redeliveries_total",
            &slow_labels,
            1.0,
            TIMEOUT_NOTICED,
        )
        .await;
    eventually("the slow pipeline restarted", PATIENCE, restarted("slow")).await;
    let during = faults.finish().await;

    let sent = load.stop().await;
    let seen = collect_ids(&broker, &calm_out, sent).await;
    let scrape = daemon.scrape();
    daemon.stop().await.expect("clean stop");
    let twice: usize = seen.values().map(|n| n - 1).sum();
    let share = during.rate / baseline.rate;
    eprintln!(
        "failure domain: the calm pipeline handled {sent} messages, {} lost, {twice} twice; \
         {:.0} msg/s before the faults, {:.0} msg/s during them ({share:.2}×, {:.1} s), \
         longest stall {:?} (before: {:?})",
        sent - seen.len(),
        baseline.rate,
        during.rate,
        during.span.as_secs_f64(),
        during.stall,
        baseline.stall,
    );
    assert_eq!(seen.len(), sent, "the calm pipeline lost messages");
    // Dropping the consumer of the channel the broker closed once made lapin recover the
    // whole consuming connection (its cancel-on-drop failing on the removed channel), and the
    // calm pipeline's deliveries in flight were redelivered; such consumers are now parked
    // (broker/consume.rs, `Retired`). So: each calm message exactly once, and no recovery.
    assert_eq!(twice, 0, "the calm pipeline handled {twice} messages twice");
    assert!(
        share >= MIN_RATE_SHARE,
        "the calm pipeline slowed down while the others failed: {share:.2}× its baseline rate"
    );
    assert!(
        during.stall <= MAX_STALL,
        "the calm pipeline stalled for {:?} while the others failed",
        during.stall
    );
    assert_eq!(
        broker.ready(&slow).await,
        1,
        "the slow message is back in its queue"
    );
    let consume = [("connection", "consume")];
    assert_eq!(
        sample(&scrape, "warren_broker_recoveries_total", &consume),
        0.0,
        "lapin recovered the consuming connection for one pipeline's channel"
    );
    assert_eq!(
        sample(&scrape, "warren_broker_reconnects_total", &[]),
        0.0,
        "warren reconnected everything for one pipeline's channel"
    );
    let calm_labels = [("pipeline", "calm")];
    assert_eq!(
        total(&scrape, "warren_pipeline_restarts_total", &calm_labels),
        0.0,
        "the calm pipeline was restarted"
    );
    broker.cleanup().await;
}

/// A producer publishing one message every [`CALM_EVERY`] to the calm queue (each with its
/// own id) and one to the doomed queue, until stopped.
struct SteadyLoad {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<usize>,
}

impl SteadyLoad {
    fn start(url: &str, calm: &str, doomed: &str) -> Self {
        let stop = tokio_util::sync::CancellationToken::new();
        let (calm, doomed, url, until) = (
            calm.to_owned(),
            doomed.to_owned(),
            url.to_owned(),
            stop.clone(),
        );
        let task = tokio::spawn(async move {
            let producer = Broker::connect_to(&url).await;
            let mut tick = tokio::time::interval(CALM_EVERY);
            let mut sent = 0usize;
            while !until.is_cancelled() {
                tick.tick().await;
                producer
                    .publish(&calm, b"x", with_id(format!("calm-{sent}")))
                    .await;
                // While the doomed queue is deleted, the broker drops these (unroutable).
                let doomed_id = with_id(format!("doomed-{sent}"));
                producer.publish(&doomed, b"x", doomed_id).await;
                sent += 1;
            }
            sent
        });
        Self { stop, task }
    }

    /// Stops the producer; how many messages it sent to the calm queue.
    async fn stop(self) -> usize {
        self.stop.cancel();
        self.task.await.expect("producer")
    }
}

/// The calm pipeline's throughput over a span: its mean rate of handled messages, and the
/// longest time its count went without growing (to within [`SAMPLE_EVERY`]).
struct Throughput {
    rate: f64,
    stall: Duration,
    span: Duration,
}

/// A measurement under way: the calm pipeline's count read every [`SAMPLE_EVERY`].
struct Measuring {
    stop: tokio_util::sync::CancellationToken,
    task: tokio::task::JoinHandle<Throughput>,
}

impl Throughput {
    /// Measures for `span`.
    async fn measure(daemon: &Running, span: Duration) -> Throughput {
        let measuring = Throughput::start(daemon);
        tokio::time::sleep(span).await;
        measuring.finish().await
    }

    /// Starts measuring until [`Measuring::finish`].
    fn start(daemon: &Running) -> Measuring {
        let metrics = daemon.metrics.clone();
        let stop = tokio_util::sync::CancellationToken::new();
        let until = stop.clone();
        let task = tokio::spawn(async move {
            let handled = || {
                let scrape = crate::support::scrape_of(&metrics);
                total(&scrape, "warren_messages_total", &[("pipeline", "calm")])
            };
            let (start, first) = (Instant::now(), handled());
            let (mut last, mut last_progress, mut stall) = (first, start, Duration::ZERO);
            while !until.is_cancelled() {
                tokio::time::sleep(SAMPLE_EVERY).await;
                let (now, at) = (handled(), Instant::now());
                // The time since the last progress, read [`SAMPLE_EVERY`] apart at best.
                stall = stall.max(at - last_progress);
                if now > last {
                    (last, last_progress) = (now, at);
                }
            }
            let span = start.elapsed();
            Throughput {
                rate: (last - first) / span.as_secs_f64(),
                stall,
                span,
            }
        });
        Measuring { stop, task }
    }
}

impl Measuring {
    /// Ends the measurement.
    async fn finish(self) -> Throughput {
        self.stop.cancel();
        self.task.await.expect("measurement")
    }
}
