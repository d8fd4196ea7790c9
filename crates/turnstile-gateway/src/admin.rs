//! The admin listener: fault injection, supervision state, and the run-time backend switch.
//!
//! Served on its own address (`admin_listen`, off unless configured), never on the public
//! one. With `admin_token` set, every request needs `Authorization: Bearer <token>`. Every
//! fault injected is logged and counted in `turnstile_faults_injected_total{kind}`.
//!
//! - `GET  /admin/supervision`: the active backend's actors, restarts, escalations, pool.
//! - `POST /admin/crash/actor`, `/admin/crash/shard/{index}`, `/admin/crash/worker`: kill the
//!   single actor, one shard, or one idle pool worker, as a crash (their queues are lost).
//! - `POST /admin/poison` `{"key", "policy"?}`: the key's next check panics in its state owner.
//! - `POST /admin/slow` `{"delay": "200ms", "duration": "10s"}`: every check takes longer.
//! - `POST /admin/backend` `{"backend": "sharded"}`: switch backends; the old one drains.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;
use subtle::ConstantTimeEq;
use turnstile_backend::{BackendKind, KillError, KillTarget};

use crate::api::admin::{self as paths, PoisonRequest, SlowRequest, SwitchRequest};
use crate::error::{ApiError, method_not_allowed};
use crate::extract::AppJson;
use crate::json_body::JsonLine;
use crate::state::AppState;

/// The admin router.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route(paths::SUPERVISION, get(supervision))
        .route(paths::CRASH_ACTOR, post(crash_actor))
        .route(paths::CRASH_SHARD, post(crash_shard))
        .route(paths::CRASH_WORKER, post(crash_worker))
        .route(paths::POISON, post(poison))
        .route(paths::SLOW, post(slow))
        .route(paths::BACKEND, post(switch_backend))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state),
            require_token,
        ))
        .with_state(state)
}

async fn require_token(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    if let Some(token) = &state.admin_token {
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(bearer_token);
        // Compared in constant time: how long a wrong guess takes says nothing of the token.
        let authorized = presented.is_some_and(|presented| {
            bool::from(presented.as_bytes().ct_eq(token.expose().as_bytes()))
        });
        if !authorized {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_start())
}

async fn supervision(State(state): State<Arc<AppState>>) -> Response {
    JsonLine(state.backend().status()).into_response()
}

async fn kill(state: &AppState, target: KillTarget, what: String) -> Result<Response, ApiError> {
    state.backend().kill(target).await.map_err(ApiError::Kill)?;
    state.metrics.record_fault("crash");
    tracing::warn!(target = %what, "fault injected: crash");
    Ok(JsonLine(json!({ "crashed": what })).into_response())
}

async fn crash_actor(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if state.backend().kind() != BackendKind::Actor {
        return Err(ApiError::Kill(KillError::NoSuchChild(0)));
    }
    kill(&state, KillTarget::Child(0), "actor".into()).await
}

async fn crash_shard(
    State(state): State<Arc<AppState>>,
    // Taken as text and parsed here: axum's `Path<usize>` rejection is a text/plain 400.
    Path(index): Path<String>,
) -> Result<Response, ApiError> {
    let index: usize = index
        .parse()
        .map_err(|_| ApiError::InvalidShardIndex(index))?;
    kill(&state, KillTarget::Child(index), format!("shard {index}")).await
}

async fn crash_worker(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    kill(&state, KillTarget::PoolWorker, "pool worker".into()).await
}

async fn poison(
    State(state): State<Arc<AppState>>,
    AppJson(request): AppJson<PoisonRequest>,
) -> Result<Response, ApiError> {
    let policies = state.policies();
    let policy = policies.resolve(request.policy.as_deref())?;
    state.faults().poison(policy.policy.id(), &request.key)?;
    state.metrics.record_fault("poison");
    tracing::warn!(policy = %policy.name, "fault injected: poisoned a key");
    Ok(JsonLine(json!({ "poisoned": request.key, "policy": policy.name })).into_response())
}

async fn slow(
    State(state): State<Arc<AppState>>,
    AppJson(request): AppJson<SlowRequest>,
) -> Result<Response, ApiError> {
    if request.delay > Duration::from_secs(60) || request.duration > Duration::from_secs(3600) {
        return Err(ApiError::InvalidField(
            "`delay` must be at most 60s and `duration` at most 1h".into(),
        ));
    }
    state.faults().slow_down(request.delay, request.duration);
    state.metrics.record_fault("slow");
    tracing::warn!(delay = ?request.delay, duration = ?request.duration, "fault injected: slow checks");
    Ok(JsonLine(json!({
        "delay_ms": request.delay.as_millis() as u64,
        "duration_ms": request.duration.as_millis() as u64,
    }))
    .into_response())
}

async fn switch_backend(
    State(state): State<Arc<AppState>>,
    AppJson(request): AppJson<SwitchRequest>,
) -> Result<Response, ApiError> {
    state
        .switch_backend(request.backend)
        .await
        .map_err(|error| {
            tracing::warn!(%error, to = %request.backend, "backend switch refused");
            ApiError::SwitchRefused(error)
        })?;
    state.metrics.record_fault("switch");
    Ok(JsonLine(json!({ "backend": request.backend })).into_response())
}
