//! Settles one delivery: ack, reject or requeue, exactly once.

use lapin::options::{BasicAckOptions, BasicNackOptions, BasicRejectOptions};

use crate::decision::Settlement;

/// The handle that settles one delivery on the channel it came from.
pub struct Acker {
    pub(super) inner: lapin::Acker,
}

impl Acker {
    /// Applies `settlement`. Consumes the acker, so a delivery cannot be settled twice.
    ///
    /// `Ok(false)` means the channel it came from is gone: nothing was sent, and the broker
    /// redelivers the message.
    pub async fn settle(self, settlement: Settlement) -> anyhow::Result<bool> {
        let sent = match settlement {
            Settlement::Ack => self.inner.ack(BasicAckOptions::default()).await,
            Settlement::Reject => {
                self.inner
                    .reject(BasicRejectOptions { requeue: false })
                    .await
            }
            Settlement::Requeue => {
                self.inner
                    .nack(BasicNackOptions {
                        multiple: false,
                        requeue: true,
                    })
                    .await
            }
        };
        Ok(sent?)
    }
}
