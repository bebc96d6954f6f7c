//! Test-only plugin built against `warren:plugin@0.1.0` (`wit/plugin.wit`, the contract as it
//! was before headers became lossless): a plugin from an older warren that was not rebuilt.
//! warren must refuse it, naming both versions and saying to rebuild it. Otherwise it would
//! log once and ack every message.

/// The bindings of the 0.1.0 contract.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
    });
}

use bindings::exports::warren::plugin::handler::{Guest, Message, Verdict};
use bindings::warren::plugin::host;
use bindings::warren::plugin::types::Level;

/// Accepts any config and acks every message.
struct ContractV1;

impl Guest for ContractV1 {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        // Uses the 0.1.0 host interface too, as every plugin of the 0.1.0 SDK could.
        host::log(Level::Info, "contract-v1 ready");
        Ok(())
    }

    fn handle(_message: Message) -> Verdict {
        Verdict::Ack
    }
}

bindings::export!(ContractV1 with_types_in bindings);
