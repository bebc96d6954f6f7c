//! `{{name}}`: a warren plugin. Each message is republished to the queue named
//! by the config key `to` (default `{{name}}.out`), with its headers plus
//! `x-handled-by: {{name}}`; a message with an empty body is rejected
//! (dead-lettered). Any other config key refuses the config.
//!
//! Build: `cargo build --release --target wasm32-wasip2`
//! Test:  `warren plugin test target/wasm32-wasip2/release/{{module}}.wasm CASES.toml`

use warren_plugin::{Config, Header, Message, Plugin, Republish, Verdict, log};

/// The config keys this plugin knows.
const KNOWN_KEYS: [&str; 1] = ["to"];

/// Where messages go.
struct Forwarder {
    to: String,
}

impl Plugin for Forwarder {
    fn init(config: Config) -> Result<Self, String> {
        if let Some((key, _)) = config.iter().find(|(key, _)| !KNOWN_KEYS.contains(key)) {
            return Err(format!(
                "unknown config key '{key}' (known: {})",
                KNOWN_KEYS.join(", ")
            ));
        }
        Ok(Forwarder {
            to: config.get_or("to", "{{name}}.out"),
        })
    }

    fn handle(&mut self, message: Message) -> Verdict {
        if message.body().is_empty() {
            log::warn("empty body: rejected");
            return Verdict::Reject;
        }
        log::info(format!("forwarding {} bytes to {}", message.body().len(), self.to));
        let mut headers = message.headers().to_vec();
        headers.push(Header::text("x-handled-by", "{{name}}"));
        Republish::to("", self.to.as_str()).headers(headers).into()
    }
}

warren_plugin::export!(Forwarder);
