//! Helpers shared by the end-to-end tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions,
    ExchangeDeleteOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, ExchangeKind};
use tokio_util::sync::CancellationToken;
use warren::app::Daemon;
use warren::config::Config;

/// The broker the tests use.
pub fn broker_url() -> String {
    std::env::var("WARREN_TEST_BROKER_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned())
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("daemon/ has a parent")
        .to_path_buf()
}

/// Builds the shipped and test plugins once per test run (`plugins/build`).
fn build_plugins() {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let result = BUILT.get_or_init(|| {
        let output = Command::new("bash")
            .arg(repo_root().join("plugins/build"))
            .output()
            .map_err(|e| format!("cannot run plugins/build: {e}"))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "plugins/build failed:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    });
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// Path of a shipped plugin (`printer`, ...), built if needed.
pub fn shipped_plugin(name: &str) -> PathBuf {
    build_plugins();
    repo_root()
        .join("plugins/dist")
        .join(format!("{name}.wasm"))
}

/// Path of the Rust example plugin (`rust_router`), built if needed.
pub fn rust_example_plugin(name: &str) -> PathBuf {
    build_plugins();
    repo_root()
        .join("plugins/examples/dist")
        .join(format!("{name}.wasm"))
}

/// Path of a test-only plugin (`scripted`), built if needed.
pub fn test_plugin(name: &str) -> PathBuf {
    build_plugins();
    repo_root()
        .join("tests/plugins/dist")
        .join(format!("{name}.wasm"))
}

/// A name no other test (or earlier run) uses.
pub fn unique(what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "warren-test.{what}.{}.{}.{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// How long a test waits for something to show on the broker before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Queues the tests declare expire this long after their last use, so a panicking test
/// leaves nothing behind for long.
pub const QUEUE_EXPIRES_MS: i64 = 120_000;

/// How often a condition a test waits for is checked again.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` every [`POLL`] until it gives `Some`, for at most `patience`, and returns
/// that; the test fails, saying `what` it waited for, if it never does.
pub async fn eventually<T, F, Fut>(
    what: impl std::fmt::Display,
    patience: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < patience,
            "{what}: not within {patience:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}

/// The test's own connection to the broker.
pub struct Broker {
    connection: lapin::Connection,
    channel: lapin::Channel,
    queues: std::sync::Mutex<Vec<String>>,
    exchanges: std::sync::Mutex<Vec<String>>,
}

impl Broker {
    /// Connects, or fails the test saying how to start the broker.
    pub async fn connect() -> Self {
        Self::connect_to(&broker_url()).await
    }

    /// Connects to the broker at `url`.
    pub async fn connect_to(url: &str) -> Self {
        let connection = lapin::Connection::connect(
            url,
            lapin::ConnectionProperties::default().with_connection_name("warren-test".into()),
        )
        .await
        .unwrap_or_else(|e| {
            panic!(
                "RabbitMQ is not reachable at {url}: {e}\n\
                 The end-to-end tests need a real broker: start it with `rabbitmq-server -detached`"
            )
        });
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
        self.channel
            .basic_publish(
                "".into(),
                queue.into(),
                BasicPublishOptions::default(),
                body,
                properties,
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
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

    /// The queue's state, by a passive declare on a throw-away channel.
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
        eventually(what, PATIENCE, || async {
            (self.ready(queue).await == n).then_some(())
        })
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
}

/// A daemon running in this process, started from a config text.
pub struct Running {
    /// The daemon's metrics.
    pub metrics: warren::metrics::SharedMetrics,
    /// Asks for a config reload, as SIGHUP does.
    pub reload: warren::app::ReloadHandle,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    _dir: tempfile::TempDir,
}

/// Writes `config` to a temporary `warren.toml` and returns its path (kept while the dir lives).
pub fn write_config(config: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("warren.toml");
    std::fs::write(&path, config).expect("write config");
    (dir, path)
}

/// Starts a daemon on `config` and returns once every pipeline consumes.
pub async fn start(config: &str) -> Running {
    let (dir, path) = write_config(config);
    start_at(dir, &path).await
}

/// Starts a daemon on the config file at `path` (kept alive with `dir`).
pub async fn start_at(dir: tempfile::TempDir, path: &Path) -> Running {
    // Daemon logs, shown for failed tests; `RUST_LOG=info` to see them.
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let config = Config::load(path).unwrap_or_else(|e| panic!("config refused: {e:#}"));
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(config, shutdown.clone())
        .await
        .unwrap_or_else(|e| panic!("daemon did not start: {e:#}"));
    Running {
        metrics: daemon.metrics().clone(),
        reload: daemon.reload_handle(),
        shutdown,
        task: tokio::spawn(daemon.wait()),
        _dir: dir,
    }
}

/// Takes messages from `out` until `n` distinct message ids were seen, then whatever else is
/// there; returns how often each id came.
pub async fn collect_ids(broker: &Broker, out: &str, n: usize) -> BTreeMap<String, usize> {
    let mut seen = BTreeMap::new();
    while seen.len() < n {
        count_id(&mut seen, &broker.next(out).await);
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

/// Ready and unacknowledged messages of `queue`, from `rabbitmqctl list_queues`.
pub async fn queue_counts(queue: &str) -> (usize, usize) {
    let listing = tokio::process::Command::new("rabbitmqctl")
        .args([
            "-q",
            "list_queues",
            "name",
            "messages_ready",
            "messages_unacknowledged",
            "--no-table-headers",
        ])
        .output()
        .await
        .expect("rabbitmqctl list_queues");
    let listing = String::from_utf8_lossy(&listing.stdout);
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

/// The value of the sample `name` with `labels` in a parsed Prometheus scrape.
pub fn sample(metrics: &prometheus_parse::Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    metrics
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
        .unwrap_or_else(|| panic!("no sample {name} {labels:?}"))
}

impl Running {
    /// The daemon's metrics, rendered as Prometheus text and parsed back.
    pub fn scrape(&self) -> prometheus_parse::Scrape {
        let text = self.metrics.render();
        prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
            .expect("valid Prometheus text")
    }

    /// The current value of the sample `name` with `labels` (the test fails if there is none).
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        sample(&self.scrape(), name, labels)
    }

    /// Waits (up to [`PATIENCE`]) until the sample `name` with `labels` reaches `at_least`.
    pub async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], at_least: f64) {
        self.wait_metric_for(name, labels, at_least, PATIENCE).await;
    }

    /// Waits (up to `patience`) until the sample `name` with `labels` reaches `at_least`.
    pub async fn wait_metric_for(
        &self,
        name: &str,
        labels: &[(&str, &str)],
        at_least: f64,
        patience: Duration,
    ) {
        let reached = || async {
            self.scrape()
                .samples
                .iter()
                .any(|s| {
                    s.metric == name
                        && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
                        && matches!(s.value, prometheus_parse::Value::Counter(v)
                            | prometheus_parse::Value::Gauge(v)
                            | prometheus_parse::Value::Untyped(v) if v >= at_least)
                })
                .then_some(())
        };
        let what = format!("{name} {labels:?} reaching {at_least}");
        eventually(what, patience, reached).await;
    }

    /// Stops the daemon gracefully and returns its result.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        self.task.await.expect("daemon task")
    }
}

/// A `warren.toml` for a test, built up in place of a hand-written template: the test broker,
/// a grace period of 5 s, and the plugins, queues (expiring when unused) and pipelines added.
#[derive(Debug, Clone)]
pub struct TestConfig {
    head: String,
    plugins: String,
    queues: String,
    pipelines: String,
}

impl Default for TestConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TestConfig {
    /// The test broker, `shutdown_grace_ms = 5000`, nothing else.
    pub fn new() -> Self {
        Self::with_url(&broker_url())
    }

    /// Like [`TestConfig::new`], with the broker at `url`.
    pub fn with_url(url: &str) -> Self {
        Self {
            head: format!("shutdown_grace_ms = 5000\n\n[broker]\nurl = \"{url}\"\n"),
            plugins: String::new(),
            queues: String::new(),
            pipelines: String::new(),
        }
    }

    /// `[plugins.NAME]` from the `.wasm` at `path`, its `config` table written as the inside
    /// of an inline table (`to = "out"`), and `extra` lines (`timeout_ms = 100`).
    pub fn plugin(mut self, name: &str, path: &Path, config: &str, extra: &str) -> Self {
        self.plugins.push_str(&format!(
            "\n[plugins.{name}]\npath = \"{}\"\nconfig = {{ {config} }}\n{extra}\n",
            path.display()
        ));
        self
    }

    /// A queue that expires [`QUEUE_EXPIRES_MS`] after its last use, with `extra` lines.
    pub fn queue(mut self, name: &str, extra: &str) -> Self {
        self.queues.push_str(&format!(
            "\n[[queues]]\nname = \"{name}\"\narguments = {{ \"x-expires\" = {QUEUE_EXPIRES_MS} }}\n{extra}\n"
        ));
        self
    }

    /// A pipeline named `name` from `queue` to `plugin`, with `extra` lines (`prefetch = 5`).
    pub fn pipeline(mut self, name: &str, queue: &str, plugin: &str, extra: &str) -> Self {
        self.pipelines.push_str(&format!(
            "\n[[pipelines]]\nname = \"{name}\"\nqueue = \"{queue}\"\nplugin = \"{plugin}\"\n{extra}\n"
        ));
        self
    }

    /// The file's text.
    pub fn build(&self) -> String {
        format!(
            "{}{}{}{}",
            self.head, self.plugins, self.queues, self.pipelines
        )
    }
}

/// A config with one queue (expiring) and one pipeline using the `scripted` test plugin.
pub fn scripted_config(queue: &str, plugin_config: &str, pipeline_extra: &str) -> String {
    TestConfig::new()
        .plugin("scripted", &test_plugin("scripted"), plugin_config, "")
        .queue(queue, "")
        .pipeline(queue, queue, "scripted", pipeline_extra)
        .build()
}

/// The value of header `key` in a message's properties.
pub fn header<'a>(properties: &'a BasicProperties, key: &str) -> Option<&'a AMQPValue> {
    properties.headers().as_ref()?.inner().get(key)
}

/// Replaces `path` atomically with `content` (write a temporary file, then rename).
pub fn replace_file(path: &Path, content: &[u8]) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, content).expect("write temp file");
    std::fs::rename(&tmp, path).expect("rename over");
}

impl Broker {
    /// Consumers on `queue`.
    pub async fn consumers(&self, queue: &str) -> u32 {
        self.inspect(queue).await.consumer_count()
    }

    /// Waits up to [`PATIENCE`] until `queue` has `n` consumers.
    pub async fn wait_consumers(&self, queue: &str, n: u32) {
        let what = format!("{queue} having {n} consumers");
        eventually(what, PATIENCE, || async {
            (self.consumers(queue).await == n).then_some(())
        })
        .await;
    }
}

/// A child process (a `warren run`) killed when dropped, so a failing test leaves none behind.
pub struct KillOnDrop(pub std::process::Child);

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}
