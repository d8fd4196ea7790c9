//! The shipped Caddy configuration (`deploy/caddy/Caddyfile`) against a real Caddy (Debian's
//! package; `.ci/run` installs it): Caddy asks a real Turnstile about every request through
//! `forward_auth`, passes the allowed ones to an application with Turnstile's RateLimit
//! headers, hands Turnstile's 429 (with Retry-After) to the client, keys two clients apart by
//! the address Caddy saw, and answers 502 when Turnstile cannot be reached.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use turnstile_e2e::proxies::{FORWARD_AUTH_RULES, shipped_with};
use turnstile_e2e::{Process, external_tool, free_port, scratch_dir, start_gateway, wait_until};

/// A client whose connections come from `address` (any of 127.0.0.0/8 is this host), so
/// Caddy sees it as its own client.
fn client_from(address: Ipv4Addr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(IpAddr::V4(address))
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_caddy),
    ignore = "needs caddy (Debian package caddy; .ci/run installs it)"
)]
async fn caddy_forward_auth_admits_limits_with_429_per_client_and_fails_closed() {
    let Some(caddy) = external_tool("caddy", "caddy") else {
        return;
    };
    let dir = scratch_dir();

    // The application behind Caddy.
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_address = app_listener.local_addr().unwrap();
    // It answers with the RateLimit header Caddy copied into the request, if any.
    let app = axum::Router::new().fallback(|headers: axum::http::HeaderMap| async move {
        let ratelimit = headers
            .get("ratelimit")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("none")
            .to_owned();
        format!("hello from the application; ratelimit: {ratelimit}")
    });
    tokio::spawn(async move { axum::serve(app_listener, app).await });

    // Turnstile as the shipped file says to configure it.
    let turnstile = start_gateway(&format!(
        "trusted_proxies = [\"127.0.0.1/32\"]\n{FORWARD_AUTH_RULES}"
    ));

    // The shipped file, with its three addresses pointed at this test's ports.
    let caddy_port = free_port();
    let site = shipped_with(
        "deploy/caddy/Caddyfile",
        &[
            ("127.0.0.1:8080", turnstile.address.to_string()),
            ("127.0.0.1:3000", app_address.to_string()),
            (
                "http://127.0.0.1:8000",
                format!("http://127.0.0.1:{caddy_port}"),
            ),
        ],
    );
    let config = dir.path().join("Caddyfile");
    std::fs::write(&config, site).unwrap();
    // Caddy keeps an autosave of its configuration and its certificates under the XDG
    // directories: the scratch directory's, not the user's.
    let mut server = Process::start_with_env(
        "caddy",
        &caddy,
        &[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--adapter",
            "caddyfile",
        ],
        &[
            ("XDG_CONFIG_HOME", dir.path()),
            ("XDG_DATA_HOME", dir.path()),
        ],
        dir.path().join("caddy.log"),
    );
    let alice = client_from(Ipv4Addr::new(127, 0, 0, 2));
    let bob = client_from(Ipv4Addr::new(127, 0, 0, 3));
    let url = format!("http://127.0.0.1:{caddy_port}/some/page");
    wait_until("caddy to answer", Duration::from_secs(30), || async {
        alice.head(&url).send().await.ok().map(|_| ())
    })
    .await;
    server.assert_running();

    // POST /login, as Caddy describes it to forward-auth, has its own budget of one.
    let login = format!("http://127.0.0.1:{caddy_port}/login?next=/");
    assert_eq!(alice.post(&login).send().await.unwrap().status(), 200);
    let second = alice.post(&login).send().await.unwrap();
    assert_eq!(second.status(), 429, "the login rule's own limit");
    assert_eq!(
        turnstile
            .state()
            .metrics()
            .route_decisions_total("login", "denied"),
        1
    );

    // The login requests matched the login rule only: alice's default budget has had the
    // HEAD. Her next two pass, Turnstile's RateLimit header copied into each for the
    // application; the one after is Turnstile's own 429.
    for remaining in [1, 0] {
        let passed = alice.get(&url).send().await.unwrap();
        assert_eq!(passed.status(), 200, "{:?}", server.log());
        let body = passed.text().await.unwrap();
        assert!(
            body.starts_with(&format!(
                "hello from the application; ratelimit: \"default\";r={remaining};t="
            )),
            "{body}"
        );
    }
    let limited = alice.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429);
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    assert!(limited.headers().contains_key("ratelimit"));
    assert!(limited.text().await.unwrap().contains("rate_limited"));

    // Bob is another client to Caddy, so another key to Turnstile: his budget is whole, even
    // when he claims to be alice.
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

    // No limiter, no pass: Caddy refuses rather than letting traffic through unchecked.
    drop(turnstile);
    let unavailable = bob.get(&url).send().await.unwrap();
    assert_eq!(unavailable.status(), 502);
    server.assert_running();
    server.kill();
    assert!(!server.group_alive(), "a caddy process outlived the test");
}
