//! The one place that runs `bindgen!` on the plugin contract in `plugin-sdk/wit/`.

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    imports: { default: trappable },
    exports: { default: async },
    additional_derives: [PartialEq],
});

pub use self::exports::warren::plugin::handler::Verdict;
pub use self::warren::plugin::types::{
    Container, Decimal, Header, HeaderValue, Level, Message, Outgoing, Properties, Republish,
};

/// The contract version this host speaks: the version of the WIT package.
pub const CONTRACT_VERSION: &str = "0.2.0";
/// The WIT package name, without version.
pub const CONTRACT_PACKAGE: &str = "warren:plugin";

#[cfg(test)]
mod tests {
    /// The constant and the WIT package line cannot drift apart.
    #[test]
    fn contract_version_is_the_wit_package_version() {
        let wit = include_str!("../../plugin-sdk/wit/plugin.wit");
        let package = format!(
            "package {}@{};",
            super::CONTRACT_PACKAGE,
            super::CONTRACT_VERSION
        );
        assert!(
            wit.lines().any(|l| l == package),
            "no `{package}` in the WIT"
        );
    }
}
