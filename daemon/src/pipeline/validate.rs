//! Checks every message a plugin asks to publish before lapin sees it, so that a bad one is a
//! clear error for its own message — never a panic in lapin's encoder, nor a channel the
//! broker closes under every other publish.

pub use crate::broker::SHORT_STRING_MAX;
use crate::message::{Outgoing, Properties};
use crate::plugin::spec::PublishRules;

/// The longest `expiration` RabbitMQ takes, in milliseconds.
const EXPIRATION_MAX: u64 = u32::MAX as u64;

/// Why a plugin's publish was refused before it reached the broker.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPublish {
    /// A short-string field is too long.
    #[error("{field} is {len} bytes long; AMQP allows at most {SHORT_STRING_MAX}")]
    TooLong {
        /// The field, e.g. `routing_key` or `headers["x-..."] key`.
        field: String,
        /// Its length in bytes.
        len: usize,
    },
    /// `expiration` is not what RabbitMQ takes.
    #[error(
        "expiration {0:?} is not a whole number of milliseconds from 0 to 4294967295 (write e.g. \"60000\")"
    )]
    Expiration(String),
    /// The publishes of one message carry too many bytes.
    #[error(
        "the publishes for this message carry {total} bytes, over the plugin's max_publish_bytes ({limit})"
    )]
    TooLarge {
        /// Bytes of all bodies together.
        total: usize,
        /// `max_publish_bytes`.
        limit: usize,
    },
    /// The exchange is not in the plugin's `allowed_exchanges`.
    #[error("exchange {0:?} is not in the plugin's allowed_exchanges")]
    ExchangeNotAllowed(String),
    /// The queue (default exchange) is not in the plugin's `allowed_queues`.
    #[error("queue {0:?} (through the default exchange) is not in the plugin's allowed_queues")]
    QueueNotAllowed(String),
}

/// Checks the messages a plugin published for one message (its extra publishes and its
/// republish) against AMQP's limits and the plugin's `rules`, and makes them safe to send:
/// a `user_id` other than `user` (warren's own broker user, the only one RabbitMQ accepts)
/// is removed.
pub fn check_plugin_publishes(
    publishes: &mut [Outgoing],
    rules: &PublishRules,
    user: &str,
) -> Result<(), InvalidPublish> {
    let mut total = 0usize;
    for message in publishes.iter_mut() {
        total = total.saturating_add(message.body.len());
        if total > rules.max_bytes {
            return Err(InvalidPublish::TooLarge {
                total,
                limit: rules.max_bytes,
            });
        }
        short("exchange", &message.exchange)?;
        short("routing_key", &message.routing_key)?;
        allowed(message, rules)?;
        check_properties(&mut message.properties, user)?;
    }
    Ok(())
}

fn allowed(message: &Outgoing, rules: &PublishRules) -> Result<(), InvalidPublish> {
    if message.exchange.is_empty() {
        if let Some(queues) = &rules.queues
            && !queues.contains(&message.routing_key)
        {
            return Err(InvalidPublish::QueueNotAllowed(message.routing_key.clone()));
        }
    } else if let Some(exchanges) = &rules.exchanges
        && !exchanges.contains(&message.exchange)
    {
        return Err(InvalidPublish::ExchangeNotAllowed(message.exchange.clone()));
    }
    Ok(())
}

/// Checks the properties of any message warren publishes, and removes a `user_id` other
/// than `user`.
pub fn check_properties(properties: &mut Properties, user: &str) -> Result<(), InvalidPublish> {
    if properties.user_id.as_deref().is_some_and(|id| id != user) {
        properties.user_id = None;
    }
    let fields = [
        ("content_type", &properties.content_type),
        ("content_encoding", &properties.content_encoding),
        ("correlation_id", &properties.correlation_id),
        ("reply_to", &properties.reply_to),
        ("expiration", &properties.expiration),
        ("message_id", &properties.message_id),
        ("type", &properties.kind),
        ("user_id", &properties.user_id),
        ("app_id", &properties.app_id),
    ];
    for (field, value) in fields {
        if let Some(value) = value {
            short(field, value)?;
        }
    }
    if let Some(expiration) = &properties.expiration {
        let valid = !expiration.is_empty()
            && expiration.bytes().all(|b| b.is_ascii_digit())
            && expiration
                .parse::<u64>()
                .is_ok_and(|ms| ms <= EXPIRATION_MAX);
        if !valid {
            return Err(InvalidPublish::Expiration(cut(expiration)));
        }
    }
    for header in &properties.headers {
        if header.key.len() > SHORT_STRING_MAX {
            return Err(InvalidPublish::TooLong {
                field: format!("the key of header {:?}", cut(&header.key)),
                len: header.key.len(),
            });
        }
    }
    Ok(())
}

fn short(field: &str, value: &str) -> Result<(), InvalidPublish> {
    if value.len() > SHORT_STRING_MAX {
        return Err(InvalidPublish::TooLong {
            field: field.to_owned(),
            len: value.len(),
        });
    }
    Ok(())
}

/// The first 64 bytes of `text` (on a character boundary), for error messages.
fn cut(text: &str) -> String {
    let mut end = text.len().min(64);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    if end < text.len() {
        format!("{}...", &text[..end])
    } else {
        text.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use proptest::prelude::*;

    use super::*;
    use crate::message::{empty_properties, text_header};

    fn outgoing(exchange: &str, routing_key: &str) -> Outgoing {
        Outgoing {
            exchange: exchange.into(),
            routing_key: routing_key.into(),
            body: b"x".to_vec(),
            properties: empty_properties(),
        }
    }

    fn open() -> PublishRules {
        PublishRules::default()
    }

    #[test]
    fn long_names_are_refused_naming_the_field() {
        let long = "r".repeat(256);
        let err = check_plugin_publishes(&mut [outgoing("", &long)], &open(), "guest")
            .expect_err("256 bytes");
        assert_eq!(
            err.to_string(),
            "routing_key is 256 bytes long; AMQP allows at most 255"
        );
        assert!(
            check_plugin_publishes(&mut [outgoing("", &"r".repeat(255))], &open(), "guest").is_ok()
        );
        let mut m = outgoing("ex", "rk");
        m.properties.message_id = Some("m".repeat(300));
        let err = check_plugin_publishes(&mut [m], &open(), "guest").expect_err("long id");
        assert!(
            err.to_string().starts_with("message_id is 300 bytes"),
            "{err}"
        );
        let mut m = outgoing("ex", "rk");
        m.properties.headers = vec![text_header(&"k".repeat(256), "v")];
        let err = check_plugin_publishes(&mut [m], &open(), "guest").expect_err("long key");
        assert!(err.to_string().contains("the key of header"), "{err}");
    }

    #[test]
    fn foreign_user_id_is_removed_and_own_kept() {
        let mut m = [outgoing("", "q")];
        m[0].properties.user_id = Some("mallory".into());
        check_plugin_publishes(&mut m, &open(), "guest").expect("valid once stripped");
        assert_eq!(m[0].properties.user_id, None);
        m[0].properties.user_id = Some("guest".into());
        check_plugin_publishes(&mut m, &open(), "guest").expect("own user");
        assert_eq!(m[0].properties.user_id.as_deref(), Some("guest"));
    }

    #[test]
    fn expiration_must_be_milliseconds() {
        for bad in ["", "-1", "1.5", "soon", "+5", "4294967296", " 5"] {
            let mut m = [outgoing("", "q")];
            m[0].properties.expiration = Some(bad.into());
            assert!(
                matches!(
                    check_plugin_publishes(&mut m, &open(), "guest"),
                    Err(InvalidPublish::Expiration(_))
                ),
                "{bad:?} should be refused"
            );
        }
        for good in ["0", "60000", "4294967295"] {
            let mut m = [outgoing("", "q")];
            m[0].properties.expiration = Some(good.into());
            check_plugin_publishes(&mut m, &open(), "guest").expect(good);
        }
    }

    #[test]
    fn total_bytes_are_capped() {
        let rules = PublishRules {
            max_bytes: 10,
            ..open()
        };
        let mut big = outgoing("", "q");
        big.body = vec![0; 6];
        let mut two = [big.clone(), big];
        assert_eq!(
            check_plugin_publishes(&mut two, &rules, "guest"),
            Err(InvalidPublish::TooLarge {
                total: 12,
                limit: 10
            })
        );
        assert!(check_plugin_publishes(&mut two[..1], &rules, "guest").is_ok());
    }

    #[test]
    fn allowlists_restrict_exchanges_and_queues() {
        let rules = PublishRules {
            exchanges: Some(BTreeSet::from(["results".to_owned()])),
            queues: Some(BTreeSet::from(["replies".to_owned()])),
            ..open()
        };
        assert!(check_plugin_publishes(&mut [outgoing("results", "any")], &rules, "g").is_ok());
        assert!(check_plugin_publishes(&mut [outgoing("", "replies")], &rules, "g").is_ok());
        assert_eq!(
            check_plugin_publishes(&mut [outgoing("other", "x")], &rules, "g"),
            Err(InvalidPublish::ExchangeNotAllowed("other".into()))
        );
        assert_eq!(
            check_plugin_publishes(&mut [outgoing("", "elsewhere")], &rules, "g"),
            Err(InvalidPublish::QueueNotAllowed("elsewhere".into()))
        );
    }

    fn any_text() -> impl Strategy<Value = String> {
        prop_oneof![
            ".{0,10}",
            ".{250,260}",
            "[0-9]{0,12}",
            Just("\u{e9}".repeat(128)),
        ]
    }

    fn any_outgoing() -> impl Strategy<Value = Outgoing> {
        (
            any_text(),
            any_text(),
            proptest::collection::vec(any::<u8>(), 0..64),
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            proptest::option::of(any_text()),
            proptest::collection::vec((any_text(), any_text()), 0..3),
        )
            .prop_map(
                |(exchange, routing_key, body, expiration, user, id, headers)| {
                    let mut properties = empty_properties();
                    properties.expiration = expiration;
                    properties.user_id = user;
                    properties.message_id = id;
                    properties.headers = headers.iter().map(|(k, v)| text_header(k, v)).collect();
                    Outgoing {
                        exchange,
                        routing_key,
                        body,
                        properties,
                    }
                },
            )
    }

    proptest! {
        /// No input panics; whatever passes is within AMQP's limits and the rules.
        #[test]
        fn validation_never_panics_and_what_passes_fits(
            mut messages in proptest::collection::vec(any_outgoing(), 0..4),
            max_bytes in 1usize..200,
        ) {
            let rules = PublishRules { max_bytes, ..open() };
            if check_plugin_publishes(&mut messages, &rules, "guest").is_ok() {
                let total: usize = messages.iter().map(|m| m.body.len()).sum();
                prop_assert!(total <= max_bytes);
                for m in &messages {
                    prop_assert!(m.exchange.len() <= SHORT_STRING_MAX);
                    prop_assert!(m.routing_key.len() <= SHORT_STRING_MAX);
                    prop_assert!(m.properties.user_id.as_deref().is_none_or(|u| u == "guest"));
                    prop_assert!(m.properties.headers.iter().all(|h| h.key.len() <= SHORT_STRING_MAX));
                    if let Some(e) = &m.properties.expiration {
                        prop_assert!(e.parse::<u32>().is_ok());
                    }
                }
            }
        }
    }
}
