//! The gRPC transport of Envoy's rate limit service, through tonic's client and
//! `envoy-types`' messages against a served gateway: the decision `rls.rs` tests over JSON,
//! the proto's codes and fields, `INVALID_ARGUMENT`, `UNAVAILABLE`, and `grpc.health.v1`.
//! (A client Turnstile did not write, Python's grpcio, drives the release binary in
//! `turnstile-e2e`.)

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use turnstile_core::{Clock, ManualClock, Policy};
use turnstile_gateway::Config;
use turnstile_gateway::api::rls::GRPC_SERVICE;
use turnstile_gateway::testing::{RunningGateway, on_loopback, spawn_with_clock};

const RULES: &str = r#"
domain: edge
descriptors:
  - key: remote_address
    rate_limit: { unit: minute, requests_per_unit: 3, name: per-ip }
"#;

fn gateway() -> (RunningGateway, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("edge.yaml"), RULES).unwrap();
    let mut config = on_loopback(Config::default());
    config.rls.config_dir = Some(dir.path().to_owned());
    let clock = Arc::new(ManualClock::default()) as Arc<dyn Clock>;
    (spawn_with_clock(config, clock).unwrap(), dir)
}

fn request(domain: &str, ip: &str) -> RateLimitRequest {
    RateLimitRequest {
        domain: domain.into(),
        descriptors: vec![RateLimitDescriptor {
            entries: vec![Entry {
                key: "remote_address".into(),
                value: ip.into(),
            }],
            ..Default::default()
        }],
        hits_addend: 0,
    }
}

async fn client(gateway: &RunningGateway) -> RateLimitServiceClient<tonic::transport::Channel> {
    RateLimitServiceClient::connect(format!("http://{}", gateway.rls.unwrap()))
        .await
        .unwrap()
}

async fn call(
    client: &mut RateLimitServiceClient<tonic::transport::Channel>,
    request: RateLimitRequest,
) -> Result<RateLimitResponse, tonic::Status> {
    client
        .should_rate_limit(request)
        .await
        .map(tonic::Response::into_inner)
}

#[tokio::test]
async fn should_rate_limit_answers_in_envoys_proto() {
    let (gateway, _dir) = gateway();
    let mut client = client(&gateway).await;
    for remaining in [2, 1, 0] {
        let response = call(&mut client, request("edge", "10.0.0.1"))
            .await
            .unwrap();
        assert_eq!(response.overall_code, Code::Ok as i32);
        let status = &response.statuses[0];
        assert_eq!(status.code, Code::Ok as i32);
        assert_eq!(status.limit_remaining, remaining);
        let limit = status.current_limit.as_ref().unwrap();
        assert_eq!(
            (limit.requests_per_unit, limit.unit, limit.name.as_str()),
            (3, Unit::Minute as i32, "per-ip")
        );
        assert!(status.duration_until_reset.is_some());
        assert!(response.response_headers_to_add.is_empty());
    }
    let over = call(&mut client, request("edge", "10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(over.overall_code, Code::OverLimit as i32);
    assert_eq!(over.statuses[0].code, Code::OverLimit as i32);
    let header = |name: &str| {
        over.response_headers_to_add
            .iter()
            .find(|header| header.key == name)
            .map(|header| header.value.clone())
    };
    assert_eq!(header("retry-after").as_deref(), Some("20"));
    assert_eq!(
        header("ratelimit-policy").as_deref(),
        Some(r#""per-ip";q=3;w=60"#)
    );
    // Unknown domain: OK, a status per descriptor, no limit.
    let unknown = call(&mut client, request("nowhere", "10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(unknown.overall_code, Code::Ok as i32);
    assert_eq!(unknown.statuses.len(), 1);
    assert!(unknown.statuses[0].current_limit.is_none());
    gateway.stop().unwrap();
}

#[tokio::test]
async fn bad_input_is_invalid_argument_naming_the_field() {
    let (gateway, _dir) = gateway();
    let mut client = client(&gateway).await;
    let mut empty_key = request("edge", "10.0.0.1");
    empty_key.descriptors[0].entries[0].key.clear();
    for (request, expected) in [
        (request("", "10.0.0.1"), "`domain` must not be empty"),
        (
            RateLimitRequest {
                descriptors: Vec::new(),
                ..request("edge", "x")
            },
            "`descriptors` must not be empty",
        ),
        (
            empty_key,
            "`descriptors[0].entries[0].key` must not be empty",
        ),
    ] {
        let status = call(&mut client, request).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::InvalidArgument);
        assert!(status.message().contains(expected), "{}", status.message());
    }
    // Nothing was consumed.
    let response = call(&mut client, request("edge", "10.0.0.1"))
        .await
        .unwrap();
    assert_eq!(response.statuses[0].limit_remaining, 2);
    gateway.stop().unwrap();
}

#[tokio::test]
async fn a_dropped_check_is_unavailable() {
    let (gateway, _dir) = gateway();
    let loaded = turnstile_rules::parse_files(&[("edge.yaml".into(), RULES.to_owned())]).unwrap();
    let key = loaded
        .rules
        .find("edge", [("remote_address", "10.6.6.6")].into_iter())
        .unwrap()
        .key;
    gateway
        .state()
        .faults()
        .poison(Policy::RULES_KEYSPACE, key.as_str())
        .unwrap();
    let mut client = client(&gateway).await;
    let status = call(&mut client, request("edge", "10.6.6.6"))
        .await
        .unwrap_err();
    assert_eq!(status.code(), tonic::Code::Unavailable, "{status:?}");
    assert_eq!(
        turnstile_gateway::api::rls::unavailable_reason(status.message()),
        Some("crashed"),
        "{}",
        status.message()
    );
    gateway.stop().unwrap();
}

#[tokio::test]
async fn the_health_service_reports_serving() {
    let (gateway, _dir) = gateway();
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", gateway.rls.unwrap()))
            .unwrap()
            .connect()
            .await
            .unwrap();
    let mut health = HealthClient::new(channel);
    for service in ["", GRPC_SERVICE] {
        // The status is published as the server starts: poll until it is.
        let mut status = None;
        for _ in 0..100 {
            let answer = health
                .check(HealthCheckRequest {
                    service: service.into(),
                })
                .await;
            if let Ok(answer) = answer {
                status = Some(answer.into_inner().status);
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        assert_eq!(
            status,
            Some(ServingStatus::Serving as i32),
            "service `{service}`"
        );
    }
    gateway.stop().unwrap();
}

/// The limit the rule for `remote_address` reports now, over gRPC.
async fn current_limit(
    client: &mut RateLimitServiceClient<tonic::transport::Channel>,
) -> Option<u32> {
    let response = call(client, request("edge", "192.0.2.1")).await.ok()?;
    Some(
        response.statuses[0]
            .current_limit
            .as_ref()?
            .requests_per_unit,
    )
}

/// Polls until the rule reports `limit` (file events arrive asynchronously).
async fn until_limit(client: &mut RateLimitServiceClient<tonic::transport::Channel>, limit: u32) {
    for _ in 0..200 {
        if current_limit(client).await == Some(limit) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    }
    panic!(
        "the rules never reported a limit of {limit} (now {:?})",
        current_limit(client).await
    );
}

fn rules_with_limit(limit: u32) -> String {
    RULES.replace(
        "requests_per_unit: 3",
        &format!("requests_per_unit: {limit}"),
    )
}

#[tokio::test]
async fn file_changes_configmap_swaps_and_directory_symlink_swaps_reload_the_rules() {
    use std::os::unix::fs::symlink;
    let root = tempfile::tempdir().unwrap();
    // The directory Turnstile reads is itself a symlink (`current` → `v1`), laid out inside as
    // a Kubernetes ConfigMap mount: `edge.yaml` → `..data/edge.yaml`, `..data` → `..v1a`.
    let v1 = root.path().join("v1");
    std::fs::create_dir_all(v1.join("..v1a")).unwrap();
    std::fs::write(v1.join("..v1a/edge.yaml"), rules_with_limit(3)).unwrap();
    symlink("..v1a", v1.join("..data")).unwrap();
    symlink("..data/edge.yaml", v1.join("edge.yaml")).unwrap();
    let current = root.path().join("current");
    symlink(&v1, &current).unwrap();

    let mut config = on_loopback(Config::default());
    config.rls.config_dir = Some(current.clone());
    let gateway = turnstile_gateway::testing::spawn(config).unwrap();
    let mut client = client(&gateway).await;
    until_limit(&mut client, 3).await;

    // kubelet's update: a new timestamped directory, `..data` swapped by an atomic rename.
    std::fs::create_dir(v1.join("..v1b")).unwrap();
    std::fs::write(v1.join("..v1b/edge.yaml"), rules_with_limit(4)).unwrap();
    symlink("..v1b", v1.join("..data_tmp")).unwrap();
    std::fs::rename(v1.join("..data_tmp"), v1.join("..data")).unwrap();
    until_limit(&mut client, 4).await;

    // The whole directory swapped: `current` → `v2`.
    let v2 = root.path().join("v2");
    std::fs::create_dir(&v2).unwrap();
    std::fs::write(v2.join("edge.yaml"), rules_with_limit(5)).unwrap();
    symlink(&v2, root.path().join("current_tmp")).unwrap();
    std::fs::rename(root.path().join("current_tmp"), &current).unwrap();
    until_limit(&mut client, 5).await;

    // And a plain write inside the new target is seen too (the watch follows the swap).
    std::fs::write(v2.join("edge.yaml"), rules_with_limit(6)).unwrap();
    until_limit(&mut client, 6).await;
    let reloads = gateway.state().metrics().config_reloads_total("ok");
    assert!(reloads >= 3, "{reloads} reloads");
    gateway.stop().unwrap();
}
