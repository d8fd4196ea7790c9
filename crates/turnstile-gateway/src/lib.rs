//! The Turnstile gateway: HTTP rate decisions through a switchable backend.
//!
//! A request flows: axum router → route handler (validates input, resolves the policy and the
//! client key) → [`turnstile_backend::Backend::check`] → decision → JSON or status with
//! rate-limit headers. Metrics are recorded around the backend call.
//!
//! # Layout
//!
//! - [`config`]: layered configuration (defaults < TOML < `TURNSTILE_*` < CLI) and validation.
//! - `routes`: the handlers; `policies`: named policies resolved at start-up.
//! - `client_ip`: who the client is, trusting forwarding headers only from trusted proxies.
//! - `headers`: `Retry-After` and the IETF `RateLimit` headers.
//! - [`error`]: [`ApiError`], the one error type, rendered as JSON with a 4xx/503 status.
//! - [`metrics`]: the Prometheus registry.
//! - [`Application`]: binds, serves, drains on shutdown; [`app`] builds the router for tests.
//!
//! # Invariants
//!
//! - Bad input is a 4xx with a JSON error naming the problem. No handler panics; no `unwrap`
//!   on the request path. A 500 means a bug of ours (and is only reachable if the router is
//!   served without connection info).
//! - A denial is a decision: `/v1/check` answers 200 with `allowed: false`.
//! - No key or IP is ever a metric label.

pub mod config;
pub mod error;
pub mod metrics;

mod client_ip;
mod headers;
mod policies;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{any, get, post};
use tokio::net::TcpListener;
use turnstile_backend::Backend;
use turnstile_core::{Clock, MonotonicClock};

pub use client_ip::ClientIpResolver;
pub use config::Config;
pub use error::ApiError;
pub use metrics::Metrics;

use policies::PolicySet;

/// Everything the handlers share.
pub struct AppState {
    backend: Arc<dyn Backend>,
    policies: PolicySet,
    metrics: Metrics,
    client_ip: ClientIpResolver,
    gateway_policy: String,
    forward_auth_policy: String,
    forward_auth_key_header: Option<HeaderName>,
    forward_auth_deny_status: StatusCode,
    legacy_ratelimit_headers: bool,
    body_limit_bytes: usize,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// The backend could not be built.
    #[error("backend: {0}")]
    Backend(#[from] turnstile_backend::BuildError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The listen address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

impl AppState {
    /// Builds the backend and everything the handlers need; time comes from `clock`.
    ///
    /// Must be called inside a tokio runtime (backends spawn their tasks).
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        config.validate()?;
        let metrics = Metrics::new(config.backend)?;
        let policies = PolicySet::new(config, &metrics)?;
        let backend = turnstile_backend::build(
            &config.backend_config(),
            &turnstile_backend::BuildContext::new(clock),
        )?;
        let forward_auth_key_header = config
            .forward_auth
            .key_header
            .as_deref()
            .map(|name| HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes()))
            .transpose()
            .map_err(|_| config::ConfigError::Invalid {
                field: "forward_auth.key_header".into(),
                problem: "not a valid HTTP header name".into(),
            })?;
        Ok(Arc::new(Self {
            backend,
            policies,
            metrics,
            client_ip: ClientIpResolver::new(
                config.trusted_proxies.clone(),
                config.ipv6_prefix_len,
            ),
            gateway_policy: config.gateway.policy.clone(),
            forward_auth_policy: config.forward_auth.policy.clone(),
            forward_auth_key_header,
            forward_auth_deny_status: StatusCode::from_u16(config.forward_auth.deny_status)
                .unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            legacy_ratelimit_headers: config.legacy_ratelimit_headers,
            body_limit_bytes: config.body_limit_bytes,
        }))
    }

    /// The backend serving checks.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// The gateway's metrics (tests read the same counters `/metrics` exports).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }
}

/// The router. Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so the
/// client-limited routes know the peer address.
pub fn app(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/check", post(routes::check))
        .route("/v1/forward-auth", any(routes::forward_auth))
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .fallback(routes::gateway)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .layer(DefaultBodyLimit::max(state.body_limit_bytes))
        .with_state(state)
}

/// A bound, ready-to-run gateway.
pub struct Application {
    listener: TcpListener,
    state: Arc<AppState>,
    shutdown_grace: Duration,
}

impl Application {
    /// Validates `config`, builds the backend on the monotonic clock, and binds the listener.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(MonotonicClock::new())).await
    }

    /// As [`Application::build`], with an injected clock.
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let state = AppState::new(&config, clock)?;
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| StartError::Bind {
                    address: config.listen,
                    source,
                })?;
        Ok(Self {
            listener,
            state,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<AppState> {
        &self.state
    }

    /// Serves until `shutdown` completes, then stops accepting, lets in-flight requests finish
    /// for up to the grace period, and stops the backend (actors finish their queues).
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let (draining_tx, draining_rx) = tokio::sync::oneshot::channel::<()>();
        let service =
            app(Arc::clone(&self.state)).into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(self.listener, service).with_graceful_shutdown(async move {
            shutdown.await;
            tracing::info!("shutdown requested: draining in-flight requests");
            let _ = draining_tx.send(());
        });
        let grace = self.shutdown_grace;
        let grace_expired = async move {
            if draining_rx.await.is_ok() {
                tokio::time::sleep(grace).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            result = serve => result?,
            () = grace_expired => {
                tracing::warn!(?grace, "grace period over: abandoning requests still in flight");
            }
        }
        self.state.backend.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
}
