//! Waiting for a condition: every test that waits for something does it with [`eventually`].

use std::time::{Duration, Instant};

/// How long a test waits for something to show on the broker before failing.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// How often a condition a test waits for is checked again.
pub const POLL: Duration = Duration::from_millis(50);

/// Polls `probe` every [`POLL`] until it gives `Some`, for at most `patience`, and returns
/// that; the test fails, saying `what` it waited for, if it never does.
pub async fn eventually<T, F, Fut>(
    what: impl std::fmt::Display,
    patience: Duration,
    mut probe: F,
) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(
            start.elapsed() < patience,
            "{what}: not within {patience:?}"
        );
        tokio::time::sleep(POLL).await;
    }
}
