//! GenServer-style actors for Turnstile: one tokio task owns its state and handles one message
//! at a time; callers send a message carrying a oneshot reply and await it with a call timeout.
//!
//! This is the shape of Elixir's `GenServer.call/3` and of tower's `buffer` worker, built honestly
//! so that its properties are real:
//!
//! - **Serialized.** One actor handles one message at a time. Its throughput ceiling is
//!   `1 / (time per message)`, and that is the bottleneck the rest of Turnstile demonstrates.
//! - **Bounded by default.** The mailbox has a capacity; a full mailbox either fails the call at
//!   once ([`CallError::MailboxFull`]) or makes the caller wait (still within its call timeout).
//!   An unbounded mailbox exists only as the labelled demonstration of how a backlog grows
//!   ([`MailboxConfig::Unbounded`]), and its depth is always observable ([`ActorRef::depth`]).
//! - **No caller hangs.** Every call ends within its timeout. When the actor's task ends for any
//!   reason (panic included), its receiver is dropped, every queued message's reply sender with
//!   it, and every waiting caller gets [`CallError::Crashed`] at once: the mailbox-loss lesson of
//!   the seed articles, made definite.
//! - **Abandoned calls cost nothing.** A message whose caller already gave up (timed out) is
//!   skipped instead of handled. This is the one liberty taken with GenServer semantics, which
//!   would process the stale message anyway; it keeps a backlog from doing useless work.
//!
//! # Layout
//!
//! - [`Actor`]: what an actor implements (`handle_call`, optional periodic `handle_tick`).
//! - [`spawn`] starts one; [`ActorRef`] is the cloneable handle; [`ActorTask`] is its running
//!   task (join it, or ask it to stop gracefully).
//! - [`MailboxConfig`], [`FullPolicy`]: how the mailbox behaves.
//! - [`CallError`]: the definite ways a call fails.
//!
//! - [`Supervisor`]: restarts crashed actors per restart type and strategy, with jittered
//!   backoff, and escalates past its restart intensity; it also keeps the registry that
//!   routes callers to each child's live incarnation.

mod mailbox;
mod supervisor;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

pub use mailbox::{FullPolicy, MailboxConfig};
use mailbox::{MailboxReceiver, MailboxSender, SendError};
pub use supervisor::{
    ChildStatus, ExitReason, NoObserver, RestartType, RestartWindow, Strategy, SupervisionStatus,
    Supervisor, SupervisorConfig, SupervisorObserver, SupervisorSpec, SupervisorState,
};

/// An actor: state owned by one task, changed only by the messages it handles one at a time.
pub trait Actor: Send + 'static {
    /// The request a caller sends.
    type Call: Send + 'static;
    /// The reply a caller receives.
    type Reply: Send + 'static;

    /// Handles one call. No other message is handled until this future completes.
    fn handle_call(&mut self, call: Self::Call) -> impl Future<Output = Self::Reply> + Send;

    /// How often [`Actor::handle_tick`] runs between messages (`handle_info(:tick)` in OTP terms).
    fn tick_interval(&self) -> Option<Duration> {
        None
    }

    /// Periodic housekeeping, run by the actor's own task between messages.
    fn handle_tick(&mut self) {}
}

/// Why a call failed. Each variant is definite: the caller knows its request was not served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The mailbox was full and the mailbox is configured to refuse rather than wait.
    #[error("the actor's mailbox is full")]
    MailboxFull,
    /// No reply within the call timeout (the message may still be queued; it will be skipped).
    #[error("no reply within the call timeout")]
    Timeout,
    /// The actor's task ended while this call was queued or being handled.
    #[error("the actor crashed before replying")]
    Crashed,
    /// The actor was not running when the call was made (stopped, or not yet restarted).
    #[error("the actor is not running")]
    Stopped,
}

/// One message in a mailbox: the call, where to reply, and the caller's tracing span so the
/// actor's work is attributed to the request that caused it.
struct Envelope<A: Actor> {
    call: A::Call,
    reply: oneshot::Sender<A::Reply>,
    span: tracing::Span,
}

/// A cloneable handle to a running actor (the client API of a GenServer).
pub struct ActorRef<A: Actor> {
    mailbox: MailboxSender<Envelope<A>>,
    call_timeout: Duration,
    /// Messages in the mailbox, not yet taken by the actor (senders waiting for room are not
    /// counted); shared with the actor's task, which decrements it. Exported as the
    /// mailbox-depth metric.
    depth: Arc<AtomicUsize>,
}

impl<A: Actor> Clone for ActorRef<A> {
    fn clone(&self) -> Self {
        Self {
            mailbox: self.mailbox.clone(),
            call_timeout: self.call_timeout,
            depth: Arc::clone(&self.depth),
        }
    }
}

impl<A: Actor> std::fmt::Debug for ActorRef<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActorRef")
            .field("call_timeout", &self.call_timeout)
            .field("depth", &self.depth())
            .finish()
    }
}

impl<A: Actor> ActorRef<A> {
    /// Sends `call` and waits for the reply, for at most the call timeout in total (waiting for
    /// mailbox room, if the mailbox waits when full, counts against it, as in `GenServer.call`).
    pub async fn call(&self, call: A::Call) -> Result<A::Reply, CallError> {
        let (reply, response) = oneshot::channel();
        let envelope = Envelope {
            call,
            reply,
            span: tracing::Span::current(),
        };
        let exchange = async {
            if let Err(error) = self.mailbox.send(envelope, &self.depth).await {
                return Err(match error {
                    SendError::Full => CallError::MailboxFull,
                    SendError::Closed => CallError::Stopped,
                });
            }
            // The reply sender is dropped unanswered only when the actor's task ends.
            response.await.map_err(|_| CallError::Crashed)
        };
        tokio::time::timeout(self.call_timeout, exchange)
            .await
            .unwrap_or(Err(CallError::Timeout))
    }

    /// Messages waiting in the mailbox right now.
    pub fn depth(&self) -> usize {
        self.depth.load(Ordering::Relaxed)
    }

    /// Whether the actor's task has ended (its mailbox is closed).
    pub fn is_closed(&self) -> bool {
        self.mailbox.is_closed()
    }
}

/// The running task of an actor.
#[derive(Debug)]
pub struct ActorTask {
    handle: JoinHandle<()>,
    stop: CancellationToken,
}

impl ActorTask {
    /// Asks the actor to stop: it stops accepting messages, handles those already queued, then
    /// ends. Returns once it has ended. A task that ended by panicking reports `Err`.
    pub async fn stop(self) -> Result<(), tokio::task::JoinError> {
        self.stop.cancel();
        self.handle.await
    }

    /// Waits for the task to end on its own; `Err` carries the panic if it crashed.
    pub async fn join(self) -> Result<(), tokio::task::JoinError> {
        self.handle.await
    }

    /// Kills the task at its next await point, without handling what is queued (a brutal kill).
    pub fn abort(&self) {
        self.handle.abort();
    }
}

/// Starts `actor` on its own task with the given mailbox and call timeout.
///
/// Must be called from within a tokio runtime.
pub fn spawn<A: Actor>(
    actor: A,
    mailbox: MailboxConfig,
    call_timeout: Duration,
) -> (ActorRef<A>, ActorTask) {
    let (sender, receiver) = mailbox::channel(mailbox);
    let depth = Arc::new(AtomicUsize::new(0));
    let stop = CancellationToken::new();
    let handle = tokio::spawn(run(actor, receiver, Arc::clone(&depth), stop.clone()));
    (
        ActorRef {
            mailbox: sender,
            call_timeout,
            depth,
        },
        ActorTask { handle, stop },
    )
}

/// The actor's loop: one message at a time until every handle is gone or a stop is asked for.
async fn run<A: Actor>(
    mut actor: A,
    mut mailbox: MailboxReceiver<Envelope<A>>,
    depth: Arc<AtomicUsize>,
    stop: CancellationToken,
) {
    let mut ticker = actor.tick_interval().map(|period| {
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker
    });
    loop {
        let next_tick = async {
            match ticker.as_mut() {
                Some(ticker) => ticker.tick().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => {
                // Graceful stop: refuse new messages, finish what was already accepted.
                mailbox.close();
                while let Some(envelope) = mailbox.recv().await {
                    depth.fetch_sub(1, Ordering::Relaxed);
                    handle_one(&mut actor, envelope).await;
                }
                return;
            }
            envelope = mailbox.recv() => match envelope {
                Some(envelope) => {
                    depth.fetch_sub(1, Ordering::Relaxed);
                    handle_one(&mut actor, envelope).await;
                }
                None => return,
            },
            _ = next_tick => actor.handle_tick(),
        }
    }
}

async fn handle_one<A: Actor>(actor: &mut A, envelope: Envelope<A>) {
    if envelope.reply.is_closed() {
        // The caller timed out while this waited in the mailbox; nobody wants the answer.
        return;
    }
    let reply = actor
        .handle_call(envelope.call)
        .instrument(envelope.span)
        .await;
    // The caller may have timed out meanwhile; a reply nobody waits for is simply dropped.
    let _ = envelope.reply.send(reply);
}

#[cfg(test)]
mod tests;
