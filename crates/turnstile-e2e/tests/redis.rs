//! The redis backend against a real `redis-server` (Debian's package; `.ci/run` installs it):
//! three gateway replicas sharing one Redis hold one global limit per key, and a Redis that
//! dies mid-run costs answers per the failure mode, never a hang or a panic, and is recovered
//! from without restarting Turnstile. A Redis that answers with errors (out of memory) drops
//! the checks but leaves the gateway ready: readiness follows reachability, not error replies.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use turnstile_backend::BackendKind;
use turnstile_core::{Clock, ManualClock};
use turnstile_e2e::{
    RedisServer, http_client, metric, redis_cli, redis_command_calls, redis_info_field,
    scratch_dir, start_gateway, wait_until,
};
use turnstile_gateway::testing::RunningGateway;
use turnstile_load::engine::{self, RunOptions, Target};
use turnstile_load::scenario::Scenario;

mod common;
use common::{assert_a_hot_key_admits_exactly, check_key, ready, targets, until_ready};

/// A gateway on the redis backend: `scarce` and `scarce_too` (50 per hour: nothing refills
/// during a test, so exactly 50 are ever admitted per key and policy) and `closed` (fails
/// closed). `timeout` bounds each Redis wait: short where an outage is the point, generous
/// where exactness is (a check that timed out may still have been counted by Redis, and a
/// busy machine must not turn that into a wrong total).
fn gateway_config(redis_url: &str, timeout: &str) -> String {
    format!(
        r#"
backend = "redis"
redis_url = "{redis_url}"
max_concurrent_requests = 0

[redis]
command_timeout = "{timeout}"
wait_timeout = "{timeout}"
connect_timeout = "{timeout}"

[policies.default]
limit = 1000
period = "1s"

[policies.scarce]
limit = 50
period = "1h"

[policies.scarce_too]
limit = 50
period = "1h"

[policies.closed]
limit = 1000
period = "1s"
failure_mode = "closed"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "needs redis-server (Debian package redis-server; .ci/run installs it)"
)]
async fn three_replicas_sharing_one_redis_admit_exactly_the_global_limit() {
    let dir = scratch_dir();
    let Some(redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    let config = gateway_config(&redis.url(), "10s");
    let mut gateways = Vec::new();
    for _replica in ["a", "b", "c"] {
        gateways.push(start_gateway(&config));
    }
    let targets = targets(&gateways).await;

    // One hot key, hammered through all three replicas by 48 closed-loop connections.
    assert_a_hot_key_admits_exactly(&targets, "scarce", 50).await;

    // Twenty fresh keys: every one saturated, so exactly 20 × 50 admitted in all.
    let many: Scenario = toml::from_str(
        r#"
name = "replicas-many"
mode = "closed"
connections = 48
duration = "3s"
warmup = "0s"
timeout = "5s"
[traffic]
keys = { distribution = "uniform", count = 20 }
policies = [{ value = "scarce_too" }]
"#,
    )
    .unwrap();
    // A second policy, so the hot run's key (which may be one of these) starts fresh too.
    let result = engine::run_spread(&many, &targets, &RunOptions::default())
        .await
        .unwrap();
    let outcomes = &result.outcomes;
    assert!(
        result.requests > 20 * 50 * 3,
        "too little load: {outcomes:?}"
    );
    assert_eq!(outcomes.allowed, 20 * 50, "{outcomes:?}");
    assert_eq!(
        outcomes.allowed + outcomes.limited,
        result.requests,
        "{outcomes:?}"
    );
}

/// `POST /v1/check` of the key `probe`, returning (status, JSON body).
async fn check(
    client: &reqwest::Client,
    gateway: &RunningGateway,
    policy: &str,
) -> (u16, serde_json::Value) {
    check_key(client, gateway, "probe", policy).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "needs redis-server (Debian package redis-server; .ci/run installs it)"
)]
async fn a_redis_outage_is_answered_per_the_failure_mode_and_recovered_without_a_restart() {
    let dir = scratch_dir();
    let Some(mut redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    let gateway = start_gateway(&gateway_config(&redis.url(), "300ms"));
    let metrics = std::sync::Arc::clone(gateway.state());
    let client = http_client();
    until_ready(
        &client,
        &gateway,
        "the gateway to reach Redis",
        Duration::from_secs(30),
    )
    .await;
    let (status, body) = check(&client, &gateway, "default").await;
    assert_eq!((status, &body["allowed"]), (200, &serde_json::json!(true)));
    assert!(body.get("dropped").is_none(), "{body}");

    // Load on an open and a closed policy while Redis dies, then comes back empty.
    let scenario: Scenario = toml::from_str(
        r#"
name = "outage"
mode = "open"
rate = 200
connections = 16
duration = "6s"
warmup = "0s"
timeout = "3s"
[traffic]
keys = { distribution = "uniform", count = 100 }
policies = [{ value = "default" }, { value = "closed" }]
"#,
    )
    .unwrap();
    let target = Target::parse(&gateway.url()).await.unwrap();
    let load = tokio::spawn(async move {
        engine::run(&scenario, &target, &RunOptions::default())
            .await
            .unwrap()
    });
    // Redis dies once the load is deciding through it.
    let decided = || {
        metrics
            .metrics()
            .decisions_total(BackendKind::Redis, "default", "allowed")
    };
    let before = decided();
    wait_until(
        "the load to be decided",
        Duration::from_secs(10),
        || async { (decided() > before + 50).then_some(()) },
    )
    .await;
    redis.stop();
    wait_until(
        "/readyz to report Redis down",
        Duration::from_secs(10),
        || async { (!ready(&client, &gateway).await).then_some(()) },
    )
    .await;
    // While Redis is down: the open policy admits and says why, the closed one refuses.
    let (status, body) = check(&client, &gateway, "default").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["dropped"], "backend_error", "{body}");
    let (status, body) = check(&client, &gateway, "closed").await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body["error"] == "backend_error" || body["error"] == "timeout",
        "{body}"
    );
    // Redis comes back once the load has met the outage.
    let store_failed = || {
        metrics
            .metrics()
            .dropped_total(BackendKind::Redis, "backend_error")
    };
    wait_until(
        "the load to meet the outage",
        Duration::from_secs(10),
        || async { (store_failed() > 20).then_some(()) },
    )
    .await;
    redis.restart().await;
    let result = load.await.unwrap();

    // Every request got an answer within its timeout: decided, or dropped with a reason.
    let outcomes = &result.outcomes;
    assert_eq!(outcomes.timeouts, 0, "{outcomes:?}");
    assert_eq!(outcomes.connection_errors, 0, "{outcomes:?}");
    assert!(outcomes.errors.is_empty(), "{outcomes:?}");
    assert!(outcomes.allowed > 0, "{outcomes:?}");
    assert!(
        outcomes.dropped.get("backend_error").copied().unwrap_or(0) > 0,
        "{outcomes:?}"
    );
    let counted: u64 = outcomes.allowed + outcomes.limited + outcomes.dropped.values().sum::<u64>();
    assert_eq!(counted, result.requests, "{outcomes:?}");

    // Back without a restart: ready again, and decisions (not drops) again. The fresh Redis
    // has no scripts loaded, so this also exercises the NOSCRIPT reload.
    wait_until(
        "checks to succeed again",
        Duration::from_secs(15),
        || async {
            let (status, body) = check(&client, &gateway, "closed").await;
            (status == 200 && body.get("dropped").is_none()).then_some(())
        },
    )
    .await;
    until_ready(
        &client,
        &gateway,
        "/readyz to recover",
        Duration::from_secs(15),
    )
    .await;
}

/// The keys in the Redis at `port`, through `redis-cli` (Debian's redis-tools, a dependency of
/// redis-server).
fn redis_keys(port: u16) -> Vec<String> {
    let mut keys: Vec<String> = redis_cli(port, &["--scan"])
        .lines()
        .map(str::to_owned)
        .collect();
    keys.sort();
    keys
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "needs redis-server (Debian package redis-server; .ci/run installs it)"
)]
async fn policies_added_by_a_reload_keep_their_names_in_redis_keys() {
    let dir = scratch_dir();
    let Some(redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    let base = format!(
        "backend = \"redis\"\nredis_url = \"{}\"\n[policies.middle]\nlimit = 5\nperiod = \"1h\"\n",
        redis.url()
    );
    let gateway = start_gateway(&base);
    // The file the policies reload from: the same settings, and a policy whose name sorts
    // before the others (by position it would take `default`'s id, and `default` another's).
    let file = dir.path().join("turnstile.toml");
    std::fs::write(
        &file,
        format!("listen = \"127.0.0.1:0\"\n{base}[policies.aaa]\nlimit = 5\nperiod = \"1h\"\n"),
    )
    .unwrap();
    gateway
        .state()
        .set_config_source(turnstile_gateway::ConfigSource {
            file: Some(file),
            overrides: serde_json::json!({}),
        });
    let client = http_client();
    assert_eq!(check(&client, &gateway, "middle").await.1["remaining"], 4);
    gateway.state().reload_policies().unwrap();
    assert_eq!(check(&client, &gateway, "aaa").await.1["remaining"], 4);
    // `middle` kept its state (and its name) through the reload.
    assert_eq!(check(&client, &gateway, "middle").await.1["remaining"], 3);
    assert_eq!(
        redis_keys(redis.port),
        ["turnstile:aaa:probe", "turnstile:middle:probe"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_redis_server, has_redis_cli)),
    ignore = "needs redis-server and redis-cli (Debian package redis-server; .ci/run installs it)"
)]
async fn a_redis_out_of_memory_drops_checks_but_readiness_does_not_flap() {
    let dir = scratch_dir();
    let Some(redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    let redis_cli = |args: &[&str]| redis.cli(args);
    let gateway = start_gateway(&gateway_config(&redis.url(), "2s"));
    let client = http_client();
    until_ready(
        &client,
        &gateway,
        "the gateway to reach Redis",
        Duration::from_secs(30),
    )
    .await;
    // Every write refused with OOM from now on.
    redis_cli(&["CONFIG", "SET", "maxmemory-policy", "noeviction"]);
    redis_cli(&["CONFIG", "SET", "maxmemory", "1"]);
    for _ in 0..10 {
        let (status, body) = check(&client, &gateway, "default").await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["dropped"], "backend_error", "{body}");
        // Redis answers (it is reachable): the gateway stays ready right after each refusal.
        assert!(
            ready(&client, &gateway).await,
            "/readyz flapped after an error reply"
        );
    }
    let refused = gateway
        .state()
        .metrics()
        .dropped_total(BackendKind::Redis, "backend_error");
    assert_eq!(refused, 10);
    redis_cli(&["CONFIG", "SET", "maxmemory", "0"]);
    let (status, body) = check(&client, &gateway, "default").await;
    assert_eq!((status, body.get("dropped")), (200, None), "{body}");
}

/// A gateway on the redis backend at `redis_url`, on the shared manual `clock` (passed into the
/// script: `clock = "injected"`), with `brief` (5 per 10 s: one every 2 s, burst 5), and the
/// local deny cache on or off.
fn manual_clock_gateway(redis_url: &str, clock: &Arc<ManualClock>, cache: bool) -> RunningGateway {
    let config = turnstile_gateway::Config::from_toml(
        &[
            "listen = \"127.0.0.1:0\"",
            &format!(
                r#"
backend = "redis"
redis_url = "{redis_url}"
[redis]
clock = "injected"
command_timeout = "10s"
local_deny_cache = {cache}
[policies.brief]
limit = 5
period = "10s"
"#
            ),
        ],
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .unwrap();
    turnstile_gateway::testing::spawn_with_clock(config, Arc::clone(clock) as Arc<dyn Clock>)
        .unwrap()
}

/// What a denial says, without `allowed`.
fn denial(body: &serde_json::Value) -> (u64, u64, u64) {
    assert_eq!(body["allowed"], false, "{body}");
    (
        body["remaining"].as_u64().unwrap(),
        body["retry_after_ms"].as_u64().unwrap(),
        body["reset_after_ms"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_redis_server, has_redis_cli)),
    ignore = "needs redis-server and redis-cli (Debian package redis-server; .ci/run installs it)"
)]
async fn a_denied_key_costs_redis_no_command_until_its_retry_instant_and_answers_as_redis_would() {
    let dir = scratch_dir();
    let Some(redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    // A wall-clock-sized origin, as Redis's own clock would read.
    let clock = Arc::new(ManualClock::starting_at(1_763_682_000_123_456_789));
    let cached = manual_clock_gateway(&redis.url(), &clock, true);
    let uncached = manual_clock_gateway(&redis.url(), &clock, false);
    let client = http_client();
    let evalsha = || redis_command_calls(redis.port, "evalsha");
    let local_denials = || async {
        metric(
            cached.url().trim_start_matches("http://"),
            "turnstile_redis_local_denials_total",
        )
        .await
    };

    // `/v1/check` answers 200 with `allowed` either way.
    for _ in 0..5 {
        assert_eq!(check(&client, &cached, "brief").await.1["allowed"], true);
    }
    // The sixth goes to Redis, which denies it: one every 2 s, 10 s until the burst is back.
    let (status, body) = check(&client, &cached, "brief").await;
    assert_eq!((status, denial(&body)), (200, (0, 2000, 10_000)), "{body}");
    // (Not six: the first EVALSHA met NOSCRIPT on this fresh Redis and was sent again.)
    let sent = evalsha();

    // A hot denied key: a hundred more checks, not one Redis command, every answer what
    // Redis says (the gateway without the cache asks Redis: one command, the same answer).
    for _ in 0..100 {
        let (status, body) = check(&client, &cached, "brief").await;
        assert_eq!((status, denial(&body)), (200, (0, 2000, 10_000)), "{body}");
    }
    assert_eq!(evalsha(), sent, "the cache answered without Redis");
    assert_eq!(local_denials().await, 100.0);
    let (status, body) = check(&client, &uncached, "brief").await;
    assert_eq!((status, denial(&body)), (200, (0, 2000, 10_000)), "{body}");
    assert_eq!(evalsha(), sent + 1);

    // Another key is not in the cache: it goes to Redis.
    assert_eq!(
        check_key(&client, &cached, "other", "brief").await.1["allowed"],
        true
    );
    assert_eq!(evalsha(), sent + 2);

    // 1 ms before the retry instant: still local, the numbers counted down from the cached
    // instant.
    clock.advance(Duration::from_millis(1999));
    let (status, body) = check(&client, &cached, "brief").await;
    assert_eq!((status, denial(&body)), (200, (0, 1, 8001)), "{body}");
    assert_eq!(evalsha(), sent + 2);
    // At the retry instant one unit is free again. Thirty-two checks arrive at once: one
    // goes to Redis and is admitted, the others wait for its answer and are denied from it,
    // so the reopening costs Redis one command, not one per check in flight.
    clock.advance(Duration::from_millis(1));
    let answers = futures_util::future::join_all(
        (0..32).map(|_| async { check(&client, &cached, "brief").await.1["allowed"] == true }),
    )
    .await;
    assert_eq!(answers.iter().filter(|allowed| **allowed).count(), 1);
    assert_eq!(evalsha(), sent + 3);

    // The one way it is stricter than Redis: the key vanishes from Redis (deleted, or Redis
    // restarted empty). Denied again (through Redis), then the key is deleted: the cache
    // still denies, where Redis would admit...
    let (status, body) = check(&client, &cached, "brief").await;
    assert_eq!((status, denial(&body)), (200, (0, 2000, 10_000)), "{body}");
    let sent = evalsha();
    assert_eq!(redis.cli(&["DEL", "turnstile:brief:probe"]).trim(), "1");
    let (status, body) = check(&client, &cached, "brief").await;
    assert_eq!((status, &body["allowed"]), (200, &serde_json::json!(false)));
    assert_eq!(evalsha(), sent);
    assert_eq!(
        check_key(&client, &uncached, "probe", "brief").await.1["allowed"],
        true
    );
    // ...for at most the retry_after it had said: then Redis decides again.
    clock.advance(Duration::from_millis(2000));
    check(&client, &cached, "brief").await;
    assert_eq!(evalsha(), sent + 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_redis_server, has_redis_cli)),
    ignore = "needs redis-server and redis-cli (Debian package redis-server; .ci/run installs it)"
)]
async fn concurrent_checks_share_round_trips_to_redis() {
    let dir = scratch_dir();
    let Some(redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    let gateway = start_gateway(&gateway_config(&redis.url(), "10s"));
    let client = http_client();
    until_ready(
        &client,
        &gateway,
        "the gateway to reach Redis",
        Duration::from_secs(30),
    )
    .await;
    let reads = || -> u64 {
        redis_info_field(redis.port, "stats", "total_reads_processed")
            .and_then(|reads| reads.parse().ok())
            .expect("INFO stats has total_reads_processed")
    };
    let (reads_before, calls_before) = (reads(), redis_command_calls(redis.port, "evalsha"));
    // 64 connections, 10,000 keys (admitted: every check goes to Redis).
    let scenario: Scenario = toml::from_str(
        r#"
name = "pipelining"
mode = "closed"
connections = 64
duration = "2s"
warmup = "0s"
timeout = "10s"
[traffic]
keys = { distribution = "uniform", count = 10000 }
policies = [{ value = "default" }]
"#,
    )
    .unwrap();
    let target = Target::parse(&gateway.url()).await.unwrap();
    let result = engine::run(&scenario, &target, &RunOptions::default())
        .await
        .unwrap();
    let calls = redis_command_calls(redis.port, "evalsha") - calls_before;
    // Every read Redis made in the meantime (the probe's and redis-cli's included).
    let reads = reads() - reads_before;
    let per_read = calls as f64 / reads as f64;
    println!(
        "{} checks, {calls} EVALSHA over {reads} reads by Redis: {per_read:.1} commands per round trip",
        result.requests
    );
    assert!(calls > 1000, "too little load: {:?}", result.outcomes);
    assert!(
        per_read > 1.0,
        "{calls} commands in {reads} reads: one round trip per check"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_redis_server),
    ignore = "needs redis-server (Debian package redis-server; .ci/run installs it)"
)]
async fn a_stopped_redis_gets_every_check_answered_within_the_command_timeout() {
    let dir = scratch_dir();
    let Some(redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    // A few in-flight slots, so some checks also wait for one (and time out there).
    let config =
        gateway_config(&redis.url(), "400ms").replace("[redis]\n", "[redis]\nmax_in_flight = 4\n");
    let gateway = start_gateway(&config);
    let client = http_client();
    until_ready(
        &client,
        &gateway,
        "the gateway to reach Redis",
        Duration::from_secs(30),
    )
    .await;
    assert!(redis.signal("-STOP"), "SIGSTOP delivered");
    let checks = (0..32).map(|i| {
        let client = client.clone();
        let gateway = &gateway;
        async move {
            let started = std::time::Instant::now();
            let answer = check_key(&client, gateway, &format!("stopped-{i}"), "closed").await;
            (answer, started.elapsed())
        }
    });
    let answers = futures_util::future::join_all(checks).await;
    assert!(redis.signal("-CONT"), "SIGCONT delivered");
    let slowest = answers.iter().map(|(_, took)| *took).max().unwrap();
    println!("32 checks on a stopped Redis (command_timeout 400 ms): slowest answer {slowest:?}");
    for ((status, body), took) in &answers {
        // `closed` fails closed: a timeout drop is a 503 naming it.
        assert_eq!(
            (*status, &body["error"]),
            (503, &serde_json::json!("timeout")),
            "{body}"
        );
        // The timeout plus the HTTP round trip, generously: the point is that none waits for
        // Redis to come back.
        assert!(*took < Duration::from_secs(3), "{took:?}: {body}");
    }
    // Redis resumes: decisions again, no restart.
    wait_until(
        "checks to be decided again",
        Duration::from_secs(15),
        || async {
            let (status, body) = check_key(&client, &gateway, "resumed", "closed").await;
            (status == 200 && body.get("dropped").is_none()).then_some(())
        },
    )
    .await;
}
