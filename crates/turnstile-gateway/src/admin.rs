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

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use turnstile_backend::{BackendKind, KillError, KillTarget};

use crate::AppState;
use crate::error::ApiError;

/// The admin router.
pub(crate) fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/admin/supervision", get(supervision))
        .route("/admin/crash/actor", post(crash_actor))
        .route("/admin/crash/shard/{index}", post(crash_shard))
        .route("/admin/crash/worker", post(crash_worker))
        .route("/admin/poison", post(poison))
        .route("/admin/slow", post(slow))
        .route("/admin/backend", post(switch_backend))
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(crate::routes::method_not_allowed)
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
            .and_then(|value| value.strip_prefix("Bearer "));
        if presented != Some(token.as_str()) {
            return ApiError::Unauthorized.into_response();
        }
    }
    next.run(request).await
}

/// Maps axum's JSON rejections onto our errors, so admin input errors look like API ones.
fn body<T>(payload: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    match payload {
        Ok(Json(value)) => Ok(value),
        Err(JsonRejection::JsonDataError(error)) => Err(ApiError::InvalidField(error.body_text())),
        Err(JsonRejection::MissingJsonContentType(_)) => Err(ApiError::UnsupportedMediaType),
        Err(rejection) => Err(ApiError::InvalidJson(rejection.body_text())),
    }
}

async fn supervision(State(state): State<Arc<AppState>>) -> Response {
    Json(state.backend().status()).into_response()
}

async fn kill(state: &AppState, target: KillTarget, what: String) -> Result<Response, ApiError> {
    state.backend().kill(target).await.map_err(ApiError::Kill)?;
    state.metrics.record_fault("crash");
    tracing::warn!(target = %what, "fault injected: crash");
    Ok(Json(json!({ "crashed": what })).into_response())
}

async fn crash_actor(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    if state.backend().kind() != BackendKind::Actor {
        return Err(ApiError::Kill(KillError::NoSuchChild(0)));
    }
    kill(&state, KillTarget::Child(0), "actor".into()).await
}

async fn crash_shard(
    State(state): State<Arc<AppState>>,
    Path(index): Path<usize>,
) -> Result<Response, ApiError> {
    kill(&state, KillTarget::Child(index), format!("shard {index}")).await
}

async fn crash_worker(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    kill(&state, KillTarget::PoolWorker, "pool worker".into()).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PoisonRequest {
    key: String,
    #[serde(default)]
    policy: Option<String>,
}

async fn poison(
    State(state): State<Arc<AppState>>,
    payload: Result<Json<PoisonRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(payload)?;
    let policy = state.policies.resolve(request.policy.as_deref())?;
    state.faults().poison(policy.policy.id(), &request.key)?;
    state.metrics.record_fault("poison");
    tracing::warn!(policy = %policy.name, "fault injected: poisoned a key");
    Ok(Json(json!({ "poisoned": request.key, "policy": policy.name })).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlowRequest {
    #[serde(with = "humantime_serde")]
    delay: Duration,
    #[serde(with = "humantime_serde")]
    duration: Duration,
}

async fn slow(
    State(state): State<Arc<AppState>>,
    payload: Result<Json<SlowRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(payload)?;
    if request.delay > Duration::from_secs(60) || request.duration > Duration::from_secs(3600) {
        return Err(ApiError::InvalidField(
            "`delay` must be at most 60s and `duration` at most 1h".into(),
        ));
    }
    state.faults().slow_down(request.delay, request.duration);
    state.metrics.record_fault("slow");
    tracing::warn!(delay = ?request.delay, duration = ?request.duration, "fault injected: slow checks");
    Ok(Json(json!({
        "delay_ms": request.delay.as_millis() as u64,
        "duration_ms": request.duration.as_millis() as u64,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SwitchRequest {
    backend: BackendKind,
}

async fn switch_backend(
    State(state): State<Arc<AppState>>,
    payload: Result<Json<SwitchRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let request = body(payload)?;
    state
        .switch_backend(request.backend)
        .await
        .map_err(|error| {
            tracing::error!(%error, "backend switch failed");
            ApiError::Internal
        })?;
    state.metrics.record_fault("switch");
    Ok(Json(json!({ "backend": request.backend })).into_response())
}
