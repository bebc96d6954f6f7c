//! Delivery hardening: hostile messages, hostile plugin outputs and broker refusals, each
//! followed to where every message ends up (routed, or in `<queue>.dead` with its reason).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use lapin::BasicProperties;
use lapin::types::{AMQPValue, FieldTable, ShortString};
use serde_json::json;

use crate::support::{
    Broker, KillOnDrop, PATIENCE, Running, TestConfig, broker_url, collect_ids, eventually, header,
    queue_counts, rabbitmqctl_output, repo_root, shipped_plugin, start, test_plugin, unique,
    warren_run, with_id, write_config,
};

/// A name over AMQP's 255 bytes, as a hostile plugin asks for it.
const TOO_LONG: usize = 300;

/// A config where each of `queues` is consumed by a pipeline of its name running the `router`
/// test plugin, republishing to `out` unless the body says otherwise; `plugin_extra` and
/// `pipeline_extra` are added to the plugin's and each pipeline's table.
fn router_config(
    url: &str,
    queues: &[&str],
    out: &str,
    plugin_extra: &str,
    pipeline_extra: &str,
) -> String {
    let router = test_plugin("router");
    let mut config = TestConfig::with_url(url).plugin(
        "router",
        &router,
        &format!("to = \"{out}\""),
        plugin_extra,
    );
    for queue in queues {
        config = config
            .queue(queue, "")
            .pipeline(queue, queue, "router", pipeline_extra);
    }
    config.build()
}

/// The text of header `key`.
fn text_of(properties: &BasicProperties, key: &str) -> String {
    match header(properties, key) {
        Some(AMQPValue::LongString(s)) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
        other => panic!("header {key} is {other:?}"),
    }
}

/// Takes every message of `dead` (waiting until `n` arrived): message id -> reason.
async fn dead_reasons(broker: &Broker, dead: &str, n: usize) -> BTreeMap<String, String> {
    let mut reasons = BTreeMap::new();
    while reasons.len() < n {
        let m = broker.next(dead).await;
        let id = m
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.to_string())
            .unwrap_or_default();
        reasons.insert(id, text_of(&m.delivery.properties, "x-warren-reason"));
    }
    reasons
}

/// Finding 2: a plugin asking to publish with a name over AMQP's 255 bytes (the route taken
/// from the body) costs that message alone: it lands in `<queue>.dead` naming the field, its
/// prefetch slot is freed (prefetch 1: the messages behind it are processed), nothing panics.
#[tokio::test]
async fn names_over_255_bytes_are_dead_lettered_naming_the_field() {
    let broker = Broker::connect().await;
    let queue = unique("long");
    let out = unique("long-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let daemon = start(&router_config(
        &broker_url(),
        &[&queue],
        &out,
        "",
        "prefetch = 1",
    ))
    .await;
    let long = "x".repeat(TOO_LONG);
    let hostile = [
        ("routing-key", json!({ "routing_key": long })),
        ("exchange", json!({ "exchange": long })),
        ("message-id", json!({ "message_id": long })),
        ("header-key", json!({ "header_key": long })),
        ("expiration", json!({ "expiration": "soon" })),
    ];
    for (id, body) in &hostile {
        broker
            .publish(&queue, body.to_string().as_bytes(), with_id(id))
            .await;
        broker
            .publish(&queue, b"plain", with_id(format!("ok-after-{id}")))
            .await;
    }
    let dead = dead_reasons(&broker, &format!("{queue}.dead"), hostile.len()).await;
    let too_long = |field: &str| format!("invalid publish: {field} is {TOO_LONG} bytes long");
    let expected = [
        ("routing-key", too_long("routing_key")),
        ("exchange", too_long("exchange")),
        ("message-id", too_long("message_id")),
        (
            "header-key",
            "invalid publish: the key of header".to_owned(),
        ),
        (
            "expiration",
            "invalid publish: expiration \"soon\"".to_owned(),
        ),
    ];
    for (id, reason) in expected {
        assert!(
            dead[id].starts_with(&reason),
            "{id}: reason {:?} should start with {reason:?}",
            dead[id]
        );
    }
    let mut routed = BTreeMap::new();
    while routed.len() < hostile.len() {
        let m = broker.next(&out).await;
        let id = m.delivery.properties.message_id().clone().expect("id");
        *routed.entry(id.to_string()).or_insert(0) += 1;
    }
    for (id, _) in &hostile {
        assert_eq!(routed.get(&format!("ok-after-{id}")), Some(&1));
    }
    daemon
        .wait_metric(
            "warren_invalid_publishes_total",
            &[("pipeline", queue.as_str())],
            hostile.len() as f64,
        )
        .await;
    let in_flight = daemon.metric("warren_messages_in_flight", &[("pipeline", &queue)]);
    assert_eq!(in_flight, 0.0, "no delivery holds its slot");
    daemon.stop().await.expect("clean stop");
    assert_eq!(queue_counts(&queue).await, (0, 0));
    broker.cleanup().await;
}

/// Finding 3: a producer-set `x-delivery-count` on a classic queue is not the broker's count:
/// a message a plugin requeues for ever is dead-lettered after `max_deliveries`, and at
/// prefetch 1 the message behind it is processed.
#[tokio::test]
async fn a_forged_delivery_count_does_not_defeat_max_deliveries() {
    let broker = Broker::connect().await;
    let queue = unique("forged");
    let out = unique("forged-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let daemon = start(&router_config(
        &broker_url(),
        &[&queue],
        &out,
        "",
        "prefetch = 1\nmax_deliveries = 3",
    ))
    .await;
    let mut forged = FieldTable::default();
    forged.insert("x-delivery-count".into(), AMQPValue::LongLongInt(0));
    broker
        .publish(
            &queue,
            json!({ "verdict": "requeue" }).to_string().as_bytes(),
            with_id("loop").with_headers(forged),
        )
        .await;
    broker.publish(&queue, b"plain", with_id("behind")).await;
    let dead = dead_reasons(&broker, &format!("{queue}.dead"), 1).await;
    assert_eq!(
        dead["loop"],
        "delivery limit: delivery 3 of max_deliveries 3"
    );
    let behind = broker.next(&out).await;
    assert_eq!(
        behind
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("behind")
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(queue_counts(&queue).await, (0, 0));
    broker.cleanup().await;
}

/// A broker user made for one test (warren connects as it), deleted on drop.
struct TestUser {
    name: String,
}

impl TestUser {
    fn create() -> Self {
        let name = unique("user");
        let run = |args: &[&str]| {
            let status = std::process::Command::new("rabbitmqctl")
                .arg("-q")
                .args(args)
                .status()
                .expect("rabbitmqctl");
            assert!(status.success(), "rabbitmqctl {args:?} failed");
        };
        run(&["add_user", &name, "secret"]);
        // Everything but writing to exchanges named `warren-test.forbidden.*`.
        run(&[
            "set_permissions",
            "-p",
            "/",
            &name,
            ".*",
            "^(?!warren-test\\.forbidden\\.).*",
            ".*",
        ]);
        Self { name }
    }

    fn url(&self) -> String {
        format!("amqp://{}:secret@127.0.0.1:5672/%2f", self.name)
    }
}

impl Drop for TestUser {
    fn drop(&mut self) {
        let _ = std::process::Command::new("rabbitmqctl")
            .args(["-q", "delete_user", &self.name])
            .status();
    }
}

/// Finding 1: one message cannot take publishing down for every pipeline.
/// - A producer's own `user_id` (which RabbitMQ refuses when warren, another user, publishes
///   it: 406) is removed before the republish: the message is routed.
/// - A publish the broker refuses by closing the channel (403: warren's user may not write to
///   that exchange) costs that message alone: it is dead-lettered with the broker's reason,
///   the pipeline's channel is reopened, and every other message of both pipelines is routed,
///   once each.
/// - A publish to an exchange that does not exist (404) is found out before it is sent, so it
///   does not close the channel at all.
#[tokio::test]
async fn one_refused_publish_is_confined_to_its_message() {
    let user = TestUser::create();
    let broker = Broker::connect().await;
    let (a, b) = (unique("iso-a"), unique("iso-b"));
    let out = unique("iso-out");
    let forbidden = unique("forbidden");
    broker.queue(&out).await;
    broker.fanout_to(&forbidden, &out).await;
    broker.forget_later_queue(&a);
    broker.forget_later_queue(&b);
    let daemon = start(&router_config(
        &user.url(),
        &[&a, &b],
        &out,
        "",
        &format!("prefetch = {PREFETCH}"),
    ))
    .await;
    /// Each pipeline's prefetch.
    const PREFETCH: usize = 20;
    /// Plain messages published to each pipeline after each refused publish.
    const BEHIND: usize = 10;
    // The test's connection is guest's: guest may set user_id = "guest".
    broker
        .publish(
            &a,
            b"from guest",
            with_id("a-user-id").with_user_id("guest".into()),
        )
        .await;
    for (id, exchange) in [
        ("a-403", forbidden.clone()),
        ("a-404", unique("no-such-exchange")),
    ] {
        broker
            .publish(
                &a,
                json!({ "exchange": exchange }).to_string().as_bytes(),
                with_id(id),
            )
            .await;
        for i in 0..BEHIND {
            broker
                .publish(&a, b"plain", with_id(format!("{id}-a-{i}")))
                .await;
            broker
                .publish(&b, b"plain", with_id(format!("{id}-b-{i}")))
                .await;
        }
    }
    let dead = dead_reasons(&broker, &format!("{a}.dead"), 2).await;
    assert!(
        dead["a-403"].starts_with("publish refused: the broker refused the publish to exchange")
            && dead["a-403"].contains("403"),
        "{dead:?}"
    );
    assert!(
        dead["a-404"].contains("404 NOT_FOUND - no such exchange (checked before publishing)"),
        "{dead:?}"
    );
    // The user-id message, and the plain ones behind both refused publishes, of both pipelines.
    let plain = 1 + 2 * 2 * BEHIND;
    let routed = collect_ids(&broker, &out, plain).await;
    assert_eq!(routed.len(), plain, "routed: {routed:?}");
    assert!(routed.contains_key("a-user-id"));
    assert!(!routed.contains_key("a-403") && !routed.contains_key("a-404"));
    // A publish in flight when the broker closed the channel may have been routed without its
    // confirm: it is published again (at least once, never zero times), at most one per slot.
    let duplicates: usize = routed.values().map(|n| n - 1).sum();
    assert!(
        duplicates <= PREFETCH,
        "{duplicates} duplicates: {routed:?}"
    );
    daemon
        .wait_metric(
            "warren_publish_channel_reopens_total",
            &[("pipeline", a.as_str())],
            1.0,
        )
        .await;
    let reopens_b = daemon.metric("warren_publish_channel_reopens_total", &[("pipeline", &b)]);
    assert_eq!(
        reopens_b, 0.0,
        "the other pipeline's channel was never touched"
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(queue_counts(&a).await, (0, 0));
    assert_eq!(queue_counts(&b).await, (0, 0));
    broker.cleanup().await;
}

/// The republished message of a foreign `user_id` arrives without it; with warren's own
/// user it is kept.
#[tokio::test]
async fn user_id_is_kept_only_when_it_is_warren_s_own() {
    let broker = Broker::connect().await;
    let queue = unique("uid");
    let out = unique("uid-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let daemon = start(&router_config(&broker_url(), &[&queue], &out, "", "")).await;
    broker
        .publish(&queue, b"own", with_id("own").with_user_id("guest".into()))
        .await;
    let own = broker.next(&out).await;
    assert_eq!(
        own.delivery
            .properties
            .user_id()
            .as_ref()
            .map(ShortString::as_str),
        Some("guest")
    );
    broker
        .publish(
            &queue,
            json!({ "user_id": "mallory" }).to_string().as_bytes(),
            with_id("foreign"),
        )
        .await;
    let foreign = broker.next(&out).await;
    assert_eq!(foreign.delivery.properties.user_id(), &None);
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// The length of a plugin version: the first hex digits of its SHA-256.
pub const VERSION_DIGITS: usize = 12;

/// A rejected message of a queue without a dead-letter exchange lands in `<queue>.dead`
/// unchanged (body, properties, headers) with warren's reason, pipeline and plugin version;
/// nothing is dropped silently.
#[tokio::test]
async fn rejected_messages_land_in_the_dead_letter_queue_unchanged() {
    let broker = Broker::connect().await;
    let queue = unique("dlq");
    let out = unique("dlq-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let daemon = start(&router_config(&broker_url(), &[&queue], &out, "", "")).await;
    let mut headers = FieldTable::default();
    headers.insert("app".into(), AMQPValue::LongString("kept".into()));
    let properties = with_id("rejected")
        .with_headers(headers)
        .with_correlation_id("c-9".into())
        .with_content_type("application/json".into())
        .with_priority(3);
    let body = json!({ "verdict": "reject" }).to_string();
    broker.publish(&queue, body.as_bytes(), properties).await;
    let dead = broker.next(&format!("{queue}.dead")).await;
    let p = &dead.delivery.properties;
    assert_eq!(dead.delivery.data, body.as_bytes());
    assert_eq!(p.correlation_id().as_ref().map(|s| s.as_str()), Some("c-9"));
    assert_eq!(
        p.content_type().as_ref().map(|s| s.as_str()),
        Some("application/json")
    );
    assert_eq!(*p.priority(), Some(3));
    assert_eq!(text_of(p, "app"), "kept");
    assert_eq!(text_of(p, "x-warren-reason"), "rejected by the plugin");
    assert_eq!(text_of(p, "x-warren-pipeline"), queue);
    assert_eq!(
        text_of(p, "x-warren-plugin-version").len(),
        VERSION_DIGITS,
        "a plugin version is {VERSION_DIGITS} hex digits"
    );
    daemon
        .wait_metric(
            "warren_dead_lettered_total",
            &[("pipeline", queue.as_str()), ("reason", "rejected")],
            1.0,
        )
        .await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(queue_counts(&queue).await, (0, 0));
    broker.cleanup().await;
}

/// The plugin's publish allowlist: a publish outside `allowed_queues` / `allowed_exchanges`
/// is an invalid publish, dead-lettered naming the list; one inside goes through.
#[tokio::test]
async fn publishes_outside_the_allowlist_are_refused() {
    let broker = Broker::connect().await;
    let queue = unique("allow");
    let out = unique("allow-out");
    let elsewhere = unique("allow-elsewhere");
    broker.queue(&out).await;
    broker.queue(&elsewhere).await;
    broker.forget_later_queue(&queue);
    let daemon = start(&router_config(
        &broker_url(),
        &[&queue],
        &out,
        &format!("allowed_queues = [\"{out}\"]"),
        "",
    ))
    .await;
    broker.publish(&queue, b"plain", with_id("inside")).await;
    broker
        .publish(
            &queue,
            json!({ "routing_key": elsewhere }).to_string().as_bytes(),
            with_id("outside-queue"),
        )
        .await;
    broker
        .publish(
            &queue,
            json!({ "exchange": "amq.topic" }).to_string().as_bytes(),
            with_id("outside-exchange"),
        )
        .await;
    let inside = broker.next(&out).await;
    assert_eq!(
        inside
            .delivery
            .properties
            .message_id()
            .as_ref()
            .map(|s| s.as_str()),
        Some("inside")
    );
    let dead = dead_reasons(&broker, &format!("{queue}.dead"), 2).await;
    assert!(
        dead["outside-queue"].ends_with("is not in the plugin's allowed_queues"),
        "{dead:?}"
    );
    assert!(
        dead["outside-exchange"].ends_with("is not in the plugin's allowed_exchanges"),
        "{dead:?}"
    );
    daemon.stop().await.expect("clean stop");
    assert_eq!(broker.ready(&elsewhere).await, 0);
    broker.cleanup().await;
}

/// Opting out of the dead-letter queue is explicit: `dead_letter_queue = false` declares no
/// `<queue>.dead`, and a rejected message is then dropped by the broker.
#[tokio::test]
async fn opting_out_of_the_dead_letter_queue_drops_rejected_messages() {
    let broker = Broker::connect().await;
    let queue = unique("optout");
    let out = unique("optout-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let daemon: Running = start(&router_config(
        &broker_url(),
        &[&queue],
        &out,
        "",
        "dead_letter_queue = false",
    ))
    .await;
    broker
        .publish(
            &queue,
            json!({ "verdict": "reject" }).to_string().as_bytes(),
            with_id("dropped"),
        )
        .await;
    daemon
        .wait_metric(
            "warren_dead_lettered_total",
            &[("pipeline", queue.as_str()), ("reason", "rejected")],
            1.0,
        )
        .await;
    daemon.stop().await.expect("clean stop");
    assert_eq!(queue_counts(&queue).await, (0, 0));
    let listing = rabbitmqctl_output(&["list_queues", "name", "--no-table-headers"]).await;
    assert!(
        !listing.lines().any(|l| l.trim() == format!("{queue}.dead")),
        "no dead-letter queue is declared"
    );
    broker.cleanup().await;
}

/// The plugin's `max_body_bytes` in the ledger.
const MAX_BODY_BYTES: usize = 4096;
/// The body of the ledger's over-size messages, over [`MAX_BODY_BYTES`] (in [`HOSTILE`]'s reason).
const OVER_SIZE: usize = 5000;
/// One message in this many of the ledger is hostile.
const HOSTILE_EVERY: usize = 10;

/// The kinds of hostile message in the ledger, and where each must end up: `None` routed to
/// the output queue, `Some(prefix)` dead-lettered with a reason that starts so.
const HOSTILE: [(&str, Option<&str>); 7] = [
    (
        "long-route",
        Some("invalid publish: routing_key is 300 bytes long"),
    ),
    ("foreign-user-id", None),
    (
        "forged-count",
        Some("delivery limit: delivery 3 of max_deliveries 3"),
    ),
    ("nested-headers", None),
    (
        "over-size",
        Some("plugin failed: message body of 5000 bytes"),
    ),
    ("bad-expiration", Some("invalid publish: expiration")),
    ("missing-exchange", Some("publish refused:")),
];

/// The ledger: 5,000 messages across two pipelines, a tenth of them hostile in every way
/// above. Every message is accounted for by id — routed, or in its queue's `.dead` with the
/// reason — none is lost, none left unacked, and every well-formed one is routed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ledger_of_5000_messages_accounts_for_every_one() {
    const TOTAL: usize = 5_000;
    let user = TestUser::create();
    let broker = Broker::connect().await;
    let (a, b) = (unique("ledger-a"), unique("ledger-b"));
    let out = unique("ledger-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&a);
    broker.forget_later_queue(&b);
    let daemon = start(&router_config(
        &user.url(),
        &[&a, &b],
        &out,
        &format!("max_body_bytes = {MAX_BODY_BYTES}"),
        "prefetch = 50\nmax_deliveries = 3",
    ))
    .await;
    let missing_exchange = unique("ledger-no-exchange");
    let mut expected: BTreeMap<String, (&str, Option<&str>)> = BTreeMap::new();
    let started = Instant::now();
    for i in 0..TOTAL {
        // Well-formed and hostile messages alike spread over both pipelines.
        let queue = if (i + i / HOSTILE_EVERY).is_multiple_of(2) {
            &a
        } else {
            &b
        };
        let id = format!("m-{i}");
        let mut properties = with_id(&id);
        let mut body = format!("message {i}").into_bytes();
        let kind = (i % HOSTILE_EVERY == 0).then(|| HOSTILE[(i / HOSTILE_EVERY) % HOSTILE.len()]);
        match kind.map(|(name, _)| name) {
            None => {}
            Some("long-route") => {
                body = json!({ "routing_key": "r".repeat(TOO_LONG) })
                    .to_string()
                    .into_bytes();
            }
            Some("foreign-user-id") => properties = properties.with_user_id("guest".into()),
            Some("forged-count") => {
                let mut headers = FieldTable::default();
                headers.insert("x-delivery-count".into(), AMQPValue::LongLongInt(0));
                properties = properties.with_headers(headers);
                body = json!({ "verdict": "requeue" }).to_string().into_bytes();
            }
            Some("nested-headers") => {
                let mut death = FieldTable::default();
                death.insert("count".into(), AMQPValue::LongLongInt(2));
                death.insert("queue".into(), AMQPValue::LongString("q".into()));
                let mut headers = FieldTable::default();
                headers.insert(
                    "x-death".into(),
                    AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
                );
                headers.insert("ratio".into(), AMQPValue::Double(0.25));
                properties = properties.with_headers(headers);
            }
            Some("over-size") => body = vec![b'x'; OVER_SIZE],
            Some("bad-expiration") => {
                body = json!({ "expiration": "-1" }).to_string().into_bytes();
            }
            Some("missing-exchange") => {
                body = json!({ "exchange": missing_exchange })
                    .to_string()
                    .into_bytes();
            }
            Some(other) => unreachable!("{other}"),
        }
        broker.publish(queue, &body, properties).await;
        expected.insert(id, (queue.as_str(), kind.and_then(|(_, dead)| dead)));
    }
    let published_in = started.elapsed();

    let routed_ids = expected.values().filter(|(_, dead)| dead.is_none()).count();
    let dead_in = |queue: &str| {
        expected
            .values()
            .filter(|(q, dead)| *q == queue && dead.is_some())
            .count()
    };
    let routed = collect_ids(&broker, &out, routed_ids).await;
    let dead_a = dead_reasons(&broker, &format!("{a}.dead"), dead_in(&a)).await;
    let dead_b = dead_reasons(&broker, &format!("{b}.dead"), dead_in(&b)).await;
    let settled_in = started.elapsed();
    daemon.stop().await.expect("clean stop");

    let mut lost = Vec::new();
    for (id, (queue, dead)) in &expected {
        let reason = if *queue == a {
            dead_a.get(id)
        } else {
            dead_b.get(id)
        };
        match (dead, reason, routed.get(id)) {
            (None, None, Some(_)) => {}
            (Some(prefix), Some(reason), None) => assert!(
                reason.starts_with(prefix),
                "{id}: dead-lettered with {reason:?}, expected {prefix:?}"
            ),
            (dead, reason, routed) => lost.push(format!(
                "{id}: expected {dead:?}, found reason {reason:?}, routed {routed:?}"
            )),
        }
    }
    assert!(lost.is_empty(), "messages not where expected: {lost:#?}");
    let unexpected: Vec<&String> = routed
        .keys()
        .filter(|id| !expected.contains_key(*id))
        .collect();
    assert!(unexpected.is_empty(), "{unexpected:?}");
    let duplicates: usize = routed.values().map(|n| n - 1).sum();
    let (ready_a, unacked_a) = queue_counts(&a).await;
    let (ready_b, unacked_b) = queue_counts(&b).await;
    assert_eq!((ready_a, unacked_a, ready_b, unacked_b), (0, 0, 0, 0));
    eprintln!(
        "ledger: {TOTAL} messages ({} hostile), {routed_ids} routed, {} dead-lettered \
         ({} in {a}.dead, {} in {b}.dead), 0 lost, 0 unacked, {duplicates} duplicates; \
         published in {published_in:?}, all settled in {settled_in:?}",
        TOTAL / HOSTILE_EVERY,
        dead_a.len() + dead_b.len(),
        dead_a.len(),
        dead_b.len(),
    );
    broker.cleanup().await;
}

/// Finding 5: the README's HTTP quick start, on the shipped config (its queue names made
/// unique, the test's HTTP server in place of 127.0.0.1:8080): the reply lands in `replies`,
/// where the config's printer pipeline takes it, and nothing is dead-lettered.
#[tokio::test]
async fn the_readme_http_quick_start_reply_lands_in_replies() {
    let server = crate::http::serve("127.0.0.1:0").await;
    let broker = Broker::connect().await;
    shipped_plugin("printer");
    let root = repo_root();
    let mut config = std::fs::read_to_string(root.join("config/warren.toml"))
        .expect("shipped config")
        .replace(
            "../plugins/dist/",
            &format!("{}/", root.join("plugins/dist").display()),
        )
        .replace("127.0.0.1:8080", &server.addr.to_string())
        .replace("listen = \"127.0.0.1:9090\"", "listen = \"127.0.0.1:0\"");
    let mut names = BTreeMap::new();
    for name in ["hello", "task_queue", "http_requests", "replies"] {
        let fresh = unique(name);
        config = config.replace(&format!("\"{name}\""), &format!("\"{fresh}\""));
        broker.forget_later_queue(&fresh);
        names.insert(name, fresh);
    }
    let daemon = start(&config).await;
    let request = json!({ "method": "GET", "url": format!("http://{}/echo", server.addr) });
    broker
        .publish(
            &names["http_requests"],
            request.to_string().as_bytes(),
            with_id("quick-start")
                .with_reply_to(names["replies"].as_str().into())
                .with_correlation_id("42".into()),
        )
        .await;
    daemon
        .wait_metric(
            "warren_messages_total",
            &[("pipeline", names["replies"].as_str()), ("verdict", "ack")],
            1.0,
        )
        .await;
    assert_eq!(server.hits.load(std::sync::atomic::Ordering::SeqCst), 1);
    daemon.stop().await.expect("clean stop");
    assert_eq!(
        broker
            .ready(&format!("{}.dead", names["http_requests"]))
            .await,
        0,
        "the request was not dead-lettered"
    );
    assert_eq!(queue_counts(&names["replies"]).await, (0, 0));
    broker.cleanup().await;
}

/// Open file descriptors of process `pid`.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|dir| dir.count())
        .unwrap_or(0)
}

/// Waits (up to `patience`) until the server has had `n` requests and `queue` is empty.
async fn wait_handled(server: &crate::http::Server, queue: &str, n: usize, patience: Duration) {
    let handled = || async {
        let hits = server.hits.load(std::sync::atomic::Ordering::SeqCst);
        (hits >= n && queue_counts(queue).await == (0, 0)).then_some(())
    };
    eventually(format!("{n} requests made"), patience, handled).await;
}

/// The response body the leaky plugin never reads: big enough to stay in its connection.
const LEAKED_BODY_BYTES: usize = 256 * 1024;
/// Leaking messages after which the descriptors are counted, then counted again.
const LEAKS: [usize; 2] = [1_000, 10_000];
/// How long the leaking messages of one count may take.
const LEAK_PATIENCE: Duration = Duration::from_secs(120);
/// Descriptors the daemon may open besides, between the two counts (connections, timers).
const FD_SLACK: usize = 20;

/// A plugin that leaks an HTTP response (and its connection: the body of 256 KiB is never
/// read) on every message does not make the daemon's open file descriptors grow: after 10,000
/// such messages they are where they were after 1,000 (an instance holding leaked handles is
/// replaced, not reused). One message at a time, so that the count is the same at any moment.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leaked_handles_do_not_pile_up() {
    let server = crate::http::serve("127.0.0.1:0").await;
    let broker = Broker::connect().await;
    let queue = unique("leak");
    // Declared first (as the config declares it), so that its consumer can be awaited.
    broker.queue(&queue).await;
    let leaky = format!(
        "authority = \"{}\", path = \"/big?n={LEAKED_BODY_BYTES}\"",
        server.addr
    );
    let config = TestConfig::new()
        .plugin(
            "leaky",
            &test_plugin("leaky"),
            &leaky,
            &format!("allowed_hosts = [\"{}\"]", server.addr),
        )
        .queue(&queue, "")
        .pipeline("leak", &queue, "leaky", "prefetch = 1")
        .build();
    let (_dir, path) = write_config(&config);
    // Its own process, so that its descriptors are its alone.
    let daemon = KillOnDrop::spawn(
        warren_run(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    );
    broker.wait_consumers(&queue, 1).await;
    let pid = daemon.id();
    let mut sent = 0;
    let mut fds = Vec::new();
    for target in LEAKS {
        while sent < target {
            broker
                .publish(&queue, b"leak", BasicProperties::default())
                .await;
            sent += 1;
        }
        wait_handled(&server, &queue, target, LEAK_PATIENCE).await;
        fds.push(open_fds(pid));
    }
    eprintln!(
        "leaky plugin: open fds after 1,000 messages {}, after 10,000 {}",
        fds[0], fds[1]
    );
    assert!(fds[0] > 0, "cannot read /proc/{pid}/fd");
    assert!(
        fds[1] <= fds[0] + FD_SLACK,
        "open fds grew from {} to {} between 1,000 and 10,000 leaking messages",
        fds[0],
        fds[1]
    );
    drop(daemon);
    broker.cleanup().await;
}

/// A message that kills the whole process (here: `kill -9` while the plugin holds it) does not
/// crash-loop for ever on a classic queue: each redelivery is counted, and after
/// `max_deliveries` it is dead-lettered without reaching the plugin again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_kills_warren_is_dead_lettered_after_max_deliveries() {
    const MAX_DELIVERIES: usize = 2;
    let broker = Broker::connect().await;
    let queue = unique("crash-loop");
    broker.queue(&queue).await;
    let config = TestConfig::new()
        .plugin(
            "scripted",
            &test_plugin("scripted"),
            "mode = \"body\"",
            "timeout_ms = 600000",
        )
        .queue(&queue, "")
        .pipeline(
            &queue,
            &queue,
            "scripted",
            &format!("prefetch = 1\nmax_deliveries = {MAX_DELIVERIES}"),
        )
        .build();
    let (_dir, path) = crate::harness::write_config(&config);
    broker
        .publish(
            &queue,
            b"sleep:600000",
            BasicProperties::default().with_message_id("deadly".into()),
        )
        .await;
    let run = || {
        crate::harness::KillOnDrop(
            std::process::Command::new(env!("CARGO_BIN_EXE_warren"))
                .args(["run", "--config", path.to_str().expect("utf-8")])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("start warren run"),
        )
    };
    // Each run takes the message into the plugin (it sleeps there), then dies with it.
    for _ in 0..MAX_DELIVERIES {
        let mut daemon = run();
        let held = || async { (queue_counts(&queue).await == (0, 1)).then_some(()) };
        crate::harness::eventually("the message in the plugin", PATIENCE, held).await;
        daemon.kill().expect("kill -9");
        let _ = daemon.wait();
    }
    // The next run counts the redelivery over the limit: dead-lettered, the plugin not called.
    let _daemon = run();
    let dead = dead_reasons(&broker, &format!("{queue}.dead"), 1).await;
    assert_eq!(
        dead["deadly"],
        format!(
            "delivery limit: delivery {} of max_deliveries {MAX_DELIVERIES}",
            MAX_DELIVERIES + 1
        )
    );
    let emptied = || async { (queue_counts(&queue).await == (0, 0)).then_some(()) };
    crate::harness::eventually("the queue emptied", PATIENCE, emptied).await;
    broker.cleanup().await;
}
