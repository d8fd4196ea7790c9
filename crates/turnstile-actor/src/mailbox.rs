//! The mailbox: a bounded channel by default, an unbounded one only as a labelled demonstration.

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

/// How a mailbox holds messages waiting for the actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MailboxConfig {
    /// At most `capacity` messages wait; beyond that, `when_full` decides.
    Bounded {
        /// Maximum messages waiting.
        capacity: usize,
        /// What a sender does when the mailbox is full.
        when_full: FullPolicy,
    },
    /// DEMONSTRATION ONLY: a mailbox with no bound, like an Erlang process's. Under a load the
    /// actor cannot keep up with, it grows until memory runs out; Turnstile offers it so that
    /// growth can be watched (mailbox depth), never as a production setting.
    Unbounded,
}

impl MailboxConfig {
    /// A bounded mailbox that refuses at once when full.
    pub fn bounded(capacity: usize) -> Self {
        Self::Bounded {
            capacity,
            when_full: FullPolicy::Reject,
        }
    }
}

/// What a caller does when a bounded mailbox is full.
/// Configured as `reject` / `wait`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FullPolicy {
    /// Fail the call at once with `MailboxFull`.
    Reject,
    /// Wait for room, within the call timeout.
    Wait,
}

pub(crate) enum SendError {
    Full,
    Closed,
}

pub(crate) enum MailboxSender<T> {
    Bounded(mpsc::Sender<T>, FullPolicy),
    Unbounded(mpsc::UnboundedSender<T>),
}

impl<T> Clone for MailboxSender<T> {
    fn clone(&self) -> Self {
        match self {
            Self::Bounded(sender, policy) => Self::Bounded(sender.clone(), *policy),
            Self::Unbounded(sender) => Self::Unbounded(sender.clone()),
        }
    }
}

impl<T> MailboxSender<T> {
    /// Puts `message` in the mailbox and counts it in `depth` once it is in: a sender still
    /// waiting for room (`wait`) is not a message in the mailbox, and one that gives up (its
    /// call timed out) leaves no count behind. The actor's task takes the count back when it
    /// takes the message.
    pub(crate) async fn send(&self, message: T, depth: &AtomicUsize) -> Result<(), SendError> {
        let permit = match self {
            Self::Bounded(sender, FullPolicy::Reject) => {
                sender.try_reserve().map_err(|error| match error {
                    mpsc::error::TrySendError::Full(()) => SendError::Full,
                    mpsc::error::TrySendError::Closed(()) => SendError::Closed,
                })?
            }
            Self::Bounded(sender, FullPolicy::Wait) => {
                sender.reserve().await.map_err(|_| SendError::Closed)?
            }
            Self::Unbounded(sender) => {
                depth.fetch_add(1, Ordering::Relaxed);
                return sender.send(message).map_err(|_| {
                    depth.fetch_sub(1, Ordering::Relaxed);
                    SendError::Closed
                });
            }
        };
        // Counted before it can be taken, so the actor's decrement never comes first.
        depth.fetch_add(1, Ordering::Relaxed);
        permit.send(message);
        Ok(())
    }

    pub(crate) fn is_closed(&self) -> bool {
        match self {
            Self::Bounded(sender, _) => sender.is_closed(),
            Self::Unbounded(sender) => sender.is_closed(),
        }
    }
}

pub(crate) enum MailboxReceiver<T> {
    Bounded(mpsc::Receiver<T>),
    Unbounded(mpsc::UnboundedReceiver<T>),
}

impl<T> MailboxReceiver<T> {
    pub(crate) async fn recv(&mut self) -> Option<T> {
        match self {
            Self::Bounded(receiver) => receiver.recv().await,
            Self::Unbounded(receiver) => receiver.recv().await,
        }
    }

    pub(crate) fn close(&mut self) {
        match self {
            Self::Bounded(receiver) => receiver.close(),
            Self::Unbounded(receiver) => receiver.close(),
        }
    }
}

pub(crate) fn channel<T>(config: MailboxConfig) -> (MailboxSender<T>, MailboxReceiver<T>) {
    match config {
        MailboxConfig::Bounded {
            capacity,
            when_full,
        } => {
            let (sender, receiver) = mpsc::channel(capacity.max(1));
            (
                MailboxSender::Bounded(sender, when_full),
                MailboxReceiver::Bounded(receiver),
            )
        }
        MailboxConfig::Unbounded => {
            let (sender, receiver) = mpsc::unbounded_channel();
            (
                MailboxSender::Unbounded(sender),
                MailboxReceiver::Unbounded(receiver),
            )
        }
    }
}
