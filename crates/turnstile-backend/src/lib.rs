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
//! - [`BackendKind::Redis`]: the state in Redis, updated by one atomic Lua transcription of
//!   the core's GCRA, so several gateway replicas share one limit per key.
//!
//! # Layout
//!
//! - [`Backend`], [`CheckFuture`]: the trait and the future it returns.
//! - [`CheckError`]: every way a check can fail, each with a bounded `reason` label.
//! - [`BackendConfig`], [`build`]: construct a backend from configuration.
//! - `actor`: the key-table actor and the backend that fronts one or N of them; [`shard_for`],
//!   the registry's routing rule.
//! - `concurrent`: the concurrent table and its backend.
//!
//! The concrete backends are private: [`build`] is the one way to make one, so every caller
//! gets the check pool, validation and supervision the configuration asks for.
//! - `table`: the single-owner key table the actors use.
//! - `state_key`: how `(policy, key)` becomes one table key without allocating.
//! - [`SimulatedWork`]: optional per-check work, run inside whatever owns the state.
//! - `redis_backend`: the redis backend and its script (`gcra.lua`), over one multiplexed
//!   connection to a Redis or a Redis Cluster, with the local deny cache; [`RedisConfig`],
//!   [`RedisMode`] and [`RedisUrl`] (whose `Debug` hides the password).
//! - `pool`: the deadpool-managed check workers in front of a backend ([`PoolConfig`]).
//! - [`Faults`]: injected faults (poison a key, slow checks), tripped inside the state owner.
//! - `status`: [`BackendStatus`], [`KillTarget`], and the [`BackendObserver`] of supervision
//!   events.
//!
//! # Invariants
//!
//! - Memory is bounded: no in-process backend ever holds more than `max_keys` keys (Redis
//!   keys expire by `PX` when their state would be empty, so Redis holds live keys only; the
//!   redis backend's local deny cache holds at most `max_keys` too). When the table is full
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
mod faults;
mod pool;
mod redis_backend;
mod state_key;
mod status;
mod table;
#[cfg(feature = "test-redis")]
pub mod test_redis;
mod work;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use turnstile_core::{Clock, Decision, Policy};

pub use actor::shard_for;
pub use config::{BackendConfig, BackendKind, BuildError, UnknownBackend};
pub use error::CheckError;
pub use faults::{Faults, InjectedFault};
pub use pool::PoolConfig;
pub use redis_backend::{
    PolicyNames, RedisClock, RedisConfig, RedisMode, RedisUrl,
    validate_policy as validate_redis_policy,
};
pub use state_key::MAX_KEY_LEN;
pub use status::{
    BackendObserver, BackendState, BackendStatus, ChildStatus, IgnoreEvents, KillError, KillTarget,
    PoolStatus, RedisStatus,
};
pub use turnstile_actor::{ExitReason, RestartType, Strategy, SupervisorConfig};
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

    /// A snapshot of its supervision state (actors, restarts, escalations, pool).
    fn status(&self) -> BackendStatus;

    /// Crashes an actor or a pool worker on purpose (fault injection).
    fn kill(&self, target: KillTarget) -> BoxFuture<'_, Result<(), KillError>>;

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

/// What every backend built by one gateway shares: the clock, the fault injector, and the
/// observer of supervision events.
#[derive(Clone)]
pub struct BuildContext {
    /// Where time comes from.
    pub clock: Arc<dyn Clock>,
    /// Injected faults (poison, slow), shared so they survive a backend switch.
    pub faults: Arc<Faults>,
    /// Told of restarts, escalations and pool worker replacements.
    pub observer: Arc<dyn BackendObserver>,
}

impl BuildContext {
    /// A context with no faults injected and no observer.
    pub fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            clock,
            faults: Arc::default(),
            observer: Arc::new(IgnoreEvents),
        }
    }
}

/// Builds the backend `config` describes (behind a check pool if one is configured).
///
/// Must be called within a tokio runtime: actor backends spawn their actors, the pool its
/// workers, and every backend schedules its sweeping.
pub fn build(
    config: &BackendConfig,
    context: &BuildContext,
) -> Result<Arc<dyn Backend>, BuildError> {
    config.validate()?;
    let backend: Arc<dyn Backend> = match config.kind {
        BackendKind::Actor => Arc::new(actor::ActorBackend::start(config, 1, context)),
        BackendKind::Sharded => {
            Arc::new(actor::ActorBackend::start(config, config.shards, context))
        }
        BackendKind::Concurrent => Arc::new(concurrent::ConcurrentBackend::start(config, context)),
        BackendKind::Redis => Arc::new(redis_backend::RedisBackend::start(
            &config.redis,
            config.max_keys,
            config.sweep_interval,
            context,
        )?),
    };
    match config.pool {
        None => Ok(backend),
        Some(pool) => Ok(Arc::new(pool::PooledBackend::start(
            backend,
            pool,
            config.call_timeout,
            &config.supervisor,
            Arc::clone(&context.observer),
        )?)),
    }
}
