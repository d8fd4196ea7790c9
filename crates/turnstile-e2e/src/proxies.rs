//! What the proxy tests (`tests/nginx.rs`, `tests/caddy.rs`, `tests/traefik.rs`) share: the
//! rules Turnstile runs behind each proxy, the shipped proxy file with its addresses pointed at
//! a test's ports, the application behind the proxy, and the story every forward-auth proxy
//! must tell.

use crate::workspace_root;

/// The policies and `[[routes]]` behind every proxy test (TOML tables: top-level keys go
/// before them): a default budget of 3 a minute per client, and `POST /login` with a budget of
/// its own, 1 a minute, so the tests see the proxy describe the original request.
pub const FORWARD_AUTH_RULES: &str = r#"
[policies.default]
limit = 3
period = "1m"

[policies.login]
limit = 1
period = "1m"

[[routes]]
name = "login"
match = { path_prefix = "/login", methods = ["POST"] }
limits = [ { policy = "login", key = "client_ip" } ]

[[routes]]
match = { path_prefix = "/" }
limits = [ { policy = "default", key = "client_ip" } ]
"#;

/// The shipped file at `path` (from the workspace root) with each `(from, to)` replaced;
/// panics if the file no longer contains a `from`, so a test never runs a file it did not
/// rewire.
pub fn shipped_with(path: &str, replacements: &[(&str, String)]) -> String {
    let mut text = std::fs::read_to_string(workspace_root().join(path))
        .unwrap_or_else(|error| panic!("{path}: {error}"));
    for (from, to) in replacements {
        assert!(text.contains(from), "{path} no longer has `{from}`");
        text = text.replace(from, to);
    }
    text
}

/// Panics unless a denial under one of [`FORWARD_AUTH_RULES`]' per-minute policies tells the
/// client when to come back: `Retry-After` in whole seconds, within the minute.
pub fn assert_limited_a_minute(limited: &reqwest::Response) {
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .expect("Retry-After is text")
        .parse()
        .expect("Retry-After is whole seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
}

/// A client whose connections come from `address` (any of 127.0.0.0/8 is this host), so a
/// proxy on loopback sees it as a client of its own.
pub fn client_from(address: std::net::Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::V4(address))
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .expect("a reqwest client")
}

/// Serves, on a loopback port, the application behind a proxy: it answers every request
/// with the `RateLimit` header the proxy copied into it (`none` without one).
pub async fn echo_application() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind the application");
    let address = listener.local_addr().expect("its address");
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let ratelimit = headers
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        format!("hello from the application; ratelimit: {ratelimit}")
    });
    tokio::spawn(async move { axum::serve(listener, app).await });
    address
}

/// What every forward-auth proxy must do in front of a Turnstile running
/// [`FORWARD_AUTH_RULES`], through the proxy at `proxy` (`http://127.0.0.1:port`): the login
/// rule judges the forwarded method and URI; three of the default budget pass with `RateLimit`
/// copied for the application, the fourth is Turnstile's 429 with `Retry-After`; a second
/// client is keyed apart even when it claims the first one's address. Waits first until the
/// proxy routes (from a third client, so the budgets under test are whole).
pub async fn assert_forward_auth_through(
    proxy: &str,
    turnstile: &turnstile_gateway::testing::RunningGateway,
) {
    use std::net::Ipv4Addr;
    let url = format!("{proxy}/some/page");
    let warmup = client_from(Ipv4Addr::new(127, 0, 0, 4));
    crate::wait_until(
        "the proxy to route to the application",
        std::time::Duration::from_secs(30),
        || async {
            let response = warmup.get(&url).send().await.ok()?;
            (response.status() == 200).then_some(())
        },
    )
    .await;
    let alice = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let bob = client_from(Ipv4Addr::new(127, 0, 0, 3));

    let login = format!("{proxy}/login?next=/");
    assert_eq!(alice.post(&login).send().await.unwrap().status(), 200);
    assert_eq!(
        alice.post(&login).send().await.unwrap().status(),
        429,
        "the login rule's own limit, on the method and URI the proxy forwarded"
    );
    assert_eq!(
        turnstile
            .state()
            .metrics()
            .route_decisions_total("login", "denied"),
        1
    );

    for remaining in [2, 1, 0] {
        let passed = alice.get(&url).send().await.unwrap();
        assert_eq!(passed.status(), 200);
        let body = passed.text().await.unwrap();
        assert!(
            body.starts_with(&format!(
                "hello from the application; ratelimit: \"default\";r={remaining};t="
            )),
            "{body}"
        );
    }
    let limited = alice.get(&url).send().await.unwrap();
    assert_eq!(
        limited.status(),
        429,
        "Turnstile's denial reaches the client"
    );
    assert_limited_a_minute(&limited);
    assert!(limited.headers().contains_key("ratelimit"));
    assert!(limited.text().await.unwrap().contains("rate_limited"));

    for _ in 0..3 {
        let response = bob
            .get(&url)
            .header("x-forwarded-for", "127.0.0.2")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "bob is not limited by alice's use");
    }
    assert_eq!(bob.get(&url).send().await.unwrap().status(), 429);
}
