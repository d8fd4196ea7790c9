//! The Turnstile gateway: HTTP rate decisions through a switchable backend.
//!
//! A request flows: [`Edge`] (timing, shedding, request timeout) → axum router → route
//! handler (validates input, resolves the policy and the client key) →
//! [`turnstile_backend::Backend::check`] → decision → JSON or status with rate-limit headers.
//! Metrics are recorded around the backend call and around the whole request.
//!
//! # Layout
//!
//! - [`server`]: [`Application`] binds, serves, drains on shutdown; [`shutdown_signal`].
//! - [`state`]: [`AppState`], what the handlers share, and the run-time backend switch.
//! - [`api`]: the wire format (routes, paths, headers, bodies), shared with clients.
//! - `routes`: [`app`] and [`admin_app`], the routers built from [`api::Route`], and the
//!   public handlers; `admin`: the admin listener's handlers (fault injection, supervision
//!   state, backend switch).
//! - `listener`: the main listener's accept loop (header-read timeout, connection cap).
//! - `edge`: what every request meets before the router.
//! - `extract`: reading JSON bodies ([`ApiError`] as the one rejection).
//! - [`config`]: layered configuration (defaults < TOML < `TURNSTILE_*` < CLI) and validation;
//!   [`cli`]: the `turnstile` binary's flags.
//! - `policies`: named policies resolved at start-up; `headers`: `Retry-After` and the IETF
//!   `RateLimit` headers of a policy.
//! - `client_ip`: who the client is, trusting forwarding headers only from trusted proxies.
//! - `request_rules`: `[[routes]]`, the limits a request on the gateway route or forward-auth
//!   must pass and the key of each; `proxy`: admitted requests forwarded to `upstream`.
//! - [`error`]: [`ApiError`], the one error type of a request, rendered as JSON with a
//!   4xx/503 status; [`StartError`], why the gateway could not start.
//! - [`metrics`]: the Prometheus registry.
//! - `rls`: Envoy's rate limit service (gRPC on `rls.listen`, `POST /v1/ratelimit`), its
//!   rules (`rls.config_dir`, from `turnstile-rules`); `reload`: the rules and the TOML
//!   file's policies reloaded on change and on `SIGHUP`.
//! - [`testing`]: start a gateway in-process (tests, `turnstile-load compare`, embedding).
//!
//! Modules depend downwards in this list's spirit: handlers on state, state on config,
//! everything on `api` and `error`; `headers` knows nothing of `policies`, `api` nothing of
//! handlers.
//!
//! # Invariants
//!
//! - Bad input is a 4xx with a JSON error naming the problem. No handler panics; no `unwrap`
//!   on the request path. A 500 means a bug of ours (see [`error`]).
//! - A denial is a decision: `/v1/check` answers 200 with `allowed: false`.
//! - No key or IP is ever a metric label.

pub mod api;
pub mod cli;
pub mod config;
pub mod error;
pub mod metrics;
pub mod server;
pub mod state;
pub mod testing;

mod admin;
mod client_ip;
mod edge;
mod extract;
mod headers;
mod json_body;
mod listener;
mod policies;
mod proxy;
mod reload;
mod request_rules;
mod rls;
mod routes;

pub use client_ip::ClientIpResolver;
pub use config::Config;
pub use edge::{Edge, EdgeFuture};
pub use error::{ApiError, StartError};
pub use metrics::Metrics;
pub use rls::RulesError;
pub use routes::{GatewayService, admin_app, app};
pub use server::{Application, shutdown_signal};
pub use state::{AppState, ConfigSource, PolicyReloadError};
