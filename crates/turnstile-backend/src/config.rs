//! What a backend is built from.

use std::time::Duration;

use turnstile_actor::{MailboxConfig, SupervisorConfig};

use crate::SimulatedWork;
use crate::pool::PoolConfig;
use crate::redis_backend::RedisConfig;

/// The backend designs Turnstile can switch between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// One actor owns every key.
    Actor,
    /// N actors, each key routed to one by a stable hash.
    Sharded,
    /// A concurrent map of atomic states; no actor.
    Concurrent,
    /// State in Redis, shared by every replica.
    Redis,
}

impl BackendKind {
    /// Every kind, in documentation order.
    pub const ALL: [Self; 4] = [Self::Actor, Self::Sharded, Self::Concurrent, Self::Redis];

    /// The kinds that keep their state in the process (no external service needed).
    pub const IN_PROCESS: [Self; 3] = [Self::Actor, Self::Sharded, Self::Concurrent];

    /// The kind's name, as configured and as a metric label.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Actor => "actor",
            Self::Sharded => "sharded",
            Self::Concurrent => "concurrent",
            Self::Redis => "redis",
        }
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A backend name that is not one of [`BackendKind::ALL`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown backend `{name}`; valid: {}", BackendKind::ALL.map(|kind| kind.as_str()).join(", "))]
pub struct UnknownBackend {
    /// The name asked for.
    pub name: String,
}

impl std::str::FromStr for BackendKind {
    type Err = UnknownBackend;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| UnknownBackend {
                name: name.to_owned(),
            })
    }
}

/// `--backend NAME` in the binaries: the possible values, and the error for others, come from
/// [`BackendKind::ALL`] and [`BackendKind::as_str`], like serde's names (a test holds them equal).
#[cfg(feature = "clap")]
impl clap::ValueEnum for BackendKind {
    fn value_variants<'a>() -> &'a [Self] {
        &Self::ALL
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.as_str()))
    }
}

/// Everything needed to build a backend.
#[derive(Debug, Clone, PartialEq)]
pub struct BackendConfig {
    /// Which design.
    pub kind: BackendKind,
    /// Number of shards (sharded backend only).
    pub shards: usize,
    /// Each actor's mailbox (actor and sharded backends).
    pub mailbox: MailboxConfig,
    /// How long a caller waits for an actor's reply, like `GenServer.call`'s timeout.
    pub call_timeout: Duration,
    /// The most keys held at once, across all policies (and, for the sharded backend, all
    /// shards: the cap is split exactly across shards, so a full shard refuses new keys even
    /// while others have room; with fewer keys than shards, each shard still holds one).
    pub max_keys: usize,
    /// How often expired keys are swept.
    pub sweep_interval: Duration,
    /// Optional work performed inside the state owner on every check.
    pub simulated_work: Option<SimulatedWork>,
    /// How actors (and pool workers) are restarted, and when the backend gives up.
    pub supervisor: SupervisorConfig,
    /// An optional pool of check workers in front of the backend.
    pub pool: Option<PoolConfig>,
    /// Where the redis backend keeps its state (redis backend only).
    pub redis: RedisConfig,
}

impl BackendConfig {
    /// Each actor's mailbox capacity unless configured otherwise.
    pub const DEFAULT_MAILBOX_CAPACITY: usize = 1024;
}

impl Default for BackendConfig {
    fn default() -> Self {
        Self {
            kind: BackendKind::Concurrent,
            shards: 16,
            mailbox: MailboxConfig::bounded(Self::DEFAULT_MAILBOX_CAPACITY),
            call_timeout: Duration::from_secs(5),
            max_keys: 1_000_000,
            sweep_interval: Duration::from_secs(10),
            simulated_work: None,
            supervisor: SupervisorConfig::default(),
            pool: None,
            redis: RedisConfig::default(),
        }
    }
}

/// A configuration no backend can be built from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BuildError {
    /// `shards` was zero.
    #[error("shards must be at least 1")]
    ZeroShards,
    /// `max_keys` was zero.
    #[error("max_keys must be at least 1")]
    ZeroMaxKeys,
    /// A bounded mailbox of capacity zero.
    #[error("mailbox_capacity must be at least 1")]
    ZeroMailbox,
    /// A zero call timeout or sweep interval.
    #[error("{0} must be greater than zero")]
    ZeroDuration(&'static str),
    /// A pool of zero workers.
    #[error("pool_size must be at least 1 when a pool is configured")]
    ZeroPool,
    /// Restart intensity of zero restarts.
    #[error("max_restarts must be at least 1")]
    ZeroRestarts,
    /// deadpool refused the pool configuration.
    #[error("check pool: {0}")]
    Pool(String),
    /// A redis backend setting is unusable (a malformed URL, a zero timeout, a policy the
    /// script cannot hold exactly).
    #[error("{problem}")]
    Redis {
        /// The setting, named as in the gateway's configuration (`redis_url`, `redis.pool_size`).
        field: &'static str,
        /// What is wrong with it.
        problem: String,
    },
}

impl BuildError {
    /// What is wrong, without the setting's name (for callers that name it their own way).
    pub fn problem(&self) -> String {
        match self {
            Self::ZeroShards | Self::ZeroMaxKeys | Self::ZeroMailbox | Self::ZeroRestarts => {
                "must be at least 1".into()
            }
            Self::ZeroDuration(_) => "must be greater than zero".into(),
            Self::ZeroPool => "must be at least 1 when a pool is configured".into(),
            Self::Pool(problem) => problem.clone(),
            Self::Redis { problem, .. } => problem.clone(),
        }
    }
}

impl BackendConfig {
    /// Checks the numbers a backend cannot be built from.
    pub fn validate(&self) -> Result<(), BuildError> {
        if self.shards == 0 {
            return Err(BuildError::ZeroShards);
        }
        if self.max_keys == 0 {
            return Err(BuildError::ZeroMaxKeys);
        }
        if let MailboxConfig::Bounded { capacity: 0, .. } = self.mailbox {
            return Err(BuildError::ZeroMailbox);
        }
        if self.call_timeout.is_zero() {
            return Err(BuildError::ZeroDuration("call_timeout"));
        }
        if self.sweep_interval.is_zero() {
            return Err(BuildError::ZeroDuration("sweep_interval"));
        }
        if self.pool.is_some_and(|pool| pool.size == 0) {
            return Err(BuildError::ZeroPool);
        }
        if self.kind == BackendKind::Redis {
            self.redis.validate()?;
        }
        if self.supervisor.max_restarts == 0 {
            return Err(BuildError::ZeroRestarts);
        }
        if self.supervisor.window.is_zero() {
            return Err(BuildError::ZeroDuration("restart_window"));
        }
        Ok(())
    }
}
