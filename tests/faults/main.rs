//! Fault tests: each disturbs a broker (stops it, trips its memory alarm, lets its consumer
//! timeout close a channel, loses a cluster node) — always a RabbitMQ node the test started
//! for itself (`support::Node`, `support::Cluster`: own names, ports and data dirs, killed and
//! deleted when the test ends, even when it fails), never the broker on 5672 that the other
//! tests share. So they run in parallel with each other, and each is bounded in time: a
//! test that has not finished after [`TEST_LIMIT`] fails instead of hanging the run. Every
//! test publishes messages with unique ids and accounts for each one.

#[path = "../support/mod.rs"]
mod support;

// The broker stopped and started under load; stopped until lapin gives up; a memory alarm
// while the plugin republishes.
mod broker;
// One pipeline's channel closed by the consumer timeout, another's queue deleted; the third
// goes on undisturbed.
mod failure_domain;
// A three-node cluster with quorum queues: the node warren is connected to stops under load.
mod cluster;
// Three daemons compete on one quorum queue of the cluster; one is killed, a node stops.
mod scale_out;

use std::time::Duration;

/// The longest a fault test may take; past it the test fails instead of hanging the run.
const TEST_LIMIT: Duration = Duration::from_secs(420);

/// Runs a test body within [`TEST_LIMIT`]. Every wait in the bodies is async (the `rabbitmqctl`
/// calls included), so the limit can always fire.
async fn bounded(body: impl Future<Output = ()>) {
    if tokio::time::timeout(TEST_LIMIT, body).await.is_err() {
        panic!("the fault test did not finish within {TEST_LIMIT:?}");
    }
}

/// One cluster at a time: two would put six Erlang nodes on the machine's two cores.
static CLUSTERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
