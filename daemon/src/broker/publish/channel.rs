//! The publishing channel's upkeep: reopened (with a backoff when it keeps dying) after the
//! broker closed it, waited for while lapin recovers the connection, and exchanges checked
//! before a publish could close it.

use std::collections::HashMap;
use std::sync::PoisonError;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lapin::options::{ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use tokio::time::Instant;

use super::{
    EXCHANGE_FRESH, PublishError, Publisher, RECOVERY_POLL, REOPEN_HEALTHY_AFTER, REOPEN_MAX_DELAY,
    REOPEN_MIN_DELAY,
};

impl Publisher {
    pub(super) fn exchanges(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.shared
            .exchanges
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// True if `name` is the default exchange, a broker's own (`amq.*`, which cannot be
    /// deleted), or an exchange seen to exist in the last [`EXCHANGE_FRESH`]; otherwise asks the
    /// broker with a passive declare on the probe channel.
    pub(super) async fn exchange_exists(&self, name: &str) -> Result<bool, PublishError> {
        let fresh = |seen: &Instant| seen.elapsed() < EXCHANGE_FRESH;
        if name.is_empty()
            || name.starts_with("amq.")
            || self.exchanges().get(name).is_some_and(fresh)
        {
            return Ok(true);
        }
        let mut probe = self.shared.probe.lock().await;
        if self.exchanges().get(name).is_some_and(fresh) {
            return Ok(true);
        }
        let channel = match probe.as_ref().filter(|c| c.status().connected()) {
            Some(channel) => channel.clone(),
            None => {
                let channel = self.shared.connection.create_channel().await.map_err(|e| {
                    PublishError::Broker(format!("cannot check exchange {name:?}: {e}"))
                })?;
                *probe = Some(channel.clone());
                channel
            }
        };
        let passive = ExchangeDeclareOptions {
            passive: true,
            ..ExchangeDeclareOptions::default()
        };
        match channel
            .exchange_declare(
                ShortString::from(name),
                lapin::ExchangeKind::Direct,
                passive,
                FieldTable::default(),
            )
            .await
        {
            Ok(()) => {
                self.exchanges().insert(name.to_owned(), Instant::now());
                Ok(true)
            }
            Err(e) if e.is_amqp_soft_error() => {
                *probe = None;
                Ok(false)
            }
            Err(e) => Err(PublishError::Broker(format!(
                "cannot check exchange {name:?}: {e}"
            ))),
        }
    }

    /// The channel, open: as it is; or once lapin has recovered it (its connection was
    /// lost); or reopened (the broker closed it), after a backoff if it keeps dying.
    pub(super) async fn usable_channel(
        &self,
        deadline: Instant,
    ) -> Result<lapin::Channel, PublishError> {
        loop {
            let channel = self.current();
            let status = channel.status();
            if status.connected() {
                return Ok(channel);
            }
            let connection = self.shared.connection.status();
            if status.initializing() || connection.reconnecting() || connection.connecting() {
                // lapin is restoring the connection and its channels.
                if Instant::now() >= deadline {
                    return Err(PublishError::Broker(
                        "the broker connection was not recovered in time".into(),
                    ));
                }
                tokio::time::sleep(RECOVERY_POLL).await;
                continue;
            }
            if !connection.connected() {
                return Err(PublishError::Broker(
                    "the publishing connection is closed".into(),
                ));
            }
            if self.shared.closed.load(Ordering::Relaxed) {
                return Err(PublishError::Broker("the pipeline has stopped".into()));
            }
            self.reopen(&channel).await?;
        }
    }

    /// Opens a new channel in place of `dead`, unless another publish already did.
    async fn reopen(&self, dead: &lapin::Channel) -> Result<(), PublishError> {
        let mut state = self.shared.reopen.lock().await;
        if self.current().id() != dead.id() || self.current().status().connected() {
            return Ok(());
        }
        // A channel that keeps dying young for no known reason is not reopened in a tight
        // loop. One whose death a refused publish explained is reopened at once.
        let explained = self.shared.explained.swap(false, Ordering::Relaxed);
        state.delay = if explained || state.opened.elapsed() >= REOPEN_HEALTHY_AFTER {
            Duration::ZERO
        } else {
            (state.delay * 2).clamp(REOPEN_MIN_DELAY, REOPEN_MAX_DELAY)
        };
        tokio::time::sleep(state.delay).await;
        // A connection the broker stopped reading (a resource alarm) would never answer.
        let channel = tokio::time::timeout(
            super::CONFIRM_TIMEOUT,
            open_channel(&self.shared.connection),
        )
        .await
        .map_err(|_| PublishError::Timeout)?
        .map_err(|e| PublishError::Broker(format!("{e:#}")))?;
        tracing::info!(
            channel = channel.id(),
            after_ms = state.delay.as_millis() as u64,
            "publishing channel reopened (the broker had closed it)"
        );
        *self
            .shared
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = channel;
        state.opened = Instant::now();
        (self.shared.reopened)();
        Ok(())
    }
}

pub(super) async fn open_channel(connection: &lapin::Connection) -> anyhow::Result<lapin::Channel> {
    use anyhow::Context;
    let channel = connection
        .create_channel()
        .await
        .context("cannot open a channel to publish")?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .context("cannot enable publisher confirms")?;
    Ok(channel)
}
