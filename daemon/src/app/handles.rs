//! What the daemon hands out and takes at start: why it did not start (with its exit code),
//! and the channel reload requests come through.

use tokio::sync::mpsc;

/// Why the daemon did not start; each has its exit code ([`crate::exit`]).
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A bad plugin, or a configuration the broker refuses (credentials, vhost, topology).
    #[error("{0:#}")]
    Config(anyhow::Error),
    /// The broker stayed unreachable past `[broker] startup_timeout_ms`.
    #[error("{0:#}")]
    Unreachable(anyhow::Error),
    /// Asked to stop (SIGTERM) before start-up finished: not a failure.
    #[error("{0:#}")]
    Stopped(anyhow::Error),
    /// Anything else.
    #[error("{0:#}")]
    Other(anyhow::Error),
}

impl StartError {
    /// The process exit code for it.
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Config(_) => crate::exit::CONFIG,
            StartError::Unreachable(_) => crate::exit::UNAVAILABLE,
            StartError::Stopped(_) => crate::exit::SUCCESS,
            StartError::Other(_) => crate::exit::FAILURE,
        }
    }
}

/// Asks a running daemon to re-read its config file (what SIGHUP does). A request made while
/// the daemon is still starting is kept, and applied once it runs.
#[derive(Clone)]
pub struct ReloadHandle(pub(super) mpsc::UnboundedSender<()>);

/// Where a daemon receives reload requests.
pub struct Reloads(pub(super) mpsc::UnboundedReceiver<()>);

/// A channel for reload requests: the handle (for a signal handler installed before the
/// daemon starts) and the end [`Daemon::start_with`] takes.
pub fn reload_channel() -> (ReloadHandle, Reloads) {
    let (tx, rx) = mpsc::unbounded_channel();
    (ReloadHandle(tx), Reloads(rx))
}

impl ReloadHandle {
    /// Requests a config reload; returns false if the daemon has stopped.
    pub fn reload(&self) -> bool {
        self.0.send(()).is_ok()
    }
}
