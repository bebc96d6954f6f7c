//! The test's own broker connection: it declares, publishes, takes and counts, and deletes
//! what the test used.

use std::collections::{BTreeMap, VecDeque};
use std::time::Instant;

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, ExchangeKind};

use super::config::QUEUE_EXPIRES_MS;
use super::wait::{PATIENCE, POLL, eventually};

/// The broker the tests use: `WARREN_TEST_BROKER_URL`, or the local one as guest.
pub fn broker_url() -> String {
    std::env::var("WARREN_TEST_BROKER_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// `url` as it may be shown: its password hidden, as warren itself shows it.
pub fn shown(url: &str) -> String {
    warren::config::BrokerUrl::parse(url)
        .map(|url| url.to_string())
        .unwrap_or_else(|e| format!("<{e}>"))
}

/// A connection named `name` (as the management UI shows it), or the test fails saying how to
/// start the broker.
pub async fn connect(url: &str, name: &str) -> lapin::Connection {
    lapin::Connection::connect(
        url,
        lapin::ConnectionProperties::default().with_connection_name(name.into()),
    )
    .await
    .unwrap_or_else(|e| {
        panic!(
            "RabbitMQ is not reachable at {}: {e}\n\
             The tests and benches need a real broker: start it with `rabbitmq-server -detached`",
            shown(url)
        )
    })
}

/// The test's own connection to the broker, its channel in confirm mode.
pub struct Broker {
    connection: lapin::Connection,
    channel: lapin::Channel,
    queues: std::sync::Mutex<Vec<String>>,
    exchanges: std::sync::Mutex<Vec<String>>,
}

impl Broker {
    /// Connects to the test broker ([`broker_url`]).
    pub async fn connect() -> Self {
        Self::connect_to(&broker_url()).await
    }

    /// Connects to the broker at `url`.
    pub async fn connect_to(url: &str) -> Self {
        Self::connect_as(url, "warren-test").await
    }

    /// Connects to the broker at `url`, the connection named `name`.
    pub async fn connect_as(url: &str, name: &str) -> Self {
        Self::on(connect(url, name).await).await
    }

    /// Connects to the `amqps://` broker at `url` with lapin's TLS settings `tls`.
    pub async fn connect_tls(url: &str, tls: lapin::tcp::OwnedTLSConfig) -> Self {
        let properties =
            lapin::ConnectionProperties::default().with_connection_name("warren-test".into());
        let runtime = lapin::runtime::default_runtime().expect("runtime");
        let connection = lapin::Connection::connect_with_config(url, properties, tls, runtime)
            .await
            .unwrap_or_else(|e| panic!("TLS connection to {}: {e}", shown(url)));
        Self::on(connection).await
    }

    async fn on(connection: lapin::Connection) -> Self {
        let channel = connection.create_channel().await.expect("channel");
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm mode");
        Self {
            connection,
            channel,
            queues: Default::default(),
            exchanges: Default::default(),
        }
    }

    /// Declares a durable test queue that expires when unused; deleted by `cleanup`.
    pub async fn queue(&self, name: &str) {
        self.queue_with(name, FieldTable::default()).await;
    }

    /// Declares a durable queue with exactly `args` (no `x-expires`: for queues warren
    /// declares too, with the same arguments, and that the test deletes itself).
    pub async fn queue_exact(&self, name: &str, args: FieldTable) {
        self.channel
            .queue_declare(
                name.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .unwrap_or_else(|e| panic!("declare queue {name}: {e}"));
    }

    /// Like [`Broker::queue`], with extra arguments.
    pub async fn queue_with(&self, name: &str, mut args: FieldTable) {
        args.insert(
            "x-expires".into(),
            AMQPValue::LongInt(QUEUE_EXPIRES_MS as i32),
        );
        self.queue_exact(name, args).await;
        self.forget_later_queue(name);
    }

    /// Deletes this queue in `cleanup` (for queues warren declared).
    pub fn forget_later_queue(&self, name: &str) {
        self.queues.lock().expect("lock").push(name.to_owned());
    }

    /// Declares a fanout exchange bound to `queue`; deleted by `cleanup`.
    pub async fn fanout_to(&self, exchange: &str, queue: &str) {
        self.channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("declare exchange");
        self.channel
            .queue_bind(
                queue.into(),
                exchange.into(),
                "".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("bind");
        self.exchanges
            .lock()
            .expect("lock")
            .push(exchange.to_owned());
    }

    /// Publishes to a queue through the default exchange and waits for the confirm.
    pub async fn publish(&self, queue: &str, body: &[u8], properties: BasicProperties) {
        self.publish_many(queue, [body], properties, 1).await;
    }

    /// Publishes each of `bodies` to a queue through the default exchange, with up to
    /// `window` publishes awaiting their confirm at once; returns once all are confirmed.
    pub async fn publish_many<B: AsRef<[u8]>>(
        &self,
        queue: &str,
        bodies: impl IntoIterator<Item = B>,
        properties: BasicProperties,
        window: usize,
    ) {
        // Collected first: a closure held across the awaits would make this future not Send.
        let messages: Vec<(B, BasicProperties)> = bodies
            .into_iter()
            .map(|body| (body, properties.clone()))
            .collect();
        self.publish_each(queue, messages, window).await;
    }

    /// Publishes persistent messages with `body` and the ids `PREFIX<i>` for each `i` of
    /// `ids`, like [`Broker::publish_many`].
    pub async fn publish_ids(
        &self,
        queue: &str,
        prefix: &str,
        ids: std::ops::Range<usize>,
        body: &[u8],
        window: usize,
    ) {
        let messages: Vec<(&[u8], BasicProperties)> = ids
            .map(|i| (body, with_id(format!("{prefix}{i}")).with_delivery_mode(2)))
            .collect();
        self.publish_each(queue, messages, window).await;
    }

    /// Publishes each `(body, properties)` like [`Broker::publish_many`].
    pub async fn publish_each<B: AsRef<[u8]>>(
        &self,
        queue: &str,
        messages: impl IntoIterator<Item = (B, BasicProperties)>,
        window: usize,
    ) {
        let mut unconfirmed = VecDeque::with_capacity(window);
        for (body, properties) in messages {
            if unconfirmed.len() >= window.max(1)
                && let Some(confirm) = unconfirmed.pop_front()
            {
                confirmed(queue, confirm).await;
            }
            let confirm = self
                .channel
                .basic_publish(
                    "".into(),
                    queue.into(),
                    BasicPublishOptions::default(),
                    body.as_ref(),
                    properties,
                )
                .await
                .unwrap_or_else(|e| panic!("publish to {queue}: {e}"));
            unconfirmed.push_back(confirm);
        }
        while let Some(confirm) = unconfirmed.pop_front() {
            confirmed(queue, confirm).await;
        }
    }

    /// Takes one message (auto-ack), if any.
    pub async fn get(&self, queue: &str) -> Option<lapin::message::BasicGetMessage> {
        self.channel
            .basic_get(queue.into(), BasicGetOptions { no_ack: true })
            .await
            .expect("basic.get")
    }

    /// Waits up to [`PATIENCE`] for a message in `queue` and takes it.
    pub async fn next(&self, queue: &str) -> lapin::message::BasicGetMessage {
        let what = format!("a message in {queue}");
        eventually(what, PATIENCE, || self.get(queue)).await
    }

    /// The queue's state, by a passive declare on a throw-away channel (a failed one closes
    /// its channel).
    async fn inspect(&self, queue: &str) -> lapin::Queue {
        let channel = self.connection.create_channel().await.expect("channel");
        let q = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|e| panic!("queue {queue} should exist: {e}"));
        let _ = channel.close(200, "done".into()).await;
        q
    }

    /// Messages ready in `queue` (not counting unacked ones).
    pub async fn ready(&self, queue: &str) -> u32 {
        self.inspect(queue).await.message_count()
    }

    /// Waits up to [`PATIENCE`] until `queue` holds exactly `n` ready messages.
    pub async fn wait_ready(&self, queue: &str, n: u32) {
        let what = format!("{queue} holding {n} ready messages");
        self.wait_until(queue, what, |q| q.message_count() == n)
            .await;
    }

    /// Waits up to [`PATIENCE`] until the state of `queue` `holds`.
    async fn wait_until(&self, queue: &str, what: String, holds: impl Fn(&lapin::Queue) -> bool) {
        let probe = || async { holds(&self.inspect(queue).await).then_some(()) };
        eventually(what, PATIENCE, probe).await;
    }

    /// Consumers on `queue`.
    pub async fn consumers(&self, queue: &str) -> u32 {
        self.inspect(queue).await.consumer_count()
    }

    /// Waits up to [`PATIENCE`] until `queue` has `n` consumers.
    pub async fn wait_consumers(&self, queue: &str, n: u32) {
        let what = format!("{queue} having {n} consumers");
        self.wait_until(queue, what, |q| q.consumer_count() == n)
            .await;
    }

    /// Deletes `queue` now (as an operator would, under the daemon's feet).
    pub async fn delete_queue(&self, queue: &str) {
        self.channel
            .queue_delete(ShortString::from(queue), QueueDeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("delete queue {queue}: {e}"));
    }

    /// Deletes every queue and exchange the test used.
    pub async fn cleanup(&self) {
        let queues = std::mem::take(&mut *self.queues.lock().expect("lock"));
        // With each queue, the dead-letter queue warren may have declared for it (deleting a
        // queue that does not exist is not an error).
        for q in queues.iter().flat_map(|q| [q.clone(), format!("{q}.dead")]) {
            let _ = self
                .channel
                .queue_delete(ShortString::from(q), QueueDeleteOptions::default())
                .await;
        }
        let exchanges = std::mem::take(&mut *self.exchanges.lock().expect("lock"));
        for e in exchanges {
            let _ = self
                .channel
                .exchange_delete(ShortString::from(e), ExchangeDeleteOptions::default())
                .await;
        }
    }

    /// Closes the connection.
    pub async fn close(self) {
        let _ = self.connection.close(200, "done".into()).await;
    }
}

/// Waits for a publish's confirm; a nack fails the test.
async fn confirmed(queue: &str, confirm: lapin::PublisherConfirm) {
    let confirmation = confirm
        .await
        .unwrap_or_else(|e| panic!("confirm of a publish to {queue}: {e}"));
    assert!(
        confirmation.is_ack(),
        "the broker refused a publish to {queue}: {confirmation:?}"
    );
}

/// Takes messages from `out` until `n` distinct message ids were seen, or none came for
/// [`PATIENCE`], then whatever else is there; returns how often each id came. The caller
/// checks that all `n` came: fewer is lost messages.
pub async fn collect_ids(broker: &Broker, out: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    let mut last_came = Instant::now();
    while seen.len() < n && last_came.elapsed() < PATIENCE {
        match broker.get(out).await {
            Some(message) => {
                count_id(&mut seen, &message);
                last_came = Instant::now();
            }
            None => tokio::time::sleep(POLL).await,
        }
    }
    drain_ids(broker, out, &mut seen).await;
    seen
}

/// Takes what is left in `out` into `seen` (counts by message id).
pub async fn drain_ids(broker: &Broker, out: &str, seen: &mut BTreeMap<String, usize>) {
    while let Some(m) = broker.get(out).await {
        count_id(seen, &m);
    }
}

fn count_id(seen: &mut BTreeMap<String, usize>, m: &lapin::message::BasicGetMessage) {
    let id = m
        .delivery
        .properties
        .message_id()
        .as_ref()
        .expect("message id");
    *seen.entry(id.to_string()).or_default() += 1;
}

/// What `rabbitmqctl -q ARGS` prints; the test fails if it cannot run or fails.
pub async fn rabbitmqctl_output(args: &[&str]) -> String {
    let output = tokio::process::Command::new("rabbitmqctl")
        .arg("-q")
        .args(args)
        .output()
        .await
        .unwrap_or_else(|e| panic!("rabbitmqctl {args:?}: {e}"));
    assert!(
        output.status.success(),
        "rabbitmqctl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `rabbitmqctl` arguments that list each queue's ready and unacknowledged messages.
pub const QUEUE_COUNTS: [&str; 5] = [
    "list_queues",
    "name",
    "messages_ready",
    "messages_unacknowledged",
    "--no-table-headers",
];

/// Ready and unacknowledged messages of `queue`, from `rabbitmqctl list_queues`.
pub async fn queue_counts(queue: &str) -> (usize, usize) {
    let listing = rabbitmqctl_output(&QUEUE_COUNTS).await;
    queue_row_counts(&listing, queue)
}

/// The ready and unacknowledged counts of `queue` in a `list_queues name messages_ready
/// messages_unacknowledged` listing.
pub fn queue_row_counts(listing: &str, queue: &str) -> (usize, usize) {
    let row = listing
        .lines()
        .find(|l| l.starts_with(&format!("{queue}\t")))
        .unwrap_or_else(|| panic!("{queue} is not listed"));
    let number = |i: usize| {
        row.split('\t')
            .nth(i)
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("a count in {row:?}"))
    };
    (number(1), number(2))
}

/// The properties of a message with the id `id`, as a producer sends it (the tests count
/// messages by id).
pub fn with_id(id: impl std::fmt::Display) -> BasicProperties {
    BasicProperties::default().with_message_id(id.to_string().into())
}

/// The value of header `key` in a message's properties.
pub fn header<'a>(properties: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(key)
}
