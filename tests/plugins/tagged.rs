// Shared source of the `tag-a` and `tag-b` test plugins, which differ only in `TAG`: the
// hot-reload tests swap one for the other under load and read the tag off every message.

use warren_plugin::{Config, Header, Message, Plugin, Republish, Verdict};

struct Tagged {
    to: String,
}

impl Plugin for Tagged {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Tagged {
            to: config.require("to")?.to_owned(),
        })
    }

    /// Republishes the message to `to` with headers `tag` (this build's tag) and
    /// `was-redelivered` (the message's redelivered flag).
    fn handle(&mut self, message: Message) -> Verdict {
        let mut headers = message.headers().to_vec();
        headers.push(Header::text("tag", TAG));
        headers.push(Header::new("was-redelivered", message.redelivered()));
        Republish::to("", self.to.as_str()).headers(headers).into()
    }
}

warren_plugin::export!(Tagged);
