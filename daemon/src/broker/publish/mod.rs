//! Publishes with publisher confirms and `mandatory`, so a publish counts only once the broker has it.
//!
//! Each pipeline has its own [`Publisher`]: its own channel, so that a message the broker
//! refuses by closing the channel (a 404 for a missing exchange, a 403, a 406) cannot stop
//! another pipeline's publishes. The channel heals itself: a publish that finds it closed
//! reopens it, with a backoff when it keeps dying.
//!
//! A channel the broker closes fails every publish in flight on it, not only the one that
//! caused it, and does not say which that was. So every publish that lost its channel is tried
//! once more *alone* on the reopened channel (a write lock that waits for the publishes in
//! flight, while normal publishes share a read lock): a publish refused when alone is the one
//! the broker refuses, and only its message goes to `on_error`; the others go through.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::options::BasicPublishOptions;
use lapin::types::ShortString;
use lapin::{Confirmation, ErrorKind};
use tokio::sync::RwLock;
use tokio::time::Instant;

mod channel;

use super::convert::properties_to_amqp;
use crate::message::Outgoing;
use channel::open_channel;

/// How long to wait for the broker to confirm a publish (a broker alarm blocks publishers).
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(30);

/// How often a publish interrupted by a lost connection checks whether lapin recovered it.
const RECOVERY_POLL: Duration = Duration::from_millis(20);

/// First wait before reopening a channel that died soon after it was opened; doubled each
/// time it dies young again, up to [`REOPEN_MAX_DELAY`].
const REOPEN_MIN_DELAY: Duration = Duration::from_millis(50);
/// Longest wait before reopening a publishing channel.
const REOPEN_MAX_DELAY: Duration = Duration::from_secs(5);
/// A channel that lived this long before it closed is reopened at once.
const REOPEN_HEALTHY_AFTER: Duration = Duration::from_secs(10);
/// How long an exchange seen to exist is trusted to, before a publish to it checks again.
const EXCHANGE_FRESH: Duration = Duration::from_secs(30);

/// Why a publish did not reach a queue.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// No queue was bound to take it (`mandatory` returned it).
    #[error(
        "unroutable: exchange {exchange:?} routing key {routing_key:?} reaches no queue ({reply})"
    )]
    Returned {
        /// Exchange published to.
        exchange: String,
        /// Routing key used.
        routing_key: String,
        /// The broker's reply text.
        reply: String,
    },
    /// The message cannot be published as given (a header breaking the contract's rules, a
    /// property too long for AMQP); nothing was sent.
    #[error("invalid message: {0}")]
    Invalid(String),
    /// The broker refused it.
    #[error("the broker nacked the publish to exchange {0:?}")]
    Nacked(String),
    /// The broker closed the channel for this publish alone (404 no such exchange, 403 access
    /// refused, 406 precondition failed, ...).
    #[error("the broker refused the publish to exchange {exchange:?}: {code} {text}")]
    Refused {
        /// Exchange published to.
        exchange: String,
        /// The AMQP reply code.
        code: u16,
        /// The broker's reply text.
        text: String,
    },
    /// No confirm within [`CONFIRM_TIMEOUT`].
    #[error("no publisher confirm within {} s (is the broker in a resource alarm?)", CONFIRM_TIMEOUT.as_secs())]
    Timeout,
    /// The channel or connection was lost.
    #[error("publish failed: {0}")]
    Broker(String),
}

impl PublishError {
    /// True if the broker may well take the message later (lost connection, no confirm in
    /// time): its source message goes back to the queue. False for a definitive refusal
    /// (unroutable, nacked, refused), which follows `on_error`.
    pub fn is_transient(&self) -> bool {
        matches!(self, PublishError::Timeout | PublishError::Broker(_))
    }
}

/// What one attempt to publish came to.
enum Attempt {
    Done(Result<(), PublishError>),
    /// The channel was closed under the publish: by the broker (with its code and text), or
    /// with the connection. It may have been another publish's fault.
    ChannelLost {
        refused: Option<(u16, String)>,
        text: String,
    },
}

/// A pipeline's publishing channel, in confirm mode; clones share it.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

struct Shared {
    connection: Arc<lapin::Connection>,
    channel: Mutex<lapin::Channel>,
    /// Reopening is done by one publish at a time; the others wait for it.
    reopen: tokio::sync::Mutex<Reopen>,
    /// Publishes share it; a publish retried after its channel was lost holds it alone.
    gate: RwLock<()>,
    /// Called each time the channel is reopened.
    reopened: Box<dyn Fn() + Send + Sync>,
    /// Set by [`Publisher::close`]: the channel is not reopened any more.
    closed: AtomicBool,
    /// Named exchanges seen to exist, and when.
    exchanges: Mutex<HashMap<String, Instant>>,
    /// The channel that checks an exchange exists (a passive declare of a missing one closes
    /// it, so it is not the publishing channel).
    probe: tokio::sync::Mutex<Option<lapin::Channel>>,
    /// Set when a publish alone on the channel was refused: the channel's last death has a
    /// known cause (that message), not a sick channel, so reopening need not back off.
    explained: AtomicBool,
}

struct Reopen {
    opened: Instant,
    delay: Duration,
}

impl Publisher {
    pub(super) async fn open(
        connection: Arc<lapin::Connection>,
        reopened: impl Fn() + Send + Sync + 'static,
    ) -> anyhow::Result<Self> {
        let channel = open_channel(&connection).await?;
        Ok(Self {
            shared: Arc::new(Shared {
                connection,
                channel: Mutex::new(channel),
                reopen: tokio::sync::Mutex::new(Reopen {
                    opened: Instant::now(),
                    delay: Duration::ZERO,
                }),
                gate: RwLock::new(()),
                reopened: Box::new(reopened),
                closed: AtomicBool::new(false),
                explained: AtomicBool::new(false),
                exchanges: Mutex::new(HashMap::new()),
                probe: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// True while the publishing channel is open (or being restored by lapin's recovery).
    pub fn is_open(&self) -> bool {
        let status = self.current().status().clone();
        status.connected() || status.initializing()
    }

    fn current(&self) -> lapin::Channel {
        self.shared
            .channel
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Publishes one message and waits for the broker's confirm. A publish whose channel is
    /// lost on the way is published once more, alone, on the reopened (or recovered)
    /// channel: an unconfirmed publish may or may not have reached the broker, so a message
    /// can then arrive twice, never zero times.
    pub async fn publish(&self, message: &Outgoing) -> Result<(), PublishError> {
        // A publish to a missing exchange would close the channel under every publish in
        // flight on it: check first (the answer is kept for a while).
        if !self.exchange_exists(&message.exchange).await? {
            return Err(PublishError::Refused {
                exchange: message.exchange.clone(),
                code: 404,
                text: "NOT_FOUND - no such exchange (checked before publishing)".to_owned(),
            });
        }
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        let first = {
            let _shared = self.shared.gate.read().await;
            self.attempt(message, deadline).await
        };
        let Attempt::ChannelLost { text, .. } = first else {
            return first.into_result(message);
        };
        tracing::debug!(error = %text, "publish lost its channel; publishing it again, alone");
        let _alone = self.shared.gate.write().await;
        let deadline = Instant::now() + CONFIRM_TIMEOUT;
        let result = self.attempt(message, deadline).await.into_result(message);
        if let Err(PublishError::Refused { code, .. }) = &result {
            self.shared.explained.store(true, Ordering::Relaxed);
            if *code == 404 {
                self.exchanges().remove(&message.exchange);
            }
        }
        result
    }

    /// Publishes every message and waits until all are confirmed; the first failure is returned.
    pub async fn publish_all(&self, messages: &[Outgoing]) -> Result<(), PublishError> {
        match messages {
            [] => Ok(()),
            [one] => self.publish(one).await,
            many => {
                let results =
                    futures_util::future::join_all(many.iter().map(|m| self.publish(m))).await;
                results.into_iter().collect()
            }
        }
    }

    async fn attempt(&self, message: &Outgoing, deadline: Instant) -> Attempt {
        let channel = match self.usable_channel(deadline).await {
            Ok(channel) => channel,
            Err(e) => return Attempt::Done(Err(e)),
        };
        // Checked by the pipeline for plugins' messages; here for every caller, since lapin
        // cannot encode a longer name.
        for (field, name) in [
            ("exchange", &message.exchange),
            ("routing key", &message.routing_key),
        ] {
            if name.len() > super::SHORT_STRING_MAX {
                return Attempt::Done(Err(PublishError::Invalid(format!(
                    "the {field} is {} bytes long; AMQP allows at most {}",
                    name.len(),
                    super::SHORT_STRING_MAX
                ))));
            }
        }
        let properties = match properties_to_amqp(&message.properties) {
            Ok(properties) => properties,
            Err(problem) => return Attempt::Done(Err(PublishError::Invalid(problem))),
        };
        let confirm = match channel
            .basic_publish(
                ShortString::from(message.exchange.as_str()),
                ShortString::from(message.routing_key.as_str()),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &message.body,
                properties,
            )
            .await
        {
            Ok(confirm) => confirm,
            Err(e) => return lost(&e),
        };
        let confirmation = match tokio::time::timeout(CONFIRM_TIMEOUT, confirm).await {
            Err(_) => return Attempt::Done(Err(PublishError::Timeout)),
            Ok(Err(e)) => return lost(&e),
            Ok(Ok(confirmation)) => confirmation,
        };
        Attempt::Done(match confirmation {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) | Confirmation::Nack(Some(returned)) => {
                Err(PublishError::Returned {
                    exchange: message.exchange.clone(),
                    routing_key: message.routing_key.clone(),
                    reply: returned.reply_text.as_str().to_owned(),
                })
            }
            Confirmation::Nack(None) => Err(PublishError::Nacked(message.exchange.clone())),
            Confirmation::NotRequested => Err(PublishError::Broker(
                "publisher confirms are not enabled on this channel".into(),
            )),
        })
    }

    /// Closes the channel (when its pipeline stops).
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Relaxed);
        if let Some(probe) = self.shared.probe.lock().await.take()
            && probe.status().connected()
        {
            let _ = probe
                .close(200, ShortString::from("pipeline stopped"))
                .await;
        }
        let channel = self.current();
        if channel.status().connected() {
            let _ = channel
                .close(200, ShortString::from("pipeline stopped"))
                .await;
        }
    }
}

impl Attempt {
    /// The attempt's result; a lost channel is a definitive refusal if the broker closed it
    /// (the publish was alone on it, or it is the first try and the broker said why), and a
    /// transient failure if the connection went.
    fn into_result(self, message: &Outgoing) -> Result<(), PublishError> {
        match self {
            Attempt::Done(result) => result,
            Attempt::ChannelLost {
                refused: Some((code, text)),
                ..
            } => Err(PublishError::Refused {
                exchange: message.exchange.clone(),
                code,
                text,
            }),
            Attempt::ChannelLost {
                refused: None,
                text,
            } => Err(PublishError::Broker(text)),
        }
    }
}

/// A publish or confirm error: the channel was closed under it.
fn lost(error: &lapin::Error) -> Attempt {
    let refused = match error.kind() {
        ErrorKind::ProtocolError(amqp) if error.is_amqp_soft_error() => {
            Some((amqp.get_id(), amqp.get_message().as_str().to_owned()))
        }
        _ => None,
    };
    Attempt::ChannelLost {
        refused,
        text: error.to_string(),
    }
}
