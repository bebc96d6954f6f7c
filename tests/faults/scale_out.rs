//! Scale-out: three `warren run` daemons compete on one quorum queue of a three-node cluster,
//! under load, while one daemon is killed (-9) and started again and the node another one is
//! connected to stops. A ledger by message id shows nothing lost, duplicates only where the
//! broker redelivered, and the work spread over all three.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use lapin::types::AMQPValue;

use super::cluster::{QUORUM, QUORUM_ELECTION, quorum};
use super::{CLUSTERS, bounded};
use crate::support::{
    Broker, Cluster, KillOnDrop, PATIENCE, POLL, TestConfig, header, test_plugin, unique,
    warren_run, write_config,
};

/// Messages in the run.
const N: usize = 6000;
/// Messages published at a time; the producer then waits for their confirms.
const BATCH: usize = 100;
/// The producer's pace: the run lasts about N / RATE seconds, the faults fall inside it.
const RATE: usize = 100;
/// The smallest share of the messages each daemon must have handled.
const FAIR_SHARE: f64 = 0.20;
/// How long the stopped node stays down.
const NODE_DOWN: Duration = Duration::from_secs(10);

/// Three daemons (each connected first to a node of its own) share a quorum queue under
/// load; a quarter of the way in, daemon 1 is killed with -9 and started again; half way,
/// the node daemon 2 is connected to stops (and comes back ten seconds later). Every message
/// is handled; a message handled twice was redelivered by the broker (the copy says so);
/// each daemon handled at least a fifth of the messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_daemons_share_a_quorum_queue_through_faults() {
    bounded(scale_out()).await;
}

async fn scale_out() {
    let _one_cluster = CLUSTERS.lock().await;
    let cluster = Cluster::start("scale", 3).await;
    let queue = unique("scale");
    let outs: Vec<String> = (1..=3).map(|i| unique(&format!("scale-out{i}"))).collect();
    // The test's own client and the producer use node 3, which stays up.
    let steady = cluster.nodes[2].url();
    let broker = Broker::connect_to(&steady).await;
    for name in std::iter::once(&queue).chain(&outs) {
        broker.queue_exact(name, quorum()).await;
    }
    let configs: Vec<_> = (0..3)
        .map(|i| write_config(&daemon_config(&cluster, i, &queue, &outs[i]).build()))
        .collect();
    let run = |i: usize| {
        let log = std::fs::File::create(configs[i].0.path().join("warren.log")).expect("log");
        KillOnDrop::spawn(warren_run(&configs[i].1).stderr(Stdio::from(log)))
    };
    let mut daemons: Vec<KillOnDrop> = (0..3).map(run).collect();
    broker.wait_consumers(&queue, 3).await;

    let sent = Arc::new(AtomicUsize::new(0));
    let producer = tokio::spawn(produce(steady.clone(), queue.clone(), sent.clone()));
    let started = Instant::now();
    reached(&sent, N / 4).await;
    daemons[0].signal("9");
    let _ = daemons[0].wait();
    daemons[0] = run(0);
    eprintln!(
        "scale-out: daemon 1 killed and restarted at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    reached(&sent, N / 2).await;
    cluster.nodes[1].stop_app().await;
    eprintln!(
        "scale-out: node 2 stopped at {:.1} s",
        started.elapsed().as_secs_f64()
    );
    tokio::time::sleep(NODE_DOWN).await;
    cluster.nodes[1].start_app().await;
    producer.await.expect("producer");
    let published = started.elapsed();

    let ledger = Ledger::collect(&broker, &outs).await;
    let took = started.elapsed();
    for daemon in &mut daemons {
        daemon.terminate();
    }
    ledger.report(published, took);
    ledger.check();
}

/// Daemon `i`'s config: the cluster's URLs from node `i` on, its own connection name, the
/// tagging plugin republishing to `out` (so the ledger can tell the daemons apart).
fn daemon_config(cluster: &Cluster, i: usize, queue: &str, out: &str) -> TestConfig {
    let urls = cluster.urls_from(i);
    let urls: Vec<&str> = urls.iter().map(String::as_str).collect();
    TestConfig::with_urls(&urls)
        .connection_name(&format!("warren-scale-{}", i + 1))
        .plugin(
            "tagged",
            &test_plugin("tag_a"),
            &format!("to = \"{out}\""),
            "",
        )
        .queue_exact(queue, QUORUM, "")
        .queue_exact(out, QUORUM, "")
        .pipeline("scale", queue, "tagged", "prefetch = 20\nconcurrency = 10")
}

/// Publishes the run's N persistent messages (ids `s0`…) at about [`RATE`] a second,
/// counting them in `sent`.
async fn produce(url: String, queue: String, sent: Arc<AtomicUsize>) {
    let producer = Broker::connect_to(&url).await;
    let started = Instant::now();
    for from in (0..N).step_by(BATCH) {
        let to = (from + BATCH).min(N);
        producer
            .publish_ids(&queue, "s", from..to, b"load", BATCH)
            .await;
        sent.store(to, Ordering::Relaxed);
        let due = Duration::from_secs_f64(to as f64 / RATE as f64);
        tokio::time::sleep(due.saturating_sub(started.elapsed())).await;
    }
}

/// Waits until `sent` reaches `n` (the producer is bounded by the test's limit).
async fn reached(sent: &AtomicUsize, n: usize) {
    while sent.load(Ordering::Relaxed) < n {
        tokio::time::sleep(POLL).await;
    }
}

/// Every copy that came out, by message id and by daemon.
struct Ledger {
    /// Per id: copies, and how many of them said the broker had redelivered the message.
    copies: BTreeMap<String, (usize, usize)>,
    /// Copies each daemon published.
    by_daemon: Vec<usize>,
}

impl Ledger {
    /// Takes the copies from the daemons' output queues until all N ids came, or none came
    /// for [`PATIENCE`] (and, the election of a queue leader aside, [`QUORUM_ELECTION`]).
    async fn collect(broker: &Broker, outs: &[String]) -> Ledger {
        let mut ledger = Ledger {
            copies: BTreeMap::new(),
            by_daemon: vec![0; outs.len()],
        };
        let mut last_came = Instant::now();
        while ledger.copies.len() < N && last_came.elapsed() < PATIENCE + QUORUM_ELECTION {
            let mut came = false;
            for (i, out) in outs.iter().enumerate() {
                while let Some(message) = broker.get(out).await {
                    ledger.count(i, &message);
                    came = true;
                }
            }
            if came {
                last_came = Instant::now();
            } else {
                tokio::time::sleep(POLL).await;
            }
        }
        // Late duplicates: one more look once all came.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for (i, out) in outs.iter().enumerate() {
            while let Some(message) = broker.get(out).await {
                ledger.count(i, &message);
            }
        }
        ledger
    }

    fn count(&mut self, daemon: usize, message: &lapin::message::BasicGetMessage) {
        let properties = &message.delivery.properties;
        let id = properties
            .message_id()
            .as_ref()
            .expect("message id")
            .to_string();
        let redelivered = matches!(
            header(properties, "was-redelivered"),
            Some(AMQPValue::Boolean(true))
        );
        let entry = self.copies.entry(id).or_default();
        entry.0 += 1;
        entry.1 += usize::from(redelivered);
        self.by_daemon[daemon] += 1;
    }

    /// Copies beyond the first of each id.
    fn duplicates(&self) -> usize {
        self.copies.values().map(|(n, _)| n - 1).sum()
    }

    /// Duplicates with no redelivered copy to account for them.
    fn unexplained(&self) -> usize {
        self.copies
            .values()
            .map(|&(n, redelivered)| (n - 1).saturating_sub(redelivered))
            .sum()
    }

    fn shares(&self) -> Vec<f64> {
        let total: usize = self.by_daemon.iter().sum();
        self.by_daemon
            .iter()
            .map(|&n| n as f64 / total.max(1) as f64)
            .collect()
    }

    fn report(&self, published: Duration, took: Duration) {
        let shares: Vec<String> = self
            .by_daemon
            .iter()
            .zip(self.shares())
            .map(|(n, share)| format!("{n} ({:.0}%)", share * 100.0))
            .collect();
        eprintln!(
            "scale-out: {N} messages published in {:.1} s, all handled after {:.1} s; {} lost, {} duplicates ({} unexplained); by daemon: {}",
            published.as_secs_f64(),
            took.as_secs_f64(),
            N - self.copies.len(),
            self.duplicates(),
            self.unexplained(),
            shares.join(", ")
        );
    }

    fn check(&self) {
        assert_eq!(self.copies.len(), N, "lost messages");
        assert_eq!(
            self.unexplained(),
            0,
            "messages handled twice without a redelivery"
        );
        for (i, share) in self.shares().into_iter().enumerate() {
            assert!(
                share >= FAIR_SHARE,
                "daemon {} handled {:.0}% of the messages, less than {:.0}%",
                i + 1,
                share * 100.0,
                FAIR_SHARE * 100.0
            );
        }
    }
}
