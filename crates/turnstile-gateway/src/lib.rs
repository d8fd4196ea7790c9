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
//! - `admin`: the admin listener (fault injection, supervision state, backend switch).
//! - `edge`: what every request meets before the router: timing, shedding, request timeout.
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

mod admin;
mod client_ip;
mod edge;
mod headers;
mod policies;
mod routes;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::ArcSwap;
use axum::http::{HeaderName, StatusCode};
use axum::routing::{any, get, post};
use axum::{Router, ServiceExt as _};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use turnstile_backend::{Backend, BackendConfig, BackendKind, BuildContext};
use turnstile_core::{Clock, MonotonicClock};

pub use client_ip::ClientIpResolver;
pub use config::Config;
pub use edge::{Edge, EdgeFuture};
pub use error::ApiError;
pub use metrics::Metrics;

use policies::PolicySet;

/// Everything the handlers share.
pub struct AppState {
    /// The active backend. Swapped whole by the admin API's backend switch; each check holds
    /// its own `Arc` to the backend it started on, so a switch never cuts a check in half.
    backend: ArcSwap<Arc<dyn Backend>>,
    /// What the active backend was built from, to build its replacement on a switch.
    backend_config: BackendConfig,
    /// Clock, faults and observer, shared by every backend this gateway builds.
    context: BuildContext,
    /// Serialises backend switches.
    switching: tokio::sync::Mutex<()>,
    policies: PolicySet,
    metrics: Arc<Metrics>,
    client_ip: ClientIpResolver,
    /// Index into `policies` of the demo gateway route's policy.
    gateway_policy: usize,
    /// Index into `policies` of the forward-auth policy.
    forward_auth_policy: usize,
    forward_auth_key_header: Option<HeaderName>,
    forward_auth_deny_status: StatusCode,
    legacy_ratelimit_headers: bool,
    body_limit_bytes: usize,
    max_concurrent_requests: usize,
    /// Rate-limited requests in flight now, against `max_concurrent_requests` (see [`Edge`]).
    in_flight: AtomicUsize,
    request_timeout: Duration,
    admin_token: Option<String>,
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
        let metrics = Arc::new(Metrics::new(config.backend, config.shards)?);
        let policies = PolicySet::new(config, &metrics)?;
        let context = BuildContext {
            clock,
            faults: Arc::default(),
            observer: Arc::clone(&metrics) as Arc<dyn turnstile_backend::BackendObserver>,
        };
        // Validation guarantees both names exist; resolving them here keeps it that way.
        let resolve = |field: &str, name: &str| {
            policies
                .index_of(name)
                .ok_or_else(|| config::ConfigError::Invalid {
                    field: field.into(),
                    problem: format!("unknown policy `{name}`"),
                })
        };
        let gateway_policy = resolve("gateway.policy", &config.gateway.policy)?;
        let forward_auth_policy = resolve("forward_auth.policy", &config.forward_auth.policy)?;
        let backend_config = config.backend_config();
        let backend = turnstile_backend::build(&backend_config, &context)?;
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
            backend: ArcSwap::from_pointee(backend),
            backend_config,
            context,
            switching: tokio::sync::Mutex::new(()),
            policies,
            metrics,
            client_ip: ClientIpResolver::new(
                config.trusted_proxies.clone(),
                config.ipv6_prefix_len,
            ),
            gateway_policy,
            forward_auth_policy,
            forward_auth_key_header,
            forward_auth_deny_status: StatusCode::from_u16(config.forward_auth.deny_status)
                .unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            legacy_ratelimit_headers: config.legacy_ratelimit_headers,
            body_limit_bytes: config.body_limit_bytes,
            max_concurrent_requests: config.max_concurrent_requests,
            in_flight: AtomicUsize::new(0),
            request_timeout: config.request_timeout,
            admin_token: config.admin_token.clone(),
        }))
    }

    /// The backend serving checks now.
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.backend.load())
    }

    /// The gateway's metrics (tests read the same counters `/metrics` exports).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The fault injector shared by every backend of this gateway.
    pub fn faults(&self) -> &turnstile_backend::Faults {
        &self.context.faults
    }

    /// Replaces the active backend with a new one of `kind` (same configuration otherwise).
    /// New checks go to the new backend at once; the old one drains what it has queued, then
    /// stops. Its keys' state does not carry over.
    pub async fn switch_backend(&self, kind: BackendKind) -> Result<(), StartError> {
        let _one_at_a_time = self.switching.lock().await;
        let config = BackendConfig {
            kind,
            ..self.backend_config.clone()
        };
        if kind == BackendKind::Redis {
            for named in self.policies.iter() {
                turnstile_backend::validate_redis_policy(&named.policy)?;
            }
        }
        let replacement = turnstile_backend::build(&config, &self.context)?;
        let previous = self.backend.swap(Arc::new(replacement));
        self.metrics.set_active(kind);
        tracing::warn!(from = %previous.kind(), to = %kind, "backend switched; the old one drains");
        tokio::spawn(async move { previous.shutdown().await });
        Ok(())
    }
}

/// The gateway's HTTP service: the router behind [`Edge`] (timing, shedding, request timeout).
pub type GatewayService = Edge<Router>;

/// The gateway's HTTP service. Serve it with
/// `axum::ServiceExt::into_make_service_with_connect_info::<SocketAddr>()` so the
/// client-limited routes know the peer address.
///
/// The rate-limited routes are shed past `max_concurrent_requests` in flight (503, counted as
/// `shed`) rather than queued, and cut off at `request_timeout` (503, counted as `timeout`);
/// the operational endpoints are not, so health checks and scrapes still answer when the
/// gateway is saturated. See [`Edge`].
pub fn app(state: Arc<AppState>) -> GatewayService {
    let router = Router::new()
        .route("/healthz", get(routes::healthz))
        .route("/readyz", get(routes::readyz))
        .route("/metrics", get(routes::metrics))
        .route("/v1/check", post(routes::check))
        .route("/v1/forward-auth", any(routes::forward_auth))
        .fallback(routes::gateway)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(Arc::clone(&state));
    Edge::new(router, state)
}

/// The admin router (fault injection, supervision state, backend switch), for the admin
/// listener and for tests.
pub fn admin_app(state: Arc<AppState>) -> Router {
    admin::router(state)
}

/// A bound, ready-to-run gateway.
pub struct Application {
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    state: Arc<AppState>,
    shutdown_grace: Duration,
}

impl Application {
    /// Validates `config`, builds the backend on the monotonic clock, and binds the listeners.
    pub async fn build(config: Config) -> Result<Self, StartError> {
        Self::build_with_clock(config, Arc::new(MonotonicClock::new())).await
    }

    /// As [`Application::build`], with an injected clock.
    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, StartError> {
        let state = AppState::new(&config, clock)?;
        let bind = |address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind { address, source })
        };
        let listener = bind(config.listen).await?;
        let admin_listener = match config.admin_listen {
            Some(address) => Some(bind(address).await?),
            None => None,
        };
        Ok(Self {
            listener,
            admin_listener,
            state,
            shutdown_grace: config.shutdown_grace,
        })
    }

    /// The address actually bound (useful with port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The admin listener's address, if it is enabled.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
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
        let stopping = CancellationToken::new();
        tokio::spawn({
            let stopping = stopping.clone();
            async move {
                shutdown.await;
                tracing::info!("shutdown requested: draining in-flight requests");
                stopping.cancel();
            }
        });
        if let Some(listener) = self.admin_listener {
            let admin = admin::router(Arc::clone(&self.state));
            let stopped = stopping.clone();
            tokio::spawn(async move {
                let serve =
                    axum::serve(listener, admin).with_graceful_shutdown(stopped.cancelled_owned());
                if let Err(error) = serve.await {
                    tracing::error!(%error, "admin listener failed");
                }
            });
        }
        let service =
            app(Arc::clone(&self.state)).into_make_service_with_connect_info::<SocketAddr>();
        let serve = axum::serve(self.listener, service)
            .with_graceful_shutdown(stopping.clone().cancelled_owned());
        let grace = self.shutdown_grace;
        let grace_expired = async move {
            stopping.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            result = serve => result?,
            () = grace_expired => {
                tracing::warn!(?grace, "grace period over: abandoning requests still in flight");
            }
        }
        self.state.backend().shutdown().await;
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
///
/// The handlers are registered when this is *called*, not when the future is first polled,
/// so a signal that arrives before the server gets around to waiting for it is not lost to the
/// default action (which would kill the process without draining). Call it inside a runtime.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let terminate = signal(SignalKind::terminate());
        let interrupt = signal(SignalKind::interrupt());
        async move {
            match (terminate, interrupt) {
                (Ok(mut terminate), Ok(mut interrupt)) => {
                    tokio::select! {
                        _ = terminate.recv() => {},
                        _ = interrupt.recv() => {},
                    }
                }
                (Err(error), _) | (_, Err(error)) => {
                    tracing::error!(%error, "cannot listen for shutdown signals");
                    std::future::pending::<()>().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }
}
