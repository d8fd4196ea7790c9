//! The shipped Caddy configuration (`deploy/caddy/Caddyfile`) against a real Caddy (Debian's
//! package; `.ci/run` installs it): Caddy asks a real Turnstile about every request through
//! `forward_auth`, passes the allowed ones to an application with Turnstile's RateLimit
//! headers, hands Turnstile's 429 (with Retry-After) to the client, keys two clients apart by
//! the address Caddy saw, and answers 502 when Turnstile cannot be reached.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;

use turnstile_e2e::proxies::{
    FORWARD_AUTH_RULES, assert_forward_auth_through, client_from, echo_application, shipped_with,
};
use turnstile_e2e::{Process, external_tool, free_port, scratch_dir, start_gateway};

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

    // The application behind the proxy.
    let app_address = echo_application().await;

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
    assert_forward_auth_through(&format!("http://127.0.0.1:{caddy_port}"), &turnstile).await;
    server.assert_running();

    // No limiter, no pass: Caddy refuses rather than letting traffic through unchecked.
    drop(turnstile);
    let unavailable = client_from(Ipv4Addr::new(127, 0, 0, 5))
        .get(format!("http://127.0.0.1:{caddy_port}/some/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(unavailable.status(), 502);
    server.assert_running();
    server.kill();
    assert!(!server.group_alive(), "a caddy process outlived the test");
}
