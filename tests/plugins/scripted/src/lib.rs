//! `scripted`: a test-only plugin that does whatever its config says, so one
//! component covers every verdict and every failure the daemon must survive.
//!
//! Config key `mode` chooses the behaviour (`init` fails with
//! `scripted: unknown mode '…'` for any other value, or none). Modes that send
//! a message on need `to`, a routing key; a missing `to` or a bad `priority`
//! also fails `init`. A successful `init` logs `scripted ready: mode=…` at info.
//! With the config key `log`, `handle` first logs its value at info, whatever the mode
//! (for the tests of what warren adds to a plugin's log lines).
//!
//! | `mode` | what `handle` does |
//! |---|---|
//! | `ack` | Ack |
//! | `reject` | Reject |
//! | `requeue` | Requeue, every time |
//! | `requeue-once` | Requeue unless `redelivered`; a redelivered message is republished to exchange `""`, routing key `to`, with its headers plus `seen-redelivered = true` |
//! | `republish` | Republish to exchange `exchange` (default `""`), routing key `to`, with priority `priority` (a `u8`; unset keeps the message's own) |
//! | `republish-headers` | as `republish`, but giving the headers back explicitly: each one read into a `Value` tree and written again with `Header::new`, so the plugin side of the header encoding is exercised; a header that does not read back traps |
//! | `publish-ack` | publish an extra message to exchange `""`, routing key `to`, body `extra:` + body, the message's correlation id; then Ack |
//! | `publish-then-trap` | publish as `publish-ack`, then trap (so the publish must be discarded) |
//! | `trap` | panic: `scripted trap` |
//! | `echo` | Republish to `""` / `to` with the body replaced by a JSON object describing the message (below) |
//! | `body` | the body is the command, see below |
//!
//! `echo` writes `{"body", "exchange", "routing_key", "queue", "redelivered",
//! "delivery_count", "properties": {"content_type", "content_encoding",
//! "headers", "priority", "correlation_id", "reply_to", "expiration",
//! "message_id", "timestamp", "kind", "user_id", "app_id", "delivery_mode"}}`:
//! the body as UTF-8 (invalid bytes replaced), absent values as `null`, and
//! `headers` as an object from key to value, where text is a string, an
//! integer of any width a number, a boolean a bool, and any other value its
//! Rust debug text (for example `Float32(1.5)`).
//!
//! `body` commands: `ack`, `reject`, `requeue`, `trap`; `loop` (spin for
//! ever, for timeouts); `alloc` (allocate and touch 1 MiB blocks for ever,
//! for the memory limit); `recurse` (recurse for ever, for stack overflow);
//! `sleep:MS` (sleep MS milliseconds, then Ack); `spin:MS` (compute for MS
//! milliseconds, reading the clock but never waiting on the host, then Ack);
//! `stdout:TEXT` and
//! `stderr:TEXT` (write TEXT and a newline to that stream, then Ack);
//! `spam:N` (write N lines to stdout, then Ack). Anything else: Reject.
//!
//! Config key `init_check` (any mode): `init` first asks
//! `http://<init_check>/` and fails unless it answers 2xx — an `init` that
//! fails for a reason outside the plugin's file and config.

mod init_check;

use std::hint::black_box;
use std::io::Write;
use std::time::Duration;

use serde_json::{Map, Value as Json, json};
use warren_plugin::{
    Config, Header, Message, Outgoing, Plugin, Properties, Republish, Value, Verdict, log, publish,
};

/// How big each block of the `alloc` command is.
const ALLOC_BLOCK_BYTES: usize = 1 << 20;

/// What `handle` does, chosen by the `mode` config key.
enum Mode {
    Ack,
    Reject,
    Requeue,
    RequeueOnce {
        to: String,
    },
    Republish {
        exchange: String,
        to: String,
        priority: Option<u8>,
        /// Give the headers back explicitly, through `Value`.
        headers: bool,
    },
    PublishAck {
        to: String,
    },
    PublishThenTrap {
        to: String,
    },
    Trap,
    Echo {
        to: String,
    },
    Body,
}

/// The plugin: just its mode.
struct Scripted {
    mode: Mode,
    /// Logged at info by every `handle`.
    log: Option<String>,
}

impl Plugin for Scripted {
    fn init(config: Config) -> Result<Self, String> {
        if let Some(authority) = config.get("init_check") {
            init_check::ask(authority)?;
        }
        let name = config.get("mode").unwrap_or_default();
        let to = || config.require("to").map(str::to_owned);
        let mode = match name {
            "ack" => Mode::Ack,
            "reject" => Mode::Reject,
            "requeue" => Mode::Requeue,
            "requeue-once" => Mode::RequeueOnce { to: to()? },
            "republish" | "republish-headers" => Mode::Republish {
                exchange: config.get_or("exchange", ""),
                to: to()?,
                priority: config.parse("priority")?,
                headers: name == "republish-headers",
            },
            "publish-ack" => Mode::PublishAck { to: to()? },
            "publish-then-trap" => Mode::PublishThenTrap { to: to()? },
            "trap" => Mode::Trap,
            "echo" => Mode::Echo { to: to()? },
            "body" => Mode::Body,
            other => return Err(format!("scripted: unknown mode '{other}'")),
        };
        log::info(format!("scripted ready: mode={name}"));
        let log = config.get("log").map(str::to_owned);
        Ok(Scripted { mode, log })
    }

    fn handle(&mut self, message: Message) -> Verdict {
        if let Some(text) = &self.log {
            log::info(text.clone());
        }
        match &self.mode {
            Mode::Ack => Verdict::Ack,
            Mode::Reject => Verdict::Reject,
            Mode::Requeue => Verdict::Requeue,
            Mode::RequeueOnce { to } => {
                if !message.redelivered() {
                    return Verdict::Requeue;
                }
                let mut headers = message.headers().to_vec();
                headers.push(Header::new("seen-redelivered", true));
                Republish::to("", to).headers(headers).into()
            }
            Mode::Republish {
                exchange,
                to,
                priority,
                headers,
            } => {
                let mut republish = Republish::to(exchange, to);
                if *headers {
                    republish = republish.headers(rebuild(message.headers()));
                }
                match priority {
                    Some(priority) => republish.priority(*priority).into(),
                    None => republish.into(),
                }
            }
            Mode::PublishAck { to } => {
                publish_extra(to, &message);
                Verdict::Ack
            }
            Mode::PublishThenTrap { to } => {
                publish_extra(to, &message);
                panic!("scripted trap after publish");
            }
            Mode::Trap => panic!("scripted trap"),
            Mode::Echo { to } => Republish::to("", to)
                .body(describe(&message).to_string())
                .into(),
            Mode::Body => obey(message.body()),
        }
    }
}

warren_plugin::export!(Scripted);

/// Publishes `extra:<body>` to `to` on the default exchange, keeping the
/// message's correlation id.
fn publish_extra(to: &str, message: &Message) {
    let mut extra = Outgoing::new("", to, [b"extra:".as_slice(), message.body()].concat());
    extra.properties.correlation_id = message.properties().correlation_id.clone();
    publish(extra);
}

/// The headers read into `Value` trees and written again (the `republish-headers` mode).
fn rebuild(headers: &[Header]) -> Vec<Header> {
    headers
        .iter()
        .map(|header| match header.value() {
            Ok(value) => Header::new(header.key.clone(), value),
            Err(error) => panic!("scripted: {error}"),
        })
        .collect()
}

/// Runs the command in a `body`-mode message.
fn obey(command: &[u8]) -> Verdict {
    match command {
        b"ack" => Verdict::Ack,
        b"reject" => Verdict::Reject,
        b"requeue" => Verdict::Requeue,
        b"trap" => panic!("scripted trap"),
        b"loop" => spin(),
        b"alloc" => hog_memory(),
        b"recurse" => {
            recurse(0);
            Verdict::Ack
        }
        _ => {
            if let Some(millis) = sleep_millis(command) {
                std::thread::sleep(Duration::from_millis(millis));
            } else if let Some(millis) = number_after(command, b"spin:") {
                let until = std::time::Instant::now() + Duration::from_millis(millis);
                while std::time::Instant::now() < until {
                    black_box(millis);
                }
            } else if let Some(text) = command.strip_prefix(b"stdout:") {
                write_line(&mut std::io::stdout(), text);
            } else if let Some(text) = command.strip_prefix(b"stderr:") {
                write_line(&mut std::io::stderr(), text);
            } else if let Some(n) = number_after(command, b"spam:") {
                let mut stdout = std::io::stdout();
                for i in 0..n {
                    write_line(&mut stdout, format!("spam {i}").as_bytes());
                }
            } else {
                return Verdict::Reject;
            }
            Verdict::Ack
        }
    }
}

/// Writes `text` and a newline, as one write.
fn write_line(stream: &mut impl Write, text: &[u8]) {
    let mut line = text.to_vec();
    line.push(b'\n');
    // A closed stream is no reason to trap: the test looks at warren's log.
    let _ = stream.write_all(&line).and_then(|()| stream.flush());
}

/// The number after `prefix` in `command`.
fn number_after(command: &[u8], prefix: &[u8]) -> Option<u64> {
    std::str::from_utf8(command.strip_prefix(prefix)?)
        .ok()?
        .parse()
        .ok()
}

/// The `MS` of a `sleep:MS` command.
fn sleep_millis(command: &[u8]) -> Option<u64> {
    number_after(command, b"sleep:")
}

/// Never returns, never calls the host.
fn spin() -> ! {
    let mut turns: u64 = 0;
    loop {
        turns = black_box(turns.wrapping_add(1));
    }
}

/// Allocates and writes to memory until the host stops it.
fn hog_memory() -> ! {
    let mut blocks: Vec<Vec<u8>> = Vec::new();
    loop {
        blocks.push(vec![1; ALLOC_BLOCK_BYTES]);
        black_box(&mut blocks);
    }
}

/// Recurses until the stack overflows; `black_box` keeps the optimiser from
/// turning it into a loop.
#[expect(unconditional_recursion, reason = "the point: overflow the stack")]
fn recurse(depth: u64) -> u64 {
    let frame = black_box([depth; 8]);
    recurse(black_box(depth + 1)).wrapping_add(frame[7])
}

/// The JSON object of the `echo` mode.
fn describe(message: &Message) -> Json {
    json!({
        "body": String::from_utf8_lossy(message.body()),
        "exchange": message.exchange(),
        "routing_key": message.routing_key(),
        "queue": message.queue(),
        "redelivered": message.redelivered(),
        "delivery_count": message.delivery_count(),
        "properties": describe_properties(message.properties()),
    })
}

/// The `properties` object of the `echo` mode.
fn describe_properties(properties: &Properties) -> Json {
    let headers: Map<String, Json> = properties
        .headers
        .iter()
        .map(|header| {
            let value = header.value().unwrap_or(Value::Void);
            (header.key.clone(), describe_header_value(&value))
        })
        .collect();
    json!({
        "content_type": properties.content_type,
        "content_encoding": properties.content_encoding,
        "headers": headers,
        "priority": properties.priority,
        "correlation_id": properties.correlation_id,
        "reply_to": properties.reply_to,
        "expiration": properties.expiration,
        "message_id": properties.message_id,
        "timestamp": properties.timestamp,
        "kind": properties.kind,
        "user_id": properties.user_id,
        "app_id": properties.app_id,
        "delivery_mode": properties.delivery_mode,
    })
}

/// A header value in the `echo` mode's JSON.
fn describe_header_value(value: &Value) -> Json {
    match value {
        Value::Text(text) => json!(text),
        Value::Boolean(boolean) => json!(boolean),
        other => match other.as_int() {
            Some(integer) => json!(integer),
            None => json!(format!("{other:?}")),
        },
    }
}
