//! Header values as a tree ([`Value`]), and the conversions to and from the contract's flat form.
//!
//! WIT types cannot be recursive, so the contract stores a header's nested arrays and tables
//! flat: [`HeaderValue::Array`] and [`HeaderValue::Table`] hold the index of a [`Container`]
//! in [`Header::nested`]. [`Header::new`] flattens a [`Value`] and [`Header::value`] rebuilds
//! it, so a plugin need not see the flat form at all.

use crate::{Container, Decimal, Header, HeaderValue};

/// How deeply arrays and tables may nest in one header: warren refuses to publish deeper ones.
pub const MAX_DEPTH: usize = 64;

/// One AMQP header value, with the arrays and tables inside it: every AMQP field type
/// RabbitMQ has, each kept as it is, so a header read and written back is unchanged.
///
/// ```
/// # use warren_plugin::{Header, Value};
/// let cc = Header::new("CC", vec![Value::from("audit"), Value::from("billing")]);
/// assert_eq!(
///     cc.value(),
///     Ok(Value::Array(vec![Value::Text("audit".into()), Value::Text("billing".into())]))
/// );
/// assert_eq!(Header::new("n", 7u16).value().ok().and_then(|v| v.as_int()), Some(7));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A long string (`S`) that is valid UTF-8.
    Text(String),
    /// A long string (`S`) whose bytes are not valid UTF-8 (written back as a long string).
    TextBytes(Vec<u8>),
    /// A byte array (`x`).
    Bytes(Vec<u8>),
    /// A boolean (`t`).
    Boolean(bool),
    /// A signed 8-bit integer (`b`).
    Int8(i8),
    /// An unsigned 8-bit integer (`B`).
    Uint8(u8),
    /// A signed 16-bit integer (`s`).
    Int16(i16),
    /// An unsigned 16-bit integer (`u`).
    Uint16(u16),
    /// A signed 32-bit integer (`I`).
    Int32(i32),
    /// An unsigned 32-bit integer (`i`).
    Uint32(u32),
    /// A signed 64-bit integer (`l`).
    Int64(i64),
    /// A 32-bit float (`f`).
    Float32(f32),
    /// A 64-bit float (`d`).
    Float64(f64),
    /// A decimal (`D`): `value` / 10^`scale`.
    Decimal(Decimal),
    /// A timestamp (`T`), in seconds since the Unix epoch.
    Timestamp(u64),
    /// No value (`V`).
    Void,
    /// An array (`A`).
    Array(Vec<Value>),
    /// A table (`F`): its entries in order (warren gives them sorted by key).
    Table(Vec<(String, Value)>),
}

impl Value {
    /// The value as an `i64`, if it is an integer of any width (a timestamp is not).
    pub fn as_int(&self) -> Option<i64> {
        Some(match *self {
            Value::Int8(i) => i64::from(i),
            Value::Uint8(i) => i64::from(i),
            Value::Int16(i) => i64::from(i),
            Value::Uint16(i) => i64::from(i),
            Value::Int32(i) => i64::from(i),
            Value::Uint32(i) => i64::from(i),
            Value::Int64(i) => i,
            _ => return None,
        })
    }

    /// The value as an `f64`, if it is a float of either width.
    pub fn as_float(&self) -> Option<f64> {
        match *self {
            Value::Float32(f) => Some(f64::from(f)),
            Value::Float64(f) => Some(f),
            _ => None,
        }
    }

    /// The text, if the value is UTF-8 text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Text(text) => Some(text),
            _ => None,
        }
    }

    /// The boolean, if the value is one.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            Value::Boolean(b) => Some(b),
            _ => None,
        }
    }

    /// The values, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(values) => Some(values),
            _ => None,
        }
    }

    /// The entries, if this is a table.
    pub fn as_table(&self) -> Option<&[(String, Value)]> {
        match self {
            Value::Table(entries) => Some(entries),
            _ => None,
        }
    }

    /// The value of `key`, if this is a table that has it (the last such entry, as on the
    /// broker).
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.as_table()?
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v)
    }
}

macro_rules! value_from {
    ($($from:ty => $case:ident),* $(,)?) => {
        $(
            impl From<$from> for Value {
                fn from(value: $from) -> Value {
                    Value::$case(value)
                }
            }
        )*
    };
}

value_from! {
    String => Text,
    bool => Boolean,
    i8 => Int8,
    u8 => Uint8,
    i16 => Int16,
    u16 => Uint16,
    i32 => Int32,
    u32 => Uint32,
    i64 => Int64,
    f32 => Float32,
    f64 => Float64,
    Decimal => Decimal,
    Vec<Value> => Array,
    Vec<(String, Value)> => Table,
}

impl From<&str> for Value {
    fn from(text: &str) -> Value {
        Value::Text(text.to_owned())
    }
}

impl Header {
    /// A header named `key` with `value`, its arrays and tables flattened into `nested`
    /// (parent first), as the contract wants.
    ///
    /// ```
    /// # use warren_plugin::{Header, HeaderValue, Value};
    /// let h = Header::new("x-retry", 3i64);
    /// assert_eq!(h.value, HeaderValue::Int64(3));
    /// let tags = Header::new("tags", vec![Value::from("a")]);
    /// assert_eq!(tags.value, HeaderValue::Array(0));
    /// ```
    pub fn new(key: impl Into<String>, value: impl Into<Value>) -> Header {
        let mut nested = Vec::new();
        let value = flatten(value.into(), &mut nested);
        Header {
            key: key.into(),
            value,
            nested,
        }
    }

    /// A header whose value is UTF-8 text (an AMQP long string).
    pub fn text(key: impl Into<String>, value: impl Into<String>) -> Header {
        Header::new(key, Value::Text(value.into()))
    }

    /// A header whose value is a signed 64-bit integer.
    pub fn int(key: impl Into<String>, value: i64) -> Header {
        Header::new(key, Value::Int64(value))
    }

    /// The header's value as a tree.
    ///
    /// Headers warren gives are always well formed. A header built by hand may not be: an
    /// index out of range or pointing at the wrong kind of container, a container used twice,
    /// or nesting deeper than [`MAX_DEPTH`] is an error naming the key (warren would refuse to
    /// publish it the same way).
    pub fn value(&self) -> Result<Value, String> {
        let mut used = vec![false; self.nested.len()];
        unflatten(&self.value, &self.nested, &mut used, 0)
            .map_err(|e| format!("header {:?}: {e}", self.key))
    }
}

/// `value` in the flat form, its containers appended to `nested` before those inside them.
fn flatten(value: Value, nested: &mut Vec<Container>) -> HeaderValue {
    match value {
        Value::Text(s) => HeaderValue::Text(s),
        Value::TextBytes(b) => HeaderValue::TextBytes(b),
        Value::Bytes(b) => HeaderValue::Bytes(b),
        Value::Boolean(b) => HeaderValue::Boolean(b),
        Value::Int8(i) => HeaderValue::Int8(i),
        Value::Uint8(i) => HeaderValue::Uint8(i),
        Value::Int16(i) => HeaderValue::Int16(i),
        Value::Uint16(i) => HeaderValue::Uint16(i),
        Value::Int32(i) => HeaderValue::Int32(i),
        Value::Uint32(i) => HeaderValue::Uint32(i),
        Value::Int64(i) => HeaderValue::Int64(i),
        Value::Float32(f) => HeaderValue::Float32(f),
        Value::Float64(f) => HeaderValue::Float64(f),
        Value::Decimal(d) => HeaderValue::Decimal(d),
        Value::Timestamp(t) => HeaderValue::Timestamp(t),
        Value::Void => HeaderValue::Void,
        Value::Array(values) => {
            let index = reserve(nested);
            let values = values.into_iter().map(|v| flatten(v, nested)).collect();
            fill(nested, index, Container::Array(values));
            HeaderValue::Array(index)
        }
        Value::Table(entries) => {
            let index = reserve(nested);
            let entries = entries
                .into_iter()
                .map(|(k, v)| (k, flatten(v, nested)))
                .collect();
            fill(nested, index, Container::Table(entries));
            HeaderValue::Table(index)
        }
    }
}

fn reserve(nested: &mut Vec<Container>) -> u32 {
    let index = u32::try_from(nested.len()).unwrap_or(u32::MAX);
    nested.push(Container::Array(Vec::new()));
    index
}

fn fill(nested: &mut [Container], index: u32, container: Container) {
    if let Some(slot) = usize::try_from(index).ok().and_then(|i| nested.get_mut(i)) {
        *slot = container;
    }
}

/// The container at `index`, marked as used; an error if it cannot be used here.
fn take<'a>(
    nested: &'a [Container],
    used: &mut [bool],
    index: u32,
    depth: usize,
) -> Result<&'a Container, String> {
    if depth >= MAX_DEPTH {
        return Err(format!(
            "arrays and tables nest more than {MAX_DEPTH} levels deep"
        ));
    }
    let at = usize::try_from(index).unwrap_or(usize::MAX);
    let (Some(container), Some(seen)) = (nested.get(at), used.get_mut(at)) else {
        return Err(format!(
            "index {index} is out of range: the header has {} nested entries",
            nested.len()
        ));
    };
    if std::mem::replace(seen, true) {
        return Err(format!("nested entry {index} is used twice"));
    }
    Ok(container)
}

/// Rebuilds the tree, checking the contract's rules (see [`Header::value`]).
fn unflatten(
    value: &HeaderValue,
    nested: &[Container],
    used: &mut [bool],
    depth: usize,
) -> Result<Value, String> {
    Ok(match value {
        HeaderValue::Array(i) => match take(nested, used, *i, depth)? {
            Container::Array(values) => Value::Array(
                values
                    .iter()
                    .map(|v| unflatten(v, nested, used, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Container::Table(_) => return Err(format!("array({i}) points at a table entry")),
        },
        HeaderValue::Table(i) => match take(nested, used, *i, depth)? {
            Container::Table(entries) => Value::Table(
                entries
                    .iter()
                    .map(|(k, v)| Ok((k.clone(), unflatten(v, nested, used, depth + 1)?)))
                    .collect::<Result<_, String>>()?,
            ),
            Container::Array(_) => return Err(format!("table({i}) points at an array entry")),
        },
        HeaderValue::Text(s) => Value::Text(s.clone()),
        HeaderValue::TextBytes(b) => Value::TextBytes(b.clone()),
        HeaderValue::Bytes(b) => Value::Bytes(b.clone()),
        HeaderValue::Boolean(b) => Value::Boolean(*b),
        HeaderValue::Int8(i) => Value::Int8(*i),
        HeaderValue::Uint8(i) => Value::Uint8(*i),
        HeaderValue::Int16(i) => Value::Int16(*i),
        HeaderValue::Uint16(i) => Value::Uint16(*i),
        HeaderValue::Int32(i) => Value::Int32(*i),
        HeaderValue::Uint32(i) => Value::Uint32(*i),
        HeaderValue::Int64(i) => Value::Int64(*i),
        HeaderValue::Float32(f) => Value::Float32(*f),
        HeaderValue::Float64(f) => Value::Float64(*f),
        HeaderValue::Decimal(d) => Value::Decimal(*d),
        HeaderValue::Timestamp(t) => Value::Timestamp(*t),
        HeaderValue::Void => Value::Void,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every type, nested as `x-death` is.
    fn every_type() -> Value {
        Value::Table(vec![
            ("text".into(), "héllo".into()),
            ("text-bytes".into(), Value::TextBytes(vec![0xff])),
            ("bytes".into(), Value::Bytes(vec![0, 1])),
            ("bool".into(), true.into()),
            ("i8".into(), (-1i8).into()),
            ("u8".into(), 255u8.into()),
            ("i16".into(), (-300i16).into()),
            ("u16".into(), 60_000u16.into()),
            ("i32".into(), (-70_000i32).into()),
            ("u32".into(), 4_000_000_000u32.into()),
            ("i64".into(), i64::MIN.into()),
            ("f32".into(), 1.5f32.into()),
            ("f64".into(), 2.25f64.into()),
            (
                "decimal".into(),
                Decimal {
                    scale: 2,
                    value: 1234,
                }
                .into(),
            ),
            ("timestamp".into(), Value::Timestamp(1_700_000_000)),
            ("void".into(), Value::Void),
            (
                "x-death".into(),
                vec![Value::Table(vec![
                    ("count".into(), 1i64.into()),
                    ("queues".into(), vec![Value::from("q")].into()),
                ])]
                .into(),
            ),
            ("empty".into(), Value::Array(vec![])),
        ])
    }

    #[test]
    fn flatten_then_value_is_the_identity() {
        let header = Header::new("all", every_type());
        assert_eq!(header.value, HeaderValue::Table(0));
        assert_eq!(header.value(), Ok(every_type()));
        let death = Header::new("x-death", every_type().get("x-death").cloned().expect("x"));
        assert_eq!(death.nested.len(), 3);
        assert!(
            matches!(&death.nested[1], Container::Table(entries)
                if entries[1] == ("queues".into(), HeaderValue::Array(2))),
            "parent first: {:?}",
            death.nested
        );
    }

    #[test]
    fn helpers_and_accessors() {
        assert_eq!(Header::text("k", "v").value(), Ok(Value::Text("v".into())));
        assert_eq!(Header::int("k", -2).value, HeaderValue::Int64(-2));
        let all = every_type();
        for key in ["i8", "u8", "i16", "u16", "i32", "u32", "i64"] {
            assert!(all.get(key).and_then(Value::as_int).is_some(), "{key}");
        }
        assert_eq!(all.get("timestamp").and_then(Value::as_int), None);
        assert_eq!(all.get("f32").and_then(Value::as_float), Some(1.5));
        assert_eq!(all.get("text").and_then(Value::as_str), Some("héllo"));
        assert_eq!(all.get("bool").and_then(Value::as_bool), Some(true));
        assert_eq!(all.get("empty").and_then(Value::as_array), Some(&[][..]));
        assert_eq!(all.get("nope"), None);
    }

    #[test]
    fn malformed_headers_are_errors_not_panics() {
        let header = |value, nested| Header {
            key: "k".into(),
            value,
            nested,
        };
        for (h, why) in [
            (header(HeaderValue::Array(3), vec![]), "out of range"),
            (
                header(HeaderValue::Array(0), vec![Container::Table(vec![])]),
                "table entry",
            ),
            (
                header(
                    HeaderValue::Array(0),
                    vec![Container::Array(vec![HeaderValue::Array(0)])],
                ),
                "used twice",
            ),
            (
                header(
                    HeaderValue::Array(0),
                    (1..=1000)
                        .map(|i| Container::Array(vec![HeaderValue::Array(i)]))
                        .collect(),
                ),
                "levels deep",
            ),
        ] {
            let error = h.value().expect_err("malformed");
            assert!(
                error.starts_with("header \"k\": ") && error.contains(why),
                "{error}"
            );
        }
    }
}
