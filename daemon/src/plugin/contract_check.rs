//! The contract check: a component built against another version of warren's contract is
//! refused before it is linked, with both versions named and the fix.

use anyhow::anyhow;
use wasmtime::component::Component;

use crate::contract as bindings;

/// Refuses a component built against another version of the contract, naming both versions
/// and saying to rebuild it against this warren's SDK.
pub(super) fn check_contract(component: &Component) -> anyhow::Result<()> {
    let engine = component.engine();
    let ty = component.component_type();
    let wanted = format!(
        "{}/handler@{}",
        bindings::CONTRACT_PACKAGE,
        bindings::CONTRACT_VERSION
    );
    let prefix = format!("{}/", bindings::CONTRACT_PACKAGE);
    let version = format!("@{}", bindings::CONTRACT_VERSION);
    let mut exports_handler = false;
    let mut other = None;
    for (name, _) in ty.exports(engine) {
        if name == wanted {
            exports_handler = true;
        } else if name.starts_with(&prefix) {
            other.get_or_insert_with(|| name.to_owned());
        }
    }
    // The host interface it imports must be of the same version too (a plugin may export
    // this version's handler yet import another version's host).
    for (name, _) in ty.imports(engine) {
        if name.starts_with(&prefix) && !name.ends_with(&version) {
            other.get_or_insert_with(|| name.to_owned());
        }
    }
    match (other, exports_handler) {
        (Some(other), _) => Err(anyhow!("{}", contract_mismatch(&other))),
        (None, true) => Ok(()),
        (None, false) => Err(anyhow!(
            "is not a warren plugin: it does not export {wanted}"
        )),
    }
}

/// The error for a plugin that uses `interface` (`warren:plugin/NAME@VERSION`) of another
/// contract version.
fn contract_mismatch(interface: &str) -> String {
    let theirs = interface
        .rsplit_once('@')
        .map_or("an unknown version", |(_, v)| v);
    format!(
        "built against contract {package}@{theirs} (it uses {interface}), but this warren \
         speaks {package}@{ours}; rebuild the plugin against the SDK of this warren \
         (plugin-sdk/, or the WIT in plugin-sdk/wit/ for other languages)",
        package = bindings::CONTRACT_PACKAGE,
        ours = bindings::CONTRACT_VERSION,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contract_mismatch_names_both_versions_and_the_fix() {
        let error = contract_mismatch("warren:plugin/handler@0.1.0");
        assert!(
            error.starts_with("built against contract warren:plugin@0.1.0 "),
            "{error}"
        );
        let ours = format!("speaks warren:plugin@{}", bindings::CONTRACT_VERSION);
        assert!(error.contains(&ours), "{error}");
        assert!(
            error.contains("rebuild the plugin against the SDK"),
            "{error}"
        );
    }
}
