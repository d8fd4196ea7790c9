//! Helpers shared by the redis backend's end-to-end tests (`redis.rs`, `redis_cluster.rs`):
//! one check over HTTP, readiness, and the hot-key exactness run both make.

// Not every test file uses every helper.
#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use turnstile_e2e::{parse_json, wait_until};
use turnstile_gateway::testing::RunningGateway;
use turnstile_load::engine::{self, RunOptions, Target};
use turnstile_load::scenario::Scenario;

/// `POST /v1/check` of `key` under `policy`, returning (status, JSON body).
pub async fn check_key(
    client: &reqwest::Client,
    gateway: &RunningGateway,
    key: &str,
    policy: &str,
) -> (u16, serde_json::Value) {
    let response = client
        .post(format!("{}/v1/check", gateway.url()))
        .json(&serde_json::json!({ "key": key, "policy": policy }))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, parse_json(&response.text().await.unwrap()))
}

/// Whether `GET /readyz` answers with a success.
pub async fn ready(client: &reqwest::Client, gateway: &RunningGateway) -> bool {
    client
        .get(format!("{}/readyz", gateway.url()))
        .send()
        .await
        .is_ok_and(|response| response.status().is_success())
}

/// Polls `/readyz` until the gateway says it is ready (for the redis backend: it reaches Redis).
pub async fn until_ready(
    client: &reqwest::Client,
    gateway: &RunningGateway,
    what: &str,
    within: Duration,
) {
    wait_until(what, within, || async {
        ready(client, gateway).await.then_some(())
    })
    .await;
}

/// The load generator's targets for `gateways`.
pub async fn targets(gateways: &[RunningGateway]) -> Vec<Target> {
    let mut targets = Vec::new();
    for gateway in gateways {
        targets.push(Target::parse(&gateway.url()).await.unwrap());
    }
    targets
}

/// One hot key under `policy` (whose limit nothing refills during the run), hammered through
/// every target by 48 closed-loop connections for 2 s: exactly `limit` are admitted in all.
pub async fn assert_a_hot_key_admits_exactly(targets: &[Target], policy: &str, limit: u64) {
    let hot: Scenario = toml::from_str(&format!(
        r#"
name = "hot-key"
mode = "closed"
connections = 48
duration = "2s"
warmup = "0s"
timeout = "5s"
[traffic]
keys = {{ distribution = "hot" }}
policies = [{{ value = "{policy}" }}]
"#
    ))
    .unwrap();
    let result = engine::run_spread(&hot, targets, &RunOptions::default())
        .await
        .unwrap();
    let outcomes = &result.outcomes;
    assert!(result.requests > 500, "too little load: {outcomes:?}");
    assert_eq!(
        outcomes.allowed, limit,
        "one key, one global limit: {outcomes:?}"
    );
    assert_eq!(
        outcomes.allowed + outcomes.limited,
        result.requests,
        "{outcomes:?}"
    );
}
