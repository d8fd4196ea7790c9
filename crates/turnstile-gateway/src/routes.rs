//! The routers and their handlers: `/v1/check`, `/v1/forward-auth`, the gateway route (every
//! other path), and the operational endpoints, built from [`Route`] so the router and the
//! metrics' route labels cannot disagree.

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use arrayvec::ArrayVec;
use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, any, get, post};
use futures_util::FutureExt;
use turnstile_backend::{BackendKind, CheckError, MAX_KEY_LEN};
use turnstile_core::{Decision, Policy};

use crate::api::{CheckRequest, CheckResponse, DROPPED_HEADER, ErrorBody, RATE_LIMITED, Route};
use crate::config::FailureMode;
use crate::edge::Edge;
use crate::error::{ApiError, method_not_allowed};
use crate::extract::{parse_json, read_json};
use crate::json_body::JsonLine;
use crate::metrics::{CheckOutcome, Metrics, UpstreamCounters};
use crate::policies::NamedPolicy;
use crate::proxy::{Forwarded, Proxy};
use crate::request_rules::{self, LimitKey, RequestView};
use crate::state::AppState;

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
    let router = Route::ALL
        .into_iter()
        .filter_map(|route| Some((route.path()?, handler(route)?)))
        .fold(Router::new(), |router, (path, handler)| {
            router.route(path, handler)
        })
        .route(crate::api::FORWARD_AUTH_PREFIX, any(forward_auth))
        // `Route::Gateway`: every path that is no other route's.
        .fallback(gateway)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(Arc::clone(&state));
    Edge::new(router, state)
}

/// What serves each route with a path (the gateway route is the router's fallback).
fn handler(route: Route) -> Option<MethodRouter<Arc<AppState>>> {
    Some(match route {
        Route::Check => post(check),
        Route::ForwardAuth => any(forward_auth),
        Route::RateLimit => post(crate::rls::json::rate_limit),
        Route::Healthz => get(healthz),
        Route::Readyz => get(readyz),
        Route::Metrics => get(metrics),
        Route::Gateway => return None,
    })
}

/// The admin router (fault injection, supervision state, backend switch), for the admin
/// listener and for tests.
pub fn admin_app(state: Arc<AppState>) -> Router {
    crate::admin::router(state)
}

/// What a check came to.
enum Outcome {
    Decided(Decision),
    /// The backend dropped the check and the policy fails open: admitted, and counted.
    AdmittedOnDrop(CheckError),
}

/// Runs one check through the active backend, recording metrics, applying the failure mode.
async fn decide(
    state: &AppState,
    key: &str,
    policy: &NamedPolicy,
    cost: u32,
) -> Result<Outcome, ApiError> {
    let (kind, result) = run_check(state, key, &policy.policy, cost).await;
    match result {
        Ok(decision) => {
            Metrics::record_decision(&policy.counters, kind, decision.allowed);
            Ok(Outcome::Decided(decision))
        }
        Err(error) if error.is_drop() => {
            tracing::debug!(reason = error.reason(), policy = %policy.name, "check dropped");
            match policy.failure_mode {
                FailureMode::Open => Ok(Outcome::AdmittedOnDrop(error)),
                FailureMode::Closed => Err(ApiError::Dropped(error)),
            }
        }
        Err(error) => Err(error.into()),
    }
}

/// One check through the active backend, timed and counted (`turnstile_check_duration_seconds`
/// by outcome; drops in `turnstile_dropped_checks_total`), for every route that decides: the
/// client-limited routes, `/v1/check`, and Envoy's rate limit service. Returns the kind of the
/// backend that answered with its answer.
///
/// A panic while deciding (an injected poison, on the concurrent map, runs on this very task)
/// is caught here and becomes a `crashed` drop: one lost check, never a 500 or a dead
/// connection. In an actor or a pool worker the panic kills that task instead, and its
/// callers see `crashed` through their replies.
pub(crate) async fn run_check(
    state: &AppState,
    key: &str,
    policy: &Policy,
    cost: u32,
) -> (BackendKind, Result<Decision, CheckError>) {
    let backend = state.backend();
    let kind = backend.kind();
    let started = Instant::now();
    let result = AssertUnwindSafe(async { backend.check(key, policy, cost).await })
        .catch_unwind()
        .await
        .unwrap_or(Err(CheckError::Crashed));
    let elapsed = started.elapsed();
    let outcome = match &result {
        Ok(decision) if decision.allowed => CheckOutcome::Allowed,
        Ok(_) => CheckOutcome::Limited,
        Err(error) if error.is_drop() => {
            state.metrics.record_drop(kind, error.reason());
            CheckOutcome::Dropped
        }
        Err(_) => CheckOutcome::Invalid,
    };
    state.metrics.record_check(kind, outcome, elapsed);
    (kind, result)
}

fn millis_ceil(duration: std::time::Duration) -> u64 {
    let millis = duration.as_millis();
    let rounded = millis + u128::from(!duration.as_nanos().is_multiple_of(1_000_000));
    u64::try_from(rounded).unwrap_or(u64::MAX)
}

/// `POST /v1/check`: a decision for an explicit key. A denial is a decision (200), not an error.
pub(crate) async fn check(
    State(state): State<Arc<AppState>>,
    request: Request,
) -> Result<Response, ApiError> {
    // Taken apart rather than extracted: a `HeaderMap` extractor would copy every header,
    // and the body is parsed borrowing from its bytes (no copy of the key).
    let (parts, body) = request.into_parts();
    let body = read_json(&parts.headers, body, &state).await?;
    // Only now, with the whole body here, does the request take a place among those in flight.
    let _in_flight = crate::edge::Slot::take_after_body(&state)?;
    let request: CheckRequest<'_> = parse_json(&body)?;
    if request.key.is_empty() {
        return Err(ApiError::EmptyKey);
    }
    if request.key.len() > MAX_KEY_LEN {
        return Err(ApiError::KeyTooLong {
            len: request.key.len(),
            max: MAX_KEY_LEN,
        });
    }
    let policies = state.policies();
    let policy = policies.resolve(request.policy.as_deref())?;
    let cost = request.cost.unwrap_or(1);
    if cost > policy.policy.burst() {
        return Err(ApiError::CostExceedsBurst {
            cost,
            burst: policy.policy.burst(),
        });
    }
    let response = match decide(&state, &request.key, policy, cost).await? {
        Outcome::Decided(decision) => CheckResponse {
            allowed: decision.allowed,
            limit: decision.limit,
            remaining: decision.remaining,
            reset_after_ms: millis_ceil(decision.reset_after),
            retry_after_ms: decision.retry_after.map(millis_ceil),
            dropped: None,
        },
        Outcome::AdmittedOnDrop(error) => CheckResponse {
            allowed: true,
            limit: policy.policy.limit(),
            remaining: 0,
            reset_after_ms: 0,
            retry_after_ms: None,
            dropped: Some(error.reason().into()),
        },
    };
    Ok(JsonLine(response).into_response())
}

/// Which client-limited route is answering.
#[derive(Clone, Copy)]
enum ClientRoute {
    ForwardAuth,
    Gateway,
}

/// `ANY /v1/forward-auth`: for proxies' external-auth hooks (nginx `auth_request`, Traefik
/// ForwardAuth, Caddy `forward_auth`, Envoy ext_authz): 200 when allowed, the configured deny
/// status when not. The request rules see the original request as the proxy describes it
/// (`X-Forwarded-Uri` or `X-Original-URI`, `X-Forwarded-Method` or `X-Original-Method`), else
/// the path after `/v1/forward-auth` in the prefix form Envoy's ext_authz calls
/// (`/v1/forward-auth/api/x` judges `/api/x`, with this request's method), else this request
/// itself.
pub(crate) async fn forward_auth(state: State<Arc<AppState>>, request: Request) -> Response {
    limit_client(state, request, ClientRoute::ForwardAuth).await
}

/// Every other path: the gateway route, limited by the request rules, and forwarded to
/// `upstream` when one is set (else answered `200 ok`: the demo).
pub(crate) async fn gateway(state: State<Arc<AppState>>, request: Request) -> Response {
    limit_client(state, request, ClientRoute::Gateway).await
}

async fn limit_client(
    State(state): State<Arc<AppState>>,
    request: Request,
    route: ClientRoute,
) -> Response {
    let (parts, body) = request.into_parts();
    match limit_client_inner(&state, parts, body, route).await {
        Ok(response) => response,
        Err(error) => error.into_response(),
    }
}

/// The most limits one request rule may have: their keys are resolved on the stack before
/// any is checked.
pub(crate) const MAX_LIMITS_PER_RULE: usize = 8;

/// The original request's method and path as forward-auth's caller describes them.
fn forwarded_target(parts: &Parts) -> Result<(Method, &str), ApiError> {
    let first = |names: [&'static str; 2]| {
        names
            .into_iter()
            .find_map(|name| parts.headers.get(name).map(|value| (name, value)))
    };
    let method = match first(["x-forwarded-method", "x-original-method"]) {
        Some((name, value)) => {
            Method::from_bytes(value.as_bytes()).map_err(|_| ApiError::InvalidForwardedHeader {
                header: name,
                problem: "is not an HTTP method",
            })?
        }
        None => parts.method.clone(),
    };
    let path = match first(["x-forwarded-uri", "x-original-uri"]) {
        Some((name, value)) => {
            let uri = value
                .to_str()
                .map_err(|_| ApiError::InvalidForwardedHeader {
                    header: name,
                    problem: "is not text",
                })?;
            let path = request_rules::path_of(uri);
            if !path.starts_with('/') {
                return Err(ApiError::InvalidForwardedHeader {
                    header: name,
                    problem: "is not a path (`/...`) or an absolute URL",
                });
            }
            path
        }
        // Envoy's prefix form: the original path follows the route's own.
        None => crate::api::forward_auth_original_path(parts.uri.path())
            .unwrap_or_else(|| parts.uri.path()),
    };
    Ok((method, path))
}

async fn limit_client_inner(
    state: &AppState,
    parts: Parts,
    body: axum::body::Body,
    route: ClientRoute,
) -> Result<Response, ApiError> {
    let policies = state.policies();
    // Per route: its rules, its denial status, where admitted requests go, and the request the
    // rules judge (forward-auth's is the one its proxy describes).
    let (table, deny_status, proxy, (method, path)) = match route {
        ClientRoute::ForwardAuth => (
            policies.forward_auth(),
            state.forward_auth_deny_status,
            None,
            forwarded_target(&parts)?,
        ),
        ClientRoute::Gateway => {
            let proxy = state.proxy();
            if let Some(proxy) = &proxy {
                proxy.admissible(&parts)?;
            }
            (
                policies.gateway(),
                StatusCode::TOO_MANY_REQUESTS,
                proxy,
                (parts.method.clone(), parts.uri.path()),
            )
        }
    };
    let view = RequestView {
        method: &method,
        path: request_rules::normalize_path(path),
        headers: &parts.headers,
    };
    let Some(rule) = table.find(&view) else {
        table.unmatched.inc();
        drop(view);
        return admit(
            state,
            route,
            proxy.as_deref(),
            &table.unmatched_upstream,
            parts,
            body,
            Verdict::default(),
        )
        .await;
    };
    // Every key first: a request refused for a missing header changes no state.
    let client_key = || {
        let peer = peer_of(&parts)?;
        let ip = state.client_ip.client_ip(peer, &parts.headers);
        Ok(state.client_ip.key_for(ip))
    };
    let mut keys: ArrayVec<(&NamedPolicy, LimitKey), MAX_LIMITS_PER_RULE> = ArrayVec::new();
    for limit in &rule.limits {
        if let Some(key) = limit.key(&view, client_key)? {
            let policy = policies.at(limit.policy).ok_or(ApiError::Internal)?;
            keys.push((policy, key));
        }
    }
    drop(view);
    let mut verdict = Verdict::default();
    let mut would_deny = false;
    // In order; the first denial ends it (the limits after it are not consumed).
    for (policy, key) in &keys {
        match decide(state, key.as_str(), policy, 1).await? {
            Outcome::Decided(decision) if decision.allowed => {
                let closer = verdict
                    .closest
                    .as_ref()
                    .is_none_or(|(_, closest)| decision.remaining < closest.remaining);
                if closer {
                    verdict.closest = Some((policy, decision));
                }
            }
            Outcome::Decided(_) if rule.shadow => would_deny = true,
            Outcome::Decided(decision) => {
                rule.counters.denied.inc();
                tracing::debug!(rule = %rule.name, policy = %policy.name, "request denied");
                return Ok(denied(state, policy, &decision, deny_status));
            }
            Outcome::AdmittedOnDrop(error) => verdict.dropped = Some(error),
        }
    }
    if keys.is_empty() {
        rule.counters.unlimited.inc();
    } else if would_deny {
        rule.counters.shadow_denied.inc();
    } else {
        rule.counters.allowed.inc();
    }
    admit(
        state,
        route,
        proxy.as_deref(),
        &rule.counters.upstream,
        parts,
        body,
        verdict,
    )
    .await
}

/// What the limits of an admitted request came to, for its headers.
#[derive(Default)]
struct Verdict<'p> {
    /// The admitting decision with the least remaining, and its policy.
    closest: Option<(&'p NamedPolicy, Decision)>,
    /// A check the backend dropped, admitted by its policy's `failure_mode = "open"`.
    dropped: Option<CheckError>,
}

fn peer_of(parts: &Parts) -> Result<SocketAddr, ApiError> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(peer)| *peer)
        // Only reachable if the router is served without connect info: our bug.
        .ok_or(ApiError::Internal)
}

fn denied(
    state: &AppState,
    policy: &NamedPolicy,
    decision: &Decision,
    deny_status: StatusCode,
) -> Response {
    let body = ErrorBody {
        error: RATE_LIMITED.into(),
        message: policy.denied_message.as_str().into(),
        retry_after_ms: decision.retry_after.map(millis_ceil),
    };
    let mut response = (deny_status, JsonLine(body)).into_response();
    policy.headers.insert(
        response.headers_mut(),
        decision,
        state.legacy_ratelimit_headers,
    );
    no_store(response)
}

fn no_store(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::CACHE_CONTROL)
        .or_insert(HeaderValue::from_static("no-store"));
    response
}

/// The answer to an admitted request: the upstream's (when proxying), else `200`.
async fn admit(
    state: &AppState,
    route: ClientRoute,
    proxy: Option<&Proxy>,
    upstream: &UpstreamCounters,
    parts: Parts,
    body: axum::body::Body,
    verdict: Verdict<'_>,
) -> Result<Response, ApiError> {
    let mut response = match proxy {
        Some(proxy) => {
            let peer = peer_of(&parts)?.ip();
            let forwarded = Forwarded {
                peer,
                trusted: state.client_ip.is_trusted(peer),
            };
            let started = Instant::now();
            let result = proxy.forward(parts, body, &forwarded).await;
            match result {
                Ok(response) => {
                    let class = usize::from(response.status().as_u16() / 100).clamp(1, 5) - 1;
                    upstream.responses[class].observe(started.elapsed().as_secs_f64());
                    if !proxy.ratelimit_headers {
                        return Ok(with_dropped(response, verdict.dropped.as_ref()));
                    }
                    response
                }
                Err((reason, error)) => {
                    upstream.errors[reason as usize].inc();
                    tracing::debug!(reason = reason.label(), "upstream gave no response");
                    return Err(error);
                }
            }
        }
        None => {
            drop(body);
            let response = match route {
                ClientRoute::ForwardAuth => StatusCode::OK.into_response(),
                ClientRoute::Gateway => (StatusCode::OK, "ok\n").into_response(),
            };
            no_store(response)
        }
    };
    if let Some((policy, decision)) = &verdict.closest {
        policy.headers.insert(
            response.headers_mut(),
            decision,
            state.legacy_ratelimit_headers,
        );
    }
    Ok(with_dropped(response, verdict.dropped.as_ref()))
}

fn with_dropped(mut response: Response, dropped: Option<&CheckError>) -> Response {
    if let Some(error) = dropped {
        response.headers_mut().insert(
            DROPPED_HEADER.clone(),
            HeaderValue::from_static(error.reason()),
        );
    }
    response
}

/// `GET /healthz`: the process is up.
pub(crate) async fn healthz() -> Response {
    JsonLine(serde_json::json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`: the backend can serve checks.
pub(crate) async fn readyz(State(state): State<Arc<AppState>>) -> Response {
    let active = state.backend();
    let backend = active.kind().as_str();
    if active.is_ready() {
        JsonLine(serde_json::json!({ "status": "ready", "backend": backend })).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            JsonLine(serde_json::json!({ "status": "not_ready", "backend": backend })),
        )
            .into_response()
    }
}

/// `GET /metrics`: Prometheus text exposition.
pub(crate) async fn metrics(State(state): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let backend = state.backend();
    let text = state
        .metrics
        .render(&backend.status(), backend.keys_tracked())
        .map_err(|error| {
            tracing::error!(%error, "rendering metrics failed");
            ApiError::Internal
        })?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
        )],
        text,
    )
        .into_response())
}
