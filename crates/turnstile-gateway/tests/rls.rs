//! Envoy's rate limit service, over `POST /v1/ratelimit`, on every backend (actor, sharded,
//! concurrent, and redis against `turnstile_backend::test_redis`), bare and behind the check pool, on the
//! manual clock: exact counts and remaining through the first window, over-limit answers and
//! their headers, nesting, wildcards, unlimited and blocking rules, shadow mode, `replaces`,
//! `hits_addend`, several descriptors in one call, drops, reloads, and bad input that changes
//! nothing. (The gRPC transport runs the same decision: `rls_grpc.rs`, and the end-to-end test
//! with Python's grpcio.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::http::StatusCode;
use common::{TestGateway, TestResponse, json_post};
use serde_json::{Value, json};
use turnstile_backend::BackendKind;
use turnstile_core::Policy;
use turnstile_gateway::Config;

const RULES: &str = r#"
domain: edge
descriptors:
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: generic_key
    value: blocked
    rate_limit: { unit: second, requests_per_unit: 0 }
  - key: generic_key
    value: internal
    rate_limit: { unlimited: true }
  - key: path
    value: /files/*
    share_threshold: true
    rate_limit: { unit: minute, requests_per_unit: 2, name: files }
  - key: path
    value: /own/*
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: tenant
    descriptors:
      - key: plan
        value: free
        rate_limit: { unit: hour, requests_per_unit: 2, name: free-plan }
  - key: shadowed
    shadow_mode: true
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: user
    rate_limit: { unit: minute, requests_per_unit: 10, name: per-user }
  - key: vip
    rate_limit: { unit: minute, requests_per_unit: 100, name: vip, replaces: [{ name: per-user }] }
  - key: bursty
    rate_limit: { unit: second, requests_per_unit: 10, burst: 2 }
"#;

const OTHER: &str = r#"
domain: other
descriptors:
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 1 }
"#;

/// The test Redis, if there is one (as the backend conformance suite finds it).
fn redis_url() -> Option<String> {
    turnstile_backend::test_redis::url()
}

/// Every `(backend, pool size)` this run can test.
fn variants() -> Vec<(BackendKind, usize)> {
    let mut kinds = BackendKind::IN_PROCESS.to_vec();
    if redis_url().is_some() {
        kinds.push(BackendKind::Redis);
    }
    kinds
        .into_iter()
        .flat_map(|kind| [(kind, 0), (kind, 2)])
        .collect()
}

/// A rule directory holding `files`, kept for the test's life.
fn rules_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn config(kind: BackendKind, pool: usize, dir: &std::path::Path, extra: &str) -> Config {
    static NEXT_PREFIX: AtomicU64 = AtomicU64::new(0);
    let redis = match redis_url() {
        Some(url) if kind == BackendKind::Redis => format!(
            "redis_url = \"{url}\"\n[redis]\nclock = \"injected\"\nkey_prefix = \"rls-test:{}:{}:\"\n",
            std::process::id(),
            NEXT_PREFIX.fetch_add(1, Ordering::Relaxed)
        ),
        _ => String::new(),
    };
    let toml = format!(
        "backend = \"{kind}\"\npool_size = {pool}\nshards = 4\n{extra}\n{redis}\n[rls]\nconfig_dir = \"{}\"\n",
        dir.display()
    );
    match Config::from_toml(&[&toml], &serde_json::Map::new()) {
        Ok(config) => config,
        Err(error) => panic!("{error}\n{toml}"),
    }
}

async fn call(gateway: &TestGateway, body: Value) -> TestResponse {
    gateway
        .send(json_post("/v1/ratelimit", &body.to_string()))
        .await
}

fn one(domain: &str, entries: &[(&str, &str)]) -> Value {
    json!({
        "domain": domain,
        "descriptors": [{ "entries": entries.iter().map(|(k, v)| json!({"key": k, "value": v})).collect::<Vec<_>>() }],
    })
}

#[track_caller]
fn assert_ok(response: &TestResponse, remaining: u64) {
    assert_eq!(response.status, StatusCode::OK, "{}", response.text);
    assert_eq!(response.json["overallCode"], "OK", "{}", response.text);
    assert_eq!(
        response.json["statuses"][0]["limitRemaining"], remaining,
        "{}",
        response.text
    );
}

#[track_caller]
fn assert_over(response: &TestResponse) {
    assert_eq!(
        response.status,
        StatusCode::TOO_MANY_REQUESTS,
        "{}",
        response.text
    );
    assert_eq!(
        response.json["overallCode"], "OVER_LIMIT",
        "{}",
        response.text
    );
}

/// One gateway per variant, the scenario run on each.
async fn for_every_variant<F, Fut>(extra: &str, scenario: F)
where
    F: Fn(TestGateway, BackendKind) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    for (kind, pool) in variants() {
        let dir = rules_dir(&[("edge.yaml", RULES), ("other.yaml", OTHER)]);
        eprintln!("variant: {kind}, pool {pool}");
        let gateway = TestGateway::new(config(kind, pool, dir.path(), extra));
        scenario(gateway, kind).await;
    }
}

#[tokio::test]
async fn counts_and_remaining_are_exact_through_the_first_window() {
    for_every_variant("", |gateway, _| async move {
        for remaining in [2, 1, 0] {
            let response = call(&gateway, one("edge", &[("remote_address", "10.0.0.1")])).await;
            assert_ok(&response, remaining);
            let status = &response.json["statuses"][0];
            assert_eq!(status["code"], "OK");
            assert_eq!(
                status["currentLimit"],
                json!({"requestsPerUnit": 3, "unit": "MINUTE"})
            );
            assert!(
                status["durationUntilReset"]
                    .as_str()
                    .unwrap()
                    .ends_with('s')
            );
            assert!(response.json.get("responseHeadersToAdd").is_none());
        }
        let over = call(&gateway, one("edge", &[("remote_address", "10.0.0.1")])).await;
        assert_over(&over);
        assert_eq!(over.json["statuses"][0]["code"], "OVER_LIMIT");
        assert_eq!(over.json["statuses"][0]["limitRemaining"], 0);
        // GCRA: one more request every 20 s (3 per minute).
        assert_eq!(over.header("retry-after"), Some("20"));
        let headers = over.json["responseHeadersToAdd"].as_array().unwrap();
        let header = |name: &str| {
            headers
                .iter()
                .find(|header| header["key"] == name)
                .map(|header| header["value"].as_str().unwrap().to_owned())
        };
        assert_eq!(header("retry-after").as_deref(), Some("20"));
        assert_eq!(
            header("ratelimit-policy").as_deref(),
            Some(r#""edge.remote_address";q=3;w=60"#)
        );
        assert!(header("ratelimit").unwrap().contains(";r=0;"));
        // Each value of a key-only descriptor is its own counter; the other domain its own.
        assert_ok(
            &call(&gateway, one("edge", &[("remote_address", "10.0.0.2")])).await,
            2,
        );
        assert_ok(
            &call(&gateway, one("other", &[("remote_address", "10.0.0.1")])).await,
            0,
        );
        assert_over(&call(&gateway, one("other", &[("remote_address", "10.0.0.1")])).await);
        // Time refills it: 20 s later, one more.
        gateway.clock.advance(Duration::from_secs(20));
        assert_ok(
            &call(&gateway, one("edge", &[("remote_address", "10.0.0.1")])).await,
            0,
        );
        assert_eq!(
            gateway.state.metrics().rls_decisions_total(
                "edge",
                "edge.remote_address",
                "over_limit"
            ),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn unlimited_blocking_and_unknown_rules_never_touch_the_backend() {
    for_every_variant("", |gateway, kind| async move {
        let checks = || gateway.state.metrics().checks_total(kind);
        let before = checks();
        let unlimited = call(&gateway, one("edge", &[("generic_key", "internal")])).await;
        assert_eq!(unlimited.status, StatusCode::OK);
        assert!(unlimited.json["statuses"][0].get("currentLimit").is_none());
        let blocked = call(&gateway, one("edge", &[("generic_key", "blocked")])).await;
        assert_over(&blocked);
        assert_eq!(
            blocked.json["statuses"][0]["currentLimit"],
            json!({"requestsPerUnit": 0, "unit": "SECOND"})
        );
        // Unknown domain, unknown key, depth mismatch: OK, a status each, no limit.
        for body in [
            one("nowhere", &[("remote_address", "10.0.0.1")]),
            one("edge", &[("unknown", "x")]),
            one("edge", &[("tenant", "t1")]),
            one("edge", &[("remote_address", "10.0.0.1"), ("deeper", "x")]),
        ] {
            let response = call(&gateway, body).await;
            assert_eq!(response.status, StatusCode::OK, "{}", response.text);
            assert_eq!(response.json["statuses"].as_array().unwrap().len(), 1);
            assert_eq!(response.json["statuses"][0]["code"], "OK");
            assert!(response.json["statuses"][0].get("currentLimit").is_none());
        }
        assert_eq!(checks(), before, "no check reached the backend");
        let metrics = gateway.state.metrics();
        assert_eq!(metrics.rls_decisions_total("", "", "no_rule"), 1);
        assert_eq!(metrics.rls_decisions_total("edge", "", "no_rule"), 3);
        assert_eq!(
            metrics.rls_decisions_total("edge", "edge.generic_key_internal", "unlimited"),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn nesting_and_wildcards_pick_their_counters() {
    for_every_variant("", |gateway, _| async move {
        // Nested: the rule sits at depth 2; each tenant its own counter.
        let free = |tenant: &'static str| one("edge", &[("tenant", tenant), ("plan", "free")]);
        assert_ok(&call(&gateway, free("t1")).await, 1);
        assert_ok(&call(&gateway, free("t1")).await, 0);
        let over = call(&gateway, free("t1")).await;
        assert_over(&over);
        assert_eq!(
            over.json["statuses"][0]["currentLimit"]["name"],
            "free-plan"
        );
        assert_ok(&call(&gateway, free("t2")).await, 1);
        // share_threshold: every path under /files/ shares one counter of 2.
        assert_ok(
            &call(&gateway, one("edge", &[("path", "/files/a")])).await,
            1,
        );
        assert_ok(
            &call(&gateway, one("edge", &[("path", "/files/b")])).await,
            0,
        );
        assert_over(&call(&gateway, one("edge", &[("path", "/files/c")])).await);
        // Without it, one counter per value.
        assert_ok(&call(&gateway, one("edge", &[("path", "/own/a")])).await, 0);
        assert_ok(&call(&gateway, one("edge", &[("path", "/own/b")])).await, 0);
        assert_over(&call(&gateway, one("edge", &[("path", "/own/a")])).await);
    })
    .await;
}

#[tokio::test]
async fn every_descriptor_is_consumed_even_when_another_is_over() {
    for_every_variant("", |gateway, _| async move {
        let both = json!({
            "domain": "edge",
            "descriptors": [
                { "entries": [{ "key": "remote_address", "value": "10.9.9.9" }] },
                { "entries": [{ "key": "generic_key", "value": "blocked" }] },
            ],
        });
        let response = call(&gateway, both).await;
        assert_over(&response);
        assert_eq!(response.json["statuses"][0]["code"], "OK");
        assert_eq!(response.json["statuses"][0]["limitRemaining"], 2);
        assert_eq!(response.json["statuses"][1]["code"], "OVER_LIMIT");
        // The OK descriptor was consumed (envoy's default): 1 left, not 2.
        assert_ok(
            &call(&gateway, one("edge", &[("remote_address", "10.9.9.9")])).await,
            1,
        );
    })
    .await;
}

#[tokio::test]
async fn shadow_mode_decides_and_counts_but_answers_ok() {
    for_every_variant("", |gateway, _| async move {
        assert_ok(&call(&gateway, one("edge", &[("shadowed", "s")])).await, 0);
        let shadowed = call(&gateway, one("edge", &[("shadowed", "s")])).await;
        assert_eq!(shadowed.status, StatusCode::OK, "{}", shadowed.text);
        assert_eq!(shadowed.json["overallCode"], "OK");
        assert_eq!(shadowed.json["statuses"][0]["code"], "OK");
        assert!(shadowed.header("retry-after").is_none());
        let metrics = gateway.state.metrics();
        assert_eq!(
            metrics.rls_decisions_total("edge", "edge.shadowed", "shadow_denied"),
            1
        );
        assert_eq!(
            metrics.rls_decisions_total("edge", "edge.shadowed", "ok"),
            1
        );
    })
    .await;
}

#[tokio::test]
async fn global_shadow_mode_answers_ok_for_every_rule() {
    let dir = rules_dir(&[("edge.yaml", RULES)]);
    let mut config = config(BackendKind::Concurrent, 0, dir.path(), "");
    config.rls.shadow_mode = true;
    let gateway = TestGateway::new(config);
    let blocked = call(&gateway, one("edge", &[("generic_key", "blocked")])).await;
    assert_eq!(blocked.status, StatusCode::OK, "{}", blocked.text);
    assert_eq!(blocked.json["overallCode"], "OK");
    assert_eq!(
        gateway.state.metrics().rls_decisions_total(
            "edge",
            "edge.generic_key_blocked",
            "shadow_denied"
        ),
        1
    );
}

#[tokio::test]
async fn replaces_and_hits_addend() {
    for_every_variant("", |gateway, _| async move {
        // vip replaces per-user: the per-user descriptor gets no limit, and is not counted.
        let both = json!({
            "domain": "edge",
            "descriptors": [
                { "entries": [{ "key": "user", "value": "u1" }] },
                { "entries": [{ "key": "vip", "value": "u1" }] },
            ],
        });
        let response = call(&gateway, both).await;
        assert_eq!(response.status, StatusCode::OK, "{}", response.text);
        assert!(response.json["statuses"][0].get("currentLimit").is_none());
        assert_eq!(response.json["statuses"][1]["currentLimit"]["name"], "vip");
        assert_eq!(response.json["statuses"][1]["limitRemaining"], 99);
        assert_ok(&call(&gateway, one("edge", &[("user", "u1")])).await, 9);
        // hits_addend is the cost; 0 counts as 1; a descriptor's own overrides the request's.
        let mut body = one("edge", &[("remote_address", "10.1.1.1")]);
        body["hitsAddend"] = json!(2);
        assert_ok(&call(&gateway, body.clone()).await, 1);
        body["hitsAddend"] = json!(0);
        assert_ok(&call(&gateway, body.clone()).await, 0);
        let mut body = one("edge", &[("remote_address", "10.1.1.2")]);
        body["hitsAddend"] = json!(1);
        body["descriptors"][0]["hitsAddend"] = json!("3");
        assert_ok(&call(&gateway, body).await, 0);
        // More than the burst at once can never pass: over the limit, nothing consumed.
        let mut body = one("edge", &[("bursty", "b")]);
        body["hitsAddend"] = json!(3);
        assert_over(&call(&gateway, body).await);
        assert_ok(&call(&gateway, one("edge", &[("bursty", "b")])).await, 1);
    })
    .await;
}

#[tokio::test]
async fn a_dropped_check_is_unavailable_not_ok() {
    for_every_variant("", |gateway, kind| async move {
        let loaded =
            turnstile_rules::parse_files(&[("edge.yaml".into(), RULES.to_owned())]).unwrap();
        let key = loaded
            .rules
            .find("edge", [("remote_address", "10.6.6.6")].into_iter())
            .unwrap()
            .key;
        gateway
            .state
            .faults()
            .poison(Policy::RULES_KEYSPACE, key.as_str())
            .unwrap();
        let response = call(&gateway, one("edge", &[("remote_address", "10.6.6.6")])).await;
        response.assert_error(StatusCode::SERVICE_UNAVAILABLE, "crashed");
        assert_eq!(gateway.state.metrics().dropped_total(kind, "crashed"), 1);
    })
    .await;
}

#[tokio::test]
async fn bad_requests_are_400s_naming_the_field_and_change_nothing() {
    for_every_variant("", |gateway, kind| async move {
        let long = "x".repeat(1025);
        let many: Vec<Value> = (0..65)
            .map(|_| json!({"entries": [{"key": "remote_address", "value": "10.2.2.2"}]}))
            .collect();
        let deep: Vec<Value> = (0..33).map(|_| json!({"key": "k", "value": "v"})).collect();
        let cases = [
            (json!({"domain": "", "descriptors": [{"entries": [{"key": "remote_address", "value": "a"}]}]}), "`domain` must not be empty"),
            (json!({"domain": "edge", "descriptors": []}), "`descriptors` must not be empty"),
            (json!({"domain": "edge"}), "`descriptors` must not be empty"),
            (json!({"domain": "edge", "descriptors": [{"entries": []}]}), "`descriptors[0].entries` must not be empty"),
            (json!({"domain": "edge", "descriptors": [{"entries": [{"key": "remote_address", "value": "10.2.2.2"}]}, {"entries": [{"key": "", "value": "v"}]}]}), "`descriptors[1].entries[0].key` must not be empty"),
            (json!({"domain": "edge", "descriptors": [{"entries": [{"key": "remote_address", "value": long}]}]}), "`descriptors[0].entries[0].value` is 1025 bytes; the maximum is 1024"),
            (json!({"domain": "edge", "descriptors": many}), "`descriptors` has 65 descriptors; the maximum is 64"),
            (json!({"domain": "edge", "descriptors": [{"entries": deep}]}), "`descriptors[0].entries` has 33 entries; the maximum is 32"),
            (json!({"domain": "edge", "hitsAddend": 4294967296_u64, "descriptors": [{"entries": [{"key": "remote_address", "value": "10.2.2.2"}]}]}), "`hits_addend` is over 4294967295"),
            (json!({"domain": "edge", "descriptors": [{"entries": [{"key": "remote_address", "value": "10.2.2.2"}], "limit": {"requestsPerUnit": 1, "unit": "SECOND"}}]}), "`descriptors[0].limit` is not supported"),
        ];
        let checks = gateway.state.metrics().checks_total(kind);
        for (body, expected) in cases {
            let response = call(&gateway, body).await;
            let message = response.assert_error(StatusCode::BAD_REQUEST, "invalid_argument");
            assert!(message.contains(expected), "`{expected}` not in `{message}`");
        }
        // Not JSON, unknown fields, wrong types: 4xx with a JSON error.
        for body in ["{", r#"{"domian": "edge"}"#, r#"{"domain": 5}"#] {
            let response = gateway.send(json_post("/v1/ratelimit", body)).await;
            assert!(response.status.is_client_error(), "{body}: {}", response.status);
            assert!(response.json["error"].is_string(), "{}", response.text);
        }
        assert_eq!(gateway.state.metrics().checks_total(kind), checks, "nothing was checked");
        // The first good call still has the whole limit.
        assert_ok(
            &call(&gateway, one("edge", &[("remote_address", "10.2.2.2")])).await,
            2,
        );
    })
    .await;
}

#[tokio::test]
async fn a_reload_swaps_rules_keeps_unchanged_state_and_survives_a_bad_file() {
    for_every_variant("", |gateway, _| async move {
        let dir = gateway.state.rules_dir().unwrap().to_owned();
        assert_ok(&call(&gateway, one("edge", &[("remote_address", "10.3.3.3")])).await, 2);
        assert_ok(&call(&gateway, one("other", &[("remote_address", "10.3.3.3")])).await, 0);
        // Add a domain, change `other`'s limit, keep `edge` as it is.
        std::fs::write(
            dir.join("added.yaml"),
            "domain: added\ndescriptors:\n  - key: k\n    rate_limit: { unit: minute, requests_per_unit: 5 }\n",
        )
        .unwrap();
        std::fs::write(dir.join("other.yaml"), OTHER.replace("requests_per_unit: 1", "requests_per_unit: 2")).unwrap();
        gateway.state.reload_rules().unwrap();
        // edge's counter kept; other's limit changed, so it starts afresh; added is live.
        assert_ok(&call(&gateway, one("edge", &[("remote_address", "10.3.3.3")])).await, 1);
        assert_ok(&call(&gateway, one("other", &[("remote_address", "10.3.3.3")])).await, 1);
        assert_ok(&call(&gateway, one("added", &[("k", "v")])).await, 4);
        // A bad file: the reload fails, the old rules stay in force.
        std::fs::write(dir.join("broken.yaml"), "domain: broken\ndescriptors:\n  - key: a\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n").unwrap();
        let error = gateway.state.reload_rules().unwrap_err().to_string();
        assert!(error.contains("broken.yaml"), "{error}");
        assert!(error.contains("descriptors[0].rate_limit.unit"), "{error}");
        assert_ok(&call(&gateway, one("added", &[("k", "v")])).await, 3);
        let metrics = gateway.state.metrics();
        assert_eq!(metrics.config_reloads_total("ok"), 1);
        assert_eq!(metrics.config_reloads_total("error"), 1);
        let ready = gateway.send(common::get("/readyz")).await;
        assert_eq!(ready.status, StatusCode::OK);
    })
    .await;
}
