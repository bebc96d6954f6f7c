//! Headers survive a plugin unchanged, type for type (issue 11): every AMQP field type
//! RabbitMQ carries, nested arrays and tables included, published with lapin, republished by
//! a plugin, and read back from the broker equal to what was sent.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, DecimalValue, FieldArray, FieldTable, LongString};

use crate::support::{Broker, scripted_config, start, unique};

fn text(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn table(entries: Vec<(&str, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

/// Headers of every type: an `x-death`-like array of tables (with arrays inside), a `CC`
/// array of strings naming `cc` (queues that do not exist, so the copies go nowhere), floats
/// of both widths, a decimal, a timestamp, a byte array, a long string that is not UTF-8,
/// void, and every integer width.
pub fn every_type(cc: &[String]) -> FieldTable {
    let death = |queue: &str, count: i64| {
        AMQPValue::FieldTable(table(vec![
            ("count", AMQPValue::LongLongInt(count)),
            ("exchange", text("")),
            ("queue", text(queue)),
            ("reason", text("rejected")),
            (
                "routing-keys",
                AMQPValue::FieldArray(vec![text(queue)].into()),
            ),
            ("time", AMQPValue::Timestamp(1_700_000_000)),
        ]))
    };
    table(vec![
        (
            "x-death",
            AMQPValue::FieldArray(vec![death("q1", 2), death("q2", 1)].into()),
        ),
        (
            "CC",
            AMQPValue::FieldArray(cc.iter().map(|q| text(q)).collect::<Vec<_>>().into()),
        ),
        (
            "app",
            AMQPValue::FieldTable(table(vec![
                ("empty-array", AMQPValue::FieldArray(FieldArray::default())),
                ("empty-table", AMQPValue::FieldTable(FieldTable::default())),
                (
                    "mixed",
                    AMQPValue::FieldArray(
                        vec![
                            AMQPValue::LongInt(1),
                            text("two"),
                            AMQPValue::FieldArray(vec![AMQPValue::Boolean(false)].into()),
                            AMQPValue::Void,
                        ]
                        .into(),
                    ),
                ),
            ])),
        ),
        ("float", AMQPValue::Float(1.25)),
        ("double", AMQPValue::Double(-3.5e-300)),
        (
            "decimal",
            AMQPValue::DecimalValue(DecimalValue {
                scale: 2,
                value: 1234,
            }),
        ),
        ("timestamp", AMQPValue::Timestamp(1_700_000_123)),
        ("bytes", AMQPValue::ByteArray(vec![0, 1, 254, 255].into())),
        (
            "not-utf8",
            AMQPValue::LongString(LongString::from(vec![b'a', 0xff, 0xfe, b'z'])),
        ),
        ("utf8", text("héllo ✓")),
        ("void", AMQPValue::Void),
        ("bool", AMQPValue::Boolean(true)),
        ("i8", AMQPValue::ShortShortInt(-100)),
        ("u8", AMQPValue::ShortShortUInt(200)),
        ("i16", AMQPValue::ShortInt(-30_000)),
        ("u16", AMQPValue::ShortUInt(60_000)),
        ("i32", AMQPValue::LongInt(-2_000_000_000)),
        ("u32", AMQPValue::LongUInt(4_000_000_000)),
        ("i64", AMQPValue::LongLongInt(-9_000_000_000_000)),
    ])
}

/// Publishes a message with [`every_type`] headers to a queue whose pipeline runs the
/// `scripted` plugin in `mode` (republishing to another queue), and checks the headers that
/// arrive there are equal to those sent.
async fn republished_headers_are_unchanged(mode: &str) {
    let broker = Broker::connect().await;
    let queue = unique("headers");
    let out = unique("headers-out");
    broker.queue(&out).await;
    broker.forget_later_queue(&queue);
    let cc = [unique("headers-cc-a"), unique("headers-cc-b")];
    let sent = every_type(&cc);
    let daemon = start(&scripted_config(
        &queue,
        &format!(r#"mode = "{mode}", to = "{out}""#),
        "",
    ))
    .await;
    broker
        .publish(
            &queue,
            b"typed",
            BasicProperties::default().with_headers(sent.clone()),
        )
        .await;
    let got = broker.next(&out).await;
    assert_eq!(got.delivery.data, b"typed");
    let received = got
        .delivery
        .properties
        .headers()
        .clone()
        .unwrap_or_default();
    for (key, value) in sent.inner() {
        assert_eq!(
            received.inner().get(key),
            Some(value),
            "header {key} changed on the way"
        );
    }
    assert_eq!(received, sent, "the whole table, no header more or less");
    daemon.stop().await.expect("clean stop");
    broker.cleanup().await;
}

/// The daemon keeps the message's headers (`republish` without new headers): they went
/// AMQP → contract → AMQP inside warren, and were lent to the plugin on the way.
#[tokio::test]
async fn headers_survive_a_republish_unchanged() {
    republished_headers_are_unchanged("republish").await;
}

/// The plugin gives every header back itself (the SDK reads each into a `Value` tree and
/// writes it again): the flat encoding crosses the plugin boundary both ways.
#[tokio::test]
async fn headers_rebuilt_by_a_plugin_are_unchanged() {
    republished_headers_are_unchanged("republish-headers").await;
}
