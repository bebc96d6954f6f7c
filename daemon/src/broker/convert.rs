//! Converts between lapin's AMQP types and the plugin contract's plain types.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, ByteArray, FieldTable, LongString, ShortString};

use crate::config::ArgValue;
use crate::decision::PERSISTENT;
use crate::message::{Header, HeaderValue, Properties};

/// The header in which quorum queues count earlier deliveries.
pub const DELIVERY_COUNT_HEADER: &str = "x-delivery-count";

fn text(s: &Option<ShortString>) -> Option<String> {
    s.as_ref().map(|s| s.as_str().to_owned())
}

/// AMQP properties as the contract's properties.
pub fn properties_from_amqp(p: &BasicProperties) -> Properties {
    Properties {
        content_type: text(p.content_type()),
        content_encoding: text(p.content_encoding()),
        headers: p
            .headers()
            .as_ref()
            .map(headers_from_amqp)
            .unwrap_or_default(),
        priority: *p.priority(),
        correlation_id: text(p.correlation_id()),
        reply_to: text(p.reply_to()),
        expiration: text(p.expiration()),
        message_id: text(p.message_id()),
        timestamp: *p.timestamp(),
        kind: text(p.kind()),
        user_id: text(p.user_id()),
        app_id: text(p.app_id()),
        delivery_mode: *p.delivery_mode(),
    }
}

/// The contract's properties as AMQP properties. An absent delivery mode means persistent.
pub fn properties_to_amqp(p: &Properties) -> BasicProperties {
    let mut out =
        BasicProperties::default().with_delivery_mode(p.delivery_mode.unwrap_or(PERSISTENT));
    let short = |s: &String| ShortString::from(s.as_str());
    if let Some(v) = &p.content_type {
        out = out.with_content_type(short(v));
    }
    if let Some(v) = &p.content_encoding {
        out = out.with_content_encoding(short(v));
    }
    if !p.headers.is_empty() {
        out = out.with_headers(headers_to_amqp(&p.headers));
    }
    if let Some(v) = p.priority {
        out = out.with_priority(v);
    }
    if let Some(v) = &p.correlation_id {
        out = out.with_correlation_id(short(v));
    }
    if let Some(v) = &p.reply_to {
        out = out.with_reply_to(short(v));
    }
    if let Some(v) = &p.expiration {
        out = out.with_expiration(short(v));
    }
    if let Some(v) = &p.message_id {
        out = out.with_message_id(short(v));
    }
    if let Some(v) = p.timestamp {
        out = out.with_timestamp(v);
    }
    if let Some(v) = &p.kind {
        out = out.with_type(short(v));
    }
    if let Some(v) = &p.user_id {
        out = out.with_user_id(short(v));
    }
    if let Some(v) = &p.app_id {
        out = out.with_app_id(short(v));
    }
    out
}

/// An AMQP field table as a list of headers.
pub fn headers_from_amqp(table: &FieldTable) -> Vec<Header> {
    table
        .inner()
        .iter()
        .map(|(k, v)| Header {
            key: k.as_str().to_owned(),
            value: value_from_amqp(v),
        })
        .collect()
}

fn value_from_amqp(v: &AMQPValue) -> HeaderValue {
    match v {
        AMQPValue::Boolean(b) => HeaderValue::Boolean(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::Integer(i64::from(*i)),
        AMQPValue::ShortShortUInt(i) => HeaderValue::Integer(i64::from(*i)),
        AMQPValue::ShortInt(i) => HeaderValue::Integer(i64::from(*i)),
        AMQPValue::ShortUInt(i) => HeaderValue::Integer(i64::from(*i)),
        AMQPValue::LongInt(i) => HeaderValue::Integer(i64::from(*i)),
        AMQPValue::LongUInt(i) => HeaderValue::Integer(i64::from(*i)),
        AMQPValue::LongLongInt(i) => HeaderValue::Integer(*i),
        AMQPValue::Float(f) => HeaderValue::Float(f64::from(*f)),
        AMQPValue::Double(f) => HeaderValue::Float(*f),
        AMQPValue::ShortString(s) => HeaderValue::Text(s.as_str().to_owned()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => HeaderValue::Text(t.to_owned()),
            Err(_) => HeaderValue::Bytes(s.as_bytes().to_vec()),
        },
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AMQPValue::Void => HeaderValue::Void,
        other @ (AMQPValue::DecimalValue(_)
        | AMQPValue::FieldArray(_)
        | AMQPValue::FieldTable(_)) => HeaderValue::Text(format!("{other:?}")),
    }
}

/// A list of headers as an AMQP field table.
pub fn headers_to_amqp(headers: &[Header]) -> FieldTable {
    let mut table = FieldTable::default();
    for h in headers {
        let value = match &h.value {
            HeaderValue::Text(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
            HeaderValue::Integer(i) => AMQPValue::LongLongInt(*i),
            HeaderValue::Float(f) => AMQPValue::Double(*f),
            HeaderValue::Boolean(b) => AMQPValue::Boolean(*b),
            HeaderValue::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.clone())),
            HeaderValue::Timestamp(t) => AMQPValue::Timestamp(*t),
            HeaderValue::Void => AMQPValue::Void,
        };
        table.insert(ShortString::from(h.key.as_str()), value);
    }
    table
}

/// The broker's delivery count, if it gives one.
pub fn delivery_count(p: &BasicProperties) -> Option<u32> {
    let value = p.headers().as_ref()?.inner().get(DELIVERY_COUNT_HEADER)?;
    let count = match value {
        AMQPValue::LongLongInt(i) => *i,
        AMQPValue::LongInt(i) => i64::from(*i),
        AMQPValue::LongUInt(i) => i64::from(*i),
        AMQPValue::ShortInt(i) => i64::from(*i),
        AMQPValue::ShortUInt(i) => i64::from(*i),
        AMQPValue::ShortShortInt(i) => i64::from(*i),
        AMQPValue::ShortShortUInt(i) => i64::from(*i),
        _ => return None,
    };
    u32::try_from(count).ok()
}

/// Declaration arguments from the config as an AMQP field table.
pub fn arguments_to_amqp(args: &crate::config::Arguments) -> FieldTable {
    let mut table = FieldTable::default();
    for (k, v) in args {
        let value = match v {
            ArgValue::Text(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
            ArgValue::Int(i) => match i32::try_from(*i) {
                Ok(small) => AMQPValue::LongInt(small),
                Err(_) => AMQPValue::LongLongInt(*i),
            },
            ArgValue::Float(f) => AMQPValue::Double(*f),
            ArgValue::Bool(b) => AMQPValue::Boolean(*b),
        };
        table.insert(ShortString::from(k.as_str()), value);
    }
    table
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::empty_properties;

    #[test]
    fn properties_round_trip() {
        let mut p = empty_properties();
        p.content_type = Some("application/json".into());
        p.priority = Some(7);
        p.correlation_id = Some("c".into());
        p.reply_to = Some("r".into());
        p.timestamp = Some(1_700_000_000);
        p.kind = Some("t".into());
        p.headers = vec![
            Header {
                key: "a".into(),
                value: HeaderValue::Text("x".into()),
            },
            Header {
                key: "b".into(),
                value: HeaderValue::Integer(-3),
            },
            Header {
                key: "c".into(),
                value: HeaderValue::Boolean(true),
            },
        ];
        let amqp = properties_to_amqp(&p);
        assert_eq!(*amqp.delivery_mode(), Some(PERSISTENT));
        let back = properties_from_amqp(&amqp);
        p.delivery_mode = Some(PERSISTENT);
        assert_eq!(format!("{back:?}"), format!("{p:?}"));
    }

    #[test]
    fn delivery_count_read_from_any_integer() {
        let mut t = FieldTable::default();
        t.insert(DELIVERY_COUNT_HEADER.into(), AMQPValue::LongLongInt(4));
        let p = BasicProperties::default().with_headers(t);
        assert_eq!(delivery_count(&p), Some(4));
        assert_eq!(delivery_count(&BasicProperties::default()), None);
    }
}
