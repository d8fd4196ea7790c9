//! Slow and stalling clients cannot take the limiter down: a JSON body that stalls holds no
//! place among `max_concurrent_requests` and is cut off at `body_read_timeout` (408), while
//! other clients' checks keep being answered.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::task::Poll;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::{TestGateway, small_config};
use turnstile_gateway::Config;

/// A `POST /v1/check` whose body sends `{"key":` and then nothing, ever; `started` hears when
/// the gateway begins reading it.
fn stalled_check(path: &str) -> (Request<Body>, tokio::sync::oneshot::Receiver<()>) {
    let (started, heard) = tokio::sync::oneshot::channel();
    let mut started = Some(started);
    let mut sent = false;
    let body = futures_util::stream::poll_fn(move |_| {
        if let Some(started) = started.take() {
            let _ = started.send(());
        }
        if sent {
            return Poll::Pending;
        }
        sent = true;
        Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from_static(
            b"{\"key\":",
        ))))
    });
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap();
    (request, heard)
}

#[tokio::test(start_paused = true)]
async fn stalled_bodies_hold_no_slot_and_are_cut_off_at_the_body_read_timeout() {
    let gateway = std::sync::Arc::new(TestGateway::new(Config {
        max_concurrent_requests: 2,
        body_read_timeout: Duration::from_secs(2),
        ..small_config()
    }));
    // Twice as many stalled bodies as there are places, on both body-reading routes.
    let mut stalled = Vec::new();
    for path in ["/v1/check", "/v1/ratelimit", "/v1/check", "/v1/ratelimit"] {
        let (request, started) = stalled_check(path);
        let gateway = std::sync::Arc::clone(&gateway);
        stalled.push(tokio::spawn(async move { gateway.send(request).await }));
        started.await.unwrap();
    }
    assert_eq!(
        gateway.state.requests_in_flight(),
        0,
        "a body being read holds no place"
    );
    // Everyone else is still answered: /v1/check, forward-auth, the gateway route.
    let check = gateway.check(serde_json::json!({"key": "alice"})).await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.text);
    assert_eq!(check.json["allowed"], true);
    let auth = gateway
        .send(
            Request::get("/v1/forward-auth")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(auth.status, StatusCode::OK);
    // The stalled ones get their 408 when the body read timeout passes (virtual time).
    for task in stalled {
        let answer = task.await.unwrap();
        let message = answer.assert_error(StatusCode::REQUEST_TIMEOUT, "body_read_timeout");
        assert!(message.contains("2000ms"), "{message}");
    }
    assert_eq!(gateway.state.requests_in_flight(), 0);
    gateway.state.backend().shutdown().await;
}
