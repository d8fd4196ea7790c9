//! The shipped nginx configuration (`deploy/nginx/turnstile.conf`) against a real nginx
//! (Debian's package; `.ci/run` installs it): nginx asks a real Turnstile about every request
//! through `auth_request`, passes the allowed ones to an application, turns Turnstile's 403
//! into a 429 with its Retry-After, and answers 503 when Turnstile cannot be reached. The
//! request rules see the original request through the `X-Original-URI` / `X-Original-Method`
//! the file sends: `POST /login` has a budget of its own.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use turnstile_e2e::proxies::{FORWARD_AUTH_RULES, assert_limited_a_minute, shipped_with};
use turnstile_e2e::{
    Process, external_tool, free_port, http_client, scratch_dir, start_gateway, wait_until,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_nginx),
    ignore = "needs nginx (Debian package nginx; .ci/run installs it)"
)]
async fn nginx_auth_request_admits_limits_with_429_and_fails_closed_when_turnstile_is_down() {
    let Some(nginx) = external_tool("nginx", "nginx") else {
        return;
    };
    let dir = scratch_dir();

    // The application behind nginx.
    let app_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_address = app_listener.local_addr().unwrap();
    let app = axum::Router::new().fallback(|| async { "hello from the application" });
    tokio::spawn(async move { axum::serve(app_listener, app).await });

    // Turnstile as the shipped file says to configure it: nginx's auth_request passes only
    // 401 and 403 through.
    let turnstile = start_gateway(&format!(
        "trusted_proxies = [\"127.0.0.1/32\"]\n[forward_auth]\ndeny_status = 403\n{FORWARD_AUTH_RULES}"
    ));

    // The shipped file, with its three addresses pointed at this test's ports.
    let nginx_port = free_port();
    let site = shipped_with(
        "deploy/nginx/turnstile.conf",
        &[
            ("127.0.0.1:8080", turnstile.address.to_string()),
            ("127.0.0.1:3000", app_address.to_string()),
            (
                "listen 127.0.0.1:8000;",
                format!("listen 127.0.0.1:{nginx_port};"),
            ),
        ],
    );
    std::fs::write(dir.path().join("turnstile.conf"), site).unwrap();
    let root = dir.path().display();
    let main_config = format!(
        "daemon off;\nworker_processes 1;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n\
         events {{ worker_connections 64; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n  \
         fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n  \
         include {root}/turnstile.conf;\n}}\n"
    );
    let config_path = dir.path().join("nginx.conf");
    std::fs::write(&config_path, main_config).unwrap();
    let prefix = format!("{root}/");
    let mut server = Process::start(
        "nginx",
        &nginx,
        &[
            "-p",
            &prefix,
            "-e",
            &format!("{root}/error.log"),
            "-c",
            config_path.to_str().unwrap(),
        ],
        dir.path().join("nginx.out"),
    );
    let client = http_client();
    let url = format!("http://127.0.0.1:{nginx_port}/some/page");
    wait_until("nginx to answer", Duration::from_secs(30), || async {
        client.get(&url).send().await.ok().map(|_| ())
    })
    .await;
    server.assert_running();

    // POST /login, as nginx describes it to forward-auth, has its own budget of one.
    let login = format!("http://127.0.0.1:{nginx_port}/login?next=/");
    let first = client.post(&login).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let second = client.post(&login).send().await.unwrap();
    assert_eq!(second.status(), 429, "the login rule's own limit");
    assert_eq!(
        turnstile
            .state()
            .metrics()
            .route_decisions_total("login", "denied"),
        1
    );

    // That first request was the first of three the policy allows; two more pass through.
    for _ in 0..2 {
        let response = client.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(response.headers().contains_key("ratelimit"));
        assert_eq!(response.text().await.unwrap(), "hello from the application");
    }
    let limited = client.get(&url).send().await.unwrap();
    assert_eq!(limited.status(), 429, "Turnstile's 403 becomes a 429");
    assert_limited_a_minute(&limited);
    assert!(limited.text().await.unwrap().contains("rate_limited"));

    // No limiter, no pass: nginx refuses rather than letting traffic through unchecked.
    drop(turnstile);
    let unavailable = client.get(&url).send().await.unwrap();
    assert_eq!(unavailable.status(), 503);
    assert!(
        unavailable
            .text()
            .await
            .unwrap()
            .contains("limiter_unavailable")
    );
    server.assert_running();
    // Stopping nginx stops its workers too: nothing is left behind.
    server.kill();
    assert!(!server.group_alive(), "an nginx process outlived the test");
}
