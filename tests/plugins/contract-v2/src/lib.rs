//! Test-only plugin built against `warren:plugin@0.9.0` (`wit/plugin.wit`, a copy of the
//! SDK's contract with only the version changed): a contract from the future, which warren
//! must refuse, naming both versions. (The crate keeps its old name; its version is far
//! enough ahead to stay foreign while warren's own moves.) Otherwise it would ack every
//! message.

/// The bindings of the 0.9.0 contract.
#[allow(missing_docs)]
mod bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
    });
}

use bindings::exports::warren::plugin::handler::{Guest, Message, Verdict};

/// Accepts any config and acks every message.
struct ContractV2;

impl Guest for ContractV2 {
    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn handle(_message: Message) -> Verdict {
        Verdict::Ack
    }
}

bindings::export!(ContractV2 with_types_in bindings);
