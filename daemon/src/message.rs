//! The plain message types that travel from the broker through plugins: those of the plugin contract.
//!
//! They are the types `bindgen!` generates from the WIT, so a delivery is lent to a plugin
//! without being converted or copied on the host side. Headers use the contract's flat
//! encoding (arrays and tables as indices into `Header::nested`); [`resolve`] turns one back
//! into a tree, checking it, for whoever needs the nesting (the broker, `warren plugin run`).

pub use crate::contract::{
    Container, Decimal, Header, HeaderValue, Level, Message, Outgoing, Properties, Republish,
    Verdict,
};

/// How deeply arrays and tables may nest in one header; deeper is refused. Real headers nest
/// three levels (`x-death`: an array of tables holding arrays); the limit keeps a plugin from
/// making the host recurse without bound.
pub const MAX_HEADER_DEPTH: usize = 64;

/// Properties with every field absent.
pub fn empty_properties() -> Properties {
    Properties {
        content_type: None,
        content_encoding: None,
        headers: Vec::new(),
        priority: None,
        correlation_id: None,
        reply_to: None,
        expiration: None,
        message_id: None,
        timestamp: None,
        kind: None,
        user_id: None,
        app_id: None,
        delivery_mode: None,
    }
}

/// A header whose value is UTF-8 text (an AMQP long string).
pub fn text_header(key: &str, value: &str) -> Header {
    scalar_header(key, HeaderValue::Text(value.to_owned()))
}

/// A header whose value is a signed 64-bit integer.
pub fn int_header(key: &str, value: i64) -> Header {
    scalar_header(key, HeaderValue::Int64(value))
}

/// A header holding one value that is not an array or a table.
pub fn scalar_header(key: &str, value: HeaderValue) -> Header {
    Header {
        key: key.to_owned(),
        value,
        nested: Vec::new(),
    }
}

/// The value of the first header named `key`, if it is an integer of any width.
pub fn header_int(headers: &[Header], key: &str) -> Option<i64> {
    headers
        .iter()
        .find(|h| h.key == key)
        .and_then(|h| integer(&h.value))
}

/// A header value as an `i64`, if it is an integer of any width (a timestamp is not).
pub fn integer(value: &HeaderValue) -> Option<i64> {
    Some(match *value {
        HeaderValue::Int8(i) => i64::from(i),
        HeaderValue::Uint8(i) => i64::from(i),
        HeaderValue::Int16(i) => i64::from(i),
        HeaderValue::Uint16(i) => i64::from(i),
        HeaderValue::Int32(i) => i64::from(i),
        HeaderValue::Uint32(i) => i64::from(i),
        HeaderValue::Int64(i) => i,
        _ => return None,
    })
}

/// A header value with its arrays and tables resolved: the tree the flat encoding stands for.
#[derive(Debug, Clone, PartialEq)]
pub enum Field<'a> {
    /// Any value but an array or a table.
    Scalar(&'a HeaderValue),
    /// An array's values.
    Array(Vec<Field<'a>>),
    /// A table's entries, in the order given.
    Table(Vec<(&'a str, Field<'a>)>),
}

/// Resolves a header's value into a tree, checking the contract's rules for the flat encoding:
/// every index in range and of the right kind, every container used at most once (so no
/// cycle and no shared branch), at most [`MAX_HEADER_DEPTH`] levels. The error names the
/// header key. Work is linear in the size of the header: each container is visited once.
pub fn resolve(header: &Header) -> Result<Field<'_>, String> {
    let mut resolver = Resolver {
        nested: &header.nested,
        used: vec![false; header.nested.len()],
    };
    resolver
        .field(&header.value, 0)
        .map_err(|e| format!("header {}: {e}", quote_key(&header.key)))
}

/// A key for an error message: quoted, and cut short if it is long.
pub fn quote_key(key: &str) -> String {
    const SHOWN: usize = 64;
    match key.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{:?}… ({} bytes)", &key[..cut], key.len()),
        None => format!("{key:?}"),
    }
}

struct Resolver<'a> {
    nested: &'a [Container],
    used: Vec<bool>,
}

impl<'a> Resolver<'a> {
    fn field(&mut self, value: &'a HeaderValue, depth: usize) -> Result<Field<'a>, String> {
        match value {
            HeaderValue::Array(i) => match self.take(*i, depth)? {
                Container::Array(values) => values
                    .iter()
                    .map(|v| self.field(v, depth + 1))
                    .collect::<Result<_, _>>()
                    .map(Field::Array),
                Container::Table(_) => Err(format!("array({i}) points at a table entry")),
            },
            HeaderValue::Table(i) => match self.take(*i, depth)? {
                Container::Table(entries) => entries
                    .iter()
                    .map(|(k, v)| Ok((k.as_str(), self.field(v, depth + 1)?)))
                    .collect::<Result<_, String>>()
                    .map(Field::Table),
                Container::Array(_) => Err(format!("table({i}) points at an array entry")),
            },
            scalar => Ok(Field::Scalar(scalar)),
        }
    }

    /// The container at `index`, marked as used.
    fn take(&mut self, index: u32, depth: usize) -> Result<&'a Container, String> {
        if depth >= MAX_HEADER_DEPTH {
            return Err(format!(
                "arrays and tables nest more than {MAX_HEADER_DEPTH} levels deep"
            ));
        }
        let nested = self.nested;
        let at = usize::try_from(index).unwrap_or(usize::MAX);
        let (Some(container), Some(used)) = (nested.get(at), self.used.get_mut(at)) else {
            return Err(format!(
                "index {index} is out of range: the header has {} nested entries",
                nested.len()
            ));
        };
        if std::mem::replace(used, true) {
            return Err(format!(
                "nested entry {index} is used twice (each array or table entry may be used once)"
            ));
        }
        Ok(container)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(value: HeaderValue, nested: Vec<Container>) -> Header {
        Header {
            key: "k".into(),
            value,
            nested,
        }
    }

    #[test]
    fn helpers_build_and_read_integers_of_any_width() {
        let headers = vec![
            text_header("t", "x"),
            int_header("i", -5),
            scalar_header("u8", HeaderValue::Uint8(200)),
            scalar_header("u32", HeaderValue::Uint32(u32::MAX)),
            scalar_header("ts", HeaderValue::Timestamp(9)),
            int_header("i", 7),
        ];
        assert_eq!(headers[0].value, HeaderValue::Text("x".into()));
        assert_eq!(header_int(&headers, "i"), Some(-5), "the first one counts");
        assert_eq!(header_int(&headers, "u8"), Some(200));
        assert_eq!(header_int(&headers, "u32"), Some(i64::from(u32::MAX)));
        assert_eq!(
            header_int(&headers, "ts"),
            None,
            "a timestamp is no integer"
        );
        assert_eq!(header_int(&headers, "t"), None);
        assert_eq!(header_int(&headers, "none"), None);
    }

    #[test]
    fn resolves_nested_containers() {
        let h = header(
            HeaderValue::Array(0),
            vec![
                Container::Array(vec![HeaderValue::Table(1), HeaderValue::Void]),
                Container::Table(vec![("a".into(), HeaderValue::Boolean(true))]),
            ],
        );
        assert_eq!(
            resolve(&h),
            Ok(Field::Array(vec![
                Field::Table(vec![("a", Field::Scalar(&HeaderValue::Boolean(true)))]),
                Field::Scalar(&HeaderValue::Void),
            ]))
        );
    }

    #[test]
    fn bad_flat_encodings_are_errors_naming_the_key() {
        let cases = [
            (
                HeaderValue::Array(1),
                vec![Container::Array(vec![])],
                "out of range",
            ),
            (
                HeaderValue::Table(0),
                vec![Container::Array(vec![])],
                "array entry",
            ),
            (
                HeaderValue::Array(0),
                vec![Container::Array(vec![HeaderValue::Array(0)])],
                "used twice",
            ),
            (
                HeaderValue::Array(0),
                vec![
                    Container::Array(vec![HeaderValue::Table(1), HeaderValue::Table(1)]),
                    Container::Table(vec![]),
                ],
                "used twice",
            ),
        ];
        for (value, nested, why) in cases {
            let error = resolve(&header(value, nested)).expect_err("refused");
            assert!(
                error.starts_with("header \"k\": ") && error.contains(why),
                "{error}"
            );
        }
        // A chain deeper than the limit, which would otherwise recurse far.
        let deep = 10_000;
        let nested = (1..=deep)
            .map(|i| Container::Array(vec![HeaderValue::Array(i)]))
            .collect();
        let error = resolve(&header(HeaderValue::Array(0), nested)).expect_err("too deep");
        assert!(error.contains("64 levels"), "{error}");
    }

    #[test]
    fn long_keys_are_cut_in_errors() {
        let key = "x".repeat(1000);
        let quoted = quote_key(&key);
        assert!(
            quoted.len() < 100 && quoted.contains("1000 bytes"),
            "{quoted}"
        );
        assert_eq!(quote_key("CC"), "\"CC\"");
    }
}
