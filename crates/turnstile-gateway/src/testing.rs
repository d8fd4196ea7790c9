//! Starting a gateway in-process: the one harness for the gateway's tests, `turnstile-load
//! compare` and the end-to-end tests. Only where a real process is the point (signals, exit
//! codes) do tests run the `turnstile` binary instead.
//!
//! - [`spawn`] serves a gateway on loopback sockets, on a runtime and thread of its own (so
//!   it works from async and sync callers alike, and a load generator in the same process
//!   does not share its threads), and stops it when the [`RunningGateway`] is stopped or
//!   dropped.
//! - [`TestGateway`] drives the router without a socket (`oneshot`), on a [`ManualClock`] and
//!   in the caller's runtime, so tests can pause tokio's time and set the peer address.
//!
//! Both build the gateway through [`AppState::new`] and [`Application`], exactly as the binary
//! does; nothing here changes how a request is handled.

// Test support: a panic is how a broken test set-up is reported, at the caller's line.
#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Request, StatusCode};
use axum::response::Response;
use http_body_util::BodyExt;
use tower::ServiceExt;
use turnstile_core::{Clock, ManualClock, MonotonicClock};

use crate::error::StartError;
use crate::routes::{GatewayService, admin_app, app};
use crate::{AppState, Application, Config};

/// A child process (a `turnstile` binary a test started) killed and reaped when dropped, so a
/// failing assertion never leaves it running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl std::ops::Deref for KillOnDrop {
    type Target = std::process::Child;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl std::ops::DerefMut for KillOnDrop {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// `config` listening on loopback ports the OS picks, with the admin listener and Envoy's
/// rate limit service (gRPC) on too.
pub fn on_loopback(config: Config) -> Config {
    let any_port = SocketAddr::from(([127, 0, 0, 1], 0));
    Config {
        listen: any_port,
        admin_listen: Some(any_port),
        rls: crate::config::RlsSettings {
            listen: Some(any_port),
            ..config.rls
        },
        ..config
    }
}

/// A gateway serving on its own runtime and thread; stopped (gracefully) on
/// [`stop`](RunningGateway::stop) or drop.
pub struct RunningGateway {
    /// Its public address.
    pub address: SocketAddr,
    /// Its admin address, if the configuration enables the admin listener.
    pub admin: Option<SocketAddr>,
    /// Its rate limit service (gRPC) address, if the configuration enables it.
    pub rls: Option<SocketAddr>,
    state: Arc<AppState>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Starts a gateway with `config` on the monotonic clock; returns once it listens.
pub fn spawn(config: Config) -> Result<RunningGateway, StartError> {
    spawn_with_clock(config, Arc::new(MonotonicClock::new()))
}

/// As [`spawn`], with time from `clock`.
pub fn spawn_with_clock(
    config: Config,
    clock: Arc<dyn Clock>,
) -> Result<RunningGateway, StartError> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("gateway-{}", config.backend))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut application = match Application::build_with_clock(config, clock).await {
                    Ok(application) => application,
                    Err(error) => {
                        let _ = ready_tx.send(Err(error));
                        return Ok(());
                    }
                };
                let addresses = application
                    .local_addr()
                    .map(|address| (address, application.admin_addr(), application.rls_addr()));
                let state = Arc::clone(application.state());
                // Watching before the caller hears it is up: no change it makes is missed.
                application.start_reloading();
                let _ = ready_tx.send(Ok((addresses, state)));
                application
                    .run_until_stopped(async move {
                        let _ = stopped.await;
                    })
                    .await
            })
        })
        .map_err(|source| StartError::Runtime(source.to_string()))?;
    let ((address, admin, rls), state) = match ready_rx.recv() {
        Ok(Ok((Ok(addresses), state))) => (addresses, state),
        Ok(Ok((Err(error), _))) => return Err(StartError::Runtime(error.to_string())),
        Ok(Err(error)) => return Err(error),
        Err(_) => {
            let why = match thread.join() {
                Ok(Err(error)) => error.to_string(),
                _ => "the gateway thread ended before starting".to_owned(),
            };
            return Err(StartError::Runtime(why));
        }
    };
    Ok(RunningGateway {
        address,
        admin,
        rls,
        state,
        stop: Some(stop),
        thread: Some(thread),
    })
}

impl RunningGateway {
    /// `http://<address>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// `http://<admin address>`, if the admin listener is on.
    pub fn admin_url(&self) -> Option<String> {
        self.admin.map(|admin| format!("http://{admin}"))
    }

    /// The shared state: the same counters `/metrics` exports, the active backend.
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Asks the gateway to shut down (stop accepting, drain, stop the backend), without
    /// waiting for it: see [`RunningGateway::wait`].
    pub fn begin_stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Shuts the gateway down and waits until it has stopped; its serving result.
    pub fn stop(mut self) -> std::io::Result<()> {
        self.begin_stop();
        self.join()
    }

    /// Waits until the gateway has stopped (after [`begin_stop`](Self::begin_stop)); blocks
    /// the calling thread, so call it from `spawn_blocking` in async code.
    pub fn wait(mut self) -> std::io::Result<()> {
        self.join()
    }

    fn join(&mut self) -> std::io::Result<()> {
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(std::io::Error::other("the gateway thread panicked")),
            None => Ok(()),
        }
    }
}

impl Drop for RunningGateway {
    fn drop(&mut self) {
        self.begin_stop();
        let _ = self.join();
    }
}

/// A gateway driven through its router with `oneshot`, on a manual clock, in the caller's
/// runtime (so `#[tokio::test(start_paused = true)]` pauses its actors' time too).
pub struct TestGateway {
    /// The shared state.
    pub state: Arc<AppState>,
    /// The public router, behind the edge.
    pub router: GatewayService,
    /// The clock every decision reads.
    pub clock: Arc<ManualClock>,
}

impl TestGateway {
    /// Builds the gateway; panics on an invalid `config`. Call inside a tokio runtime.
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

    /// Sends a request as if from `peer` (`ip:port`).
    pub async fn send_from(&self, peer: &str, request: Request<Body>) -> TestResponse {
        let mut request = request;
        let peer: SocketAddr = peer.parse().expect("peer address");
        request.extensions_mut().insert(ConnectInfo(peer));
        let response = self
            .router
            .clone()
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        TestResponse::read(response).await
    }

    /// Sends a request from a fixed documentation address (192.0.2.1).
    pub async fn send(&self, request: Request<Body>) -> TestResponse {
        self.send_from("192.0.2.1:40000", request).await
    }

    /// Sends a request to the admin router of the same gateway.
    pub async fn admin(&self, request: Request<Body>) -> TestResponse {
        let response = admin_app(Arc::clone(&self.state))
            .oneshot(request)
            .await
            .unwrap_or_else(|never| match never {});
        TestResponse::read(response).await
    }

    /// `POST /v1/check` with a JSON body.
    pub async fn check(&self, body: serde_json::Value) -> TestResponse {
        let path = crate::api::Route::Check.path().unwrap_or_default();
        self.send(json_post(path, &body.to_string())).await
    }
}

/// `POST path` with a JSON body.
pub fn json_post(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_owned()))
        .expect("request")
}

/// `GET path`.
pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

/// An answer, read whole.
pub struct TestResponse {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// The body as JSON (`Null` if it is not JSON).
    pub json: serde_json::Value,
    /// The body as text.
    pub text: String,
}

impl TestResponse {
    async fn read(response: Response) -> Self {
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        let is_json = headers
            .get(axum::http::header::CONTENT_TYPE)
            .is_some_and(|value| value.as_bytes().starts_with(b"application/json"));
        // Every JSON body the gateway writes ends with a newline (checked on every answer
        // every in-process test reads).
        assert!(
            !is_json || bytes.ends_with(b"\n"),
            "a JSON body without its final newline: {bytes:?}"
        );
        TestResponse {
            status,
            headers,
            json,
            text: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }

    /// A header's value as text.
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
