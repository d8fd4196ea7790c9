//! The conformance suite: every backend must pass every test here, with the same expectations.
//! Time comes from a `ManualClock` (decisions) and tokio's paused clock (simulated work), so
//! nothing here depends on how fast or loaded the machine is.
//!
//! The redis backend joins every test that is about decisions, three times: against a real
//! Redis with its local deny cache (the default) and without it, and against a real Redis
//! Cluster of three primaries (`turnstile_backend::test_redis`: `REDIS_TEST_URL` and
//! `REDIS_CLUSTER_TEST_URL`, else `redis-server`s this process starts on loopback), with the
//! manual clock passed into its script. Tests about in-process memory, sweeping and actors run
//! the in-process backends only. With no Redis at all the redis variants are skipped with one
//! notice, unless `REQUIRE_E2E_TOOLS=1` makes that a failure.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use proptest::prelude::*;
use turnstile_backend::{
    Backend, BackendConfig, BackendKind, BuildContext, CheckError, MailboxConfig, PoolConfig,
    RedisClock, RedisConfig, RedisMode, SimulatedWork, WorkKind, build, shard_for,
};
use turnstile_core::{Clock, Decision, ManualClock, Policy};

const MS: Duration = Duration::from_millis(1);

/// An in-process backend's configuration for these tests.
fn config(kind: BackendKind) -> BackendConfig {
    BackendConfig {
        kind,
        shards: 16,
        mailbox: MailboxConfig::bounded(4096),
        ..BackendConfig::default()
    }
}

/// A redis backend on `url` in `mode`, on the injected clock, under a prefix of its own (so
/// tests running at once in one Redis never see each other's keys).
fn redis_config(url: String, mode: RedisMode, local_deny_cache: bool) -> BackendConfig {
    BackendConfig {
        redis: RedisConfig {
            url: url.into(),
            mode,
            key_prefix: fresh_prefix(),
            clock: RedisClock::Injected,
            local_deny_cache,
            ..RedisConfig::default()
        },
        ..config(BackendKind::Redis)
    }
}

/// A Redis key prefix no other backend of this process uses. (No hash tag: in a cluster the
/// keys spread over every primary.)
fn fresh_prefix() -> String {
    static NEXT_PREFIX: AtomicU64 = AtomicU64::new(0);
    format!(
        "conformance:{}:{}:",
        std::process::id(),
        NEXT_PREFIX.fetch_add(1, Ordering::Relaxed)
    )
}

/// Every backend this run can test, named: the in-process ones, and the redis variants whose
/// Redis is there (see the module docs).
fn subjects() -> Vec<(String, BackendConfig)> {
    let mut subjects: Vec<_> = BackendKind::IN_PROCESS
        .into_iter()
        .map(|kind| (kind.to_string(), config(kind)))
        .collect();
    if let Some(url) = turnstile_backend::test_redis::url() {
        subjects.push((
            "redis".into(),
            redis_config(url.clone(), RedisMode::Standalone, true),
        ));
        subjects.push((
            "redis (no deny cache)".into(),
            redis_config(url, RedisMode::Standalone, false),
        ));
    }
    if let Some(url) = turnstile_backend::test_redis::cluster_url() {
        subjects.push((
            "redis cluster".into(),
            redis_config(url, RedisMode::Cluster, true),
        ));
    }
    subjects
}

/// Waits (real time, generously) for a backend to report ready: the redis backend is ready
/// once its probe has reached Redis.
async fn until_ready(backend: &Arc<dyn Backend>) {
    for _ in 0..500 {
        if backend.is_ready() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} never became ready", backend.kind());
}

/// Every backend, bare and behind a check pool: the pool must not change a single decision.
fn variants() -> Vec<(String, BackendConfig)> {
    subjects()
        .into_iter()
        .flat_map(|(name, bare)| {
            let mut pooled = BackendConfig {
                pool: Some(PoolConfig {
                    size: 4,
                    wait_timeout: Duration::from_secs(5),
                }),
                ..bare.clone()
            };
            pooled.redis.key_prefix = fresh_prefix();
            [(format!("{name}+pool"), pooled), (name, bare)]
        })
        .collect()
}

fn start_with(config: BackendConfig, clock: &Arc<ManualClock>) -> Arc<dyn Backend> {
    let clock: Arc<dyn Clock> = Arc::clone(clock) as Arc<dyn Clock>;
    build(&config, &BuildContext::new(clock)).expect("valid config")
}

fn ten_per_second_burst_five() -> Policy {
    Policy::new(0, 10, Duration::from_secs(1), 5).unwrap()
}

#[tokio::test]
async fn every_backend_replays_the_worked_example() {
    for (kind, config) in variants() {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(config, &clock);
        let policy = ten_per_second_burst_five();
        let check = || backend.check("client", &policy, 1);
        for remaining in (0..5).rev() {
            let decision = check().await.unwrap();
            assert!(decision.allowed, "{kind}");
            assert_eq!(decision.remaining, remaining, "{kind}");
        }
        let sixth = check().await.unwrap();
        assert!(!sixth.allowed, "{kind}");
        assert_eq!(sixth.retry_after, Some(100 * MS), "{kind}");
        clock.advance(100 * MS);
        assert!(check().await.unwrap().allowed, "{kind}");
        clock.advance(50 * MS);
        assert_eq!(check().await.unwrap().retry_after, Some(50 * MS), "{kind}");
        backend.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_tasks_on_one_key_are_admitted_exactly_what_gcra_allows() {
    // 1000 per second with a burst of 50: T = 1 ms.
    let policy = Policy::new(0, 1000, Duration::from_secs(1), 50).unwrap();
    for (kind, config) in variants() {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(config, &clock);
        let hammer = |checks_per_task: usize| {
            let tasks: Vec<_> = (0..64)
                .map(|_| {
                    let backend = Arc::clone(&backend);
                    tokio::spawn(async move {
                        let mut admitted = 0;
                        for _ in 0..checks_per_task {
                            if backend.check("hot", &policy, 1).await.unwrap().allowed {
                                admitted += 1;
                            }
                        }
                        admitted
                    })
                })
                .collect();
            async move {
                let mut admitted = 0;
                for task in tasks {
                    admitted += task.await.unwrap();
                }
                admitted
            }
        };
        // From idle, at one instant: exactly the burst, out of 64 × 20 attempts.
        assert_eq!(hammer(20).await, 50, "{kind}: burst");
        // 7 ms later: exactly 7 more units have refilled.
        clock.advance(7 * MS);
        assert_eq!(hammer(20).await, 7, "{kind}: refill");
        // Long idle: the full burst again, never more.
        clock.advance(Duration::from_secs(60));
        assert_eq!(hammer(20).await, 50, "{kind}: after idle");
        backend.shutdown().await;
    }
}

/// The reference: the bare core over a hash map, exactly as its docs describe.
fn reference(trace: &[Step], policies: &[Policy]) -> Vec<Result<Decision, CheckError>> {
    let mut states: HashMap<(u16, u8), u64> = HashMap::new();
    let mut now = 0;
    trace
        .iter()
        .map(|step| {
            now += step.advance_ms * 1_000_000;
            let policy = &policies[step.policy];
            let state = states.entry((policy.id(), step.key)).or_insert(0);
            let verdict = policy.check(*state, now, step.cost)?;
            if let Some(new_state) = verdict.new_state {
                *state = new_state;
            }
            Ok(verdict.decision)
        })
        .collect()
}

#[derive(Debug, Clone)]
struct Step {
    key: u8,
    policy: usize,
    advance_ms: u64,
    cost: u32,
}

fn step() -> impl Strategy<Value = Step> {
    (
        0u8..4,
        0usize..2,
        prop_oneof![Just(0u64), 0u64..400],
        0u32..7,
    )
        .prop_map(|(key, policy, advance_ms, cost)| Step {
            key,
            policy,
            advance_ms,
            cost,
        })
}

/// 2025-11-20T23:40:00.123456789Z in ns since the Unix epoch: far beyond 2^53.
const WALL_CLOCK_SIZED_ORIGIN_NS: u64 = 1_763_682_000_123_456_789;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Differential: generated traces give identical decisions on every backend and the core.
    #[test]
    fn every_backend_decides_like_the_core(trace in proptest::collection::vec(step(), 1..120)) {
        let policies = [
            ten_per_second_burst_five(),
            Policy::new(1, 3, Duration::from_secs(1), 2).unwrap(),
        ];
        let expected = reference(&trace, &policies);
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        for (kind, config) in variants() {
            let actual: Vec<_> = runtime.block_on(async {
                // GCRA depends only on differences of times, so a trace replayed from a
                // wall-clock-sized origin must decide exactly as the reference does from zero.
                // That origin is what Redis's clock reads, and what its script must split to
                // stay exact in Lua's doubles.
                let clock = Arc::new(ManualClock::default());
                clock.set(WALL_CLOCK_SIZED_ORIGIN_NS);
                let backend = start_with(config, &clock);
                let mut decisions = Vec::new();
                for step in &trace {
                    clock.advance(Duration::from_millis(step.advance_ms));
                    let key = format!("key-{}", step.key);
                    decisions.push(backend.check(&key, &policies[step.policy], step.cost).await);
                }
                backend.shutdown().await;
                decisions
            });
            prop_assert_eq!(&actual, &expected, "backend {}", kind);
        }
    }
}

#[tokio::test]
async fn a_key_has_independent_state_under_each_policy() {
    let strict = Policy::new(0, 1, Duration::from_secs(60), 1).unwrap();
    let loose = Policy::new(1, 100, Duration::from_secs(1), 100).unwrap();
    for (kind, config) in subjects() {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(config, &clock);
        assert!(backend.check("alice", &strict, 1).await.unwrap().allowed);
        assert!(!backend.check("alice", &strict, 1).await.unwrap().allowed);
        assert!(
            backend.check("alice", &loose, 1).await.unwrap().allowed,
            "{kind}"
        );
        assert!(
            backend.check("bob", &strict, 1).await.unwrap().allowed,
            "{kind}"
        );
        backend.shutdown().await;
    }
}

#[tokio::test]
async fn invalid_checks_are_typed_errors_on_every_backend() {
    let policy = ten_per_second_burst_five();
    let long_key = "k".repeat(257);
    for (kind, config) in subjects() {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(config, &clock);
        assert_eq!(
            backend.check("", &policy, 1).await,
            Err(CheckError::EmptyKey)
        );
        assert_eq!(
            backend.check(&long_key, &policy, 1).await,
            Err(CheckError::KeyTooLong { len: 257, max: 256 })
        );
        assert!(backend.check(&"k".repeat(256), &policy, 1).await.is_ok());
        assert!(matches!(
            backend.check("k", &policy, 6).await,
            Err(CheckError::CostExceedsBurst(_))
        ));
        // Errors and peeks store nothing. (Redis counts its whole database, refreshed by a
        // probe; its keys are checked directly in turnstile-e2e.)
        assert!(backend.check("peek", &policy, 0).await.unwrap().allowed);
        if backend.kind() != BackendKind::Redis {
            assert_eq!(backend.keys_tracked(), 1, "{kind}");
        }
        backend.shutdown().await;
    }
}

#[tokio::test]
async fn a_million_keys_never_hold_more_than_max_keys() {
    const MAX_KEYS: usize = 100_000;
    let policy = Policy::new(0, 1, Duration::from_secs(1), 1).unwrap();
    for kind in BackendKind::IN_PROCESS {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(
            BackendConfig {
                max_keys: MAX_KEYS,
                ..config(kind)
            },
            &clock,
        );
        let mut refused = 0;
        let mut key = String::new();
        for i in 0..1_000_000u32 {
            key.clear();
            std::fmt::Write::write_fmt(&mut key, format_args!("{i}")).unwrap();
            match backend.check(&key, &policy, 1).await {
                Ok(decision) => assert!(decision.allowed),
                Err(CheckError::TableFull { max_keys }) => {
                    assert_eq!(
                        max_keys,
                        MAX_KEYS / if kind == BackendKind::Sharded { 16 } else { 1 }
                    );
                    refused += 1;
                }
                Err(other) => panic!("{kind}: unexpected {other}"),
            }
            if i % 10_000 == 0 {
                assert!(backend.keys_tracked() <= MAX_KEYS, "{kind} at {i}");
            }
        }
        assert_eq!(backend.keys_tracked(), MAX_KEYS, "{kind}");
        // Nothing had expired, so every key past the cap was refused (for the sharded backend,
        // each shard's share fills independently, so the count is the same in total).
        assert_eq!(refused, 900_000, "{kind}");
        // Once the held keys expire, a full table sweeps and admits new keys again.
        clock.advance(Duration::from_secs(2));
        assert!(
            backend.check("newcomer", &policy, 1).await.unwrap().allowed,
            "{kind}"
        );
        // Only the table that had to make room swept: the whole table, or the newcomer's shard.
        let expected = match kind {
            BackendKind::Sharded => MAX_KEYS - MAX_KEYS / 16 + 1,
            _ => 1,
        };
        assert_eq!(backend.keys_tracked(), expected, "{kind}: swept");
        backend.shutdown().await;
    }
}

#[tokio::test(start_paused = true)]
async fn expired_keys_are_swept_periodically() {
    let policy = ten_per_second_burst_five();
    for kind in BackendKind::IN_PROCESS {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(
            BackendConfig {
                sweep_interval: Duration::from_secs(10),
                ..config(kind)
            },
            &clock,
        );
        for i in 0..100 {
            backend.check(&format!("k{i}"), &policy, 1).await.unwrap();
        }
        assert_eq!(backend.keys_tracked(), 100, "{kind}");
        // 100 ms later every key is back to idle: expired, but still held until a sweep.
        clock.advance(100 * MS);
        assert_eq!(backend.keys_tracked(), 100, "{kind}");
        tokio::time::sleep(Duration::from_secs(11)).await;
        assert_eq!(backend.keys_tracked(), 0, "{kind}: swept");
        backend.shutdown().await;
    }
}

/// Elapsed (paused, virtual) time for `n` simultaneous checks on distinct keys.
async fn time_for_simultaneous_checks(backend: &Arc<dyn Backend>, n: usize) -> Duration {
    let policy = ten_per_second_burst_five();
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..n)
        .map(|i| {
            let backend = Arc::clone(backend);
            tokio::spawn(async move { backend.check(&format!("client-{i}"), &policy, 1).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().unwrap().allowed);
    }
    started.elapsed()
}

#[tokio::test(start_paused = true)]
async fn simulated_io_work_serializes_the_actor_but_not_the_others() {
    let work = SimulatedWork {
        kind: WorkKind::Sleep,
        duration: MS,
    };
    let with_work = |kind| BackendConfig {
        simulated_work: Some(work),
        ..config(kind)
    };
    let clock = Arc::new(ManualClock::default());

    // One actor: 64 checks of 1 ms each take 64 ms, one after another.
    let actor = start_with(with_work(BackendKind::Actor), &clock);
    assert_eq!(time_for_simultaneous_checks(&actor, 64).await, 64 * MS);

    // Sixteen shards: as long as the busiest shard's queue.
    let sharded = start_with(with_work(BackendKind::Sharded), &clock);
    let policy = ten_per_second_burst_five();
    let mut per_shard = [0u32; 16];
    for i in 0..64 {
        per_shard[shard_for(&format!("client-{i}"), &policy, 16).unwrap()] += 1;
    }
    let busiest = *per_shard.iter().max().unwrap();
    assert_eq!(
        time_for_simultaneous_checks(&sharded, 64).await,
        busiest * MS
    );
    assert!(
        busiest < 16,
        "the registry spreads keys: busiest shard had {busiest}"
    );

    // The concurrent map: every caller does its own work at once.
    let concurrent = start_with(with_work(BackendKind::Concurrent), &clock);
    assert_eq!(time_for_simultaneous_checks(&concurrent, 64).await, MS);
}

/// The backends whose checks wait in a mailbox, and so can time out behind a backlog: the
/// actor and sharded backends, bare and behind the check pool (whose workers call them with
/// the same `call_timeout`). The others are exempt: the concurrent map has no queue (each
/// caller does its own work on its own task, so there is no backlog to wait behind, and no
/// call timeout to apply), and the redis backend's wait is bounded by `redis.command_timeout`
/// instead, which its own tests and the end-to-end outage test cover.
fn mailbox_variants() -> Vec<(String, BackendConfig)> {
    variants()
        .into_iter()
        .filter(|(_, config)| matches!(config.kind, BackendKind::Actor | BackendKind::Sharded))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn a_backlog_past_the_call_timeout_times_out() {
    // Three checks of one key (so one shard) arrive together; each takes 2 ms in the state
    // owner and may wait 5 ms: the first two are answered at 2 and 4 ms, the third would be at
    // 6 ms, and times out instead.
    let policy = ten_per_second_burst_five();
    for (name, config) in mailbox_variants() {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(
            BackendConfig {
                call_timeout: 5 * MS,
                simulated_work: Some(SimulatedWork {
                    kind: WorkKind::Sleep,
                    duration: 2 * MS,
                }),
                ..config
            },
            &clock,
        );
        until_ready(&backend).await;
        let started = tokio::time::Instant::now();
        // `join!` polls in order, so the checks reach the mailbox in order.
        let check = || async {
            let result = backend.check("k", &policy, 1).await;
            (result.map(|decision| decision.allowed), started.elapsed())
        };
        let (first, second, third) = tokio::join!(check(), check(), check());
        assert_eq!(
            [first, second, third],
            [
                (Ok(true), 2 * MS),
                (Ok(true), 4 * MS),
                (Err(CheckError::Timeout), 5 * MS)
            ],
            "{name}"
        );
        backend.shutdown().await;
    }
}

#[tokio::test]
async fn after_shutdown_every_backend_is_unavailable() {
    let policy = ten_per_second_burst_five();
    for (kind, config) in subjects() {
        let clock = Arc::new(ManualClock::default());
        let backend = start_with(config, &clock);
        until_ready(&backend).await;
        backend.shutdown().await;
        assert!(!backend.is_ready(), "{kind}");
        assert_eq!(
            backend.check("k", &policy, 1).await,
            Err(CheckError::Unavailable),
            "{kind}"
        );
    }
}
