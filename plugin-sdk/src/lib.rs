//! Write warren plugins in Rust: one [`Plugin`] impl and one [`export!`] line.
//!
//! warren consumes RabbitMQ queues and hands every message to a plugin, a
//! WebAssembly component that decides what becomes of it: a [`Verdict`].
//! This crate owns the contract (the WIT package `warren:plugin@0.3.0` in
//! `plugin-sdk/wit/`) and hides the generated bindings behind plain Rust types.
//! warren still runs plugins built against 0.2.0, and refuses one built against
//! another contract version (0.1.0 plugins included) with an error naming the
//! versions: rebuild it with the SDK of the warren you run.
//!
//! The [`Message`] is lent by warren for the call: each part (`body()`,
//! `properties()`, ...) is copied into the plugin when first read, so a plugin
//! pays only for what it reads.
//!
//! # A complete plugin
//!
//! ```
//! use warren_plugin::{Config, Message, Plugin, Verdict};
//!
//! struct Printer {
//!     prefix: String,
//! }
//!
//! impl Plugin for Printer {
//!     fn init(config: Config) -> Result<Self, String> {
//!         Ok(Printer { prefix: config.get_or("prefix", " [x] Received") })
//!     }
//!
//!     fn handle(&mut self, message: Message) -> Verdict {
//!         println!("{} {}", self.prefix, String::from_utf8_lossy(message.body()));
//!         Verdict::Ack
//!     }
//! }
//!
//! warren_plugin::export!(Printer);
//! ```
//!
//! # Building it
//!
//! The plugin is a `cdylib` crate that depends on this one:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! warren-plugin-sdk = { path = "../../plugin-sdk" }
//! ```
//!
//! `cargo build --release --target wasm32-wasip2` then writes a component,
//! `target/wasm32-wasip2/release/<crate>.wasm`, ready for warren's
//! `[plugins.<name>] path`. (`rustup target add wasm32-wasip2` once.)
//!
//! # What a plugin can do
//!
//! - decide: return [`Verdict::Ack`], [`Verdict::Reject`], [`Verdict::Requeue`]
//!   or a republish ([`Verdict::republish`], [`Republish::to`]);
//! - publish extra messages with [`publish`] (held until `handle` returns, and
//!   dropped if it panics);
//! - log through warren with [`log`]; each `println!` line becomes an info
//!   log event of warren's, and each `eprintln!` line a warn one;
//! - read and write headers of every AMQP type, nested arrays and tables
//!   included ([`Message::header`], [`Header::new`] with a [`Value`]): a
//!   message republished with its own headers keeps them type for type.
//!
//! # Headers
//!
//! A header value keeps its exact AMQP type: `Value::Int16(3)` stays a
//! 16-bit integer, a float stays 32-bit, `x-death` stays an array of tables.
//! The contract stores arrays and tables flat (a [`Header`]'s `nested` list,
//! indexed by [`HeaderValue::Array`] / [`HeaderValue::Table`]); [`Value`] is
//! the same value as a tree, and [`Header::new`] / [`Header::value`] convert.
//!
//! ```
//! use warren_plugin::{Header, Message, Value};
//!
//! fn deaths(message: &Message) -> i64 {
//!     // x-death: an array of tables, each with a `count`.
//!     let Some(Value::Array(deaths)) = message.header("x-death") else {
//!         return 0;
//!     };
//!     deaths.iter().filter_map(|d| d.get("count")?.as_int()).sum()
//! }
//!
//! let mut headers = vec![
//!     Header::text("tenant", "acme"),
//!     Header::int("attempt", 2),
//!     Header::new("CC", vec![Value::from("audit")]),
//! ];
//! # let _ = (deaths, &mut headers);
//! ```
//!
//! warren keeps several instances of a plugin and reuses each for many
//! messages, so `self` may carry state between messages, but no instance sees
//! every message. A panic is a trap: the instance is discarded and the message
//! goes to the pipeline's `on_error` policy.
#![deny(missing_docs)]

mod config;
pub mod log;
mod message;
mod types;
mod value;

pub use config::Config;
pub use message::Message;
pub use types::{
    Container, Decimal, Header, HeaderValue, Level, MessageRecord, Outgoing, Properties, Republish,
    Verdict,
};
pub use value::{MAX_DEPTH, Value};

/// A warren plugin: an instance created from its config, then given messages.
///
/// Register the type with [`export!`].
pub trait Plugin: Sized + 'static {
    /// Creates an instance from the plugin's `config` table in warren.toml.
    ///
    /// An error refuses the plugin: at start-up warren exits, on reload the
    /// old version stays in service.
    fn init(config: Config) -> Result<Self, String>;

    /// Decides what becomes of one message, reading from it what it needs.
    fn handle(&mut self, message: Message<'_>) -> Verdict;
}

/// Asks warren to publish an extra message, for example a reply.
///
/// The message is held until `handle` returns; it is sent only if `handle`
/// returns normally, and the broker confirms it before the message being
/// handled is settled. If `handle` panics, it is discarded.
pub fn publish(message: Outgoing) {
    __bindings::warren::plugin::host::publish(&message);
}

/// Makes a [`Plugin`] type the plugin of this component. Use it once, at the
/// top level of the crate.
///
/// ```
/// # use warren_plugin::{Config, Message, Plugin, Verdict};
/// struct AckAll;
///
/// impl Plugin for AckAll {
///     fn init(_config: Config) -> Result<Self, String> {
///         Ok(AckAll)
///     }
///
///     fn handle(&mut self, _message: Message) -> Verdict {
///         Verdict::Ack
///     }
/// }
///
/// warren_plugin::export!(AckAll);
/// ```
///
/// Each `init` replaces the instance; `handle` before a successful `init`
/// panics.
#[macro_export]
macro_rules! export {
    ($plugin:ty) => {
        const _: () = {
            struct __WarrenPluginExport;

            ::std::thread_local! {
                static __WARREN_PLUGIN_INSTANCE:
                    ::core::cell::RefCell<::core::option::Option<$plugin>> =
                    const { ::core::cell::RefCell::new(::core::option::Option::None) };
            }

            impl $crate::__private::Guest for __WarrenPluginExport {
                fn init(
                    config: ::std::vec::Vec<(::std::string::String, ::std::string::String)>,
                ) -> ::core::result::Result<(), ::std::string::String> {
                    $crate::__private::init(&__WARREN_PLUGIN_INSTANCE, config)
                }

                fn handle(message: &$crate::__private::Delivery) -> $crate::Verdict {
                    $crate::__private::handle(&__WARREN_PLUGIN_INSTANCE, message)
                }
            }

            $crate::__bindings::__export_plugin!(
                __WarrenPluginExport with_types_in $crate::__bindings
            );
        };
    };
}

// The README's Rust examples are compiled and run as doctests (`cargo test`).
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

/// The bindings generated from `wit/`: not part of the API.
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "__export_plugin",
        additional_derives: [PartialEq],
        additional_type_attributes: {
            "warren:plugin/types@0.3.0/properties": [#[derive(Default)]],
        },
    });
}

/// What [`export!`] expands to calls: not part of the API.
#[doc(hidden)]
pub mod __private {
    use std::cell::RefCell;
    use std::thread::LocalKey;

    use crate::{Config, Message, Plugin, Verdict};

    pub use crate::__bindings::exports::warren::plugin::handler::Guest;
    pub use crate::__bindings::warren::plugin::delivery::Delivery;

    /// The one instance of a component's plugin.
    pub type Slot<P> = LocalKey<RefCell<Option<P>>>;

    /// Runs `P::init` and keeps the instance; a failure leaves none.
    pub fn init<P: Plugin>(
        slot: &'static Slot<P>,
        config: Vec<(String, String)>,
    ) -> Result<(), String> {
        slot.set(None);
        let instance = P::init(Config::from(config))?;
        slot.set(Some(instance));
        Ok(())
    }

    /// Hands the message lent by warren to the instance made by [`init`].
    pub fn handle<P: Plugin>(slot: &'static Slot<P>, delivery: &Delivery) -> Verdict {
        slot.with_borrow_mut(|instance| match instance {
            Some(instance) => instance.handle(Message::lent(delivery)),
            None => panic!("warren_plugin: handle called before a successful init"),
        })
    }
}
