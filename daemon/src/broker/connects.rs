//! What warren sees of the TCP (and TLS) connects lapin makes for one connection (every one
//! goes through warren's connector: the first, and those of lapin's own recovery), to notice
//! the two ways lapin would otherwise wait for ever.

use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::RECOVERY_ATTEMPTS;

/// How often an open in progress is checked for a handshake that does not come.
const HANDSHAKE_CHECK: Duration = Duration::from_millis(100);

/// The connects of one connection.
///
/// - **lapin giving up.** lapin's recovery gives up silently when the node refuses every
///   connect of a round (1 + [`RECOVERY_ATTEMPTS`] of them): its I/O thread ends, but a
///   refused connect counts as a recoverable error, and recovery starts only from a connected
///   state, so the connection is left "reconnecting" for ever (lapin 4.12, `internal_rpc`'s
///   `SetConnectionError`). A round that connects resets the count, so a count past the
///   round's length means exactly that.
/// - **A handshake that never comes.** A port that accepts connections but never answers
///   (a hung node, a proxy with nothing behind it) holds lapin's first connect for ever: it
///   waits for `connection.start` with no limit. While warren opens a connection, it keeps a
///   second handle on the socket, so that it can shut it and stop lapin's I/O thread.
#[derive(Debug, Clone, Default)]
pub(crate) struct Connects(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    /// Connects that failed since the last one that succeeded.
    failed_in_a_row: AtomicUsize,
    /// Set once warren stopped waiting for the open: every further connect fails at once.
    abandoned: AtomicBool,
    /// While the open is in progress: the last socket connected, and when.
    opening: Mutex<Opening>,
}

#[derive(Debug, Default)]
struct Opening {
    done: bool,
    socket: Option<(std::net::TcpStream, Instant)>,
}

impl Connects {
    /// Notes one connect: a success ends the run of failures.
    pub(crate) fn note(&self, connected: bool) {
        if connected {
            self.0.failed_in_a_row.store(0, Ordering::Relaxed);
        } else {
            self.0.failed_in_a_row.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// True once a whole round of connects has failed: lapin has stopped trying.
    pub(crate) fn exhausted(&self) -> bool {
        self.0.failed_in_a_row.load(Ordering::Relaxed) > RECOVERY_ATTEMPTS
    }

    /// True once warren has stopped waiting for the open: no connect is to be made.
    pub(crate) fn abandoned(&self) -> bool {
        self.0.abandoned.load(Ordering::Relaxed)
    }

    /// Notes a TCP connection made (`socket`: a second handle on it): kept while the open is
    /// in progress, dropped once it ended. (Never kept after: a handle on a later socket would
    /// hold it open after lapin dropped it, and the broker would not see it close.)
    pub(crate) fn connected(&self, socket: Option<OwnedFd>) {
        let mut opening = self.lock();
        if let (false, Some(fd)) = (opening.done, socket) {
            opening.socket = Some((std::net::TcpStream::from(fd), Instant::now()));
        }
    }

    /// Awaits `open` (lapin's connects and its AMQP handshake). If a connect succeeded more
    /// than `limit` ago with no handshake since, gives up on it: shuts the socket (lapin's I/O
    /// thread then ends, its further connects failing at once) and returns an error that
    /// says so.
    pub(crate) async fn open<T>(
        &self,
        open: impl Future<Output = lapin::Result<T>>,
        limit: Duration,
    ) -> lapin::Result<T> {
        tokio::pin!(open);
        let mut check = tokio::time::interval(HANDSHAKE_CHECK);
        let result = loop {
            tokio::select! {
                result = &mut open => break result,
                _ = check.tick() => {
                    if self.handshake_overdue(limit) {
                        self.abandon();
                        break Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "the port took the connection but no AMQP handshake followed \
                                 within {} ms (the URL's connection_timeout): is a responsive \
                                 RabbitMQ node listening there?",
                                limit.as_millis()
                            ),
                        )
                        .into());
                    }
                }
            }
        };
        let mut opening = self.lock();
        opening.done = true;
        opening.socket = None;
        result
    }

    fn handshake_overdue(&self, limit: Duration) -> bool {
        self.lock()
            .socket
            .as_ref()
            .is_some_and(|(_, at)| at.elapsed() > limit)
    }

    fn abandon(&self) {
        self.0.abandoned.store(true, Ordering::Relaxed);
        if let Some((socket, _)) = self.lock().socket.take() {
            let _ = socket.shutdown(std::net::Shutdown::Both);
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Opening> {
        self.0
            .opening
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::{Connects, RECOVERY_ATTEMPTS};

    #[test]
    fn a_round_of_failed_connects_is_lapin_giving_up() {
        let connects = Connects::default();
        for _ in 0..RECOVERY_ATTEMPTS {
            connects.note(false);
        }
        assert!(!connects.exhausted(), "a retry is still to come");
        connects.note(false);
        assert!(
            connects.exhausted(),
            "1 + RECOVERY_ATTEMPTS connects failed"
        );
    }

    #[test]
    fn a_connect_that_succeeds_starts_the_count_over() {
        let connects = Connects::default();
        for _ in 0..RECOVERY_ATTEMPTS {
            connects.note(false);
        }
        connects.note(true);
        for _ in 0..RECOVERY_ATTEMPTS {
            connects.note(false);
        }
        assert!(
            !connects.exhausted(),
            "two rounds' failures are not one round's"
        );
    }
}
