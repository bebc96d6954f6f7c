//! The contract check: a component built against a version of warren's contract this warren
//! does not speak is refused before it is linked, with the versions named and the fix.

use anyhow::anyhow;
use wasmtime::component::Component;

use crate::contract as bindings;

/// The contract versions warren runs plugins of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Contract {
    /// The current one, [`bindings::CONTRACT_VERSION`]: `handle` is lent a `delivery`.
    Current,
    /// 0.2.0: `handle` takes the whole message as a record.
    V0_2,
}

impl Contract {
    fn version(self) -> &'static str {
        match self {
            Contract::Current => bindings::CONTRACT_VERSION,
            Contract::V0_2 => bindings::v0_2::VERSION,
        }
    }
}

/// The contract `component` was built against; refuses one built against a version warren
/// does not speak (or mixing versions), naming them and saying to rebuild it against this
/// warren's SDK.
pub(super) fn check_contract(component: &Component) -> anyhow::Result<Contract> {
    let engine = component.engine();
    let ty = component.component_type();
    let prefix = format!("{}/", bindings::CONTRACT_PACKAGE);
    let handler = |contract: Contract| format!("{prefix}handler@{}", contract.version());
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    // The current version's handler first: a component exporting both is run as the current
    // version (and refused below if it also imports the other version's interfaces).
    let exported = [Contract::Current, Contract::V0_2]
        .into_iter()
        .find(|&c| exports.contains(&handler(c)));
    let ours = exported.map(handler);
    let mut other = exports
        .iter()
        .find(|name| name.starts_with(&prefix) && Some(*name) != ours.as_ref())
        .cloned();
    // The interfaces it imports must be of the same version (a plugin may export one
    // version's handler yet import another version's host).
    let version = format!(
        "@{}",
        exported.map_or(bindings::CONTRACT_VERSION, Contract::version)
    );
    for (name, _) in ty.imports(engine) {
        if name.starts_with(&prefix) && !name.ends_with(&version) {
            other.get_or_insert_with(|| name.to_owned());
        }
    }
    match (other, ours, exported) {
        (Some(other), Some(ours), _) => Err(anyhow!("{}", mixed_versions(&ours, &other))),
        (Some(other), None, _) => Err(anyhow!("{}", contract_mismatch(&other))),
        (None, _, Some(contract)) => Ok(contract),
        (None, _, None) => Err(anyhow!(
            "is not a warren plugin: it does not export {}",
            handler(Contract::Current)
        )),
    }
}

/// The error for a plugin that exports `handler` of a version warren speaks but also uses
/// `interface` of another version.
fn mixed_versions(handler: &str, interface: &str) -> String {
    format!(
        "mixes contract versions: it exports {handler} but uses {interface}; rebuild the \
         plugin against one contract, the SDK of this warren (plugin-sdk/, or the WIT in \
         plugin-sdk/wit/ for other languages)"
    )
}

/// The error for a plugin that uses `interface` (`warren:plugin/NAME@VERSION`) of a contract
/// version this warren does not speak.
fn contract_mismatch(interface: &str) -> String {
    let theirs = interface
        .rsplit_once('@')
        .map_or("an unknown version", |(_, v)| v);
    format!(
        "built against contract {package}@{theirs} (it uses {interface}), but this warren \
         speaks {package}@{ours} (and runs plugins built for {older}); rebuild the plugin \
         against the SDK of this warren (plugin-sdk/, or the WIT in plugin-sdk/wit/ for other \
         languages)",
        package = bindings::CONTRACT_PACKAGE,
        ours = bindings::CONTRACT_VERSION,
        older = bindings::OLDER_VERSIONS.join(", "),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_contract_mismatch_names_the_versions_and_the_fix() {
        let error = contract_mismatch("warren:plugin/handler@0.1.0");
        assert!(
            error.starts_with("built against contract warren:plugin@0.1.0 "),
            "{error}"
        );
        let ours = format!(
            "speaks warren:plugin@{} (and runs plugins built for 0.2.0)",
            bindings::CONTRACT_VERSION
        );
        assert!(error.contains(&ours), "{error}");
        assert!(
            error.contains("rebuild the plugin against the SDK"),
            "{error}"
        );
    }

    #[test]
    fn a_plugin_mixing_versions_is_told_so() {
        let error = mixed_versions("warren:plugin/handler@0.3.0", "warren:plugin/host@0.2.0");
        assert!(
            error.starts_with(
                "mixes contract versions: it exports warren:plugin/handler@0.3.0 but uses \
                 warren:plugin/host@0.2.0"
            ),
            "{error}"
        );
        assert!(error.contains("rebuild the plugin"), "{error}");
    }
}
