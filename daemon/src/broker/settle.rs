//! Settles each delivery exactly once: ack, reject or requeue — acks coalesced when asked.
//!
//! With ack coalescing, finished acks of a channel go to one task that keeps the channel's
//! watermark: the lowest delivery tag not yet settled. A contiguous run of settled tags from
//! the watermark is acknowledged with one `basic.ack(multiple = true)` on its highest ack,
//! once the run holds a batch (half the prefetch, at most [`ACK_BATCH_MAX`]) or its oldest ack
//! has waited [`STRAGGLER_DELAY`]: the broker then handles one ack frame per batch, as it does
//! for a consumer that acks every 50 messages. Rejects and requeues are always sent at once,
//! on their own, and only then counted as settled, so a multiple ack never covers a delivery
//! that is not finished or that is to be rejected. Acks stuck behind a slow delivery for
//! longer than [`STRAGGLER_DELAY`] are sent one by one, so a slow message cannot hold the
//! prefetch window.

use std::collections::VecDeque;
use std::time::Duration;

use lapin::options::{BasicAckOptions, BasicRejectOptions};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// How a delivery is settled on the broker. Exactly one per delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settlement {
    /// `basic.ack`.
    Ack,
    /// `basic.reject(requeue = false)`: dead-lettered if the queue has a dead-letter exchange.
    Reject,
    /// `basic.reject(requeue = true)`: back to the queue (counted by quorum queues).
    Requeue,
}

/// How long a finished ack may wait before it is sent: for its run to fill a batch, or behind
/// an unfinished delivery (then it is sent alone).
pub const STRAGGLER_DELAY: Duration = Duration::from_millis(5);

/// The most acks one `multiple` ack covers without waiting for [`STRAGGLER_DELAY`].
pub const ACK_BATCH_MAX: u64 = 50;

/// The batch of a channel with `prefetch`: half of it (the broker stops delivering at
/// `prefetch` unacked, so a batch must fill well before), at most [`ACK_BATCH_MAX`].
pub fn ack_batch(prefetch: u16) -> u64 {
    (u64::from(prefetch) / 2).clamp(1, ACK_BATCH_MAX)
}

/// The handle that settles one delivery on the channel it came from.
pub struct Acker {
    inner: lapin::Acker,
    tag: u64,
    coalesce: Option<mpsc::UnboundedSender<Finished>>,
}

impl Acker {
    pub(super) fn new(
        inner: lapin::Acker,
        // The delivery tag; only used when coalescing.
        tag: u64,
        coalesce: Option<mpsc::UnboundedSender<Finished>>,
    ) -> Self {
        Self {
            inner,
            tag,
            coalesce,
        }
    }

    /// Applies `settlement`. Consumes the acker, so a delivery cannot be settled twice.
    ///
    /// A coalesced ack is handed to the channel's settler and reported as sent; if the
    /// channel dies before the settler sends it, the broker redelivers.
    pub async fn settle(self, settlement: Settlement) -> lapin::Result<Settled> {
        if let (Settlement::Ack, Some(settler)) = (settlement, &self.coalesce) {
            let usable = self.inner.usable();
            let _ = settler.send(Finished {
                tag: self.tag,
                ack: Some(self.inner),
            });
            return Ok(Settled::from_sent(usable));
        }
        let sent = send(&self.inner, settlement).await;
        if let Some(settler) = &self.coalesce {
            // Only now may the watermark move past this tag.
            let _ = settler.send(Finished {
                tag: self.tag,
                ack: None,
            });
        }
        sent.map(Settled::from_sent)
    }
}

/// What became of a settlement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settled {
    /// Sent to the broker (or handed to the channel's ack coalescing).
    Sent,
    /// Not sent: the channel the delivery came from is gone, and the broker redelivers it.
    ChannelGone,
}

impl Settled {
    fn from_sent(sent: bool) -> Self {
        if sent {
            Settled::Sent
        } else {
            Settled::ChannelGone
        }
    }
}

async fn send(acker: &lapin::Acker, settlement: Settlement) -> lapin::Result<bool> {
    match settlement {
        Settlement::Ack => acker.ack(BasicAckOptions::default()).await,
        Settlement::Reject => acker.reject(BasicRejectOptions { requeue: false }).await,
        Settlement::Requeue => acker.reject(BasicRejectOptions { requeue: true }).await,
    }
}

/// A delivery that is finished: with its acker if it waits for an ack, or `None` if it was
/// already settled on its own (rejected or requeued).
pub(super) struct Finished {
    tag: u64,
    ack: Option<lapin::Acker>,
}

/// The coalescing settler of one channel: a task that sends the acks.
pub(super) struct Settler {
    sender: mpsc::UnboundedSender<Finished>,
    closing: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Settler {
    /// Starts the settler of a channel whose first delivery tag is 1, acking `batch` at a time.
    pub(super) fn start(batch: u64) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        let closing = CancellationToken::new();
        let task = tokio::spawn(run(receiver, closing.clone(), batch));
        Self {
            sender,
            closing,
            task,
        }
    }

    pub(super) fn sender(&self) -> mpsc::UnboundedSender<Finished> {
        self.sender.clone()
    }

    /// Sends every ack handed over so far; acks handed over later are not sent (their
    /// messages return to the queue when the channel closes).
    pub(super) async fn flush(self) {
        self.closing.cancel();
        let _ = self.task.await;
    }
}

async fn run(
    mut finished: mpsc::UnboundedReceiver<Finished>,
    closing: CancellationToken,
    batch: u64,
) {
    let mut window = Window::default();
    loop {
        let straggler_due = window.oldest_held().map(|since| since + STRAGGLER_DELAY);
        tokio::select! {
            () = closing.cancelled() => break,
            next = finished.recv() => match next {
                Some(f) => window.finish(f.tag, f.ack, Instant::now()),
                None => break,
            },
            () = async {
                match straggler_due {
                    Some(due) => tokio::time::sleep_until(due).await,
                    None => std::future::pending().await,
                }
            } => {}
        }
        // Take the whole burst before acking: that is what makes batches under load. One
        // clock read for the burst: its acks finished within the same wake-up.
        let now = Instant::now();
        while let Ok(f) = finished.try_recv() {
            window.finish(f.tag, f.ack, now);
        }
        flush(&mut window, now, batch).await;
    }
    // Closing: send everything handed over (on a dead channel the ackers refuse quietly).
    while let Ok(f) = finished.try_recv() {
        window.finish(f.tag, f.ack, Instant::now());
    }
    flush(&mut window, Instant::now() + STRAGGLER_DELAY, 1).await;
}

async fn flush(window: &mut Window<lapin::Acker>, now: Instant, batch: u64) {
    if let Some(highest) = window.take_prefix(now, batch, STRAGGLER_DELAY) {
        let _ = highest.ack(BasicAckOptions { multiple: true }).await;
    }
    for straggler in window.take_stragglers(now, STRAGGLER_DELAY) {
        let _ = straggler.ack(BasicAckOptions::default()).await;
    }
}

/// The watermark bookkeeping of one channel, apart from I/O so it can be tested.
#[derive(Debug)]
struct Window<A> {
    /// The lowest delivery tag not yet known to be settled.
    next: u64,
    /// The deliveries from `next` on, by tag (`next` first): `None` while unfinished; when
    /// finished, an ack still to send (or `None` if settled on its own) and when it finished.
    /// Delivery tags are dense and at most a prefetch ahead of `next`, so this stays short.
    done: VecDeque<Option<(Option<A>, Instant)>>,
}

impl<A> Default for Window<A> {
    fn default() -> Self {
        Self {
            next: 1,
            done: VecDeque::new(),
        }
    }
}

impl<A> Window<A> {
    fn finish(&mut self, tag: u64, ack: Option<A>, now: Instant) {
        let Some(Ok(at)) = tag.checked_sub(self.next).map(usize::try_from) else {
            return;
        };
        if at >= self.done.len() {
            self.done.resize_with(at + 1, || None);
        }
        self.done[at] = Some((ack, now));
    }

    /// Moves the watermark over the contiguous run of finished tags, if the run needs no ack,
    /// holds `batch` tags, or has an ack that finished `delay` ago or more; returns the ack
    /// with the highest tag in that run, whose `multiple` ack covers every ack of the run.
    fn take_prefix(&mut self, now: Instant, batch: u64, delay: Duration) -> Option<A> {
        let mut len = 0;
        let mut due = false;
        let mut acks = false;
        for (ack, since) in self.done.iter().map_while(Option::as_ref) {
            len += 1;
            if ack.is_some() {
                acks = true;
                due |= now.duration_since(*since) >= delay;
            }
        }
        if acks && (len as u64) < batch && !due {
            return None;
        }
        let highest = self
            .done
            .drain(..len)
            .filter_map(|finished| finished.and_then(|(ack, _)| ack))
            .last();
        self.next += len as u64;
        highest
    }

    /// Acks that waited behind an unfinished delivery for `delay` or more, to send singly;
    /// they stay in the window as settled so the watermark can pass them later.
    fn take_stragglers(&mut self, now: Instant, delay: Duration) -> Vec<A> {
        self.done
            .iter_mut()
            .flatten()
            .filter(|(ack, since)| ack.is_some() && now.duration_since(*since) >= delay)
            .filter_map(|(ack, _)| ack.take())
            .collect()
    }

    /// When the oldest held ack finished.
    fn oldest_held(&self) -> Option<Instant> {
        self.done
            .iter()
            .flatten()
            .filter(|(ack, _)| ack.is_some())
            .map(|(_, since)| *since)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn contiguous_acks_become_one_multiple_ack() {
        let now = Instant::now();
        let mut w: Window<u64> = Window::default();
        for tag in [3, 1, 2] {
            w.finish(tag, Some(tag), now);
        }
        assert_eq!(w.take_prefix(now, 3, STRAGGLER_DELAY), Some(3));
        assert_eq!(w.next, 4);
        assert!(w.done.is_empty());
    }

    #[test]
    fn a_tag_below_the_watermark_is_ignored() {
        let now = Instant::now();
        let mut w: Window<u64> = Window::default();
        w.finish(1, Some(1), now);
        assert_eq!(w.take_prefix(now, 1, STRAGGLER_DELAY), Some(1));
        w.finish(1, Some(1), now);
        assert!(w.done.is_empty(), "tag 1 is settled already");
        assert_eq!(w.take_prefix(now, 1, STRAGGLER_DELAY), None);
    }

    #[test]
    fn a_run_shorter_than_a_batch_waits_for_the_delay() {
        let now = Instant::now();
        let mut w: Window<u64> = Window::default();
        w.finish(1, Some(1), now);
        w.finish(2, Some(2), now);
        assert_eq!(w.take_prefix(now, 3, STRAGGLER_DELAY), None, "2 of 3");
        assert_eq!(w.next, 1);
        assert_eq!(
            w.take_prefix(now + STRAGGLER_DELAY, 3, STRAGGLER_DELAY),
            Some(2),
            "sent once the oldest has waited"
        );
        assert_eq!(w.next, 3);
    }

    #[test]
    fn batches_are_half_the_prefetch_up_to_the_most() {
        assert_eq!(ack_batch(1), 1);
        assert_eq!(ack_batch(10), 5);
        assert_eq!(ack_batch(1000), ACK_BATCH_MAX);
    }

    #[test]
    fn an_unfinished_delivery_holds_the_acks_behind_it() {
        let now = Instant::now();
        let mut w: Window<u64> = Window::default();
        w.finish(1, Some(1), now);
        w.finish(3, Some(3), now);
        assert_eq!(
            w.take_prefix(now, 1, STRAGGLER_DELAY),
            Some(1),
            "2 is not finished: 3 waits"
        );
        assert_eq!(w.next, 2);
        assert!(w.take_stragglers(now, STRAGGLER_DELAY).is_empty());
        assert_eq!(
            w.take_stragglers(now + STRAGGLER_DELAY, STRAGGLER_DELAY),
            vec![3],
            "a held ack goes out alone after the delay"
        );
        w.finish(2, Some(2), now);
        assert_eq!(
            w.take_prefix(now, 1, STRAGGLER_DELAY),
            Some(2),
            "3 was sent already: the multiple ack stops at 2"
        );
        assert_eq!(w.next, 4);
    }

    #[test]
    fn rejects_are_passed_not_acked() {
        let now = Instant::now();
        let mut w: Window<u64> = Window::default();
        w.finish(1, Some(1), now);
        w.finish(2, None, now); // rejected on its own
        w.finish(3, Some(3), now);
        assert_eq!(w.take_prefix(now, 3, STRAGGLER_DELAY), Some(3));
        let mut w: Window<u64> = Window::default();
        w.finish(1, None, now);
        w.finish(2, None, now);
        assert_eq!(
            w.take_prefix(now, 50, STRAGGLER_DELAY),
            None,
            "nothing to ack when every delivery was rejected"
        );
        assert_eq!(w.next, 3);
    }
}
