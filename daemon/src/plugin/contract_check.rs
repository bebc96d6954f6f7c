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
    let exports: Vec<String> = ty
        .exports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    let imports: Vec<String> = ty
        .imports(engine)
        .map(|(name, _)| name.to_owned())
        .collect();
    classify(&exports, &imports)
}

/// The contract a component with these exports and imports (full names, such as
/// `warren:plugin/handler@0.3.0`) was built against.
///
/// Every `warren:plugin` interface it exports or imports must be of one version: a component
/// exporting both versions' handlers, or one version's handler and another version's host, is
/// refused as mixing versions.
fn classify(exports: &[String], imports: &[String]) -> anyhow::Result<Contract> {
    let prefix = format!("{}/", bindings::CONTRACT_PACKAGE);
    let handler = |contract: Contract| format!("{prefix}handler@{}", contract.version());
    let exported = [Contract::Current, Contract::V0_2]
        .into_iter()
        .find(|&c| exports.contains(&handler(c)));
    let ours = exported.map(handler);
    let version = format!(
        "@{}",
        exported.map_or(bindings::CONTRACT_VERSION, Contract::version)
    );
    let other = exports
        .iter()
        .find(|name| name.starts_with(&prefix) && Some(*name) != ours.as_ref())
        .or_else(|| {
            imports
                .iter()
                .find(|name| name.starts_with(&prefix) && !name.ends_with(&version))
        });
    match (other, ours, exported) {
        (Some(other), Some(ours), _) => Err(anyhow!("{}", mixed_versions(&ours, other))),
        (Some(other), None, _) => Err(anyhow!("{}", contract_mismatch(other))),
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

    fn names(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| (*n).to_owned()).collect()
    }

    fn current(interface: &str) -> String {
        format!("warren:plugin/{interface}@{}", bindings::CONTRACT_VERSION)
    }

    #[test]
    fn each_contract_version_is_recognised_by_its_handler() {
        let wasi = "wasi:cli/environment@0.2.0";
        let exports = names(&[&current("handler")]);
        let imports = names(&[
            wasi,
            &current("types"),
            &current("delivery"),
            &current("host"),
        ]);
        assert_eq!(
            classify(&exports, &imports).expect("0.3.0"),
            Contract::Current
        );

        let exports = names(&["warren:plugin/handler@0.2.0"]);
        let imports = names(&[
            wasi,
            "warren:plugin/types@0.2.0",
            "warren:plugin/host@0.2.0",
        ]);
        assert_eq!(classify(&exports, &imports).expect("0.2.0"), Contract::V0_2);
    }

    #[test]
    fn a_component_mixing_versions_is_refused() {
        let both = names(&[&current("handler"), "warren:plugin/handler@0.2.0"]);
        let error = classify(&both, &names(&[&current("types")])).expect_err("refused");
        assert!(
            error.to_string().starts_with(&format!(
                "mixes contract versions: it exports {} but uses warren:plugin/handler@0.2.0",
                current("handler")
            )),
            "{error}"
        );

        let exports = names(&[&current("handler")]);
        let imports = names(&[&current("types"), "warren:plugin/host@0.2.0"]);
        let error = classify(&exports, &imports).expect_err("refused");
        assert!(
            error
                .to_string()
                .contains("but uses warren:plugin/host@0.2.0"),
            "{error}"
        );
    }

    #[test]
    fn an_unknown_version_or_no_handler_is_refused() {
        let exports = names(&["warren:plugin/handler@0.1.0"]);
        let imports = names(&["warren:plugin/types@0.1.0"]);
        let error = classify(&exports, &imports).expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("built against contract warren:plugin@0.1.0 "),
            "{error}"
        );

        let error =
            classify(&names(&["run"]), &names(&["wasi:cli/stdout@0.2.0"])).expect_err("refused");
        assert!(
            error
                .to_string()
                .starts_with("is not a warren plugin: it does not export warren:plugin/handler@"),
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
