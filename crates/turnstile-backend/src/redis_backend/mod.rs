//! The redis backend: the state lives in Redis (one server, or a Redis Cluster), so every
//! replica of the gateway shares one limit per key.
//!
//! Each check is one `EVALSHA` of [`gcra.lua`](gcra.lua), the core's GCRA transcribed: read
//! the key's TAT, decide, store the new TAT with a `PX` expiry at the moment its state would be
//! empty again, all atomically inside Redis. "Now" is Redis's own `TIME`, so replicas with
//! skewed clocks still agree. One check touches one key, so in a cluster it is one slot on one
//! primary. The script is loaded lazily: `EVALSHA`, and on `NOSCRIPT` (a fresh, restarted or
//! newly promoted Redis) `SCRIPT LOAD` and again (`redis::Script` does exactly this; in a
//! cluster the load goes to every node).
//!
//! # Layout
//!
//! - `connection`: the one multiplexed connection all checks share (pipelined; reconnecting
//!   standalone, or slot-routed cluster), connected lazily, and the readiness probe's commands.
//! - `deny_cache`: the exact local over-limit cache: denials answered without Redis.
//! - `url`: [`RedisUrl`], whose `Debug` hides the password.
//!
//! # Bounds and failures
//!
//! At most `max_in_flight` checks wait on Redis at once; one more waits up to `wait_timeout`
//! for a slot (then a `timeout` drop). Each check is bounded by `command_timeout` as a whole
//! (slot, connection, retries and redirections included). A Redis error is a `backend_error`
//! drop, a timeout a `timeout` drop, and both go through the policy's failure mode like any
//! other drop. A background probe keeps readiness and `keys_tracked` current, so `/readyz`
//! answers 503 while Redis is unreachable (standalone) or the cluster's state is not ok, and
//! nothing needs restarting when it comes back.
//!
//! Sentinel is not supported: redis-rs's sentinel client resolves the primary when it opens a
//! connection, and nothing would re-resolve it for a long-lived multiplexed connection after a
//! failover; cluster mode covers the managed offerings.

mod connection;
mod deny_cache;
mod url;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use turnstile_core::{Clock, Decision, Policy};

use crate::faults::Faults;
use crate::state_key::validate_key;
use crate::status::{BackendState, BackendStatus, KillError, KillTarget, RedisStatus};
use crate::{Backend, BackendKind, BoxFuture, BuildContext, BuildError, CheckError, CheckFuture};

use connection::Connector;
use deny_cache::{DenyCache, Lookup};
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

/// What `redis_url` points at.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One Redis (`redis_url` is one URL).
    #[default]
    Standalone,
    /// A Redis Cluster (`redis_url` is a comma-separated list of seed nodes; one is enough,
    /// the others are tried when it is down).
    Cluster,
}

impl RedisMode {
    /// The mode's name, as configured.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Standalone => "standalone",
            Self::Cluster => "cluster",
        }
    }
}

/// The redis backend's settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or in cluster mode a comma-separated list of
    /// seed nodes (its `Debug` hides the passwords).
    pub url: RedisUrl,
    /// One Redis or a cluster.
    pub mode: RedisMode,
    /// Prepended to every key this backend writes, so several deployments (or other data) can
    /// share one Redis.
    pub key_prefix: String,
    /// Checks waiting on Redis at once, over the one multiplexed connection (which pipelines
    /// them): a bound on what a slow Redis can make this replica hold.
    pub max_in_flight: usize,
    /// Longest wait to open a connection.
    pub connect_timeout: Duration,
    /// Longest wait for an in-flight slot.
    pub wait_timeout: Duration,
    /// Longest wait for one check's script to answer.
    pub command_timeout: Duration,
    /// Where "now" comes from.
    pub clock: RedisClock,
    /// Answer a key's further denials locally until Redis's retry instant (see
    /// `deny_cache`); bounded by the backend's `max_keys`.
    pub local_deny_cache: bool,
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

    /// Calls `with` on the name `policy`'s keys carry in Redis: its configured name,
    /// `rules` for descriptor rules' keyspace ([`Policy::RULES_KEYSPACE`], whose keys name the
    /// rule themselves), or `#<id>` for a policy with no name.
    fn with_keyspace<R>(&self, policy: &Policy, with: impl FnOnce(&[u8]) -> R) -> R {
        if policy.id() == Policy::RULES_KEYSPACE {
            return with(b"rules");
        }
        match self.0.load().get(usize::from(policy.id())) {
            Some(name) => with(name.as_bytes()),
            None => with(format!("#{}", policy.id()).as_bytes()),
        }
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
            mode: RedisMode::Standalone,
            key_prefix: "turnstile:".into(),
            max_in_flight: 1024,
            connect_timeout: Duration::from_secs(1),
            wait_timeout: Duration::from_millis(500),
            command_timeout: Duration::from_millis(500),
            clock: RedisClock::Server,
            local_deny_cache: true,
            policy_names: PolicyNames::default(),
        }
    }
}

impl RedisConfig {
    /// The most checks `max_in_flight` may allow at once (each waits on one connection:
    /// beyond this, a slow Redis would only pile up more waiting).
    pub const MAX_IN_FLIGHT: usize = 65_536;

    /// Checks the settings no connection can be made from.
    pub fn validate(&self) -> Result<(), BuildError> {
        let invalid = |field, problem: String| Err(BuildError::Redis { field, problem });
        let seeds: Vec<&str> = self.url.seeds().collect();
        if self.mode == RedisMode::Standalone && seeds.len() > 1 {
            return invalid(
                "redis_url",
                format!(
                    "`{}` is a list of {} URLs, which only `redis.mode = \"cluster\"` takes",
                    self.url,
                    seeds.len()
                ),
            );
        }
        for seed in seeds {
            // Quoted redacted: the URL may carry a password.
            let shown = RedisUrl::from(seed);
            match redis::IntoConnectionInfo::into_connection_info(seed) {
                Err(error) => {
                    return invalid(
                        "redis_url",
                        format!("`{shown}` is not a Redis URL (redis://host:port[/db]): {error}"),
                    );
                }
                Ok(info) if self.mode == RedisMode::Cluster && info.redis_settings().db() != 0 => {
                    return invalid(
                        "redis_url",
                        format!(
                            "`{shown}` selects a database, and a Redis Cluster has only database 0"
                        ),
                    );
                }
                Ok(_) => {}
            }
        }
        if self.max_in_flight == 0 {
            return invalid("redis.max_in_flight", "must be at least 1".into());
        }
        if self.max_in_flight > Self::MAX_IN_FLIGHT {
            return invalid(
                "redis.max_in_flight",
                format!(
                    "{} is over the maximum of {}",
                    self.max_in_flight,
                    Self::MAX_IN_FLIGHT
                ),
            );
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
    /// `DBSIZE` of the selected database, summed over the primaries of a cluster (Redis
    /// cannot count one prefix cheaply).
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
    connector: Arc<Connector>,
    /// One permit per check allowed to wait on Redis (`max_in_flight`).
    in_flight: Semaphore,
    max_in_flight: usize,
    /// Checks waiting for a permit right now (for the status).
    waiting: AtomicUsize,
    wait_timeout: Duration,
    script: redis::Script,
    key_prefix: String,
    /// See [`RedisConfig::policy_names`].
    policy_names: PolicyNames,
    clock: Arc<dyn Clock>,
    clock_mode: RedisClock,
    command_timeout: Duration,
    /// `None` when `local_deny_cache = false`.
    deny_cache: Option<DenyCache>,
    faults: Arc<Faults>,
    health: Arc<Health>,
    stopped: AtomicBool,
    /// Ends the readiness probe on shutdown.
    probe: CancellationToken,
}

impl RedisBackend {
    /// Prepares the connection and starts the readiness probe (inside a tokio runtime).
    /// Connects lazily: a Redis that is down at start-up makes the backend not ready, not
    /// unbuildable.
    pub(crate) fn start(
        config: &RedisConfig,
        max_keys: usize,
        sweep_interval: Duration,
        context: &BuildContext,
    ) -> Result<Self, BuildError> {
        config.validate()?;
        let connector = Arc::new(Connector::new(config)?);
        let health = Arc::new(Health {
            reachable: AtomicBool::new(false),
            keys: AtomicUsize::new(0),
            reply_error_logged: std::sync::Mutex::new(None),
        });
        let probe = CancellationToken::new();
        tokio::spawn(probe_periodically(
            Arc::clone(&connector),
            Arc::clone(&health),
            config.command_timeout,
            probe.clone(),
        ));
        Ok(Self {
            connector,
            in_flight: Semaphore::new(config.max_in_flight),
            max_in_flight: config.max_in_flight,
            waiting: AtomicUsize::new(0),
            wait_timeout: config.wait_timeout,
            script: redis::Script::new(GCRA_LUA),
            key_prefix: config.key_prefix.clone(),
            policy_names: config.policy_names.clone(),
            clock: Arc::clone(&context.clock),
            clock_mode: config.clock,
            command_timeout: config.command_timeout,
            deny_cache: config
                .local_deny_cache
                .then(|| DenyCache::start(max_keys, sweep_interval, Arc::clone(&context.clock))),
            faults: Arc::clone(&context.faults),
            health,
            stopped: AtomicBool::new(false),
            probe,
        })
    }

    /// `<prefix><policy name>:<key>`: readable in redis-cli, and the same on every replica
    /// that names the policy the same way. (A network round trip follows; building the key in
    /// a fresh buffer is not worth avoiding.)
    fn redis_key(&self, policy: &Policy, key: &str) -> Vec<u8> {
        let mut redis_key = Vec::with_capacity(self.key_prefix.len() + 24 + key.len());
        redis_key.extend_from_slice(self.key_prefix.as_bytes());
        self.policy_names
            .with_keyspace(policy, |name| redis_key.extend_from_slice(name));
        redis_key.push(b':');
        redis_key.extend_from_slice(key.as_bytes());
        redis_key
    }

    /// Takes an in-flight slot, waiting at most `wait_timeout`.
    async fn slot(&self) -> Result<tokio::sync::SemaphorePermit<'_>, CheckError> {
        if let Ok(permit) = self.in_flight.try_acquire() {
            return Ok(permit);
        }
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let permit = tokio::time::timeout(self.wait_timeout, self.in_flight.acquire()).await;
        self.waiting.fetch_sub(1, Ordering::Relaxed);
        match permit {
            Ok(Ok(permit)) => Ok(permit),
            Ok(Err(_closed)) => Err(CheckError::Unavailable),
            Err(_elapsed) => Err(CheckError::Timeout),
        }
    }

    /// One check of a key whose window has just reopened (see `deny_cache`): the first such
    /// check claims the key and asks Redis; the others wait for its answer and are decided by
    /// the bound it leaves, or ask Redis in turn. All within one `command_timeout`.
    async fn decide_one_at_a_time(
        &self,
        cache: &DenyCache,
        redis_key: Vec<u8>,
        digest: u64,
        policy: &Policy,
        cost: u32,
    ) -> Result<Decision, CheckError> {
        let deadline = tokio::time::Instant::now() + self.command_timeout;
        loop {
            let done = match cache.try_claim(digest) {
                Ok(_claim) => {
                    return self
                        .decide(redis_key, Some(digest), policy, cost, deadline)
                        .await;
                }
                Err(done) => done,
            };
            let answered = done.notified();
            if cache.still_claimed(digest, &done)
                && tokio::time::timeout_at(deadline, answered).await.is_err()
            {
                return Err(CheckError::Timeout);
            }
            match cache.lookup(digest, policy, cost, self.clock.now_ns()) {
                Lookup::Denied(denial) => return Ok(denial),
                Lookup::Ask => {
                    return self
                        .decide(redis_key, Some(digest), policy, cost, deadline)
                        .await;
                }
                Lookup::Reopened => {}
            }
        }
    }

    async fn decide(
        &self,
        redis_key: Vec<u8>,
        cache_digest: Option<u64>,
        policy: &Policy,
        cost: u32,
        deadline: tokio::time::Instant,
    ) -> Result<Decision, CheckError> {
        let Some((emission_ns, tolerance_ns)) = script_timing(policy) else {
            // Refused at start-up by `validate_policy`; kept as a definite answer.
            return Err(CheckError::BackendError);
        };
        // Read before the command leaves: Redis reads its own "now" later, so this instant
        // plus the answer's `reset_after` is a lower bound on the key's TAT (`deny_cache`).
        let sent_ns = self.clock.now_ns();
        let (now, expiry_slack_ms) = match self.clock_mode {
            RedisClock::Server => (String::new(), 0),
            RedisClock::Injected => (sent_ns.to_string(), INJECTED_CLOCK_EXPIRY_SLACK_MS),
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
            let _slot = self.slot().await.map_err(|error| (error, false))?;
            let mut connection = self
                .connector
                .get()
                .await
                .map_err(|error| (redis_error(error), true))?;
            invocation
                .invoke_async::<(i64, i64, i64, i64)>(&mut connection)
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
        let answer = match tokio::time::timeout_at(deadline, call).await {
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
                let decision = Decision {
                    allowed,
                    limit: policy.limit(),
                    remaining: u32::try_from(remaining).unwrap_or(0).min(policy.burst()),
                    reset_after: to_duration(reset_after_ns),
                    retry_after: (!allowed).then(|| to_duration(retry_after_ns)),
                };
                if let (Some(cache), Some(digest)) = (&self.deny_cache, cache_digest) {
                    cache.answered(
                        digest,
                        allowed,
                        sent_ns,
                        decision.reset_after,
                        self.clock.now_ns(),
                    );
                }
                Ok(decision)
            }
            Err((error, unreachable)) => {
                // In a cluster one unreachable primary is its slots' problem, not the
                // cluster's: only the probe clears readiness there (see `Connector::probe`).
                if unreachable && self.connector.mode() == RedisMode::Standalone {
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
    connector: Arc<Connector>,
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
        let result = tokio::time::timeout(timeout, connector.probe())
            .await
            .unwrap_or_else(|_| Err("no answer within the command timeout".into()));
        let was_reachable = health.reachable.load(Ordering::Relaxed);
        match result {
            Ok(keys) => {
                if let Some(keys) = keys {
                    health.keys.store(keys, Ordering::Relaxed);
                }
                health.reachable.store(true, Ordering::Relaxed);
                if !was_reachable {
                    tracing::info!(mode = connector.mode().as_str(), "redis reachable");
                }
            }
            Err(error) => {
                health.reachable.store(false, Ordering::Relaxed);
                if was_reachable {
                    tracing::warn!(%error, mode = connector.mode().as_str(), "redis unreachable: checks are dropped (backend_error)");
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
        let (cache_digest, reopened) = match &self.deny_cache {
            Some(cache) => {
                let digest = self
                    .policy_names
                    .with_keyspace(policy, |name| cache.digest(name, key.as_bytes()));
                match cache.lookup(digest, policy, cost, self.clock.now_ns()) {
                    Lookup::Denied(denial) => return CheckFuture::ready(Ok(denial)),
                    Lookup::Reopened => (Some(digest), true),
                    Lookup::Ask => (Some(digest), false),
                }
            }
            None => (None, false),
        };
        let redis_key = self.redis_key(policy, key);
        let slow = self.faults.slow_delay();
        CheckFuture::waiting(async move {
            if let Some(delay) = slow {
                tokio::time::sleep(delay).await;
            }
            match (&self.deny_cache, cache_digest) {
                (Some(cache), Some(digest)) if reopened => {
                    self.decide_one_at_a_time(cache, redis_key, digest, policy, cost)
                        .await
                }
                _ => {
                    let deadline = tokio::time::Instant::now() + self.command_timeout;
                    self.decide(redis_key, cache_digest, policy, cost, deadline)
                        .await
                }
            }
        })
    }

    fn keys_tracked(&self) -> usize {
        self.health.keys.load(Ordering::Relaxed)
    }

    fn is_ready(&self) -> bool {
        !self.stopped.load(Ordering::Acquire) && self.health.reachable.load(Ordering::Relaxed)
    }

    fn status(&self) -> BackendStatus {
        let available = self.in_flight.available_permits();
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
            pool: None,
            redis: Some(RedisStatus {
                mode: self.connector.mode(),
                max_in_flight: self.max_in_flight,
                in_flight: self.max_in_flight.saturating_sub(available),
                waiting: self.waiting.load(Ordering::Relaxed),
                local_deny_cache_keys: self.deny_cache.as_ref().map(DenyCache::len),
                local_denials: self.deny_cache.as_ref().map_or(0, DenyCache::hits),
            }),
        }
    }

    fn kill(&self, target: KillTarget) -> BoxFuture<'_, Result<(), KillError>> {
        Box::pin(std::future::ready(Err(target.absent())))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.stopped.store(true, Ordering::Release);
        self.probe.cancel();
        self.in_flight.close();
        if let Some(cache) = &self.deny_cache {
            cache.stop();
        }
        Box::pin(std::future::ready(()))
    }
}
