//! The consumer against the real broker (127.0.0.1:5672): a channel the broker closes takes
//! nothing else down with it.

use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, options::QueueDeclareOptions, types::FieldTable};

use super::{Consumer, Retired};
use crate::config::DEFAULT_BROKER_URL;

/// How long the connection is watched for a recovery after the closed channel's consumer
/// is dropped (lapin starts one within milliseconds).
const WATCH: Duration = Duration::from_secs(1);
const PREFETCH: u16 = 10;

fn unique(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("warren-unit-{what}-{}-{nanos}", std::process::id())
}

async fn declare(channel: &lapin::Channel, queue: &str) {
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare");
}

async fn consume(connection: &lapin::Connection, retired: &Retired, queue: &str) -> Consumer {
    Consumer::start(
        connection,
        retired.clone(),
        queue,
        PREFETCH,
        queue,
        false,
        false,
    )
    .await
    .expect("consumer")
}

/// The broker closes one consumer's channel with an error (here: an ack of an unknown
/// delivery tag, 406; in production: a consumer timeout). Dropping that consumer must not
/// make lapin recover the connection: the other consumer on it keeps its channel, and the
/// delivery it holds can still be acked (not redelivered).
#[tokio::test]
async fn a_channel_closed_by_the_broker_leaves_the_other_consumers_alone() {
    let connection = lapin::Connection::connect(
        DEFAULT_BROKER_URL,
        super::super::properties("warren unit test (consume)"),
    )
    .await
    .expect("the broker on 127.0.0.1:5672");
    let admin = connection.create_channel().await.expect("channel");
    let (calm, doomed) = (unique("calm"), unique("doomed"));
    for queue in [&calm, &doomed] {
        declare(&admin, queue).await;
    }
    admin
        .basic_publish(
            "".into(),
            calm.as_str().into(),
            BasicPublishOptions::default(),
            b"held",
            BasicProperties::default(),
        )
        .await
        .expect("publish");

    let retired = Retired::default();
    let mut calm_consumer = consume(&connection, &retired, &calm).await;
    let (held, acker) = calm_consumer
        .next()
        .await
        .expect("a delivery")
        .expect("not an error");
    assert_eq!(held.body, b"held");

    let doomed_consumer = consume(&connection, &retired, &doomed).await;
    doomed_consumer
        .channel
        .basic_ack(999, BasicAckOptions::default())
        .await
        .expect("sent");
    // Wait until lapin has closed the channel and removed it (the removal is what turns the
    // consumer's cancel-on-drop into a connection error).
    let closed = async {
        while doomed_consumer.channel.status().connected() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(WATCH, closed)
        .await
        .expect("the broker closes the channel");
    tokio::time::sleep(Duration::from_millis(200)).await;
    drop(doomed_consumer);

    let start = tokio::time::Instant::now();
    while start.elapsed() < WATCH {
        assert!(
            connection.status().connected(),
            "lapin started recovering the connection after a consumer of a closed channel was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let settled = acker
        .settle(super::super::Settlement::Ack)
        .await
        .expect("ack");
    assert_eq!(
        settled,
        super::super::Settled::Sent,
        "the calm channel is the same one"
    );
    assert_eq!(retired.len(), 1, "the closed channel's consumer is parked");
    for queue in [&calm, &doomed] {
        let _ = admin
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    let _ = connection.close(200, "done".into()).await;
}
