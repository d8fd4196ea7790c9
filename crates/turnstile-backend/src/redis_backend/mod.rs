//! The redis backend: the state lives in Redis, so every replica of the gateway shares one
//! limit per key.
//!
//! Each check is one `EVALSHA` of [`gcra.lua`](gcra.lua), the core's GCRA transcribed: read
//! the key's TAT, decide, store the new TAT with a `PX` expiry at the moment its state would be
//! empty again, all atomically inside Redis. "Now" is Redis's own `TIME`, so replicas with
//! skewed clocks still agree. The script is loaded lazily: `EVALSHA`, and on `NOSCRIPT` (a
//! fresh or restarted Redis) `SCRIPT LOAD` and again (`redis::Script` does exactly this).
//!
//! Connections come from a `deadpool-redis` pool with wait and connect timeouts; each command
//! is bounded by `command_timeout`. A Redis error is a `backend_error` drop, a timeout a
//! `timeout` drop, and both go through the policy's failure mode like any other drop. A
//! background probe (`PING`, `DBSIZE`) keeps readiness and `keys_tracked` current, so `/readyz`
//! answers 503 while Redis is unreachable, and nothing needs restarting when it comes back:
//! dead connections are discarded on recycle and new ones are made on demand.

mod url;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use deadpool_redis::{Pool, PoolError, Runtime};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use turnstile_core::{Clock, Decision, Policy};

use crate::faults::Faults;
use crate::state_key::validate_key;
use crate::status::{BackendState, BackendStatus, KillError, KillTarget, PoolStatus};
use crate::{Backend, BackendKind, BoxFuture, BuildContext, BuildError, CheckError, CheckFuture};

pub use url::RedisUrl;

/// The GCRA script, run atomically by Redis.
const GCRA_LUA: &str = include_str!("gcra.lua");

/// With an injected clock, how much longer than their state a key is kept (Redis expires keys
/// on its own real-time clock, which an injected clock does not follow).
const INJECTED_CLOCK_EXPIRY_SLACK_MS: u64 = 60_000;

/// How often readiness and the key count are refreshed.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Lua numbers are doubles: the script's relative arithmetic is exact while every value stays
/// below 2^53 ns (about 104 days), so a policy's tolerance must too.
const MAX_TOLERANCE_NS: u64 = 1 << 53;

/// Where "now" comes from inside the script.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisClock {
    /// Redis's `TIME`: one clock for every replica (what deployments use).
    #[default]
    Server,
    /// The backend's injected [`Clock`], passed to the script: for tests that replay traces
    /// on a manual clock and compare with the core.
    Injected,
}

/// The redis backend's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]` (its `Debug` hides the password).
    pub url: RedisUrl,
    /// Prepended to every key this backend writes, so several deployments (or other data) can
    /// share one Redis.
    pub key_prefix: String,
    /// Connections in the pool (each carries one command at a time).
    pub pool_size: usize,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest wait for a free pooled connection.
    pub wait_timeout: Duration,
    /// Longest wait for one check's script to answer.
    pub command_timeout: Duration,
    /// Where "now" comes from.
    pub clock: RedisClock,
    /// The name of policy id `i` at index `i`. Redis keys carry the policy's *name*, so
    /// replicas agree even while a rolling deploy adds a policy that shifts the ids; a policy
    /// with no name here is keyed by `#<id>`. Shared: the gateway renames in place when its
    /// policies reload, and every backend built from this configuration sees it.
    pub policy_names: PolicyNames,
}

/// The names of the policies by id, shared between the gateway (which replaces them when its
/// policies reload) and the redis backends built from one configuration (which read them for
/// every key, without a lock).
#[derive(Clone, Default)]
pub struct PolicyNames(Arc<ArcSwap<Vec<String>>>);

impl PolicyNames {
    /// Names by id.
    pub fn new(names: Vec<String>) -> Self {
        Self(Arc::new(ArcSwap::from_pointee(names)))
    }

    /// Replaces the names (new keys use them at once).
    pub fn set(&self, names: Vec<String>) {
        self.0.store(Arc::new(names));
    }
}

impl fmt::Debug for PolicyNames {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.load().iter()).finish()
    }
}

impl PartialEq for PolicyNames {
    fn eq(&self, other: &Self) -> bool {
        *self.0.load() == *other.0.load()
    }
}

impl Eq for PolicyNames {}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: RedisUrl::from("redis://127.0.0.1:6379"),
            key_prefix: "turnstile:".into(),
            pool_size: 32,
            connect_timeout: Duration::from_secs(1),
            wait_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(500),
            clock: RedisClock::Server,
            policy_names: PolicyNames::default(),
        }
    }
}

impl RedisConfig {
    /// Checks the settings no pool can be built from.
    pub fn validate(&self) -> Result<(), BuildError> {
        let invalid = |field, problem: String| Err(BuildError::Redis { field, problem });
        if let Err(error) = redis::IntoConnectionInfo::into_connection_info(self.url.expose()) {
            return invalid(
                "redis_url",
                format!(
                    "`{}` is not a Redis URL (redis://host:port[/db]): {error}",
                    self.url
                ),
            );
        }
        if self.pool_size == 0 {
            return invalid("redis.pool_size", "must be at least 1".into());
        }
        for (field, value) in [
            ("redis.connect_timeout", self.connect_timeout),
            ("redis.wait_timeout", self.wait_timeout),
            ("redis.command_timeout", self.command_timeout),
        ] {
            if value.is_zero() {
                return invalid(field, "must be greater than zero".into());
            }
        }
        Ok(())
    }
}

/// What the readiness probe last saw.
struct Health {
    reachable: AtomicBool,
    /// `DBSIZE` of the selected database (Redis cannot count one prefix cheaply).
    keys: AtomicUsize,
    /// When an error reply (OOM, READONLY...) was last logged: one line per
    /// [`REPLY_ERROR_LOG_INTERVAL`], not one per check.
    reply_error_logged: std::sync::Mutex<Option<std::time::Instant>>,
}

/// At most one warning per this long for Redis's error replies.
const REPLY_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

impl Health {
    /// Logs an error reply at warn, at most once per [`REPLY_ERROR_LOG_INTERVAL`].
    fn warn_reply_error(&self, error: &redis::RedisError) {
        let mut logged = self
            .reply_error_logged
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if logged.is_none_or(|at| at.elapsed() >= REPLY_ERROR_LOG_INTERVAL) {
            *logged = Some(std::time::Instant::now());
            tracing::warn!(%error, "redis refused a check (backend_error); further refusals are not logged for 10 s");
        }
    }
}

/// The Redis-backed backend.
pub(crate) struct RedisBackend {
    pool: Pool,
    script: redis::Script,
    key_prefix: String,
    /// See [`RedisConfig::policy_names`].
    policy_names: PolicyNames,
    clock: Arc<dyn Clock>,
    clock_mode: RedisClock,
    command_timeout: Duration,
    faults: Arc<Faults>,
    health: Arc<Health>,
    stopped: AtomicBool,
    /// Ends the readiness probe on shutdown.
    probe: CancellationToken,
}

impl RedisBackend {
    /// Builds the pool and starts the readiness probe (inside a tokio runtime). Connects
    /// lazily: a Redis that is down at start-up makes the backend not ready, not unbuildable.
    pub(crate) fn start(config: &RedisConfig, context: &BuildContext) -> Result<Self, BuildError> {
        config.validate()?;
        let unusable = |error: String| BuildError::Redis {
            field: "redis_url",
            problem: error,
        };
        let pool = deadpool_redis::Config::from_url(config.url.expose())
            .builder()
            .map_err(|error| unusable(error.to_string()))?
            .max_size(config.pool_size.max(1))
            .wait_timeout(Some(config.wait_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| unusable(error.to_string()))?;
        let health = Arc::new(Health {
            reachable: AtomicBool::new(false),
            keys: AtomicUsize::new(0),
            reply_error_logged: std::sync::Mutex::new(None),
        });
        let probe = CancellationToken::new();
        tokio::spawn(probe_periodically(
            pool.clone(),
            Arc::clone(&health),
            config.command_timeout,
            probe.clone(),
        ));
        Ok(Self {
            pool,
            script: redis::Script::new(GCRA_LUA),
            key_prefix: config.key_prefix.clone(),
            policy_names: config.policy_names.clone(),
            clock: Arc::clone(&context.clock),
            clock_mode: config.clock,
            command_timeout: config.command_timeout,
            faults: Arc::clone(&context.faults),
            health,
            stopped: AtomicBool::new(false),
            probe,
        })
    }

    /// `<prefix><policy name>:<key>`: readable in redis-cli, and the same on every replica
    /// that names the policy the same way. Descriptor rules' keyspace
    /// ([`Policy::RULES_KEYSPACE`]) is named `rules`: its keys name the rule themselves. (A network round trip follows; building the key in
    /// a fresh buffer is not worth avoiding.)
    fn redis_key(&self, policy: &Policy, key: &str) -> Vec<u8> {
        let mut redis_key = Vec::with_capacity(self.key_prefix.len() + 24 + key.len());
        redis_key.extend_from_slice(self.key_prefix.as_bytes());
        match self.policy_names.0.load().get(usize::from(policy.id())) {
            _ if policy.id() == Policy::RULES_KEYSPACE => redis_key.extend_from_slice(b"rules"),
            Some(name) => redis_key.extend_from_slice(name.as_bytes()),
            None => redis_key.extend_from_slice(format!("#{}", policy.id()).as_bytes()),
        }
        redis_key.push(b':');
        redis_key.extend_from_slice(key.as_bytes());
        redis_key
    }

    async fn decide(
        &self,
        redis_key: Vec<u8>,
        policy: &Policy,
        cost: u32,
    ) -> Result<Decision, CheckError> {
        let Some((emission_ns, tolerance_ns)) = script_timing(policy) else {
            // Refused at start-up by `validate_policy`; kept as a definite answer.
            return Err(CheckError::BackendError);
        };
        let (now, expiry_slack_ms) = match self.clock_mode {
            RedisClock::Server => (String::new(), 0),
            RedisClock::Injected => (
                self.clock.now_ns().to_string(),
                INJECTED_CLOCK_EXPIRY_SLACK_MS,
            ),
        };
        let mut invocation = self.script.key(redis_key);
        invocation
            .arg(emission_ns)
            .arg(tolerance_ns)
            .arg(cost)
            .arg(policy.burst())
            .arg(now)
            .arg(expiry_slack_ms);
        // Each error comes with whether it says Redis is unreachable: a lost connection does
        // (readiness drops at once, before the probe notices); an error reply does not (Redis
        // answered: out of memory, read-only replica...), or readiness would flap between the
        // failing checks and the probe's successful PINGs.
        let call = async {
            let mut connection = self.pool.get().await.map_err(|error| {
                let error = pool_error(error);
                (error, error == CheckError::BackendError)
            })?;
            invocation
                .invoke_async::<(i64, i64, i64, i64)>(&mut *connection)
                .await
                .map_err(|error| {
                    let lost = error.is_io_error()
                        || error.is_connection_dropped()
                        || error.is_connection_refusal();
                    if !lost && !error.is_timeout() {
                        self.health.warn_reply_error(&error);
                    }
                    (redis_error(error), lost)
                })
        };
        let answer = match tokio::time::timeout(self.command_timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err((CheckError::Timeout, false)),
        };
        match answer {
            Ok((allowed, remaining, reset_after_ns, retry_after_ns)) => {
                // Read before writing: every check succeeding must not make every core
                // write the same cache line.
                if !self.health.reachable.load(Ordering::Relaxed) {
                    self.health.reachable.store(true, Ordering::Relaxed);
                }
                let allowed = allowed == 1;
                let to_duration = |ns: i64| Duration::from_nanos(u64::try_from(ns).unwrap_or(0));
                Ok(Decision {
                    allowed,
                    limit: policy.limit(),
                    remaining: u32::try_from(remaining).unwrap_or(0).min(policy.burst()),
                    reset_after: to_duration(reset_after_ns),
                    retry_after: (!allowed).then(|| to_duration(retry_after_ns)),
                })
            }
            Err((error, unreachable)) => {
                if unreachable {
                    self.health.reachable.store(false, Ordering::Relaxed);
                }
                Err(error)
            }
        }
    }
}

/// Rejects a policy whose tolerance the script cannot compute exactly (see
/// [`MAX_TOLERANCE_NS`]).
pub fn validate_policy(policy: &Policy) -> Result<(), BuildError> {
    if script_timing(policy).is_none() {
        return Err(BuildError::Redis {
            field: "policies",
            problem: format!(
                "burst × (period / limit) must be under {} days for the redis backend",
                MAX_TOLERANCE_NS / 86_400_000_000_000
            ),
        });
    }
    Ok(())
}

/// The script's `(emission interval, tolerance)` in ns for `policy`, or `None` when the
/// tolerance is too large for the script to compute with exactly (see [`MAX_TOLERANCE_NS`]).
fn script_timing(policy: &Policy) -> Option<(u64, u64)> {
    let emission = duration_ns(policy.emission_interval());
    let tolerance = emission.saturating_mul(u64::from(policy.burst()));
    (tolerance < MAX_TOLERANCE_NS).then_some((emission, tolerance))
}

fn duration_ns(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

fn pool_error(error: PoolError) -> CheckError {
    match error {
        PoolError::Timeout(_) => CheckError::Timeout,
        PoolError::Closed => CheckError::Unavailable,
        PoolError::Backend(error) => redis_error(error),
        other => {
            tracing::warn!(error = %other, "redis pool error");
            CheckError::BackendError
        }
    }
}

fn redis_error(error: redis::RedisError) -> CheckError {
    if error.is_timeout() {
        CheckError::Timeout
    } else {
        tracing::debug!(%error, "redis check failed");
        CheckError::BackendError
    }
}

/// Refreshes readiness and the key count every [`PROBE_INTERVAL`].
async fn probe_periodically(
    pool: Pool,
    health: Arc<Health>,
    timeout: Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval(PROBE_INTERVAL);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let probe = async {
            let mut connection = pool.get().await.map_err(|error| error.to_string())?;
            let (_, keys): (String, usize) = redis::pipe()
                .cmd("PING")
                .cmd("DBSIZE")
                .query_async(&mut *connection)
                .await
                .map_err(|error| error.to_string())?;
            Ok::<usize, String>(keys)
        };
        let result = tokio::time::timeout(timeout, probe)
            .await
            .unwrap_or_else(|_| Err("no answer within the command timeout".into()));
        let was_reachable = health.reachable.load(Ordering::Relaxed);
        match result {
            Ok(keys) => {
                health.keys.store(keys, Ordering::Relaxed);
                health.reachable.store(true, Ordering::Relaxed);
                if !was_reachable {
                    tracing::info!("redis reachable");
                }
            }
            Err(error) => {
                health.reachable.store(false, Ordering::Relaxed);
                if was_reachable {
                    tracing::warn!(%error, "redis unreachable: checks are dropped (backend_error)");
                }
            }
        }
    }
}

impl Drop for RedisBackend {
    fn drop(&mut self) {
        self.probe.cancel();
    }
}

impl Backend for RedisBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Redis
    }

    fn check<'a>(&'a self, key: &'a str, policy: &'a Policy, cost: u32) -> CheckFuture<'a> {
        if self.stopped.load(Ordering::Acquire) {
            return CheckFuture::ready(Err(CheckError::Unavailable));
        }
        // The same validation, in the same order, as every other backend.
        if let Err(error) = validate_key(key) {
            return CheckFuture::ready(Err(error));
        }
        if cost > policy.burst() {
            return CheckFuture::ready(Err(CheckError::CostExceedsBurst(
                turnstile_core::CostExceedsBurst {
                    cost,
                    burst: policy.burst(),
                },
            )));
        }
        self.faults.trip_poison(policy.id(), key);
        let redis_key = self.redis_key(policy, key);
        let slow = self.faults.slow_delay();
        CheckFuture::waiting(async move {
            if let Some(delay) = slow {
                tokio::time::sleep(delay).await;
            }
            self.decide(redis_key, policy, cost).await
        })
    }

    fn keys_tracked(&self) -> usize {
        self.health.keys.load(Ordering::Relaxed)
    }

    fn is_ready(&self) -> bool {
        !self.stopped.load(Ordering::Acquire) && self.health.reachable.load(Ordering::Relaxed)
    }

    fn status(&self) -> BackendStatus {
        let pool = self.pool.status();
        BackendStatus {
            backend: BackendKind::Redis,
            state: if self.stopped.load(Ordering::Acquire) {
                BackendState::Stopped
            } else if self.health.reachable.load(Ordering::Relaxed) {
                BackendState::Running
            } else {
                BackendState::Failed
            },
            children: Vec::new(),
            escalations: 0,
            pool: Some(PoolStatus {
                max_size: pool.max_size,
                size: pool.size,
                available: pool.available,
                waiting: pool.waiting,
                replaced: 0,
                failed: false,
            }),
        }
    }

    fn kill(&self, target: KillTarget) -> BoxFuture<'_, Result<(), KillError>> {
        Box::pin(std::future::ready(Err(target.absent())))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.stopped.store(true, Ordering::Release);
        self.probe.cancel();
        self.pool.close();
        Box::pin(std::future::ready(()))
    }
}
