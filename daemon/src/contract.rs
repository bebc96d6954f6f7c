//! The one place that runs `bindgen!` on the plugin contract: `plugin-sdk/wit/` (the current
//! version) and, in [`v0_2`], the earlier version warren still runs.

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    imports: { default: trappable },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use self::exports::warren::plugin::handler::Verdict;
pub use self::warren::plugin::delivery::Delivery;
pub use self::warren::plugin::types::{
    Container, Decimal, Header, HeaderValue, Level, Message, Outgoing, Properties, Republish,
};

/// The contract version this host speaks: the version of the WIT package.
pub const CONTRACT_VERSION: &str = "0.3.0";
/// The earlier contract versions this host still runs plugins of, newest first.
pub const OLDER_VERSIONS: &[&str] = &[v0_2::VERSION];
/// The WIT package name, without version.
pub const CONTRACT_PACKAGE: &str = "warren:plugin";

/// Contract 0.2.0 (`daemon/wit/contract-0.2.0/`), where `handle` takes the whole message as
/// a record. Its types are those of the current contract (the `types` interface did not
/// change), so a message is lent to a 0.2.0 plugin as it is, without conversion.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "wit/contract-0.2.0",
        world: "plugin",
        imports: { default: trappable },
        exports: { default: async },
        with: {
            "warren:plugin/types@0.2.0": crate::contract::warren::plugin::types,
        },
    });

    /// This contract's version.
    pub const VERSION: &str = "0.2.0";
}

#[cfg(test)]
mod tests {
    /// The constants and the WIT package lines cannot drift apart.
    #[test]
    fn contract_versions_are_the_wit_package_versions() {
        for (wit, version) in [
            (
                include_str!("../../plugin-sdk/wit/plugin.wit"),
                super::CONTRACT_VERSION,
            ),
            (
                include_str!("../wit/contract-0.2.0/plugin.wit"),
                super::v0_2::VERSION,
            ),
        ] {
            let package = format!("package {}@{version};", super::CONTRACT_PACKAGE);
            assert!(
                wit.lines().any(|l| l == package),
                "no `{package}` in the WIT"
            );
        }
    }
}
