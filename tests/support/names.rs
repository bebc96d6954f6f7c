//! Names that no other test, bench or earlier run uses, so that runs sharing one broker never
//! meet in a queue.

use std::sync::atomic::{AtomicU32, Ordering};

/// The family of the tests' names.
pub const TEST_FAMILY: &str = "warren-test";

/// The family of the benches' names.
pub const BENCH_FAMILY: &str = "warren-bench";

/// A name no other test, bench or earlier run uses: `FAMILY.WHAT.PID.N.NANOS` (the process, a
/// counter within it, and the clock against a pid used again).
pub fn unique_in(family: &str, what: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{family}.{what}.{}.{}.{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A test's name for `what`: [`unique_in`] the [`TEST_FAMILY`].
pub fn unique(what: &str) -> String {
    unique_in(TEST_FAMILY, what)
}
