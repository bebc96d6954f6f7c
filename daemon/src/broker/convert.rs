//! Converts between lapin's AMQP types and the plugin contract's plain types.

use lapin::BasicProperties;
use lapin::types::{AMQPValue, ByteArray, DecimalValue, FieldTable, LongString, ShortString};

use crate::config::ArgValue;
use crate::decision::PERSISTENT;
use crate::message::{
    Container, Decimal, Field, Header, HeaderValue, Properties, quote_key, resolve,
};

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
///
/// Fails, saying which property or header, if a header breaks the flat encoding's rules (see
/// [`headers_to_amqp`]) or a short-string property is longer than 255 bytes.
pub fn properties_to_amqp(p: &Properties) -> Result<BasicProperties, String> {
    let mut out =
        BasicProperties::default().with_delivery_mode(p.delivery_mode.unwrap_or(PERSISTENT));
    let short = |name: &str, s: &String| {
        ShortString::try_new(s.as_str()).map_err(|e| format!("property {name}: {e}"))
    };
    if let Some(v) = &p.content_type {
        out = out.with_content_type(short("content-type", v)?);
    }
    if let Some(v) = &p.content_encoding {
        out = out.with_content_encoding(short("content-encoding", v)?);
    }
    if !p.headers.is_empty() {
        out = out.with_headers(headers_to_amqp(&p.headers)?);
    }
    if let Some(v) = p.priority {
        out = out.with_priority(v);
    }
    if let Some(v) = &p.correlation_id {
        out = out.with_correlation_id(short("correlation-id", v)?);
    }
    if let Some(v) = &p.reply_to {
        out = out.with_reply_to(short("reply-to", v)?);
    }
    if let Some(v) = &p.expiration {
        out = out.with_expiration(short("expiration", v)?);
    }
    if let Some(v) = &p.message_id {
        out = out.with_message_id(short("message-id", v)?);
    }
    if let Some(v) = p.timestamp {
        out = out.with_timestamp(v);
    }
    if let Some(v) = &p.kind {
        out = out.with_type(short("type", v)?);
    }
    if let Some(v) = &p.user_id {
        out = out.with_user_id(short("user-id", v)?);
    }
    if let Some(v) = &p.app_id {
        out = out.with_app_id(short("app-id", v)?);
    }
    Ok(out)
}

/// An AMQP field table as a list of headers, in the table's (key) order, every value with its
/// exact type and its arrays and tables flattened into `nested`, parent first.
pub fn headers_from_amqp(table: &FieldTable) -> Vec<Header> {
    table
        .inner()
        .iter()
        .map(|(k, v)| {
            let mut nested = Vec::new();
            let value = value_from_amqp(v, &mut nested);
            Header {
                key: k.as_str().to_owned(),
                value,
                nested,
            }
        })
        .collect()
}

/// One value, its containers appended to `nested` (each before the containers inside it).
fn value_from_amqp(v: &AMQPValue, nested: &mut Vec<Container>) -> HeaderValue {
    match v {
        AMQPValue::Boolean(b) => HeaderValue::Boolean(*b),
        AMQPValue::ShortShortInt(i) => HeaderValue::Int8(*i),
        AMQPValue::ShortShortUInt(i) => HeaderValue::Uint8(*i),
        AMQPValue::ShortInt(i) => HeaderValue::Int16(*i),
        AMQPValue::ShortUInt(i) => HeaderValue::Uint16(*i),
        AMQPValue::LongInt(i) => HeaderValue::Int32(*i),
        AMQPValue::LongUInt(i) => HeaderValue::Uint32(*i),
        AMQPValue::LongLongInt(i) => HeaderValue::Int64(*i),
        AMQPValue::Float(f) => HeaderValue::Float32(*f),
        AMQPValue::Double(f) => HeaderValue::Float64(*f),
        AMQPValue::DecimalValue(d) => HeaderValue::Decimal(Decimal {
            scale: d.scale,
            value: d.value,
        }),
        // Never read off the wire (RabbitMQ has no short-string field value): only a value
        // built in memory can be one. It is text, published back as a long string.
        AMQPValue::ShortString(s) => HeaderValue::Text(s.as_str().to_owned()),
        AMQPValue::LongString(s) => match std::str::from_utf8(s.as_bytes()) {
            Ok(t) => HeaderValue::Text(t.to_owned()),
            Err(_) => HeaderValue::TextBytes(s.as_bytes().to_vec()),
        },
        AMQPValue::ByteArray(b) => HeaderValue::Bytes(b.as_slice().to_vec()),
        AMQPValue::Timestamp(t) => HeaderValue::Timestamp(*t),
        AMQPValue::Void => HeaderValue::Void,
        AMQPValue::FieldArray(a) => {
            let index = reserve(nested);
            let values = a
                .as_slice()
                .iter()
                .map(|v| value_from_amqp(v, nested))
                .collect();
            fill(nested, index, Container::Array(values));
            HeaderValue::Array(index)
        }
        AMQPValue::FieldTable(t) => {
            let index = reserve(nested);
            let entries = t
                .inner()
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), value_from_amqp(v, nested)))
                .collect();
            fill(nested, index, Container::Table(entries));
            HeaderValue::Table(index)
        }
    }
}

/// Appends a placeholder for a container whose contents come next; returns its index.
fn reserve(nested: &mut Vec<Container>) -> u32 {
    // A header of 4 billion containers cannot reach here: frames are far smaller.
    let index = u32::try_from(nested.len()).unwrap_or(u32::MAX);
    nested.push(Container::Array(Vec::new()));
    index
}

fn fill(nested: &mut [Container], index: u32, container: Container) {
    if let Some(slot) = usize::try_from(index).ok().and_then(|i| nested.get_mut(i)) {
        *slot = container;
    }
}

/// A list of headers as an AMQP field table; a key given twice: the last one counts.
///
/// Fails with an error naming the header if its flat encoding breaks the contract's rules
/// (an index out of range or of the wrong kind, a container used twice, nesting deeper than
/// [`MAX_HEADER_DEPTH`](crate::message::MAX_HEADER_DEPTH)) or a key is longer than 255 bytes.
/// Never panics, and its work is linear in the size of the headers.
pub fn headers_to_amqp(headers: &[Header]) -> Result<FieldTable, String> {
    let mut table = FieldTable::default();
    for h in headers {
        let named = |e: String| format!("header {}: {e}", quote_key(&h.key));
        let key = short_key(&h.key).map_err(named)?;
        let value = field_to_amqp(&resolve(h)?).map_err(named)?;
        table.insert(key, value);
    }
    Ok(table)
}

fn short_key(key: &str) -> Result<ShortString, String> {
    ShortString::try_new(key).map_err(|e| format!("key: {e}"))
}

fn field_to_amqp(field: &Field<'_>) -> Result<AMQPValue, String> {
    Ok(match field {
        Field::Scalar(v) => scalar_to_amqp(v),
        Field::Array(values) => AMQPValue::FieldArray(
            values
                .iter()
                .map(field_to_amqp)
                .collect::<Result<Vec<_>, _>>()?
                .into(),
        ),
        Field::Table(entries) => {
            let mut table = FieldTable::default();
            for (k, v) in entries {
                let key = short_key(k).map_err(|e| format!("table entry {}: {e}", quote_key(k)))?;
                table.insert(key, field_to_amqp(v)?);
            }
            AMQPValue::FieldTable(table)
        }
    })
}

fn scalar_to_amqp(v: &HeaderValue) -> AMQPValue {
    match v {
        HeaderValue::Text(s) => AMQPValue::LongString(LongString::from(s.as_bytes())),
        HeaderValue::TextBytes(b) => AMQPValue::LongString(LongString::from(b.as_slice())),
        HeaderValue::Bytes(b) => AMQPValue::ByteArray(ByteArray::from(b.as_slice())),
        HeaderValue::Boolean(b) => AMQPValue::Boolean(*b),
        HeaderValue::Int8(i) => AMQPValue::ShortShortInt(*i),
        HeaderValue::Uint8(i) => AMQPValue::ShortShortUInt(*i),
        HeaderValue::Int16(i) => AMQPValue::ShortInt(*i),
        HeaderValue::Uint16(i) => AMQPValue::ShortUInt(*i),
        HeaderValue::Int32(i) => AMQPValue::LongInt(*i),
        HeaderValue::Uint32(i) => AMQPValue::LongUInt(*i),
        HeaderValue::Int64(i) => AMQPValue::LongLongInt(*i),
        HeaderValue::Float32(f) => AMQPValue::Float(*f),
        HeaderValue::Float64(f) => AMQPValue::Double(*f),
        HeaderValue::Decimal(d) => AMQPValue::DecimalValue(DecimalValue {
            scale: d.scale,
            value: d.value,
        }),
        HeaderValue::Timestamp(t) => AMQPValue::Timestamp(*t),
        HeaderValue::Void => AMQPValue::Void,
        // `resolve` turns every array and table into `Field::Array` / `Field::Table`.
        HeaderValue::Array(_) | HeaderValue::Table(_) => AMQPValue::Void,
    }
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
#[path = "convert_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "convert_fuzz.rs"]
mod fuzz;
