//! systemd's notify protocol (`Type=notify`): READY, RELOADING, STOPPING, STATUS and WATCHDOG.
//!
//! Every call is a no-op when `NOTIFY_SOCKET` is not set, and a failure to notify is logged,
//! never fatal.

use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// Start-up is done: every pipeline consumes.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A reload starts (`Type=notify-reload` needs the monotonic timestamp too).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// The daemon is stopping.
pub fn stopping() {
    send(&[
        NotifyState::Stopping,
        NotifyState::Status("stopping: draining in-flight messages"),
    ]);
}

/// A free-form status line.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// The daemon is alive.
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// How often to ping the watchdog, if systemd asked for it (half of `WATCHDOG_USEC`).
pub fn watchdog_interval() -> Option<Duration> {
    sd_notify::watchdog_enabled().map(|d| d / 2)
}
