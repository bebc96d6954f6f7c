//! The one place that runs `bindgen!` on the plugin contract in `plugin-sdk/wit/`.

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "plugin",
    imports: { default: trappable },
    exports: { default: async },
});

pub use self::exports::warren::plugin::handler::Verdict;
pub use self::warren::plugin::types::{
    Header, HeaderValue, Level, Message, Outgoing, Properties, Republish,
};

/// The contract version this host speaks: the version of the WIT package.
pub const CONTRACT_VERSION: &str = "0.1.0";
/// The WIT package name, without version.
pub const CONTRACT_PACKAGE: &str = "warren:plugin";
