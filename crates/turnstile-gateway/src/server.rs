//! [`Application`]: binds the listeners, serves until a shutdown future completes, drains, and
//! stops the backend; [`shutdown_signal`] is that future for the binary (SIGTERM, Ctrl-C).
//!
//! # Invariants
//!
//! - After the shutdown future completes, no new connection is accepted; requests in flight
//!   get `shutdown_grace` to finish. Those still unanswered then are answered 503
//!   `shutting_down`, and their connections get [`FINAL_WRITE`] to write it; then the backend
//!   is stopped (actors finish their queues).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use turnstile_core::{Clock, MonotonicClock};

use crate::config::Config;
use crate::error::StartError;
use crate::listener::ConnectionLimits;
use crate::reload::Reloader;
use crate::routes::{admin_app, app};
use crate::state::AppState;

/// How long, after the shutdown grace, connections get to write the 503 that replaced their
/// unfinished answer (a streaming response still running then is cut off).
pub const FINAL_WRITE: Duration = Duration::from_secs(1);

/// The most connections the admin API keeps open (an operator's tool, not a public one).
const ADMIN_MAX_CONNECTIONS: usize = 64;

/// A bound, ready-to-run gateway.
pub struct Application {
    listener: TcpListener,
    admin_listener: Option<TcpListener>,
    /// Envoy's rate limit service (gRPC), when `rls.listen` is set.
    rls_listener: Option<TcpListener>,
    /// The watchers of the rule directory and the configuration file, once started.
    reloader: Option<Reloader>,
    state: Arc<AppState>,
    shutdown_grace: Duration,
    /// The main listener's header-read timeout and connection cap.
    limits: ConnectionLimits,
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
        let bind = |setting: &'static str, address: SocketAddr| async move {
            TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Bind {
                    setting,
                    address,
                    source,
                })
        };
        let listener = bind("listen", config.listen).await?;
        let admin_listener = match config.admin_listen {
            Some(address) => Some(bind("admin_listen", address).await?),
            None => None,
        };
        let rls_listener = match config.rls.listen {
            Some(address) => Some(bind("rls.listen", address).await?),
            None => None,
        };
        Ok(Self {
            listener,
            admin_listener,
            rls_listener,
            reloader: None,
            state,
            shutdown_grace: config.shutdown_grace,
            limits: ConnectionLimits {
                header_read_timeout: config.header_read_timeout,
                max_connections: crate::listener::connection_cap(config.max_connections),
            },
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

    /// The rate limit service's (gRPC) address, if it is enabled.
    pub fn rls_addr(&self) -> Option<SocketAddr> {
        self.rls_listener
            .as_ref()
            .and_then(|listener| listener.local_addr().ok())
    }

    /// Starts watching the rule directory and the configuration file (if the state has a
    /// [`ConfigSource`](crate::ConfigSource)), so changes from now on are reloaded once the
    /// gateway runs. Call it before announcing the gateway; [`run_until_stopped`](Self::run_until_stopped)
    /// starts them itself otherwise.
    pub fn start_reloading(&mut self) {
        if self.reloader.is_none() {
            self.reloader = Some(Reloader::start(Arc::clone(&self.state)));
        }
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
        let grace_over = CancellationToken::new();
        if let Some(listener) = self.admin_listener {
            // The admin API is an operator's: a few connections, with the main listener's
            // header-read timeout, so idle or half-sent ones cannot pile up there either.
            let limits = ConnectionLimits {
                max_connections: ADMIN_MAX_CONNECTIONS,
                ..self.limits
            };
            tokio::spawn(crate::listener::serve(
                listener,
                admin_app(Arc::clone(&self.state)),
                limits,
                None,
                stopping.clone(),
                grace_over.clone(),
            ));
        }
        if let Some(listener) = self.rls_listener {
            let state = Arc::clone(&self.state);
            let limits = self.limits;
            let stopped = stopping.clone();
            tokio::spawn(async move {
                if let Err(error) = crate::rls::grpc::serve(listener, state, limits, stopped).await
                {
                    tracing::error!(%error, "rate limit service listener failed");
                }
            });
        }
        let reloader = self
            .reloader
            .unwrap_or_else(|| Reloader::start(Arc::clone(&self.state)));
        tokio::spawn(reloader.run(stopping.clone()));
        let serve = crate::listener::serve(
            self.listener,
            app(Arc::clone(&self.state)),
            self.limits,
            Some(Arc::clone(&self.state.metrics)),
            stopping.clone(),
            grace_over.clone(),
        );
        let mut serve = std::pin::pin!(serve);
        let grace = self.shutdown_grace;
        let grace_expired = async move {
            stopping.cancelled().await;
            tokio::time::sleep(grace).await;
        };
        tokio::select! {
            () = serve.as_mut() => {}
            () = grace_expired => {
                tracing::warn!(?grace, "grace period over: answering requests still in flight 503");
                grace_over.cancel();
                if tokio::time::timeout(FINAL_WRITE, serve).await.is_err() {
                    tracing::warn!("connections still open after the grace period: abandoned");
                }
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
