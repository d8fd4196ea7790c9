//! What a backend reports about itself, and what it tells an observer as it happens.
//!
//! The snapshot types also deserialize: they are the admin API's wire format, which clients
//! (the load generator's live view) read back.

use serde::{Deserialize, Serialize};
use turnstile_actor::{ExitReason, SupervisorObserver, SupervisorState};

use crate::BackendKind;

/// A snapshot for the admin API and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendStatus {
    /// Which backend.
    pub backend: BackendKind,
    /// `running`, `failed` (restart intensity exceeded, cooling off) or `stopped`.
    pub state: BackendState,
    /// Each supervised actor (the single actor, or each shard); empty for the concurrent map.
    pub children: Vec<ChildStatus>,
    /// Times the supervisor gave up (restart intensity exceeded).
    pub escalations: u64,
    /// The worker pool in front of the backend, if one is configured.
    pub pool: Option<PoolStatus>,
    /// The redis backend's connection and local deny cache (`None` for the others).
    pub redis: Option<RedisStatus>,
}

/// The redis backend's side of a [`BackendStatus`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedisStatus {
    /// One Redis or a cluster.
    pub mode: crate::RedisMode,
    /// Checks allowed to wait on Redis at once (`redis.max_in_flight`).
    pub max_in_flight: usize,
    /// Checks waiting on Redis now (sent over the multiplexed connection, or about to be).
    pub in_flight: usize,
    /// Checks waiting for an in-flight slot now.
    pub waiting: usize,
    /// Keys in the local deny cache (`None`: the cache is off).
    pub local_deny_cache_keys: Option<usize>,
    /// Checks the local deny cache answered without Redis, since the backend started.
    pub local_denials: u64,
}

/// A backend's serving state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendState {
    /// Serving.
    Running,
    /// Restart intensity exceeded: refusing checks (`unavailable`) until the cool-off ends.
    Failed,
    /// Shut down.
    Stopped,
}

impl From<SupervisorState> for BackendState {
    fn from(state: SupervisorState) -> Self {
        match state {
            SupervisorState::Running => Self::Running,
            SupervisorState::Failed => Self::Failed,
            SupervisorState::Stopped => Self::Stopped,
        }
    }
}

/// One supervised actor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChildStatus {
    /// Its index (shard number; 0 for the single actor).
    pub index: usize,
    /// Whether a live incarnation is registered.
    pub alive: bool,
    /// Restarts since start.
    pub restarts: u64,
    /// Messages waiting in its mailbox.
    pub mailbox_depth: usize,
}

/// The check pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolStatus {
    /// Configured size.
    pub max_size: usize,
    /// Workers currently created.
    pub size: usize,
    /// Idle workers.
    pub available: usize,
    /// Callers waiting for a worker.
    pub waiting: usize,
    /// Dead workers replaced since start.
    pub replaced: u64,
    /// Whether the pool gave up (too many worker deaths in the window) and is cooling off.
    pub failed: bool,
}

/// What can be crashed on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KillTarget {
    /// An actor: the single actor is child 0; shards are numbered from 0.
    Child(usize),
    /// One idle worker of the check pool.
    PoolWorker,
}

impl KillTarget {
    /// Why `self` cannot be killed when the backend has no such actor and no check pool of its
    /// own (a configured pool wraps the backend and answers `PoolWorker` itself).
    pub(crate) fn absent(self) -> KillError {
        match self {
            Self::Child(index) => KillError::NoSuchChild(index),
            Self::PoolWorker => KillError::NoPool,
        }
    }
}

/// Why a kill could not be carried out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KillError {
    /// The backend has no such actor.
    #[error("this backend has no actor number {0}")]
    NoSuchChild(usize),
    /// No pool is configured.
    #[error("no check pool is configured")]
    NoPool,
    /// Every worker is busy (or the pool is failed).
    #[error("no idle pool worker to crash")]
    NoIdleWorker,
    /// The actor exists but is not running right now (restarting, or the backend is failed).
    #[error("actor {0} is not running (restarting, or the backend is failed)")]
    NotRunning(usize),
}

/// Receives supervision events as they happen (the gateway counts and logs them).
pub trait BackendObserver: Send + Sync + 'static {
    /// Actor `child` of `backend` ended.
    fn child_exited(&self, _backend: BackendKind, _child: usize, _reason: ExitReason) {}
    /// Actor `child` of `backend` was restarted.
    fn child_restarted(&self, _backend: BackendKind, _child: usize) {}
    /// `backend`'s supervisor exceeded its restart intensity and failed.
    fn escalated(&self, _backend: BackendKind) {}
    /// `backend` was re-armed after its cool-off.
    fn rearmed(&self, _backend: BackendKind) {}
    /// A dead pool worker was replaced.
    fn pool_worker_replaced(&self, _backend: BackendKind) {}
    /// The pool exceeded its restart intensity and failed (or was re-armed: `failed == false`).
    fn pool_failed(&self, _backend: BackendKind, _failed: bool) {}
    /// `count` expired keys were swept out of `backend`'s table (a periodic or a forced sweep).
    fn keys_evicted(&self, _backend: BackendKind, _count: usize) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct IgnoreEvents;

impl BackendObserver for IgnoreEvents {}

/// Forwards a supervisor's events to a [`BackendObserver`], tagged with the backend.
pub(crate) struct Tagged {
    pub(crate) backend: BackendKind,
    pub(crate) observer: std::sync::Arc<dyn BackendObserver>,
}

impl SupervisorObserver for Tagged {
    fn child_exited(&self, index: usize, reason: ExitReason) {
        tracing::warn!(backend = %self.backend, child = index, ?reason, "actor exited");
        self.observer.child_exited(self.backend, index, reason);
    }
    fn child_restarted(&self, index: usize) {
        tracing::info!(backend = %self.backend, child = index, "restarting actor");
        self.observer.child_restarted(self.backend, index);
    }
    fn escalated(&self) {
        tracing::error!(backend = %self.backend, "restart intensity exceeded: backend failed");
        self.observer.escalated(self.backend);
    }
    fn rearmed(&self) {
        tracing::info!(backend = %self.backend, "cool-off over: backend re-armed");
        self.observer.rearmed(self.backend);
    }
}
