//! Fuzz target `amqp` (see [`crate::fuzz`]): any bytes as the properties of a delivery (the content header's property
//! list, as it comes off the wire: flags, then each property present). What the AMQP parser
//! accepts converts to the contract's properties and back to the same properties and headers
//! (an absent delivery mode becomes persistent, an empty header table none; `cluster-id` is not
//! in the contract), except
//! headers nested deeper than the contract allows, which are refused with an error naming the
//! header — never a panic.
//!
//! A seed file is hex (whitespace and `#` comments ignored).

use lapin::protocol::basic::{AMQPProperties, parse_properties};
use lapin::types::AMQPValue;
use proptest::prelude::*;
use proptest::test_runner::TestCaseResult;

use super::{delivery_count, properties_from_amqp, properties_to_amqp};
use crate::decision::PERSISTENT;
use crate::fuzz::{corpus, fuzz, mutated};
use crate::message::MAX_HEADER_DEPTH;

/// Type tags and lengths that steer the parser into every kind of value.
const DICTIONARY: &[&str] = &[
    "t",
    "b",
    "B",
    "s",
    "u",
    "I",
    "i",
    "l",
    "L",
    "f",
    "d",
    "D",
    "S",
    "A",
    "T",
    "F",
    "x",
    "V",
    "U",
    "\u{0}\u{0}\u{0}\u{0}",
    "\u{0}\u{0}\u{0}\u{5}",
    "\u{ff}",
    "\u{7f}\u{ff}\u{ff}\u{ff}",
    "\u{1}x",
    "\u{10}x-delivery-count",
    "\u{7}x-death",
    "\u{2}CC",
    "\u{b}traceparent",
];

fn hex(text: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(text);
    let digits: String = text
        .lines()
        .map(|line| line.split('#').next().unwrap_or_default())
        .flat_map(|line| line.chars().filter(|c| !c.is_whitespace()))
        .collect();
    assert!(digits.len().is_multiple_of(2), "odd number of hex digits");
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digits"))
        .collect()
}

#[test]
fn amqp_properties() {
    let seeds: Vec<(String, Vec<u8>)> = corpus("amqp")
        .into_iter()
        .map(|(name, text)| (name, hex(&text)))
        .collect();
    let bytes = seeds.iter().map(|(_, b)| b.clone()).collect();
    fuzz("amqp", seeds, mutated(bytes, DICTIONARY), |bytes| {
        round_trip(&bytes)
    });
}

fn round_trip(bytes: &[u8]) -> TestCaseResult {
    let Ok((_, received)) = parse_properties(bytes) else {
        return Ok(());
    };
    let _ = delivery_count(&received);
    let properties = properties_from_amqp(&received);
    let depth = received
        .headers()
        .as_ref()
        .and_then(|t| t.inner().values().map(value_depth).max())
        .unwrap_or(0);
    match properties_to_amqp(&properties) {
        Ok(sent) => {
            prop_assert!(
                depth <= MAX_HEADER_DEPTH,
                "nested {depth} levels, yet accepted"
            );
            let mut expected = received.clone();
            if expected.delivery_mode().is_none() {
                expected = expected.with_delivery_mode(PERSISTENT);
            }
            // Compared as text: a NaN header is the same NaN, though not equal to itself.
            let (sent, expected) = (contract_fields(&sent), contract_fields(&expected));
            prop_assert_eq!(format!("{sent:?}"), format!("{expected:?}"));
        }
        Err(error) => prop_assert!(
            depth > MAX_HEADER_DEPTH && error.starts_with("header \""),
            "refused ({error}) at depth {depth}"
        ),
    }
    Ok(())
}

/// The properties the contract carries (all but `cluster-id`), in two tuples (a tuple is
/// printable up to twelve fields).
fn contract_fields(p: &AMQPProperties) -> impl std::fmt::Debug {
    (
        (
            p.content_type().clone(),
            p.content_encoding().clone(),
            // An empty table is no headers.
            p.headers().clone().filter(|h| !h.inner().is_empty()),
            *p.delivery_mode(),
            *p.priority(),
            p.correlation_id().clone(),
        ),
        (
            p.reply_to().clone(),
            p.expiration().clone(),
            p.message_id().clone(),
            *p.timestamp(),
            p.kind().clone(),
            p.user_id().clone(),
            p.app_id().clone(),
        ),
    )
}

/// How many arrays and tables nest in `value` (a scalar: 0).
fn value_depth(value: &AMQPValue) -> usize {
    match value {
        AMQPValue::FieldTable(t) => 1 + t.inner().values().map(value_depth).max().unwrap_or(0),
        AMQPValue::FieldArray(a) => 1 + a.as_slice().iter().map(value_depth).max().unwrap_or(0),
        _ => 0,
    }
}
