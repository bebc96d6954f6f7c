//! A plugin version's instances: reused from message to message, created only when every one
//! is busy, capped by `max_instances`, and dropped once they have stayed unused for a while.
//!
//! The most recently used instance is taken first, so under a steady load the same few stay
//! warm, and those a burst added sink to the front of the queue, where they age out.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{Semaphore, SemaphorePermit};

/// How long an instance may stay unused before the pool drops it (checked each time an
/// instance is put back); the pool always keeps one.
pub const IDLE_INSTANCE_TTL: Duration = Duration::from_secs(60);

/// Instances of one plugin version.
pub(super) struct Pool<T> {
    /// Unused instances, each with when it was last used; the back is the most recent.
    idle: Mutex<VecDeque<(T, Instant)>>,
    /// `max_instances`: one permit per instance in use; none when the plugin has no cap.
    cap: Option<Semaphore>,
    /// Instances alive, in use or not.
    live: AtomicUsize,
}

/// An instance taken from the pool. Put back with [`Lease::release`]; dropped otherwise (a
/// trap, a timeout, a call cancelled half-way), and then it no longer counts.
pub(super) struct Lease<'a, T> {
    item: T,
    pool: &'a Pool<T>,
    counted: Counted<'a>,
    _permit: Option<SemaphorePermit<'a>>,
}

/// Uncounts a leased instance that is dropped instead of put back.
struct Counted<'a>(Option<&'a AtomicUsize>);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        if let Some(live) = self.0 {
            live.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

impl<T> Pool<T> {
    /// An empty pool that lets at most `cap` instances exist at once, if given.
    pub(super) fn new(cap: Option<usize>) -> Self {
        Self {
            idle: Mutex::new(VecDeque::new()),
            cap: cap.map(Semaphore::new),
            live: AtomicUsize::new(0),
        }
    }

    /// Instances alive, in use or not.
    pub(super) fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Adds an instance created outside a lease (the first one, made when the plugin loads).
    pub(super) fn add(&self, item: T) {
        self.live.fetch_add(1, Ordering::Relaxed);
        self.put_back(item, Instant::now());
    }

    /// The most recently used idle instance, or a new one from `create` when none is idle;
    /// with a cap, waits first until fewer than `max_instances` are in use.
    pub(super) async fn lease<E, F>(&self, create: impl FnOnce() -> F) -> Result<Lease<'_, T>, E>
    where
        F: Future<Output = Result<T, E>>,
    {
        let permit = match &self.cap {
            // The semaphore is never closed.
            Some(cap) => cap.acquire().await.ok(),
            None => None,
        };
        let idle = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop_back();
        let item = match idle {
            Some((item, _)) => item,
            None => {
                let item = create().await?;
                self.live.fetch_add(1, Ordering::Relaxed);
                item
            }
        };
        Ok(Lease {
            item,
            pool: self,
            counted: Counted(Some(&self.live)),
            _permit: permit,
        })
    }

    /// Puts an instance back, last used at `now`, and drops those unused for
    /// [`IDLE_INSTANCE_TTL`] (outside the lock: dropping a store unmaps its memory).
    fn put_back(&self, item: T, now: Instant) {
        let stale = {
            let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
            idle.push_back((item, now));
            take_stale(&mut idle, now, IDLE_INSTANCE_TTL)
        };
        if !stale.is_empty() {
            self.live.fetch_sub(stale.len(), Ordering::Relaxed);
        }
    }
}

impl<T> Lease<'_, T> {
    /// The instance.
    pub(super) fn get(&mut self) -> &mut T {
        &mut self.item
    }

    /// Puts the instance back in the pool, as used at `now`.
    pub(super) fn release(self, now: Instant) {
        let Lease {
            item,
            pool,
            mut counted,
            _permit,
        } = self;
        // Still counted: it goes back to the pool.
        counted.0 = None;
        pool.put_back(item, now);
    }
}

/// Takes from the front of `idle` the instances unused for `ttl` or longer, keeping one.
fn take_stale<T>(idle: &mut VecDeque<(T, Instant)>, now: Instant, ttl: Duration) -> Vec<T> {
    let mut stale = Vec::new();
    while idle.len() > 1
        && idle
            .front()
            .is_some_and(|(_, since)| now.saturating_duration_since(*since) >= ttl)
    {
        stale.extend(idle.pop_front().map(|(item, _)| item));
    }
    stale
}

#[cfg(test)]
mod tests {
    use futures_util::FutureExt;

    use super::*;

    #[test]
    fn instances_unused_past_the_ttl_are_dropped_but_one_is_kept() {
        let start = Instant::now();
        let ttl = Duration::from_secs(60);
        let mut idle: VecDeque<(u32, Instant)> = [(1, start), (2, start), (3, start + ttl)].into();
        assert!(take_stale(&mut idle, start + ttl / 2, ttl).is_empty());
        assert_eq!(take_stale(&mut idle, start + ttl, ttl), vec![1, 2]);
        assert_eq!(idle.len(), 1);
        assert!(
            take_stale(&mut idle, start + ttl * 10, ttl).is_empty(),
            "the last one stays"
        );
    }

    #[tokio::test]
    async fn the_most_recent_instance_is_reused_and_new_ones_only_when_all_are_busy() {
        let pool = Pool::new(None);
        pool.add(1u32);
        let create = |n| move || async move { Ok::<_, ()>(n) };
        let mut a = pool.lease(create(2)).await.expect("lease");
        assert_eq!(*a.get(), 1, "the idle one first");
        let mut b = pool.lease(create(2)).await.expect("lease");
        assert_eq!(*b.get(), 2, "a new one: 1 is busy");
        assert_eq!(pool.live(), 2);
        let now = Instant::now();
        b.release(now);
        a.release(now);
        let mut c = pool.lease(create(3)).await.expect("lease");
        assert_eq!(*c.get(), 1, "the last put back");
        drop(c);
        assert_eq!(pool.live(), 1, "a dropped lease no longer counts");
    }

    #[tokio::test]
    async fn the_cap_makes_a_lease_wait_for_an_instance() {
        let pool = Pool::new(Some(1));
        pool.add(1u32);
        let first = pool
            .lease(|| async { Ok::<_, ()>(9) })
            .await
            .expect("lease");
        let second = pool.lease(|| async { Ok::<_, ()>(9) });
        tokio::pin!(second);
        assert!(
            (&mut second).now_or_never().is_none(),
            "no second instance past max_instances"
        );
        first.release(Instant::now());
        let mut second = second.await.expect("lease");
        assert_eq!(*second.get(), 1);
        assert_eq!(pool.live(), 1);
    }
}
