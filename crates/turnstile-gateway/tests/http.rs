//! The HTTP API through the real router, for every backend: decisions, headers, every kind of
//! bad input, client identification behind proxies, failure modes, operational endpoints.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use common::{TestGateway, get, json_post, small_config};
use serde_json::json;
use turnstile_backend::BackendKind;
use turnstile_gateway::Config;
use turnstile_gateway::config::FailureMode;

fn gateway(kind: BackendKind) -> TestGateway {
    TestGateway::new(Config {
        backend: kind,
        ..small_config()
    })
}

#[tokio::test]
async fn check_answers_200_with_the_decision_allowed_or_denied() {
    for kind in BackendKind::IN_PROCESS {
        let gw = gateway(kind);
        let first = gw.check(json!({"key": "alice"})).await;
        assert_eq!(first.status, StatusCode::OK);
        assert_eq!(
            first.json,
            json!({"allowed": true, "limit": 10, "remaining": 4, "reset_after_ms": 100, "retry_after_ms": null})
        );
        let rest = gw
            .check(json!({"key": "alice", "policy": "default", "cost": 4}))
            .await;
        assert_eq!(rest.json["remaining"], 0);
        let denied = gw.check(json!({"key": "alice"})).await;
        assert_eq!(
            denied.status,
            StatusCode::OK,
            "a denial is a decision, not an error"
        );
        assert_eq!(
            denied.json,
            json!({"allowed": false, "limit": 10, "remaining": 0, "reset_after_ms": 500, "retry_after_ms": 100})
        );
        // A peek never consumes.
        gw.clock.advance(Duration::from_millis(100));
        for _ in 0..3 {
            let peek = gw.check(json!({"key": "alice", "cost": 0})).await;
            assert_eq!(peek.json["allowed"], true);
            assert_eq!(peek.json["remaining"], 1);
        }
        gw.state.backend().shutdown().await;
    }
}

#[tokio::test]
async fn the_gateway_route_answers_429_with_rate_limit_headers() {
    for kind in BackendKind::IN_PROCESS {
        let gw = gateway(kind);
        for remaining in (0..5).rev() {
            let ok = gw.send(get("/any/path?x=1")).await;
            assert_eq!(ok.status, StatusCode::OK, "{kind}");
            assert_eq!(ok.text, "ok\n");
            assert_eq!(ok.header("ratelimit-policy"), Some(r#""default";q=10;w=1"#));
            let expected = format!(r#""default";r={remaining};t=1"#);
            assert_eq!(ok.header("ratelimit"), Some(expected.as_str()));
            assert_eq!(ok.header("retry-after"), None);
            assert_eq!(
                ok.header("ratelimit-limit"),
                None,
                "legacy headers are opt-in"
            );
        }
        let denied = gw.send(get("/any/path")).await;
        assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS, "{kind}");
        assert_eq!(
            denied.json,
            serde_json::json!({
                "error": "rate_limited",
                "message": "rate limit exceeded for policy `default`",
                "retry_after_ms": 100,
            })
        );
        assert_eq!(denied.header("content-type"), Some("application/json"));
        assert_eq!(denied.header("cache-control"), Some("no-store"));
        assert_eq!(denied.header("retry-after"), Some("1"));
        assert_eq!(denied.header("ratelimit"), Some(r#""default";r=0;t=1"#));
        // Another client is unaffected.
        let other = gw.send_from("192.0.2.2:1", get("/")).await;
        assert_eq!(other.status, StatusCode::OK);
        gw.state.backend().shutdown().await;
    }
}

#[tokio::test]
async fn legacy_headers_are_sent_when_enabled() {
    let gw = TestGateway::new(Config {
        legacy_ratelimit_headers: true,
        ..small_config()
    });
    let ok = gw.send(get("/")).await;
    assert_eq!(ok.header("ratelimit-limit"), Some("10"));
    assert_eq!(ok.header("ratelimit-remaining"), Some("4"));
    assert_eq!(ok.header("ratelimit-reset"), Some("1"));
}

#[tokio::test]
async fn forward_auth_answers_200_or_the_configured_deny_status() {
    let mut config = small_config();
    config.forward_auth.deny_status = 403;
    let gw = TestGateway::new(config);
    for _ in 0..5 {
        let ok = gw
            .send(
                Request::head("/v1/forward-auth")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        assert!(ok.header("ratelimit").is_some());
    }
    let denied = gw.send(get("/v1/forward-auth")).await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN);
    assert_eq!(denied.header("retry-after"), Some("1"));

    let default_status = TestGateway::new(small_config());
    for _ in 0..5 {
        default_status
            .send(
                Request::post("/v1/forward-auth")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
    }
    let denied = default_status.send(get("/v1/forward-auth")).await;
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn forward_auth_can_limit_by_a_key_header() {
    let mut config = small_config();
    config.forward_auth.key_header = Some("X-Api-Key".into());
    let gw = TestGateway::new(config);
    let with_key = |key: &str| {
        Request::get("/v1/forward-auth")
            .header("x-api-key", key)
            .body(Body::empty())
            .unwrap()
    };
    for _ in 0..5 {
        assert_eq!(gw.send(with_key("team-a")).await.status, StatusCode::OK);
    }
    assert_eq!(
        gw.send(with_key("team-a")).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Same client IP, different key: its own budget.
    assert_eq!(gw.send(with_key("team-b")).await.status, StatusCode::OK);
    gw.send(get("/v1/forward-auth"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_key_header");
    gw.send(with_key(""))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_key_header");
}

#[tokio::test]
async fn every_kind_of_bad_input_gets_a_4xx_naming_the_problem() {
    let gw = gateway(BackendKind::Actor);
    let post = |body: &str| json_post("/v1/check", body);

    let message = gw
        .send(post("{\"key\": "))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    assert!(message.contains("EOF"), "{message}");
    gw.send(post("not json"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    // Not JSON, though it starts like a number.
    gw.send(post("9}"))
        .await
        .assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    // JSON, but not an object: never read as the fields in order.
    for not_an_object in [r#"["user-42","default",1]"#, "9", r#""alice""#, "null"] {
        let message = gw
            .send(post(not_an_object))
            .await
            .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
        assert!(message.contains("must be a JSON object"), "{message}");
    }
    assert_eq!(
        gw.state.metrics().checks_total(BackendKind::Actor),
        0,
        "no bad body reached the backend"
    );

    let message = gw
        .send(post(r#"{"key": 42}"#))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(message.contains("expected a string"), "{message}");
    let message = gw
        .send(post(r#"{"cost": 1}"#))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(message.contains("missing field `key`"), "{message}");
    let message = gw
        .send(post(r#"{"key": "a", "cost": -1}"#))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(message.contains("-1"), "{message}");
    let message = gw
        .send(post(r#"{"key": "a", "cots": 1}"#))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(message.contains("unknown field `cots`"), "{message}");
    gw.send(post("[]"))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");

    gw.send(post(r#"{"key": ""}"#))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "empty_key");
    let long = json!({"key": "k".repeat(257)}).to_string();
    let message = gw
        .send(post(&long))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "key_too_long");
    assert!(
        message.contains("257") && message.contains("256"),
        "{message}"
    );
    let exactly_256 = json!({"key": "k".repeat(256)}).to_string();
    assert_eq!(gw.send(post(&exactly_256)).await.status, StatusCode::OK);

    let message = gw
        .send(post(r#"{"key": "a", "policy": "nope"}"#))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "unknown_policy");
    assert!(
        message.contains("`nope`") && message.contains("default, login"),
        "{message}"
    );

    let message = gw
        .send(post(r#"{"key": "a", "cost": 6}"#))
        .await
        .assert_error(StatusCode::UNPROCESSABLE_ENTITY, "cost_exceeds_burst");
    assert!(message.contains("burst of 5"), "{message}");

    let huge = json!({"key": "k".repeat(5000)}).to_string();
    gw.send(post(&huge))
        .await
        .assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");

    let no_type = Request::post("/v1/check")
        .body(Body::from(r#"{"key":"a"}"#))
        .unwrap();
    gw.send(no_type)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let text = Request::post("/v1/check")
        .header("content-type", "text/plain")
        .body(Body::from(r#"{"key":"a"}"#))
        .unwrap();
    gw.send(text)
        .await
        .assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let vendor_json = Request::post("/v1/check")
        .header("content-type", "application/vnd.api+json; charset=utf-8")
        .body(Body::from(r#"{"key":"b"}"#))
        .unwrap();
    assert_eq!(gw.send(vendor_json).await.status, StatusCode::OK);

    gw.send(get("/v1/check"))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    gw.send(json_post("/healthz", "{}"))
        .await
        .assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");

    // Nothing was corrupted along the way: the key that was checked once has 4 left.
    assert_eq!(
        gw.check(json!({"key": "b", "cost": 0})).await.json["remaining"],
        4
    );
    gw.state.backend().shutdown().await;
}

fn behind_proxy() -> TestGateway {
    TestGateway::new(Config {
        trusted_proxies: vec!["10.0.0.0/8".parse().unwrap()],
        ..small_config()
    })
}

fn from_proxy(forwarded_for: &str) -> Request<Body> {
    Request::get("/")
        .header("x-forwarded-for", forwarded_for)
        .body(Body::empty())
        .unwrap()
}

#[tokio::test]
async fn a_trusted_proxy_identifies_clients_and_spoofing_does_not_help() {
    let gw = behind_proxy();
    for _ in 0..5 {
        let ok = gw.send_from("10.0.0.2:1", from_proxy("198.51.100.7")).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    assert_eq!(
        gw.send_from("10.0.0.2:1", from_proxy("198.51.100.7"))
            .await
            .status,
        StatusCode::TOO_MANY_REQUESTS
    );
    // The limited client forges a fresh address on the left: the proxy appends the real one.
    let spoof = gw
        .send_from("10.0.0.2:1", from_proxy("203.0.113.50, 198.51.100.7"))
        .await;
    assert_eq!(spoof.status, StatusCode::TOO_MANY_REQUESTS);
    // A different real client behind the same proxy has its own budget.
    assert_eq!(
        gw.send_from("10.0.0.2:1", from_proxy("198.51.100.8"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn an_untrusted_peer_cannot_choose_its_identity() {
    let gw = behind_proxy();
    for i in 0..5 {
        let spoof = gw
            .send_from("203.0.113.9:1", from_proxy(&format!("198.51.100.{i}")))
            .await;
        assert_eq!(spoof.status, StatusCode::OK);
    }
    // Five different claimed addresses, one real peer: the sixth request is limited.
    let spoof = gw
        .send_from("203.0.113.9:1", from_proxy("198.51.100.99"))
        .await;
    assert_eq!(spoof.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn ipv6_clients_are_limited_per_slash_64() {
    let gw = gateway(BackendKind::Concurrent);
    for i in 0..5 {
        let ok = gw
            .send_from(&format!("[2001:db8:1:2::{i}]:1"), get("/"))
            .await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let same_subnet = gw.send_from("[2001:db8:1:2:ffff::1]:1", get("/")).await;
    assert_eq!(same_subnet.status, StatusCode::TOO_MANY_REQUESTS);
    let other_subnet = gw.send_from("[2001:db8:1:3::1]:1", get("/")).await;
    assert_eq!(other_subnet.status, StatusCode::OK);
}

fn one_key_table(failure_mode: FailureMode) -> TestGateway {
    let mut config = small_config();
    config.max_keys = 1;
    if let Some(policy) = config.policies.get_mut("default") {
        policy.failure_mode = failure_mode;
    }
    TestGateway::new(config)
}

#[tokio::test]
async fn a_dropped_check_fails_open_by_default_and_is_counted() {
    let gw = one_key_table(FailureMode::Open);
    assert_eq!(
        gw.check(json!({"key": "first"})).await.json["allowed"],
        true
    );
    // The table is full of live keys: the next new key is dropped, and admitted.
    let dropped = gw.check(json!({"key": "second"})).await;
    assert_eq!(dropped.status, StatusCode::OK);
    assert_eq!(dropped.json["allowed"], true);
    assert_eq!(dropped.json["dropped"], "table_full");
    let route = gw.send_from("192.0.2.77:1", get("/")).await;
    assert_eq!(route.status, StatusCode::OK);
    assert_eq!(route.header("turnstile-dropped"), Some("table_full"));
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Concurrent, "table_full"),
        2
    );
    let metrics = gw.send(get("/metrics")).await.text;
    assert!(
        metrics.contains(
            r#"turnstile_dropped_checks_total{backend="concurrent",reason="table_full"} 2"#
        ),
        "{metrics}"
    );
}

#[tokio::test]
async fn a_dropped_check_under_a_closed_policy_is_a_503_naming_the_reason() {
    let gw = one_key_table(FailureMode::Closed);
    gw.check(json!({"key": "first"})).await;
    let refused = gw.check(json!({"key": "second"})).await;
    let message = refused.assert_error(StatusCode::SERVICE_UNAVAILABLE, "table_full");
    assert!(message.contains("fails closed"), "{message}");
    assert_eq!(refused.header("retry-after"), Some("1"));
    gw.send_from("192.0.2.77:1", get("/"))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "table_full");
    assert_eq!(
        gw.state
            .metrics()
            .dropped_total(BackendKind::Concurrent, "table_full"),
        2
    );
}

#[tokio::test]
async fn metrics_count_decisions_by_backend_policy_and_result() {
    let gw = gateway(BackendKind::Sharded);
    for _ in 0..7 {
        gw.check(json!({"key": "m"})).await;
    }
    gw.check(json!({"key": "m", "policy": "login"})).await;
    let metrics = gw.send(get("/metrics")).await;
    assert_eq!(metrics.status, StatusCode::OK);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("text/plain")
    );
    for line in [
        r#"turnstile_decisions_total{backend="sharded",policy="default",result="allowed"} 5"#,
        r#"turnstile_decisions_total{backend="sharded",policy="default",result="limited"} 2"#,
        r#"turnstile_decisions_total{backend="sharded",policy="login",result="allowed"} 1"#,
        r#"turnstile_check_duration_seconds_count{backend="sharded",outcome="allowed"} 6"#,
        r#"turnstile_keys_tracked{backend="sharded"} 2"#,
        r#"turnstile_build_info{backend="sharded",version="0.1.0"} 1"#,
    ] {
        assert!(
            metrics.text.contains(line),
            "missing {line}\n{}",
            metrics.text
        );
    }
    assert!(
        !metrics.text.contains("\"m\""),
        "a key must never be a label"
    );
    gw.state.backend().shutdown().await;
}

#[tokio::test]
async fn health_and_readiness() {
    let gw = gateway(BackendKind::Actor);
    let health = gw.send(get("/healthz")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json, json!({"status": "ok"}));
    let ready = gw.send(get("/readyz")).await;
    assert_eq!(ready.json, json!({"status": "ready", "backend": "actor"}));
    gw.state.backend().shutdown().await;
    let stopped = gw.send(get("/readyz")).await;
    assert_eq!(stopped.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(stopped.json["status"], "not_ready");
    // Liveness is about the process, not the backend.
    assert_eq!(gw.send(get("/healthz")).await.status, StatusCode::OK);
    // Checks on a stopped backend are drops, answered per the failure mode (open by default).
    let check = gw.check(json!({"key": "late"})).await;
    assert_eq!(check.json["dropped"], "unavailable");
}

/// A gateway on the redis backend pointed at a port nothing listens on: every check is a
/// `backend_error` drop, answered per the policy's failure mode (no Redis needed).
fn unreachable_redis(failure_mode: FailureMode) -> TestGateway {
    let mut config = small_config();
    config.backend = BackendKind::Redis;
    // Port 1 on loopback: refused at once.
    config.redis_url = "redis://127.0.0.1:1".into();
    if let Some(policy) = config.policies.get_mut("default") {
        policy.failure_mode = failure_mode;
    }
    TestGateway::new(config)
}

#[tokio::test]
async fn an_unreachable_redis_is_a_counted_backend_error_answered_per_the_failure_mode() {
    let open = unreachable_redis(FailureMode::Open);
    let admitted = open.check(json!({"key": "alice"})).await;
    assert_eq!(admitted.status, StatusCode::OK, "{}", admitted.text);
    assert_eq!(admitted.json["allowed"], true);
    assert_eq!(admitted.json["dropped"], "backend_error");
    assert_eq!(
        open.state
            .metrics()
            .dropped_total(BackendKind::Redis, "backend_error"),
        1
    );
    // Not ready while Redis cannot be reached; alive all the same.
    assert_eq!(
        open.send(get("/readyz")).await.status,
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert_eq!(open.send(get("/healthz")).await.status, StatusCode::OK);

    let closed = unreachable_redis(FailureMode::Closed);
    closed
        .check(json!({"key": "alice"}))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "backend_error");
    closed
        .send_from("192.0.2.77:1", get("/"))
        .await
        .assert_error(StatusCode::SERVICE_UNAVAILABLE, "backend_error");
}

#[tokio::test]
async fn a_switch_the_configuration_cannot_serve_is_refused_with_409_and_changes_nothing() {
    // 1 per 300 days: the redis script cannot hold that tolerance exactly.
    let mut config = small_config();
    config.policies.insert(
        "glacial".into(),
        turnstile_gateway::config::PolicyConfig {
            limit: 1,
            period: Duration::from_secs(300 * 86_400),
            burst: None,
            failure_mode: FailureMode::Open,
        },
    );
    let gw = TestGateway::new(config);
    let refused = gw
        .admin(json_post(
            "/admin/backend",
            &json!({"backend": "redis"}).to_string(),
        ))
        .await;
    let message = refused.assert_error(StatusCode::CONFLICT, "switch_refused");
    assert!(message.contains("days"), "{message}");
    assert_eq!(gw.state.backend_kind(), BackendKind::Concurrent);
    assert_eq!(gw.state.metrics().faults_total("switch"), 0);
    // An unknown backend is bad input, named with the valid ones.
    let unknown = gw
        .admin(json_post(
            "/admin/backend",
            &json!({"backend": "genserver"}).to_string(),
        ))
        .await;
    let message = unknown.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    assert!(
        message.contains("genserver") && message.contains("sharded"),
        "{message}"
    );
    assert_eq!(
        gw.check(json!({"key": "still"})).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn admin_bodies_are_read_like_every_other_body() {
    let gw = TestGateway::new(Config {
        body_limit_bytes: 64,
        ..small_config()
    });
    let not_json = gw
        .admin(
            Request::post("/admin/poison")
                .header("content-type", "text/plain")
                .body(Body::from(r#"{"key":"k"}"#))
                .unwrap(),
        )
        .await;
    not_json.assert_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type");
    let too_big = gw
        .admin(json_post(
            "/admin/poison",
            &json!({"key": "k".repeat(100)}).to_string(),
        ))
        .await;
    too_big.assert_error(StatusCode::PAYLOAD_TOO_LARGE, "body_too_large");
    let broken = gw.admin(json_post("/admin/slow", "{\"delay\":")).await;
    broken.assert_error(StatusCode::BAD_REQUEST, "invalid_json");
    let unknown_field = gw
        .admin(json_post("/admin/poison", r#"{"key":"k","extra":1}"#))
        .await;
    unknown_field.assert_error(StatusCode::UNPROCESSABLE_ENTITY, "invalid_field");
    let wrong_method = gw.admin(get("/admin/poison")).await;
    wrong_method.assert_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}
