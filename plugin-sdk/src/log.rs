//! Write to warren's log, tagged with the plugin and the pipeline.
//!
//! ```no_run
//! warren_plugin::log::info("ready");
//! warren_plugin::log::warn(format!("odd body: {} bytes", 0));
//! ```
//!
//! (`println!` and `eprintln!` reach warren's output too, but untagged and
//! without a level.)

use crate::Level;

/// Writes `text` to warren's log at `level`.
pub fn write(level: Level, text: impl AsRef<str>) {
    crate::__bindings::warren::plugin::host::log(level, text.as_ref());
}

/// Logs very detailed tracing.
pub fn trace(text: impl AsRef<str>) {
    write(Level::Trace, text);
}

/// Logs detail for debugging.
pub fn debug(text: impl AsRef<str>) {
    write(Level::Debug, text);
}

/// Logs normal operation.
pub fn info(text: impl AsRef<str>) {
    write(Level::Info, text);
}

/// Logs something unexpected that the plugin handled.
pub fn warn(text: impl AsRef<str>) {
    write(Level::Warn, text);
}

/// Logs a failure.
pub fn error(text: impl AsRef<str>) {
    write(Level::Error, text);
}
