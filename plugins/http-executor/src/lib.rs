//! The `http-executor` plugin: each message describes one HTTP request; the
//! plugin sends it through `wasi:http/outgoing-handler` (so only to the hosts
//! warren's config allows this plugin) and, if the message has a `reply_to`,
//! publishes the response there.
//!
//! # The message body
//!
//! ```json
//! {"method": "POST", "url": "http://127.0.0.1:8080/path?q=1",
//!  "headers": {"content-type": "text/plain"}, "body": "text"}
//! ```
//!
//! - `url` (required): `http://` or `https://`, absolute, ASCII; a fragment
//!   is dropped, credentials in the url are refused.
//! - `method`: default `GET`; any HTTP token, sent upper-case.
//! - `headers`: names to string values. A `content-length` is added for a
//!   body when none is given; headers the host forbids (`host`, `connection`,
//!   `transfer-encoding`, …) refuse the request.
//! - `body` (text) or `body_base64` (bytes), not both; default none.
//! - Any other key refuses the request.
//!
//! # The reply
//!
//! Published only if the message has `reply_to`: to the default exchange
//! with routing key = `reply_to`, the message's `correlation_id`, and
//! `content_type: application/json`. A response (any status — redirects are
//! not followed):
//!
//! ```json
//! {"status": 200, "headers": {"content-type": "text/plain"}, "body": "text"}
//! ```
//!
//! with `body_base64` instead of `body` when the response body is not UTF-8,
//! and repeated response headers joined with `, `. A failure:
//!
//! ```json
//! {"error": "connection refused", "attempts": 3}
//! ```
//!
//! # Verdicts
//!
//! | what happened | verdict | reply |
//! |---|---|---|
//! | any HTTP response | `ack` | the response |
//! | transport failure (connect, DNS, timeout, reading the body, …), attempts left, quorum queue | `requeue` | none |
//! | transport failure, attempts left, other queues | `republish` to `""` / `message.queue()` with `x-warren-attempt` + 1 | none |
//! | transport failure, attempts used up | `reject` (dead-letter) | error |
//! | denied by the host's egress policy, or invalid in the host's eyes | `reject` at once | error |
//! | response whose `Content-Length` is over the host's `max_response_bytes` | `reject` at once | error |
//! | body not a request (bad JSON, `url`, scheme, base64, header, …) | `reject` at once, warn log | error |
//!
//! The attempt number is `delivery_count + 1` where the broker counts
//! deliveries (quorum queues), otherwise the message header
//! `x-warren-attempt` (absent: 1). Retries go back through the queue, so
//! other messages are served in between.
//!
//! # Config
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `max_attempts` | `3` | deliveries in total before a transport failure is final (≥ 1) |
//! | `timeout_ms` | none (the host's) | connect, first-byte and between-bytes timeout of each request (≥ 1) |
//!
//! An unknown key, or a value out of range, refuses the config with an error
//! naming the key. warren may clamp the timeout further.

mod client;
mod reply;
mod request;

use std::time::Duration;

use warren_plugin::{Config, Header, Message, Plugin, Republish, Value, Verdict, log, publish};

/// The config keys this plugin knows.
const KEYS: [&str; 2] = ["max_attempts", "timeout_ms"];
/// The header that counts attempts where the broker does not.
const ATTEMPT_HEADER: &str = "x-warren-attempt";

/// Executes the HTTP request each message describes.
struct HttpExecutor {
    /// Deliveries in total before a transport failure is final.
    max_attempts: u32,
    /// Per-request timeout, if configured.
    timeout: Option<Duration>,
}

impl Plugin for HttpExecutor {
    fn init(config: Config) -> Result<Self, String> {
        if let Some((key, _)) = config.iter().find(|(key, _)| !KEYS.contains(key)) {
            return Err(format!(
                "unknown config key '{key}' (known: {})",
                KEYS.join(", ")
            ));
        }
        Ok(HttpExecutor {
            max_attempts: positive::<u32>(&config, "max_attempts")?.unwrap_or(3),
            timeout: positive::<u64>(&config, "timeout_ms")?.map(Duration::from_millis),
        })
    }

    fn handle(&mut self, message: Message) -> Verdict {
        let attempt = Attempt::of(&message);
        let request = match request::parse(message.body()) {
            Ok(request) => request,
            Err(reason) => return give_up(&message, attempt, &reason),
        };
        match client::send(&request, self.timeout) {
            Ok(response) => {
                reply(&message, reply::response(&response));
                Verdict::Ack
            }
            Err(failure) if failure.permanent || attempt.number >= self.max_attempts => {
                give_up(&message, attempt, &failure.reason)
            }
            Err(failure) => {
                log::warn(format!(
                    "attempt {} of {} failed, retrying: {}",
                    attempt.number, self.max_attempts, failure.reason
                ));
                attempt.retry(&message)
            }
        }
    }
}

/// The value of `key` as a whole number ≥ 1, if it is set.
fn positive<T>(config: &Config, key: &str) -> Result<Option<T>, String>
where
    T: std::str::FromStr + From<u8> + PartialOrd,
{
    match config.get(key).map(|value| (value, value.parse::<T>())) {
        None => Ok(None),
        Some((_, Ok(number))) if number >= T::from(1) => Ok(Some(number)),
        Some((value, _)) => Err(format!(
            "config key '{key}': '{value}' is not a whole number ≥ 1"
        )),
    }
}

/// Which attempt a delivery is, and who counts them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Attempt {
    /// 1 for the first delivery.
    number: u32,
    /// True where the broker counts deliveries (quorum queues): a retry is a
    /// requeue. Otherwise the count travels in the `x-warren-attempt` header.
    counted_by_broker: bool,
}

impl Attempt {
    /// The attempt `message` stands for.
    fn of(message: &Message) -> Attempt {
        match message.delivery_count() {
            Some(count) => Attempt {
                number: count.saturating_add(1),
                counted_by_broker: true,
            },
            None => Attempt {
                number: message
                    .header(ATTEMPT_HEADER)
                    .as_ref()
                    .and_then(header_number)
                    .unwrap_or(1),
                counted_by_broker: false,
            },
        }
    }

    /// The verdict that delivers `message` again as the next attempt.
    fn retry(self, message: &Message) -> Verdict {
        if self.counted_by_broker {
            return Verdict::Requeue;
        }
        let mut headers: Vec<Header> = message
            .headers()
            .iter()
            .filter(|header| header.key != ATTEMPT_HEADER)
            .cloned()
            .collect();
        let next = i64::from(self.number.saturating_add(1));
        headers.push(Header::int(ATTEMPT_HEADER, next));
        Republish::to("", message.queue()).headers(headers).into()
    }
}

/// An attempt number ≥ 1 from a header value (an integer of any width, or one as text).
fn header_number(value: &Value) -> Option<u32> {
    let number = match value {
        Value::Text(text) => text.trim().parse().ok()?,
        other => u32::try_from(other.as_int()?).ok()?,
    };
    (number >= 1).then_some(number)
}

/// Ends the message for good: logs why, sends the error reply, rejects it.
fn give_up(message: &Message, attempt: Attempt, reason: &str) -> Verdict {
    log::warn(format!(
        "rejecting after attempt {}: {reason}",
        attempt.number
    ));
    reply(message, reply::error(reason, attempt.number));
    Verdict::Reject
}

/// Publishes `body` to the message's `reply_to`, if it has one.
fn reply(message: &Message, body: Vec<u8>) {
    if let Some(outgoing) = reply::to(message, body) {
        publish(outgoing);
    }
}

warren_plugin::export!(HttpExecutor);

#[cfg(test)]
mod tests {
    use warren_plugin::{MessageRecord, Properties};

    use super::*;

    fn message(delivery_count: Option<u32>, headers: Vec<Header>) -> Message<'static> {
        Message::new(MessageRecord {
            body: b"{}".to_vec(),
            exchange: String::new(),
            routing_key: "jobs".into(),
            queue: "jobs".into(),
            redelivered: false,
            delivery_count,
            properties: Properties {
                headers,
                ..Properties::default()
            },
        })
    }

    fn executor(pairs: &[(&str, &str)]) -> Result<HttpExecutor, String> {
        HttpExecutor::init(pairs.iter().copied().collect())
    }

    #[test]
    fn config_defaults_and_refusals() -> Result<(), String> {
        let defaults = executor(&[])?;
        assert_eq!((defaults.max_attempts, defaults.timeout), (3, None));
        let set = executor(&[("max_attempts", "5"), ("timeout_ms", "1500")])?;
        assert_eq!(set.max_attempts, 5);
        assert_eq!(set.timeout, Some(Duration::from_millis(1500)));
        for (key, value) in [
            ("max_attempts", "0"),
            ("max_attempts", "-1"),
            ("timeout_ms", "0"),
            ("timeout_ms", "soon"),
            ("retries", "2"),
        ] {
            let Err(error) = executor(&[(key, value)]) else {
                panic!("{key} = {value} was accepted");
            };
            assert!(error.contains(&format!("'{key}'")), "{error}");
        }
        Ok(())
    }

    #[test]
    fn quorum_queues_count_and_requeue() {
        let attempt = Attempt::of(&message(Some(2), vec![]));
        assert_eq!(
            attempt,
            Attempt {
                number: 3,
                counted_by_broker: true
            }
        );
        assert_eq!(attempt.retry(&message(Some(2), vec![])), Verdict::Requeue);
    }

    #[test]
    fn other_queues_count_in_a_header_and_republish() {
        assert_eq!(Attempt::of(&message(None, vec![])).number, 1);
        let keep = Header::text("trace", "t1");
        let second = message(None, vec![Header::new(ATTEMPT_HEADER, 2i16), keep.clone()]);
        let attempt = Attempt::of(&second);
        assert_eq!(attempt.number, 2);
        assert_eq!(
            attempt.retry(&second),
            Republish::to("", "jobs")
                .headers(vec![keep, Header::int(ATTEMPT_HEADER, 3)])
                .into()
        );
    }

    #[test]
    fn odd_attempt_headers() {
        let number = |value: Value| {
            Attempt::of(&message(None, vec![Header::new(ATTEMPT_HEADER, value)])).number
        };
        assert_eq!(number(" 4 ".into()), 4);
        assert_eq!(number(5u8.into()), 5);
        assert_eq!(number(0i64.into()), 1);
        assert_eq!(number((-3i32).into()), 1);
        assert_eq!(number(true.into()), 1);
    }
}
