//! The `printer` plugin: prints `<prefix> <body>` to stdout, one line per
//! message, then acks it — the `pika` "hello world" consumer as a plugin.
//! (warren logs each line a plugin prints, with the plugin's name.)
//!
//! Config: `prefix` (default `" [x] Received"`). The body is printed as
//! UTF-8, with invalid bytes replaced by `�`.

use warren_plugin::{Config, Message, Plugin, Verdict};

/// Prints each message after a fixed prefix.
struct Printer {
    /// Printed before the body, then a space.
    prefix: String,
}

impl Plugin for Printer {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Printer {
            prefix: config.get_or("prefix", " [x] Received"),
        })
    }

    fn handle(&mut self, message: Message) -> Verdict {
        println!(
            "{} {}",
            self.prefix,
            String::from_utf8_lossy(message.body())
        );
        Verdict::Ack
    }
}

warren_plugin::export!(Printer);
