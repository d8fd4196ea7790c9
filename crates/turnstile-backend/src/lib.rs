//! Turnstile's backends: the switchable owners of per-key rate-limit state.
//!
//! Every backend implements the one small object-safe [`Backend`] trait and stores the state the
//! core defines (one `u64` per key), deciding with [`turnstile_core::Policy::check`]. So for the
//! same sequence of checks at the same clock readings, every backend returns the same decisions;
//! what differs is how state is owned, and therefore how it scales and how it fails:
//!
//! - [`BackendKind::Actor`]: ONE actor task owns the whole key table behind a mailbox, the Elixir
//!   GenServer design. Correct, and serialized by design: its ceiling is one check at a time.
//! - [`BackendKind::Sharded`]: N such actors and a registry routing each key to its shard by a
//!   stable hash (Elixir's `Registry`). Same code as the single actor, N times.
//! - [`BackendKind::Concurrent`]: a concurrent map from key to an atomic state updated by
//!   compare-and-swap (ETS). No actor, no mailbox, no lock held across an `.await`.
//!
//! # Layout
//!
//! - [`Backend`], [`CheckFuture`]: the trait and the future it returns.
//! - [`CheckError`]: every way a check can fail, each with a bounded `reason` label.
//! - [`BackendConfig`], [`build`]: construct a backend from configuration.
//! - `actor`: the key-table actor and the backend that fronts one or N of them.
//! - `concurrent`: the concurrent table and its backend.
//! - `table`: the single-owner key table the actors use.
//! - `state_key`: how `(policy, key)` becomes one table key without allocating.
//! - [`SimulatedWork`]: optional per-check work, run inside whatever owns the state.
//!
//! # Invariants
//!
//! - Memory is bounded: no backend ever holds more than `max_keys` keys. When the table is full
//!   and nothing in it has expired, a new key is *refused* ([`CheckError::TableFull`], counted
//!   as a drop) rather than evicting a live key: evicting would hand the evicted client a fresh
//!   burst, and an attacker spraying keys could reset anyone's limit that way. Expired keys
//!   (equivalent to absent ones) are swept periodically, and at once when the table is full.
//! - Keys are at most [`MAX_KEY_LEN`] bytes and never empty.
//! - No backend holds a lock across an `.await`; the concurrent backend never awaits at all
//!   unless simulated I/O-like work is configured.

mod actor;
mod concurrent;
mod config;
mod error;
mod state_key;
mod table;
mod work;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use turnstile_core::{Clock, Decision, Policy};

pub use actor::ActorBackend;
pub use concurrent::ConcurrentBackend;
pub use config::{BackendConfig, BackendKind, BuildError};
pub use error::CheckError;
pub use state_key::MAX_KEY_LEN;
pub use turnstile_actor::{FullPolicy, MailboxConfig};
pub use work::{SimulatedWork, WorkKind};

/// A boxed future for operations off the hot path.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One owner of rate-limit state, selected at start-up.
pub trait Backend: Send + Sync + 'static {
    /// Which design this is (a bounded metric label).
    fn kind(&self) -> BackendKind;

    /// Decides a check of `cost` units for `key` under `policy`.
    fn check<'a>(&'a self, key: &'a str, policy: &'a Policy, cost: u32) -> CheckFuture<'a>;

    /// Keys currently held (expired ones included until swept).
    fn keys_tracked(&self) -> usize;

    /// Whether the backend can serve checks now.
    fn is_ready(&self) -> bool;

    /// Stops the backend: actors finish what they have queued, then end. Checks made afterwards
    /// fail with [`CheckError::Unavailable`].
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// The future a [`Backend::check`] returns.
///
/// A concrete type rather than a boxed future so the trait stays object-safe while the
/// concurrent backend, whose check completes synchronously, answers without allocating; only
/// backends that really wait (actors, simulated I/O) pay for a box.
pub struct CheckFuture<'a>(CheckFutureInner<'a>);

enum CheckFutureInner<'a> {
    Ready(Option<Result<Decision, CheckError>>),
    Waiting(BoxFuture<'a, Result<Decision, CheckError>>),
}

impl<'a> CheckFuture<'a> {
    /// A check already decided.
    pub fn ready(result: Result<Decision, CheckError>) -> Self {
        Self(CheckFutureInner::Ready(Some(result)))
    }

    /// A check that completes later.
    pub fn waiting(future: impl Future<Output = Result<Decision, CheckError>> + Send + 'a) -> Self {
        Self(CheckFutureInner::Waiting(Box::pin(future)))
    }
}

impl Future for CheckFuture<'_> {
    type Output = Result<Decision, CheckError>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.get_mut().0 {
            CheckFutureInner::Ready(result) => Poll::Ready(
                result
                    .take()
                    // Polling a completed future is a caller bug; answer definitely, not panic.
                    .unwrap_or(Err(CheckError::Unavailable)),
            ),
            CheckFutureInner::Waiting(future) => future.as_mut().poll(cx),
        }
    }
}

/// Builds the backend `config` describes, reading time from `clock`.
///
/// Must be called within a tokio runtime: actor backends spawn their actors, and every backend
/// spawns or schedules its sweeping.
pub fn build(
    config: &BackendConfig,
    clock: Arc<dyn Clock>,
) -> Result<Arc<dyn Backend>, BuildError> {
    config.validate()?;
    Ok(match config.kind {
        BackendKind::Actor => Arc::new(ActorBackend::start(config, 1, clock)),
        BackendKind::Sharded => Arc::new(ActorBackend::start(config, config.shards, clock)),
        BackendKind::Concurrent => Arc::new(ConcurrentBackend::start(config, clock)),
    })
}
