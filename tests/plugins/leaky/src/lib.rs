//! `leaky`: a test-only plugin that, for every message, sends `GET` for the `path` of its
//! config to its `authority` (`host:port`, plain HTTP), waits for the response, and leaks it —
//! never drops the response or its future, never reads its body — then acks. An instance that kept every leaked handle would
//! keep a connection (a socket) open per message; the daemon must not let that grow.

use warren_plugin::{Config, Message, Plugin, Verdict};
use wasi::http::outgoing_handler;
use wasi::http::types::{Fields, OutgoingRequest, Scheme};

struct Leaky {
    authority: String,
    path: String,
}

impl Plugin for Leaky {
    fn init(config: Config) -> Result<Self, String> {
        Ok(Leaky {
            authority: config.require("authority")?.to_owned(),
            path: config.get_or("path", "/"),
        })
    }

    fn handle(&mut self, _message: Message) -> Verdict {
        let request = OutgoingRequest::new(Fields::new());
        if request.set_scheme(Some(&Scheme::Http)).is_err()
            || request.set_authority(Some(&self.authority)).is_err()
            || request.set_path_with_query(Some(&self.path)).is_err()
        {
            return Verdict::Reject;
        }
        let Ok(future) = outgoing_handler::handle(request, None) else {
            return Verdict::Reject;
        };
        future.subscribe().block();
        let response = future.get();
        // The leak: neither the response nor its future is ever dropped.
        std::mem::forget(response);
        std::mem::forget(future);
        Verdict::Ack
    }
}

warren_plugin::export!(Leaky);
