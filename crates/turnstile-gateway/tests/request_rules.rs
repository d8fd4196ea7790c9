//! Request rules (`[[routes]]`) through the real router, on every in-process backend: rule
//! precedence, every key source, `on_missing`, shadow rules, several limits per request, and
//! forward-auth deciding by the same rules from the proxy's description of the request.
//! (Forwarding to a real upstream: `turnstile-e2e`'s `tests/proxy.rs`.)

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use axum::body::Body;
use axum::http::{Request, StatusCode};
use turnstile_backend::BackendKind;
use turnstile_gateway::Config;
use turnstile_gateway::testing::{TestGateway, TestResponse};

/// Three small policies and the issue's own example rules.
const RULES: &str = r#"
[policies.login]
limit = 2
period = "1m"
[policies.api]
limit = 3
period = "1m"
[policies.api-per-ip]
limit = 5
period = "1m"
[policies.default]
limit = 4
period = "1m"

[[routes]]
name = "login"
match = { path_prefix = "/login", methods = ["POST"] }
limits = [ { policy = "login", key = "client_ip" } ]

[[routes]]
name = "api"
match = { path_prefix = "/api/", header = "x-api-key" }
limits = [ { policy = "api-per-ip", key = "client_ip" },
           { policy = "api", key = "header:x-api-key" } ]

[[routes]]
name = "static"
match = { path_prefix = "/static/" }
limits = []

[[routes]]
name = "everything"
match = { path_prefix = "/" }
limits = [ { policy = "default", key = "client_ip" } ]
"#;

fn config(layers: &[&str], kind: BackendKind) -> Config {
    let mut config = Config::from_toml(layers, &serde_json::Map::new()).expect("valid config");
    config.backend = kind;
    config
}

fn request(method: &str, path: &str, headers: &[(&str, &str)]) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(Body::empty()).unwrap()
}

async fn statuses(
    gateway: &TestGateway,
    peer: &str,
    count: usize,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _ in 0..count {
        let response = gateway
            .send_from(peer, request(method, path, headers))
            .await;
        statuses.push(response.status.as_u16());
    }
    statuses
}

const A: &str = "192.0.2.1:1000";
const B: &str = "192.0.2.2:1000";

#[tokio::test]
async fn the_first_matching_rule_decides_with_its_own_policy() {
    for kind in BackendKind::IN_PROCESS {
        let gateway = TestGateway::new(config(&[RULES], kind));
        // POST /login: 2 per minute. GET /login is not the login rule: the catch-all's 4.
        assert_eq!(
            statuses(&gateway, A, 3, "POST", "/login", &[]).await,
            [200, 200, 429],
            "{kind}"
        );
        // An encoded or doubled path meets the same rule.
        assert_eq!(
            statuses(&gateway, A, 1, "POST", "//%6Cogin", &[]).await,
            [429]
        );
        assert_eq!(
            statuses(&gateway, A, 5, "GET", "/login", &[]).await,
            [200, 200, 200, 200, 429]
        );
        // The exempt rule is never limited, and counted as `unlimited`.
        assert_eq!(
            statuses(&gateway, A, 6, "GET", "/static/app.js", &[]).await,
            [200; 6]
        );
        let metrics = gateway.state.metrics();
        assert_eq!(metrics.route_decisions_total("static", "unlimited"), 6);
        assert_eq!(metrics.route_decisions_total("login", "allowed"), 2);
        assert_eq!(metrics.route_decisions_total("login", "denied"), 2);
        assert_eq!(metrics.route_decisions_total("everything", "denied"), 1);
        // Another client has its own budget.
        assert_eq!(statuses(&gateway, B, 1, "POST", "/login", &[]).await, [200]);
        gateway.state.backend().shutdown().await;
    }
}

#[tokio::test]
async fn a_denial_names_its_policy_and_carries_its_headers() {
    let gateway = TestGateway::new(config(&[RULES], BackendKind::Concurrent));
    statuses(&gateway, A, 2, "POST", "/login", &[]).await;
    let denied = gateway.send_from(A, request("POST", "/login", &[])).await;
    let message = denied.assert_error(StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(message.contains("`login`"), "{message}");
    assert_eq!(
        denied.header("ratelimit-policy"),
        Some(r#""login";q=2;w=60"#)
    );
    assert_eq!(denied.header("retry-after"), Some("30"));
}

#[tokio::test]
async fn every_limit_must_pass_and_the_first_denial_stops_the_rest() {
    for kind in BackendKind::IN_PROCESS {
        let gateway = TestGateway::new(config(&[RULES], kind));
        // Per key 3, per IP 5 (checked first). Key k1 from A: 3 pass, then the key denies; the
        // per-IP limit was consumed by those 4.
        let k1 = [("x-api-key", "k1")];
        assert_eq!(
            statuses(&gateway, A, 4, "GET", "/api/x", &k1).await,
            [200, 200, 200, 429],
            "{kind}"
        );
        // A new key from A: the per-IP limit has 1 left (5 - 4), then denies; the per-key
        // limit after it is not consumed by that denial.
        let k2 = [("x-api-key", "k2")];
        assert_eq!(
            statuses(&gateway, A, 3, "GET", "/api/x", &k2).await,
            [200, 429, 429]
        );
        // k2 from B: it spent 1 of its 3 above (the denials did not consume it), 2 remain.
        assert_eq!(
            statuses(&gateway, B, 3, "GET", "/api/x", &k2).await,
            [200, 200, 429]
        );
        // The headers of an admitted request are the closest limit's.
        let fresh = gateway
            .send_from(
                "192.0.2.3:1",
                request("GET", "/api/x", &[("x-api-key", "k3")]),
            )
            .await;
        assert_eq!(fresh.header("ratelimit"), Some(r#""api";r=2;t=20"#));
        gateway.state.backend().shutdown().await;
    }
}

#[tokio::test]
async fn each_key_source_counts_what_it_names() {
    let toml = r#"
        [policies.two]
        limit = 2
        period = "1m"
        [[routes]]
        name = "by-header"
        match = { path_prefix = "/h" }
        limits = [ { policy = "two", key = "header:x-user" } ]
        [[routes]]
        name = "by-path"
        match = { path_prefix = "/p/" }
        limits = [ { policy = "two", key = "path" } ]
        [[routes]]
        name = "by-method"
        match = { path_prefix = "/m" }
        limits = [ { policy = "two", key = "method" } ]
        [[routes]]
        name = "global"
        match = { path_prefix = "/g" }
        limits = [ { policy = "two", key = "global" } ]
        [[routes]]
        name = "by-ip"
        match = { path_prefix = "/" }
        limits = [ { policy = "two", key = "client_ip" } ]
    "#;
    let gateway = TestGateway::new(config(&[toml], BackendKind::Concurrent));
    // header: per value, whoever sends it; a value that is an IP is not that IP's key.
    let user = |name| [("x-user", name)];
    assert_eq!(
        statuses(&gateway, A, 3, "GET", "/h", &user("192.0.2.9")).await,
        [200, 200, 429]
    );
    assert_eq!(
        statuses(&gateway, B, 1, "GET", "/h", &user("192.0.2.9")).await,
        [429]
    );
    assert_eq!(
        statuses(&gateway, B, 1, "GET", "/h", &user("bob")).await,
        [200]
    );
    assert_eq!(
        statuses(&gateway, "192.0.2.9:1", 2, "GET", "/", &[]).await,
        [200, 200],
        "the header's value did not spend the client IP's budget"
    );
    // path: per normalized path, for every client; the query is not part of it.
    assert_eq!(
        statuses(&gateway, A, 2, "GET", "/p/one?x=1", &[]).await,
        [200, 200]
    );
    assert_eq!(
        statuses(&gateway, B, 1, "GET", "/p/./one?x=2", &[]).await,
        [429]
    );
    assert_eq!(statuses(&gateway, B, 1, "GET", "/p/two", &[]).await, [200]);
    // method: per method.
    assert_eq!(
        statuses(&gateway, A, 3, "GET", "/m", &[]).await,
        [200, 200, 429]
    );
    assert_eq!(statuses(&gateway, B, 1, "PUT", "/m", &[]).await, [200]);
    // global: one budget for everyone.
    assert_eq!(statuses(&gateway, A, 2, "GET", "/g", &[]).await, [200, 200]);
    assert_eq!(statuses(&gateway, B, 1, "GET", "/g", &[]).await, [429]);
    gateway.state.backend().shutdown().await;
}

#[tokio::test]
async fn a_missing_key_header_follows_on_missing() {
    let toml = r#"
        [policies.two]
        limit = 2
        period = "1m"
        [policies.one]
        limit = 1
        period = "1m"
        [[routes]]
        name = "deny"
        match = { path_prefix = "/deny" }
        limits = [ { policy = "one", key = "client_ip" },
                   { policy = "two", key = "header:x-user" } ]
        [[routes]]
        name = "skip"
        match = { path_prefix = "/skip" }
        limits = [ { policy = "two", key = "header:x-user", on_missing = "skip" } ]
        [[routes]]
        name = "global"
        match = { path_prefix = "/global" }
        limits = [ { policy = "two", key = "header:x-user", on_missing = "global" } ]
    "#;
    let gateway = TestGateway::new(config(&[toml], BackendKind::Concurrent));
    for _ in 0..3 {
        let refused = gateway.send_from(A, request("GET", "/deny", &[])).await;
        let message = refused.assert_error(StatusCode::BAD_REQUEST, "invalid_key_header");
        assert!(message.contains("x-user"), "{message}");
    }
    // Refused before any check: the per-IP limit of 1 in front of it was never consumed.
    assert_eq!(
        statuses(&gateway, A, 2, "GET", "/deny", &[("x-user", "u")]).await,
        [200, 429]
    );
    // skip: without the header the request is not limited at all.
    assert_eq!(
        statuses(&gateway, A, 4, "GET", "/skip", &[]).await,
        [200; 4]
    );
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("skip", "unlimited"),
        4
    );
    // global: everyone without the header shares one key.
    assert_eq!(
        statuses(&gateway, A, 2, "GET", "/global", &[]).await,
        [200, 200]
    );
    assert_eq!(statuses(&gateway, B, 1, "GET", "/global", &[]).await, [429]);
    assert_eq!(
        statuses(&gateway, B, 1, "GET", "/global", &[("x-user", "u")]).await,
        [200]
    );
    gateway.state.backend().shutdown().await;
}

#[tokio::test]
async fn a_shadow_rule_counts_but_never_denies() {
    let toml = r#"
        [policies.one]
        limit = 1
        period = "1m"
        [[routes]]
        name = "watched"
        match = { path_prefix = "/" }
        limits = [ { policy = "one", key = "client_ip" }, { policy = "one", key = "global" } ]
        shadow = true
    "#;
    let gateway = TestGateway::new(config(&[toml], BackendKind::Concurrent));
    assert_eq!(statuses(&gateway, A, 3, "GET", "/", &[]).await, [200; 3]);
    let metrics = gateway.state.metrics();
    assert_eq!(metrics.route_decisions_total("watched", "allowed"), 1);
    assert_eq!(metrics.route_decisions_total("watched", "shadow_denied"), 2);
    assert_eq!(metrics.route_decisions_total("watched", "denied"), 0);
    // Every limit ran: the global one was consumed even by the shadow-denied requests.
    assert_eq!(statuses(&gateway, B, 1, "GET", "/", &[]).await, [200]);
    assert_eq!(metrics.route_decisions_total("watched", "shadow_denied"), 3);
    gateway.state.backend().shutdown().await;
}

#[tokio::test]
async fn without_a_matching_rule_a_request_is_admitted_and_counted() {
    let toml = r#"
        [[routes]]
        match = { path_prefix = "/login" }
        limits = [ { policy = "login", key = "client_ip" } ]
    "#;
    let gateway = TestGateway::new(config(&[toml], BackendKind::Concurrent));
    let response: TestResponse = gateway.send_from(A, request("GET", "/other", &[])).await;
    assert_eq!(response.status, StatusCode::OK);
    assert_eq!(response.header("ratelimit"), None);
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("", "unmatched"),
        1
    );
    gateway.state.backend().shutdown().await;
}

#[tokio::test]
async fn forward_auth_decides_by_the_same_rules_on_the_original_request() {
    let gateway = TestGateway::new(config(&[RULES], BackendKind::Concurrent));
    let auth = |headers: &[(&str, &str)]| request("GET", "/v1/forward-auth", headers);
    // Traefik's and Caddy's headers: the login rule, 2 per minute.
    let traefik: &[(&str, &str)] = &[
        ("x-forwarded-method", "POST"),
        ("x-forwarded-uri", "/login?next=/home"),
    ];
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(gateway.send_from(A, auth(traefik)).await.status.as_u16());
    }
    assert_eq!(seen, [200, 200, 429]);
    // nginx's conventional headers name the same request, so the same budget.
    let nginx: &[(&str, &str)] = &[("x-original-method", "POST"), ("x-original-uri", "/login")];
    assert_eq!(
        gateway.send_from(A, auth(nginx)).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("login", "denied"),
        2
    );
    // Without them, forward-auth's own request is matched: the catch-all rule.
    gateway.send_from(A, auth(&[])).await;
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("everything", "allowed"),
        1
    );
    // A description that is not one is refused, naming the header; nothing is consumed.
    for (headers, header) in [
        (&[("x-forwarded-method", "GE T")][..], "x-forwarded-method"),
        (&[("x-forwarded-uri", "login")][..], "x-forwarded-uri"),
    ] {
        let refused = gateway
            .send_from(B, request("GET", "/v1/forward-auth", headers))
            .await;
        let message = refused.assert_error(StatusCode::BAD_REQUEST, "invalid_forwarded_header");
        assert!(message.contains(header), "{message}");
    }
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("everything", "allowed"),
        1
    );
    gateway.state.backend().shutdown().await;
}

#[tokio::test]
async fn forward_auth_takes_envoys_prefix_form_with_the_original_path_after_it() {
    let gateway = TestGateway::new(config(&[RULES], BackendKind::Concurrent));
    // Envoy's ext_authz (HTTP) calls `path_prefix` + the original path, with the original
    // method and no X-Forwarded-Uri: `POST /v1/forward-auth/login` is the login rule's.
    let mut seen = Vec::new();
    for _ in 0..3 {
        let response = gateway
            .send_from(A, request("POST", "/v1/forward-auth/login?next=/", &[]))
            .await;
        seen.push(response.status.as_u16());
    }
    assert_eq!(seen, [200, 200, 429], "the login rule, 2 per minute");
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("login", "denied"),
        1
    );
    // An answer of forward-auth (200, no body of the demo route), counted under its route.
    let other = gateway
        .send_from(B, request("GET", "/v1/forward-auth/static/app.css", &[]))
        .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("static", "allowed"),
        0,
        "the static rule has no limits: nothing decided"
    );
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("everything", "allowed"),
        0,
        "matched as /static/app.css, not as the whole path"
    );
    // Headers, when the proxy sends them, still describe the request.
    let described = gateway
        .send_from(
            B,
            request(
                "GET",
                "/v1/forward-auth/ignored",
                &[
                    ("x-forwarded-method", "POST"),
                    ("x-forwarded-uri", "/login"),
                ],
            ),
        )
        .await;
    assert_eq!(described.status, StatusCode::OK);
    assert_eq!(
        gateway
            .state
            .metrics()
            .route_decisions_total("login", "allowed"),
        3
    );
    gateway.state.backend().shutdown().await;
}

#[test]
fn a_bad_rule_is_refused_naming_it() {
    for (rule, field) in [
        (
            r#"match = { path_prefix = "/" }
               limits = [ { policy = "nope", key = "client_ip" } ]"#,
            "routes[0].limits[0].policy",
        ),
        (
            r#"match = { path_prefix = "api" }
               limits = []"#,
            "routes[0].match.path_prefix",
        ),
        (
            r#"match = { path_prefix = "/" }
               limits = [ { policy = "default", key = "cookie" } ]"#,
            "routes[0].limits[0].key",
        ),
    ] {
        let toml = format!("[[routes]]\n{rule}");
        let config = Config::from_toml(&[&toml], &serde_json::Map::new()).unwrap();
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let _inside = runtime.enter();
        let error = turnstile_gateway::AppState::new(
            &config,
            std::sync::Arc::new(turnstile_core::ManualClock::default()),
        )
        .err()
        .expect(field);
        assert!(matches!(error, turnstile_gateway::StartError::Config(_)));
        assert!(error.to_string().contains(field), "{error}");
    }
    for upstream in [
        "ftp://127.0.0.1:21",
        "https://127.0.0.1:443",
        "127.0.0.1:3000",
        "http://h/app",
    ] {
        let toml = format!("upstream = \"{upstream}\"");
        let error = Config::from_toml(&[&toml], &serde_json::Map::new()).unwrap_err();
        assert!(error.to_string().contains("`upstream`"), "{error}");
    }
}
