//! Unit and property tests of the AMQP <-> contract conversions.

use super::*;
use crate::message::{Container, MAX_HEADER_DEPTH, empty_properties, int_header, text_header};
use lapin::types::FieldArray;
use proptest::prelude::*;

/// A table holding every field type RabbitMQ has, nested as `x-death` and `CC` are.
fn every_type() -> FieldTable {
    let mut death = FieldTable::default();
    death.insert("count".into(), AMQPValue::LongLongInt(2));
    death.insert("reason".into(), AMQPValue::LongString("rejected".into()));
    death.insert(
        "routing-keys".into(),
        AMQPValue::FieldArray(vec![AMQPValue::LongString("rk".into())].into()),
    );
    death.insert("time".into(), AMQPValue::Timestamp(1_700_000_000));
    let mut t = FieldTable::default();
    t.insert(
        "x-death".into(),
        AMQPValue::FieldArray(vec![AMQPValue::FieldTable(death)].into()),
    );
    t.insert(
        "CC".into(),
        AMQPValue::FieldArray(
            vec![
                AMQPValue::LongString("a".into()),
                AMQPValue::LongString("b".into()),
            ]
            .into(),
        ),
    );
    t.insert("t".into(), AMQPValue::Boolean(true));
    t.insert("b".into(), AMQPValue::ShortShortInt(-8));
    t.insert("B".into(), AMQPValue::ShortShortUInt(250));
    t.insert("s".into(), AMQPValue::ShortInt(-16_000));
    t.insert("u".into(), AMQPValue::ShortUInt(65_000));
    t.insert("I".into(), AMQPValue::LongInt(-2_000_000_000));
    t.insert("i".into(), AMQPValue::LongUInt(4_000_000_000));
    t.insert("l".into(), AMQPValue::LongLongInt(i64::MIN));
    t.insert("f".into(), AMQPValue::Float(1.5));
    t.insert("d".into(), AMQPValue::Double(-2.25e300));
    t.insert(
        "D".into(),
        AMQPValue::DecimalValue(DecimalValue {
            scale: 2,
            value: 1234,
        }),
    );
    t.insert("S".into(), AMQPValue::LongString("héllo".into()));
    t.insert(
        "S-bin".into(),
        AMQPValue::LongString(vec![0xff, 0xfe].into()),
    );
    t.insert("x".into(), AMQPValue::ByteArray(vec![0, 1, 2].into()));
    t.insert("T".into(), AMQPValue::Timestamp(42));
    t.insert("V".into(), AMQPValue::Void);
    t.insert("F".into(), AMQPValue::FieldTable(FieldTable::default()));
    t.insert("A".into(), AMQPValue::FieldArray(FieldArray::default()));
    t
}

#[test]
fn every_type_survives_amqp_to_wit_to_amqp() {
    let table = every_type();
    let headers = headers_from_amqp(&table);
    assert_eq!(headers_to_amqp(&headers), Ok(table));
    let cc = headers.iter().find(|h| h.key == "CC").expect("CC");
    assert_eq!(cc.value, HeaderValue::Array(0));
    assert_eq!(
        cc.nested,
        vec![Container::Array(vec![
            HeaderValue::Text("a".into()),
            HeaderValue::Text("b".into())
        ])]
    );
    let death = headers
        .iter()
        .find(|h| h.key == "x-death")
        .expect("x-death");
    assert_eq!(death.nested.len(), 3, "array, table, routing-keys array");
    let binary = headers.iter().find(|h| h.key == "S-bin").expect("S-bin");
    assert_eq!(binary.value, HeaderValue::TextBytes(vec![0xff, 0xfe]));
}

#[test]
fn nan_bits_survive() {
    let mut t = FieldTable::default();
    t.insert("f".into(), AMQPValue::Float(f32::from_bits(0x7fc0_1234)));
    t.insert(
        "d".into(),
        AMQPValue::Double(f64::from_bits(0xfff8_0000_0000_0042)),
    );
    let back = headers_to_amqp(&headers_from_amqp(&t)).expect("valid");
    let bits = |k: &str| match back.inner().get(k) {
        Some(AMQPValue::Float(f)) => u64::from(f.to_bits()),
        Some(AMQPValue::Double(d)) => d.to_bits(),
        other => panic!("{other:?}"),
    };
    assert_eq!((bits("f"), bits("d")), (0x7fc0_1234, 0xfff8_0000_0000_0042));
}

#[test]
fn bad_headers_are_refused_naming_the_key() {
    let long = "k".repeat(256);
    let error = headers_to_amqp(&[text_header(&long, "v")]).expect_err("long key");
    assert!(error.contains("kkkk") && error.contains("256"), "{error}");
    let mut nested = Header {
        key: "CC".into(),
        value: HeaderValue::Table(0),
        nested: vec![Container::Table(vec![(long, HeaderValue::Void)])],
    };
    let error = headers_to_amqp(std::slice::from_ref(&nested)).expect_err("long key");
    assert!(error.starts_with("header \"CC\": table entry"), "{error}");
    nested.value = HeaderValue::Array(7);
    let error = headers_to_amqp(&[nested]).expect_err("bad index");
    assert!(error.starts_with("header \"CC\": "), "{error}");
    let mut p = empty_properties();
    p.content_type = Some("c".repeat(300));
    let error = properties_to_amqp(&p).expect_err("long content type");
    assert!(error.contains("content-type"), "{error}");
}

#[test]
fn the_last_of_two_equal_keys_counts() {
    let table = headers_to_amqp(&[int_header("a", 1), int_header("a", 2)]).expect("valid");
    assert_eq!(table.inner().get("a"), Some(&AMQPValue::LongLongInt(2)));
}

#[test]
fn properties_round_trip() {
    let mut p = empty_properties();
    p.content_type = Some("application/json".into());
    p.priority = Some(7);
    p.correlation_id = Some("c".into());
    p.reply_to = Some("r".into());
    p.timestamp = Some(1_700_000_000);
    p.kind = Some("t".into());
    p.headers = headers_from_amqp(&every_type());
    let amqp = properties_to_amqp(&p).expect("valid");
    assert_eq!(*amqp.delivery_mode(), Some(PERSISTENT));
    let back = properties_from_amqp(&amqp);
    p.delivery_mode = Some(PERSISTENT);
    assert_eq!(back, p);
}

#[test]
fn delivery_count_read_from_any_integer() {
    let mut t = FieldTable::default();
    t.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(4));
    let p = BasicProperties::default().with_headers(t);
    assert_eq!(delivery_count(&p), Some(4));
    assert_eq!(delivery_count(&BasicProperties::default()), None);
}

/// Any AMQP value RabbitMQ can send (no short string: it has none on the wire), floats
/// without NaN so that `==` compares them; arrays and tables nested up to 4 levels.
fn amqp_value() -> impl Strategy<Value = AMQPValue> {
    let leaf = prop_oneof![
        any::<bool>().prop_map(AMQPValue::Boolean),
        any::<i8>().prop_map(AMQPValue::ShortShortInt),
        any::<u8>().prop_map(AMQPValue::ShortShortUInt),
        any::<i16>().prop_map(AMQPValue::ShortInt),
        any::<u16>().prop_map(AMQPValue::ShortUInt),
        any::<i32>().prop_map(AMQPValue::LongInt),
        any::<u32>().prop_map(AMQPValue::LongUInt),
        any::<i64>().prop_map(AMQPValue::LongLongInt),
        any::<f32>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(AMQPValue::Float),
        any::<f64>()
            .prop_filter("NaN != NaN", |f| !f.is_nan())
            .prop_map(AMQPValue::Double),
        (any::<u8>(), any::<u32>())
            .prop_map(|(scale, value)| AMQPValue::DecimalValue(DecimalValue { scale, value })),
        ".{0,12}".prop_map(|s| AMQPValue::LongString(s.into())),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| AMQPValue::LongString(b.into())),
        proptest::collection::vec(any::<u8>(), 0..12).prop_map(|b| AMQPValue::ByteArray(b.into())),
        any::<u64>().prop_map(AMQPValue::Timestamp),
        Just(AMQPValue::Void),
    ];
    leaf.prop_recursive(4, 64, 6, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6)
                .prop_map(|v| AMQPValue::FieldArray(v.into())),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|entries| AMQPValue::FieldTable(table(entries))),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    ".{0,10}"
}

fn table(entries: Vec<(String, AMQPValue)>) -> FieldTable {
    let mut t = FieldTable::default();
    for (k, v) in entries {
        t.insert(k.into(), v);
    }
    t
}

/// Any flat header a plugin could return: indices in and out of range, cycles, shared
/// branches, kind mismatches, keys too long for AMQP.
fn wit_header() -> impl Strategy<Value = Header> {
    let value = prop_oneof![
        4 => (0u32..8).prop_map(HeaderValue::Array),
        4 => (0u32..8).prop_map(HeaderValue::Table),
        1 => any::<u32>().prop_map(HeaderValue::Array),
        1 => any::<u32>().prop_map(HeaderValue::Table),
        2 => any::<i64>().prop_map(HeaderValue::Int64),
        2 => any::<f32>().prop_map(HeaderValue::Float32),
        1 => ".{0,4}".prop_map(HeaderValue::Text),
        1 => Just(HeaderValue::Void),
    ];
    let wit_key = prop_oneof![9 => key(), 1 => "k{250,260}"];
    let container = prop_oneof![
        proptest::collection::vec(value.clone(), 0..4).prop_map(Container::Array),
        proptest::collection::vec((wit_key.clone(), value.clone()), 0..4)
            .prop_map(Container::Table),
    ];
    (wit_key, value, proptest::collection::vec(container, 0..8))
        .prop_map(|(key, value, nested)| Header { key, value, nested })
}

proptest! {
    #[test]
    fn amqp_to_wit_to_amqp_is_the_identity(
        entries in proptest::collection::vec((key(), amqp_value()), 0..8)
    ) {
        let sent = table(entries);
        let headers = headers_from_amqp(&sent);
        prop_assert_eq!(headers_to_amqp(&headers), Ok(sent));
    }

    #[test]
    fn wit_to_amqp_never_panics(headers in proptest::collection::vec(wit_header(), 0..4)) {
        match headers_to_amqp(&headers) {
            // What is accepted is kept: it converts back to the same table.
            Ok(table) => prop_assert_eq!(headers_to_amqp(&headers_from_amqp(&table)), Ok(table)),
            Err(error) => prop_assert!(error.starts_with("header \""), "{}", error),
        }
    }
}

#[test]
fn deep_chains_are_refused_not_recursed() {
    let nested = (1..=100_000)
        .map(|i| Container::Array(vec![HeaderValue::Array(i)]))
        .collect();
    let deep = Header {
        key: "deep".into(),
        value: HeaderValue::Array(0),
        nested,
    };
    let error = headers_to_amqp(&[deep]).expect_err("too deep");
    assert!(
        error.contains(&format!("{MAX_HEADER_DEPTH} levels")),
        "{error}"
    );
}
