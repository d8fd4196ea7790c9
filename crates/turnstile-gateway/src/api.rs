//! The wire format: every path, header name, request and response body the gateway speaks,
//! defined once, for the gateway's handlers and for its clients (`turnstile-load`, tests, a
//! Rust service calling Turnstile).
//!
//! # Layout
//!
//! - [`Route`]: the public routes, their paths, and their metric labels.
//! - [`admin`]: the admin listener's paths and request bodies.
//! - [`rls`]: Envoy's rate limit service in proto3 JSON (`POST /v1/ratelimit`), its gRPC
//!   names, and the request limits both transports enforce.
//! - [`CheckRequest`], [`CheckResponse`], [`ErrorBody`]: the JSON bodies.
//! - the header names: [`DROPPED_HEADER`] and the rate-limit headers.
//! - [`markers`]: the byte strings a fast client looks for instead of parsing each answer.
//!
//! # Invariants
//!
//! - Nothing here knows how a request is handled; the handlers import these types, never the
//!   other way round, so a client can depend on them without the server.
//! - Each wire string is written once: the router, the metric labels and the load generator
//!   all read it from here, and the tests check the markers against what the types serialize.

use std::borrow::Cow;

pub mod rls;

use axum::http::HeaderName;
use serde::{Deserialize, Serialize};

/// The public listener's routes. The router serves exactly these, and the HTTP duration
/// histogram's `route` label takes exactly their [`labels`](Route::label), so a client-chosen
/// path never becomes a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Route {
    /// `POST /v1/check`: a decision for an explicit key.
    Check,
    /// `ANY /v1/forward-auth`: for proxies' external-auth hooks; also
    /// `ANY /v1/forward-auth/<original path>` ([`FORWARD_AUTH_PREFIX`]), as Envoy's ext_authz
    /// calls it.
    ForwardAuth,
    /// `POST /v1/ratelimit`: Envoy's `ShouldRateLimit` in proto3 JSON (see [`rls`]).
    RateLimit,
    /// `GET /healthz`: the process is up.
    Healthz,
    /// `GET /readyz`: the backend can serve checks.
    Readyz,
    /// `GET /metrics`: Prometheus text exposition.
    Metrics,
    /// Every other path: the gateway route, limited per client.
    Gateway,
}

impl Route {
    /// Every route, in the order of the metrics' label values.
    pub const ALL: [Self; 7] = [
        Self::Check,
        Self::ForwardAuth,
        Self::RateLimit,
        Self::Healthz,
        Self::Readyz,
        Self::Metrics,
        Self::Gateway,
    ];

    /// The exact path, for the routes that have one; the gateway route is the fallback.
    pub const fn path(self) -> Option<&'static str> {
        match self {
            Self::Check => Some("/v1/check"),
            Self::ForwardAuth => Some("/v1/forward-auth"),
            Self::RateLimit => Some("/v1/ratelimit"),
            Self::Healthz => Some("/healthz"),
            Self::Readyz => Some("/readyz"),
            Self::Metrics => Some("/metrics"),
            Self::Gateway => None,
        }
    }

    /// The `route` label of `turnstile_http_request_duration_seconds`: the path, or
    /// `fallback` for the gateway route.
    pub const fn label(self) -> &'static str {
        match self.path() {
            Some(path) => path,
            None => "fallback",
        }
    }

    /// The route a request path reaches (any path that is no route's is the gateway route's).
    pub fn of_path(path: &str) -> Self {
        if forward_auth_original_path(path).is_some() {
            return Self::ForwardAuth;
        }
        Self::ALL
            .into_iter()
            .find(|route| route.path() == Some(path))
            .unwrap_or(Self::Gateway)
    }

    /// Health, readiness and metrics: outside the rate-limited routes' concurrency limit and
    /// timeout, so they answer when the gateway is saturated.
    pub const fn is_operational(self) -> bool {
        matches!(self, Self::Healthz | Self::Readyz | Self::Metrics)
    }

    /// Reads a JSON body: it takes its place among the requests in flight only once the body
    /// is in, so a client stalling mid-body holds none (see [`Edge`](crate::Edge)).
    pub const fn reads_body(self) -> bool {
        matches!(self, Self::Check | Self::RateLimit)
    }

    /// Its position in [`Route::ALL`] (an index into per-route metric series).
    pub const fn index(self) -> usize {
        self as usize
    }
}

/// The prefix form of [`Route::ForwardAuth`], as the router's template: Envoy's ext_authz (HTTP)
/// calls its `path_prefix` followed by the original request's path.
pub const FORWARD_AUTH_PREFIX: &str = "/v1/forward-auth/{*original}";

/// The original request's path in a prefix-form forward-auth call
/// (`/v1/forward-auth/api/x` → `/api/x`), or `None` for any other path.
pub fn forward_auth_original_path(path: &str) -> Option<&str> {
    let prefix = Route::ForwardAuth.path()?;
    let rest = path.strip_prefix(prefix)?;
    // Keep the slash: the rest is the original path, `/` included.
    rest.starts_with('/').then_some(rest)
}

/// Marks an answer admitted without a decision because the backend dropped the check and the
/// policy fails open; the value is the drop reason.
pub static DROPPED_HEADER: HeaderName = HeaderName::from_static("turnstile-dropped");
/// `RateLimit-Policy: "<policy>";q=<limit>;w=<window s>` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT_POLICY_HEADER: HeaderName = HeaderName::from_static("ratelimit-policy");
/// `RateLimit: "<policy>";r=<remaining>;t=<reset s>` (draft-ietf-httpapi-ratelimit-headers).
pub static RATELIMIT_HEADER: HeaderName = HeaderName::from_static("ratelimit");
/// The older `RateLimit-Limit`, sent with `legacy_ratelimit_headers`.
pub static RATELIMIT_LIMIT_HEADER: HeaderName = HeaderName::from_static("ratelimit-limit");
/// The older `RateLimit-Remaining`, sent with `legacy_ratelimit_headers`.
pub static RATELIMIT_REMAINING_HEADER: HeaderName = HeaderName::from_static("ratelimit-remaining");
/// The older `RateLimit-Reset`, sent with `legacy_ratelimit_headers`.
pub static RATELIMIT_RESET_HEADER: HeaderName = HeaderName::from_static("ratelimit-reset");

/// The body of `POST /v1/check`. Borrowed where it can be, so a plain key costs no copy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckRequest<'a> {
    /// Whose limit: at most 256 bytes, not empty.
    #[serde(borrow)]
    pub key: Cow<'a, str>,
    /// Which policy; `default` when absent.
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<Cow<'a, str>>,
    /// Units taken; 1 when absent, at most the policy's burst.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<u32>,
}

/// The answer of `POST /v1/check`: a denial is a decision (200 with `allowed: false`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckResponse {
    /// Whether the check was admitted.
    pub allowed: bool,
    /// The policy's limit per period.
    pub limit: u32,
    /// Units that could still be taken now.
    pub remaining: u32,
    /// Until the key is back at its full burst, rounded up to the millisecond.
    pub reset_after_ms: u64,
    /// When denied, until the same check would be admitted, rounded up.
    pub retry_after_ms: Option<u64>,
    /// Present only when the check was dropped and the policy failed open: the drop reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<Cow<'static, str>>,
}

/// The body of every error, and of a denial on the client-limited routes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody<'a> {
    /// A stable machine-readable code: [`RATE_LIMITED`], a drop reason, or an input error's.
    pub error: Cow<'a, str>,
    /// What is wrong, for a person.
    pub message: Cow<'a, str>,
    /// On a denial, until the request would be admitted, rounded up to the millisecond.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

/// The `error` of a denial on `/v1/forward-auth` and the gateway route.
pub const RATE_LIMITED: &str = "rate_limited";

/// What a client that reads many answers per second looks for in a body instead of parsing
/// it: the gateway writes its JSON compactly with serde, so these appear exactly so (the
/// gateway's tests serialize the types above and check).
pub mod markers {
    /// In a [`CheckResponse`](super::CheckResponse) that denies.
    pub const DENIED: &[u8] = br#""allowed":false"#;
    /// Precedes the drop reason in a fail-open [`CheckResponse`](super::CheckResponse).
    pub const DROPPED_PREFIX: &[u8] = br#""dropped":""#;
    /// Precedes the code in an [`ErrorBody`](super::ErrorBody).
    pub const ERROR_PREFIX: &[u8] = br#""error":""#;
}

/// The admin listener's paths and bodies (served on `admin_listen` only).
pub mod admin {
    use std::time::Duration;

    use serde::{Deserialize, Serialize};
    use turnstile_backend::BackendKind;

    /// `GET`: the active backend's actors, restarts, escalations, pool.
    pub const SUPERVISION: &str = "/admin/supervision";
    /// `POST`: crash the single actor (its mailbox is lost).
    pub const CRASH_ACTOR: &str = "/admin/crash/actor";
    /// `POST`: crash one shard; the router's template (see [`crash_shard`]).
    pub const CRASH_SHARD: &str = "/admin/crash/shard/{index}";
    /// `POST`: crash one idle check-pool worker.
    pub const CRASH_WORKER: &str = "/admin/crash/worker";
    /// `POST` a [`PoisonRequest`]: the key's next check panics in its state owner.
    pub const POISON: &str = "/admin/poison";
    /// `POST` a [`SlowRequest`]: every check takes longer for a while.
    pub const SLOW: &str = "/admin/slow";
    /// `POST` a [`SwitchRequest`]: switch backends; the old one drains.
    pub const BACKEND: &str = "/admin/backend";

    /// The path that crashes shard `index` ([`CRASH_SHARD`] filled in).
    pub fn crash_shard(index: usize) -> String {
        CRASH_SHARD.replace("{index}", &index.to_string())
    }

    /// The body of [`POISON`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct PoisonRequest {
        /// The key whose next check panics.
        pub key: String,
        /// Its policy; `default` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        pub policy: Option<String>,
    }

    /// The body of [`SLOW`]: durations as `200ms`, `10s`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SlowRequest {
        /// Added to every check (at most 60 s).
        #[serde(with = "humantime_serde")]
        pub delay: Duration,
        /// For how long (at most 1 h).
        #[serde(with = "humantime_serde")]
        pub duration: Duration,
    }

    /// The body of [`BACKEND`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct SwitchRequest {
        /// The backend to switch to.
        pub backend: BackendKind,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contains(haystack: &[u8], needle: &[u8]) -> bool {
        haystack
            .windows(needle.len())
            .any(|window| window == needle)
    }

    #[test]
    fn the_markers_are_what_the_types_serialize() {
        let denied = CheckResponse {
            allowed: false,
            limit: 1,
            remaining: 0,
            reset_after_ms: 1,
            retry_after_ms: Some(1),
            dropped: None,
        };
        let denied = serde_json::to_vec(&denied).unwrap();
        assert!(contains(&denied, markers::DENIED));
        assert!(!contains(&denied, markers::DROPPED_PREFIX));
        let dropped = CheckResponse {
            allowed: true,
            dropped: Some("crashed".into()),
            ..serde_json::from_slice(&denied).unwrap()
        };
        let dropped = serde_json::to_vec(&dropped).unwrap();
        assert!(contains(&dropped, br#""dropped":"crashed""#));
        assert!(contains(&dropped, markers::DROPPED_PREFIX));
        assert!(!contains(&dropped, markers::DENIED));
        let error = ErrorBody {
            error: "shed".into(),
            message: "x".into(),
            retry_after_ms: None,
        };
        let error = serde_json::to_vec(&error).unwrap();
        assert!(contains(&error, br#""error":"shed""#));
        assert!(contains(&error, markers::ERROR_PREFIX));
    }

    #[test]
    fn every_path_is_its_own_route_and_any_other_is_the_gateway_route() {
        for route in Route::ALL {
            assert_eq!(Route::ALL[route.index()], route);
            if let Some(path) = route.path() {
                assert_eq!(Route::of_path(path), route);
                assert_eq!(route.label(), path);
            }
        }
        assert_eq!(Route::of_path("/v1/check/"), Route::Gateway);
        assert_eq!(Route::of_path("/v1/forward-auth/api/x"), Route::ForwardAuth);
        assert_eq!(Route::of_path("/v1/forward-authx"), Route::Gateway);
        assert_eq!(
            forward_auth_original_path("/v1/forward-auth/api/x"),
            Some("/api/x")
        );
        assert_eq!(forward_auth_original_path("/v1/forward-auth/"), Some("/"));
        assert_eq!(forward_auth_original_path("/v1/forward-auth"), None);
        assert_eq!(
            FORWARD_AUTH_PREFIX.split('{').next(),
            Some("/v1/forward-auth/"),
            "the router's template is the prefix form's"
        );
        assert_eq!(Route::of_path("/"), Route::Gateway);
        assert_eq!(Route::Gateway.label(), "fallback");
        assert_eq!(admin::crash_shard(3), "/admin/crash/shard/3");
    }
}
