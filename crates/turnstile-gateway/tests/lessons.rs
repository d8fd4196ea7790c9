//! The OTP lessons of the seed articles, reproduced through the real router and the admin API
//! with exact counts. Time is tokio's paused clock (work, timeouts, restarts, cool-offs) and a
//! manual clock (rate decisions), so every number here is deterministic. Every count asserted
//! is read from the same counters `/metrics` exports.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestGateway, TestResponse, get, json_post};
use serde_json::json;
use turnstile_backend::{BackendKind, SimulatedWork, WorkKind, shard_for};
use turnstile_core::Policy;
use turnstile_gateway::Config;
use turnstile_gateway::config::{FailureMode, PolicyConfig};

const MS: Duration = Duration::from_millis(1);

/// A config whose `default` policy never limits and fails closed, so every lost check is a
/// visible 503 naming its reason; `work` runs inside the state owner on every check.
fn lesson_config(backend: BackendKind, work: Duration) -> Config {
    let mut config = Config {
        backend,
        shards: 4,
        simulated_work: Some(SimulatedWork {
            kind: WorkKind::Sleep,
            duration: work,
        }),
        ..Config::default()
    };
    config.policies.insert(
        "default".into(),
        PolicyConfig {
            limit: 1_000_000,
            period: Duration::from_secs(1),
            burst: Some(1_000_000),
            failure_mode: FailureMode::Closed,
        },
    );
    config
}

fn check_request(key: &str) -> Request<Body> {
    json_post("/v1/check", &json!({ "key": key }).to_string())
}

/// What became of one check: "served", or the drop reason.
fn outcome(response: &TestResponse) -> String {
    match response.status {
        StatusCode::OK if response.json["allowed"] == true => "served".into(),
        _ => response.json["error"].as_str().unwrap_or("?").to_owned(),
    }
}

/// Sends `count` checks for keys `req-0`… at `start + i × gap`; returns each outcome by index.
async fn send_spaced(gw: &Arc<TestGateway>, count: usize, gap: Duration) -> Vec<String> {
    let tasks: Vec<_> = (0..count)
        .map(|i| {
            let gw = Arc::clone(gw);
            tokio::spawn(async move {
                tokio::time::sleep(gap * i as u32).await;
                outcome(&gw.send(check_request(&format!("req-{i}"))).await)
            })
        })
        .collect();
    let mut outcomes = Vec::new();
    for task in tasks {
        outcomes.push(task.await.unwrap());
    }
    outcomes
}

async fn admin_post(gw: &TestGateway, path: &str, body: serde_json::Value) -> TestResponse {
    gw.admin(json_post(path, &body.to_string())).await
}

fn expected(served: &[usize], lost: &[usize], reason: &str, total: usize) -> Vec<String> {
    (0..total)
        .map(|i| {
            if served.contains(&i) {
                "served".to_owned()
            } else {
                assert!(lost.contains(&i));
                reason.to_owned()
            }
        })
        .collect()
}

/// Lesson 1, the seed's 16-message experiment: one actor, 200 ms per check, requests ~50 ms
/// apart, the 4th poisoned. (49 ms, so that no request is sent at the very instant of the
/// crash, 600 ms in: the outcome is then exact, not a tie.)
#[tokio::test(start_paused = true)]
async fn a_crashing_actor_loses_its_whole_mailbox() {
    let gw = Arc::new(TestGateway::new(lesson_config(
        BackendKind::Actor,
        200 * MS,
    )));
    let poisoned = admin_post(&gw, "/admin/poison", json!({"key": "req-3"})).await;
    assert_eq!(poisoned.status, StatusCode::OK, "{}", poisoned.text);

    let outcomes = send_spaced(&gw, 16, 49 * MS).await;

    // 0-2 were served; the poisoned 3rd crashed the actor at 600 ms, and the 9 checks waiting
    // in its mailbox (4-12, sent by 588 ms) were lost with it; 13-15 reached the restarted one.
    assert_eq!(
        outcomes,
        expected(
            &[0, 1, 2, 13, 14, 15],
            &(3..=12).collect::<Vec<_>>(),
            "crashed",
            16
        )
    );
    let metrics = gw.state.metrics();
    assert_eq!(metrics.dropped_total(BackendKind::Actor, "crashed"), 10);
    assert_eq!(
        metrics.decisions_total(BackendKind::Actor, "default", "allowed"),
        6
    );
    assert_eq!(metrics.restarts_total(BackendKind::Actor, 0), 1);
    assert_eq!(metrics.faults_total("poison"), 1);
    let exported = gw.send(get("/metrics")).await.text;
    for line in [
        r#"turnstile_dropped_checks_total{backend="actor",reason="crashed"} 10"#,
        r#"turnstile_actor_restarts_total{backend="actor",child="0"} 1"#,
        r#"turnstile_faults_injected_total{kind="poison"} 1"#,
    ] {
        assert!(exported.contains(line), "missing {line}");
    }
}

/// Lesson 4, the remedy: the same experiment through a pool of workers fronting the shared
/// concurrent table. The poison kills only the worker holding the 4th check.
#[tokio::test(start_paused = true)]
async fn through_the_worker_pool_only_the_poisoned_check_is_lost() {
    let mut config = lesson_config(BackendKind::Concurrent, 200 * MS);
    config.pool_size = 8;
    let gw = Arc::new(TestGateway::new(config));
    tokio::time::sleep(MS).await; // the pool fills at start-up
    admin_post(&gw, "/admin/poison", json!({"key": "req-3"})).await;

    let outcomes = send_spaced(&gw, 16, 49 * MS).await;

    let served: Vec<usize> = (0..16).filter(|i| *i != 3).collect();
    assert_eq!(outcomes, expected(&served, &[3], "crashed", 16));
    let metrics = gw.state.metrics();
    assert_eq!(metrics.dropped_total(BackendKind::Concurrent, "crashed"), 1);
    assert_eq!(
        metrics.decisions_total(BackendKind::Concurrent, "default", "allowed"),
        15
    );
    // deadpool discards the dead worker when it is next handed out and creates a fresh one
    // when demand needs it: eight simultaneous checks are all served by eight workers again.
    let again: Vec<_> = (0..8)
        .map(|i| {
            let gw = Arc::clone(&gw);
            tokio::spawn(
                async move { outcome(&gw.send(check_request(&format!("after-{i}"))).await) },
            )
        })
        .collect();
    for check in again {
        assert_eq!(check.await.unwrap(), "served");
    }
    let pool = gw.state.backend().status().pool.unwrap();
    assert_eq!((pool.replaced, pool.size, pool.failed), (1, 8, false));
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Concurrent, "crashed"),
        1
    );
}

/// Lesson 2: past its restart intensity (more than 3 restarts in 5 s) the supervisor gives up.
/// The backend is failed, readiness says so, everything else keeps answering, the process
/// lives on, and after the cool-off the backend serves again.
#[tokio::test(start_paused = true)]
async fn past_the_restart_intensity_the_backend_fails_then_recovers() {
    let gw = TestGateway::new(lesson_config(BackendKind::Actor, MS));
    for crash in 1..=3 {
        assert_eq!(
            gw.admin(json_post("/admin/crash/actor", "")).await.status,
            StatusCode::OK
        );
        tokio::time::sleep(200 * MS).await;
        assert_eq!(
            gw.send(get("/readyz")).await.status,
            StatusCode::OK,
            "after crash {crash}"
        );
        assert_eq!(outcome(&gw.send(check_request("k")).await), "served");
    }
    assert_eq!(
        gw.admin(json_post("/admin/crash/actor", "")).await.status,
        StatusCode::OK
    );
    tokio::time::sleep(200 * MS).await;

    let ready = gw.send(get("/readyz")).await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(outcome(&gw.send(check_request("k")).await), "unavailable");
    assert_eq!(gw.send(get("/healthz")).await.status, StatusCode::OK);
    let supervision = gw.admin(get("/admin/supervision")).await;
    assert_eq!(supervision.json["state"], "failed");
    assert_eq!(supervision.json["escalations"], 1);
    let exported = gw.send(get("/metrics")).await;
    assert_eq!(exported.status, StatusCode::OK);
    assert!(
        exported
            .text
            .contains(r#"turnstile_backend_up{backend="actor"} 0"#)
    );
    assert!(
        exported
            .text
            .contains(r#"turnstile_supervisor_escalations_total{backend="actor"} 1"#)
    );
    // Nothing left to crash while failed: refused, and not counted as a fault.
    gw.admin(json_post("/admin/crash/actor", ""))
        .await
        .assert_error(StatusCode::CONFLICT, "not_running");
    let metrics = gw.state.metrics();
    assert_eq!(metrics.restarts_total(BackendKind::Actor, 0), 3);
    assert_eq!(metrics.escalations_total(BackendKind::Actor), 1);
    assert_eq!(metrics.dropped_total(BackendKind::Actor, "unavailable"), 1);
    assert_eq!(metrics.faults_total("crash"), 4);

    // The cool-off (10 s by default) ends: re-armed, serving, ready.
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(gw.send(get("/readyz")).await.status, StatusCode::OK);
    assert_eq!(outcome(&gw.send(check_request("k")).await), "served");
    assert!(
        gw.send(get("/metrics"))
            .await
            .text
            .contains(r#"turnstile_backend_up{backend="actor"} 1"#)
    );
}

/// Lesson 3: a backlog longer than the call timeout. With 300 ms per check and a 5 s
/// timeout, 16 of 40 simultaneous checks finish in time (the 16th at 4.8 s); the other 24
/// time out at exactly 5 s. Nobody waits longer, and the abandoned checks are skipped.
#[tokio::test(start_paused = true)]
async fn a_backlog_past_the_call_timeout_times_callers_out_on_time() {
    let gw = Arc::new(TestGateway::new(lesson_config(
        BackendKind::Actor,
        300 * MS,
    )));
    let started = tokio::time::Instant::now();
    let outcomes = send_spaced(&gw, 40, Duration::ZERO).await;
    assert_eq!(
        started.elapsed(),
        Duration::from_secs(5),
        "the last caller waited exactly the timeout"
    );
    assert_eq!(outcomes.iter().filter(|o| *o == "served").count(), 16);
    assert_eq!(outcomes.iter().filter(|o| *o == "timeout").count(), 24);
    let metrics = gw.state.metrics();
    assert_eq!(metrics.dropped_total(BackendKind::Actor, "timeout"), 24);
    // The actor finishes the check it had started (until 5.1 s), then skips the 23 abandoned
    // ones instead of working through them: the next check is served at once.
    tokio::time::sleep(200 * MS).await;
    let after = tokio::time::Instant::now();
    assert_eq!(outcome(&gw.send(check_request("fresh")).await), "served");
    assert_eq!(after.elapsed(), 300 * MS);
}

/// Lesson 3, bounded: a flood on a mailbox of 8 is refused at once (`mailbox_full`), and the
/// mailbox never holds more than 8.
#[tokio::test(start_paused = true)]
async fn a_flood_on_a_bounded_mailbox_is_refused_and_memory_stays_bounded() {
    let mut config = lesson_config(BackendKind::Actor, 100 * MS);
    config.mailbox_capacity = 8;
    let gw = Arc::new(TestGateway::new(config));
    let flood = tokio::spawn({
        let gw = Arc::clone(&gw);
        async move { send_spaced(&gw, 100, Duration::ZERO).await }
    });
    tokio::time::sleep(MS).await;
    let depth = gw.admin(get("/admin/supervision")).await.json["children"][0]["mailbox_depth"]
        .as_u64()
        .unwrap();
    assert!(depth <= 8, "mailbox depth {depth}");
    let outcomes = flood.await.unwrap();
    let served = outcomes.iter().filter(|o| *o == "served").count() as u64;
    let refused = outcomes.iter().filter(|o| *o == "mailbox_full").count() as u64;
    assert_eq!(served + refused, 100);
    // One check being handled plus a full mailbox behind it (8 or 9, depending on whether
    // the actor took the first check before the rest arrived).
    assert!((8..=9).contains(&served), "served {served}");
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Actor, "mailbox_full"),
        refused
    );
}

/// Lesson 3, unbounded: the demonstration mailbox takes everything, and its depth (exported
/// as `turnstile_mailbox_depth`) grows with the backlog.
#[tokio::test(start_paused = true)]
async fn the_unbounded_demo_mailbox_grows_with_the_backlog() {
    // 110 ms per check, so no check finishes at the very instant the 5 s timeout fires.
    let mut config = lesson_config(BackendKind::Actor, 110 * MS);
    config.mailbox_unbounded = true;
    let gw = Arc::new(TestGateway::new(config));
    let flood = tokio::spawn({
        let gw = Arc::clone(&gw);
        async move { send_spaced(&gw, 1000, Duration::ZERO).await }
    });
    tokio::time::sleep(MS).await;
    let exported = gw.send(get("/metrics")).await.text;
    assert!(
        exported.contains(r#"turnstile_mailbox_depth{backend="actor",child="0"} 999"#),
        "{exported}"
    );
    // Bounded by the test: the callers time out at 5 s (45 × 110 ms were served by then), and
    // the actor skips the abandoned rest.
    let outcomes = flood.await.unwrap();
    assert_eq!(outcomes.iter().filter(|o| *o == "served").count(), 45);
    assert_eq!(outcomes.iter().filter(|o| *o == "timeout").count(), 955);
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Actor, "mailbox_full"),
        0
    );
}

/// Sharding contains a crash: only the crashed shard's queued checks are lost and only its
/// keys are reset; the other shards keep serving and keep their state.
#[tokio::test(start_paused = true)]
async fn crashing_one_shard_loses_only_its_queue_and_its_keys() {
    let mut config = lesson_config(BackendKind::Sharded, 100 * MS);
    if let Some(policy) = config.policies.get_mut("default") {
        // Small enough that a key's remaining budget shows whether its state survived.
        policy.limit = 10;
        policy.burst = Some(10);
        policy.period = Duration::from_secs(3600);
    }
    let gw = Arc::new(TestGateway::new(config));
    let policy = Policy::new(0, 10, Duration::from_secs(3600), 10).unwrap();
    let keys: Vec<String> = (0..12).map(|i| format!("user-{i}")).collect();
    let shard = |key: &str| shard_for(key, &policy, 4).unwrap();
    assert!(keys.iter().any(|k| shard(k) == 0) && keys.iter().any(|k| shard(k) != 0));

    // Every key spends 3 of its 10.
    for key in &keys {
        for _ in 0..3 {
            gw.send(check_request(key)).await;
        }
    }
    // Queue one check per key on every shard, then crash shard 0 while they wait.
    let queued: Vec<_> = keys
        .iter()
        .map(|key| {
            let (gw, key) = (Arc::clone(&gw), key.clone());
            tokio::spawn(async move { outcome(&gw.send(check_request(&key)).await) })
        })
        .collect();
    tokio::time::sleep(MS).await;
    assert_eq!(
        gw.admin(json_post("/admin/crash/shard/0", "")).await.status,
        StatusCode::OK
    );
    let mut lost = 0;
    for (key, task) in keys.iter().zip(queued) {
        let result = task.await.unwrap();
        if shard(key) == 0 {
            assert_eq!(result, "crashed", "{key} was queued on the crashed shard");
            lost += 1;
        } else {
            assert_eq!(result, "served", "{key} lives on another shard");
        }
    }
    tokio::time::sleep(200 * MS).await;
    // Shard 0's keys start over (10, minus this peek's nothing); the others remember 4 spent.
    for key in &keys {
        let peek = gw
            .send(json_post(
                "/v1/check",
                &json!({"key": key, "cost": 0}).to_string(),
            ))
            .await;
        let expected = if shard(key) == 0 { 10 } else { 6 };
        assert_eq!(
            peek.json["remaining"],
            expected,
            "{key} on shard {}",
            shard(key)
        );
    }
    let metrics = gw.state.metrics();
    assert_eq!(metrics.dropped_total(BackendKind::Sharded, "crashed"), lost);
    assert_eq!(metrics.restarts_total(BackendKind::Sharded, 0), 1);
    assert_eq!(metrics.restarts_total(BackendKind::Sharded, 1), 0);
}

/// The pool bounds waiting: with one worker and no wait allowed, a second simultaneous check
/// is refused at once (`pool_timeout`) instead of queueing.
#[tokio::test(start_paused = true)]
async fn an_exhausted_pool_sheds_at_once_with_pool_timeout() {
    let mut config = lesson_config(BackendKind::Actor, 100 * MS);
    config.pool_size = 1;
    config.pool_wait_timeout = Duration::ZERO;
    let gw = Arc::new(TestGateway::new(config));
    tokio::time::sleep(MS).await;
    let outcomes = send_spaced(&gw, 3, Duration::ZERO).await;
    assert_eq!(outcomes, ["served", "pool_timeout", "pool_timeout"]);
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Actor, "pool_timeout"),
        2
    );
}

/// Overload at the gateway: past `max_concurrent_requests` in flight, requests are shed with
/// a 503 before they reach the backend, and counted.
#[tokio::test(start_paused = true)]
async fn past_the_concurrency_limit_the_gateway_sheds() {
    let mut config = lesson_config(BackendKind::Concurrent, 100 * MS);
    config.max_concurrent_requests = 2;
    let gw = Arc::new(TestGateway::new(config));
    let outcomes = send_spaced(&gw, 5, Duration::ZERO).await;
    assert_eq!(outcomes.iter().filter(|o| *o == "served").count(), 2);
    assert_eq!(outcomes.iter().filter(|o| *o == "shed").count(), 3);
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Concurrent, "shed"),
        3
    );
    // Operational endpoints are outside the limit.
    assert_eq!(gw.send(get("/healthz")).await.status, StatusCode::OK);
    // Every slot was given back: the next burst is served the same way.
    let again = send_spaced(&gw, 5, Duration::ZERO).await;
    assert_eq!(again.iter().filter(|o| *o == "served").count(), 2);
}

/// The gateway's request timeout: a rate-limited request still unanswered after
/// `request_timeout` gets a 503 at that very instant, counted as a `timeout` drop, and gives
/// its concurrency slot back; the operational endpoints have no such deadline.
#[tokio::test(start_paused = true)]
async fn past_the_request_timeout_the_gateway_answers_503_and_frees_the_slot() {
    // Each check takes 2 s inside the single actor; the gateway waits 500 ms; one slot.
    let mut config = lesson_config(BackendKind::Actor, 2000 * MS);
    config.request_timeout = 500 * MS;
    config.max_concurrent_requests = 1;
    let gw = Arc::new(TestGateway::new(config));
    let started = tokio::time::Instant::now();
    let first = gw.send(check_request("slow")).await;
    assert_eq!(
        started.elapsed(),
        500 * MS,
        "answered exactly at the timeout"
    );
    assert_eq!(first.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(outcome(&first), "timeout");
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Actor, "timeout"),
        1
    );
    // The slot is free again: the next request is not shed, it times out the same way.
    let second = gw.send(check_request("next")).await;
    assert_eq!(outcome(&second), "timeout");
    assert_eq!(
        gw.state.metrics().dropped_total(BackendKind::Actor, "shed"),
        0
    );
    // Scrapes have no deadline and no limit, even now.
    let scrape = gw.send(get("/metrics")).await;
    assert_eq!(scrape.status, StatusCode::OK);
    assert!(scrape.text.contains(
        r#"turnstile_http_request_duration_seconds_count{route="/v1/check",status_class="5xx"} 2"#
    ));
}

/// A slowed backend, and a run-time switch to another one: the old one drains, the new one
/// serves, and both are counted as faults.
#[tokio::test(start_paused = true)]
async fn slow_checks_and_a_backend_switch_through_the_admin_api() {
    let gw = TestGateway::new(lesson_config(BackendKind::Actor, MS));
    let slow = admin_post(
        &gw,
        "/admin/slow",
        json!({"delay": "500ms", "duration": "10s"}),
    )
    .await;
    assert_eq!(slow.status, StatusCode::OK, "{}", slow.text);
    let started = tokio::time::Instant::now();
    assert_eq!(outcome(&gw.send(check_request("k")).await), "served");
    assert_eq!(started.elapsed(), 501 * MS);

    let switched = admin_post(&gw, "/admin/backend", json!({"backend": "sharded"})).await;
    assert_eq!(switched.json, json!({"backend": "sharded"}));
    assert_eq!(gw.send(get("/readyz")).await.json["backend"], "sharded");
    assert_eq!(outcome(&gw.send(check_request("k")).await), "served");
    assert_eq!(
        gw.admin(get("/admin/supervision")).await.json["children"]
            .as_array()
            .unwrap()
            .len(),
        4
    );
    let exported = gw.send(get("/metrics")).await.text;
    assert!(exported.contains(r#"turnstile_build_info{backend="sharded",version="0.1.0"} 1"#));
    assert!(!exported.contains(r#"turnstile_build_info{backend="actor""#));
    assert_eq!(gw.state.metrics().faults_total("slow"), 1);
    assert_eq!(gw.state.metrics().faults_total("switch"), 1);
}

#[tokio::test]
async fn the_admin_api_validates_input_and_can_require_a_token() {
    let mut config = lesson_config(BackendKind::Sharded, MS);
    config.admin_token = Some("s3cret".into());
    let gw = TestGateway::new(config);
    let unauthorized = gw.admin(get("/admin/supervision")).await;
    unauthorized.assert_error(StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(
        unauthorized.header("www-authenticate"),
        Some(r#"Bearer realm="turnstile-admin""#)
    );
    for (presented, status) in [
        ("bearer s3cret", StatusCode::OK),
        ("BEARER s3cret", StatusCode::OK),
        ("Bearer s3cre", StatusCode::UNAUTHORIZED),
        ("Bearer s3cretx", StatusCode::UNAUTHORIZED),
        ("Basic s3cret", StatusCode::UNAUTHORIZED),
        ("s3cret", StatusCode::UNAUTHORIZED),
    ] {
        let answer = gw
            .admin(
                Request::get("/admin/supervision")
                    .header("authorization", presented)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(answer.status, status, "{presented}");
    }
    let with_token = |request: axum::http::request::Builder| {
        request
            .header("authorization", "Bearer s3cret")
            .header("content-type", "application/json")
    };
    let ok = gw
        .admin(
            with_token(Request::get("/admin/supervision"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(ok.json["backend"], "sharded");
    let missing = gw
        .admin(
            with_token(Request::post("/admin/crash/shard/99"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    missing.assert_error(StatusCode::NOT_FOUND, "no_such_actor");
    // Not a number: a JSON 400 naming it (axum's own path rejection is text/plain).
    for index in ["abc", "-1", "99999999999999999999999"] {
        let not_an_index = gw
            .admin(
                with_token(Request::post(format!("/admin/crash/shard/{index}")))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        let message = not_an_index.assert_error(StatusCode::BAD_REQUEST, "invalid_shard_index");
        assert!(message.contains(index), "{message}");
    }
    let no_pool = gw
        .admin(
            with_token(Request::post("/admin/crash/worker"))
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    no_pool.assert_error(StatusCode::CONFLICT, "no_pool");
    let bad_policy = gw
        .admin(
            with_token(Request::post("/admin/poison"))
                .body(Body::from(r#"{"key": "k", "policy": "nope"}"#))
                .unwrap(),
        )
        .await;
    bad_policy.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_policy");
    let bad_backend = gw
        .admin(
            with_token(Request::post("/admin/backend"))
                .body(Body::from(r#"{"backend": "genserver"}"#))
                .unwrap(),
        )
        .await;
    let message = bad_backend.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(message.contains("genserver"), "{message}");
    let bad_json = gw
        .admin(
            with_token(Request::post("/admin/slow"))
                .body(Body::from("{"))
                .unwrap(),
        )
        .await;
    bad_json.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert_eq!(
        gw.state.metrics().faults_total("crash"),
        0,
        "refused crashes are not counted"
    );
}

/// Pool workers obey the restart intensity too: more than 3 worker deaths within 5 s fail the
/// pool (`unavailable`) until its cool-off ends.
#[tokio::test(start_paused = true)]
async fn too_many_pool_worker_deaths_fail_the_pool_until_the_cool_off() {
    let mut config = lesson_config(BackendKind::Concurrent, MS);
    config.pool_size = 2;
    let gw = TestGateway::new(config);
    tokio::time::sleep(MS).await;
    for death in 1..=4 {
        let crashed = gw.admin(json_post("/admin/crash/worker", "")).await;
        assert_eq!(
            crashed.status,
            StatusCode::OK,
            "death {death}: {}",
            crashed.text
        );
        tokio::time::sleep(MS).await;
        // Handing out workers recycles the dead one: that is where a death is noticed.
        gw.send(check_request("a")).await;
        gw.send(check_request("b")).await;
    }
    let pool = gw.state.backend().status().pool.unwrap();
    assert!(pool.failed, "{pool:?}");
    assert_eq!(pool.replaced, 4);
    assert_eq!(outcome(&gw.send(check_request("c")).await), "unavailable");
    assert_eq!(
        gw.send(get("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    tokio::time::sleep(Duration::from_secs(10)).await;
    assert_eq!(outcome(&gw.send(check_request("c")).await), "served");
    assert_eq!(gw.send(get("/readyz")).await.status, StatusCode::OK);
}

/// The crash lessons' exact counts do not depend on `RUST_BACKTRACE` (common in containers):
/// an injected fault captures no backtrace. The standard library reads the variable once per
/// process, so each setting runs those tests in a child process of this test binary.
#[test]
fn the_crash_lessons_count_the_same_with_and_without_rust_backtrace() {
    const CRASH_LESSONS: [&str; 4] = [
        "a_crashing_actor_loses_its_whole_mailbox",
        "crashing_one_shard_loses_only_its_queue_and_its_keys",
        "through_the_worker_pool_only_the_poisoned_check_is_lost",
        "past_the_restart_intensity_the_backend_fails_then_recovers",
    ];
    let exe = std::env::current_exe().unwrap();
    for backtrace in ["0", "1", "full"] {
        let output = std::process::Command::new(&exe)
            .args(CRASH_LESSONS)
            .args(["--exact", "--test-threads", "1"])
            .env("RUST_BACKTRACE", backtrace)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "RUST_BACKTRACE={backtrace}: {stdout}\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
        // Each lesson ran (a filter matching nothing would pass too).
        assert!(
            stdout.contains(&format!("{} passed", CRASH_LESSONS.len())),
            "RUST_BACKTRACE={backtrace}: {stdout}"
        );
    }
}
