//! Helpers shared by the gateway's integration tests.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tower::ServiceExt;
use turnstile_core::{Clock, ManualClock};
use turnstile_gateway::{AppState, Config, app};

/// A gateway on a manual clock, and the clock.
pub struct TestGateway {
    pub state: Arc<AppState>,
    pub router: turnstile_gateway::GatewayService,
    pub clock: Arc<ManualClock>,
}

impl TestGateway {
    pub fn new(config: Config) -> Self {
        let clock = Arc::new(ManualClock::default());
        let state =
            AppState::new(&config, Arc::clone(&clock) as Arc<dyn Clock>).expect("valid config");
        Self {
            router: app(Arc::clone(&state)),
            state,
            clock,
        }
    }

    /// Sends a request as if from `peer`.
    pub async fn send_from(&self, peer: &str, request: Request<Body>) -> TestResponse {
        let mut request = request;
        let peer: SocketAddr = peer.parse().expect("peer address");
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .expect("infallible");
        TestResponse::read(response).await
    }

    /// Sends a request to the admin router of the same gateway.
    pub async fn admin(&self, request: Request<Body>) -> TestResponse {
        let response = turnstile_gateway::admin_app(Arc::clone(&self.state))
            .oneshot(request)
            .await
            .expect("infallible");
        TestResponse::read(response).await
    }

    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        self.send_from("192.0.2.1:40000", request).await
    }

    /// `POST /v1/check` with a JSON body.
    pub async fn check(&self, body: serde_json::Value) -> TestResponse {
        self.send(json_post("/v1/check", &body.to_string())).await
    }
}

pub fn json_post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

pub struct TestResponse {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub json: serde_json::Value,
    pub text: String,
}

impl TestResponse {
    async fn read(response: axum::response::Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        TestResponse {
            status,
            headers,
            json,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Asserts a JSON error with this status and code, and returns the message.
    #[track_caller]
    pub fn assert_error(&self, status: StatusCode, code: &str) -> String {
        assert_eq!(self.status, status, "body: {}", self.text);
        assert_eq!(self.json["error"], code, "body: {}", self.text);
        let message = self.json["message"].as_str().expect("a message").to_owned();
        assert!(!message.is_empty());
        message
    }
}

/// A config with one small policy as the default, for readable expectations.
pub fn small_config() -> Config {
    let mut config = Config::default();
    config.policies.insert(
        "default".into(),
        turnstile_gateway::config::PolicyConfig {
            limit: 10,
            period: std::time::Duration::from_secs(1),
            burst: Some(5),
            failure_mode: Default::default(),
        },
    );
    config
}
