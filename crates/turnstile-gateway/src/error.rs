//! The one error type of the HTTP API. Every variant becomes a status and a JSON
//! [`ErrorBody`] `{"error": "<code>", "message": "<what is wrong>"}`; internals (backend error
//! chains, panics) never reach the body.
//!
//! A 500 is reachable in two ways only, both bugs of ours: the router served without
//! connection info, and a failed metrics render.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use turnstile_backend::{BuildError, CheckError};

use crate::api::ErrorBody;
use crate::config::ConfigError;
use crate::json_body::JsonLine;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is unusable.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The backend could not be built.
    #[error("backend: {0}")]
    Backend(#[from] turnstile_backend::BuildError),
    /// Metrics could not be registered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The rate limit service's rule files are unusable.
    #[error(transparent)]
    Rules(#[from] crate::rls::RulesError),
    /// The thread or runtime an in-process gateway runs on could not be started.
    #[error("cannot start the gateway's runtime: {0}")]
    Runtime(String),
    /// A listen address could not be bound.
    #[error("`{setting}`: cannot listen on {address}: {source}")]
    Bind {
        /// The setting naming the listener (`listen`, `admin_listen`, `rls.listen`).
        setting: &'static str,
        /// The address.
        address: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// Why a request got no decision.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The body is not JSON (or is cut short).
    #[error("request body is not valid JSON: {0}")]
    InvalidJson(String),
    /// The body is JSON but a field is missing, unknown or of the wrong type.
    #[error("invalid request body: {0}")]
    InvalidField(String),
    /// The request's content type is not JSON.
    #[error("content type must be application/json")]
    UnsupportedMediaType,
    /// The body is over the configured limit.
    #[error("request body is over the {limit}-byte limit")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body did not arrive within `body_read_timeout`.
    #[error("the request body did not arrive within {}ms", .timeout.as_millis())]
    BodyReadTimeout {
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// The body could not be read.
    #[error("request body could not be read: {0}")]
    UnreadableBody(String),
    /// A rate limit service request is malformed (which field, and why).
    #[error("invalid rate limit request: {0}")]
    InvalidArgument(String),
    /// The key is empty.
    #[error("`key` must not be empty")]
    EmptyKey,
    /// The key is too long.
    #[error("`key` is {len} bytes; the maximum is {max}")]
    KeyTooLong {
        /// The key's length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// No policy of that name.
    #[error("unknown policy `{name}`; defined policies: {known}")]
    UnknownPolicy {
        /// The name asked for.
        name: String,
        /// The names that exist.
        known: String,
    },
    /// The cost can never be admitted.
    #[error("`cost` {cost} exceeds the policy's burst of {burst}: it could never be admitted")]
    CostExceedsBurst {
        /// The cost asked for.
        cost: u32,
        /// The policy's burst.
        burst: u32,
    },
    /// The configured key header is missing or not text.
    #[error(
        "header `{header}` is required to identify the client and must be non-empty text of at most 256 bytes"
    )]
    InvalidKeyHeader {
        /// The header's name.
        header: String,
    },
    /// A forward-auth caller's description of the original request is unusable.
    #[error("header `{header}` {problem}")]
    InvalidForwardedHeader {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        problem: &'static str,
    },
    /// The backend dropped the check and the policy fails closed.
    #[error("the rate limiter could not decide ({}); the policy fails closed", .0.reason())]
    Dropped(CheckError),
    /// The gateway is at `max_concurrent_requests`: shed before reaching the backend.
    #[error("shed: the gateway is at its concurrency limit")]
    Shed,
    /// The shutdown grace ended before the request was answered.
    #[error(
        "the gateway is shutting down and this request did not finish within its shutdown grace"
    )]
    ShuttingDown,
    /// The request ran past `request_timeout`.
    #[error("the request did not finish within the gateway's request timeout")]
    RequestTimeout,
    /// The backend asked for cannot be built from the running configuration; the active
    /// backend is unchanged.
    #[error("cannot switch backends: {0}")]
    SwitchRefused(BuildError),
    /// The admin API needs its bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// No such admin route.
    #[error("no such route")]
    NotFound,
    /// `/admin/crash/shard/{index}` with an index that is not a whole number.
    #[error("shard index `{0}` is not a whole number from 0")]
    InvalidShardIndex(String),
    /// A crash could not be injected.
    #[error("{0}")]
    Kill(turnstile_backend::KillError),
    /// Route exists, method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// The upstream refused the connection, could not be reached in `proxy.connect_timeout`,
    /// or broke off its answer.
    #[error("the upstream could not be reached or broke off its answer ({reason})")]
    UpstreamUnavailable {
        /// `connect`, or `protocol` (the connection failed mid-exchange).
        reason: &'static str,
    },
    /// The upstream sent no response headers within `proxy.response_header_timeout`.
    #[error("the upstream did not answer within {}ms", .timeout.as_millis())]
    UpstreamTimeout {
        /// The timeout.
        timeout: std::time::Duration,
    },
    /// A proxied request body is over `proxy.max_body_bytes`.
    #[error("request body is over the proxy's {limit}-byte limit")]
    ProxyBodyTooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// A protocol upgrade (WebSocket) asked of the proxy, which does not forward them.
    #[error("protocol upgrades (`Upgrade: {protocol}`) are not forwarded by this proxy")]
    UpgradeNotSupported {
        /// The protocol asked for.
        protocol: String,
    },
    /// A fault of ours, never of the request.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    /// The drop reason of a request shed by the gateway: not a backend's, so not among
    /// [`CheckError::DROP_REASONS`].
    pub const SHED: &'static str = "shed";

    /// Every drop reason the gateway counts: the backends' and its own.
    pub fn drop_reasons() -> impl Iterator<Item = &'static str> {
        CheckError::DROP_REASONS
            .into_iter()
            .chain(std::iter::once(Self::SHED))
    }

    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_)
            | Self::UnreadableBody(_)
            | Self::InvalidKeyHeader { .. }
            | Self::InvalidForwardedHeader { .. }
            | Self::InvalidShardIndex(_)
            | Self::InvalidArgument(_) => StatusCode::BAD_REQUEST,
            Self::InvalidField(_)
            | Self::EmptyKey
            | Self::KeyTooLong { .. }
            | Self::UnknownPolicy { .. }
            | Self::CostExceedsBurst { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::BodyReadTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Dropped(_) | Self::Shed | Self::RequestTimeout | Self::ShuttingDown => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            Self::SwitchRefused(_) => StatusCode::CONFLICT,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::Kill(turnstile_backend::KillError::NoSuchChild(_)) => {
                StatusCode::NOT_FOUND
            }
            Self::Kill(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::UpstreamUnavailable { .. } => StatusCode::BAD_GATEWAY,
            Self::UpstreamTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            Self::ProxyBodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UpgradeNotSupported { .. } => StatusCode::NOT_IMPLEMENTED,
            Self::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidJson(_) => "invalid_json",
            Self::InvalidField(_) => "invalid_field",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::BodyTooLarge { .. } => "body_too_large",
            Self::BodyReadTimeout { .. } => "body_read_timeout",
            Self::UnreadableBody(_) => "unreadable_body",
            Self::InvalidArgument(_) => "invalid_argument",
            Self::EmptyKey => "empty_key",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::UnknownPolicy { .. } => "unknown_policy",
            Self::CostExceedsBurst { .. } => "cost_exceeds_burst",
            Self::InvalidKeyHeader { .. } => "invalid_key_header",
            Self::InvalidForwardedHeader { .. } => "invalid_forwarded_header",
            Self::Dropped(error) => error.reason(),
            Self::Shed => Self::SHED,
            Self::ShuttingDown => "shutting_down",
            // The same reason as a backend's own timeout: to the client, both are "no answer
            // in time", and the drop metric counts them under one reason.
            Self::RequestTimeout => CheckError::Timeout.reason(),
            Self::SwitchRefused(_) => "switch_refused",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::InvalidShardIndex(_) => "invalid_shard_index",
            Self::Kill(turnstile_backend::KillError::NoSuchChild(_)) => "no_such_actor",
            Self::Kill(turnstile_backend::KillError::NoPool) => "no_pool",
            Self::Kill(turnstile_backend::KillError::NoIdleWorker) => "no_idle_worker",
            Self::Kill(turnstile_backend::KillError::NotRunning(_)) => "not_running",
            Self::UpstreamUnavailable { .. } => "upstream_unavailable",
            Self::UpstreamTimeout { .. } => "upstream_timeout",
            Self::ProxyBodyTooLarge { .. } => "body_too_large",
            Self::UpgradeNotSupported { .. } => "upgrade_not_supported",
            Self::Internal => "internal",
        }
    }
}

impl From<CheckError> for ApiError {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::CostExceedsBurst(e) => Self::CostExceedsBurst {
                cost: e.cost,
                burst: e.burst,
            },
            CheckError::KeyTooLong { len, max } => Self::KeyTooLong { len, max },
            CheckError::EmptyKey => Self::EmptyKey,
            dropped => Self::Dropped(dropped),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: self.code().into(),
            message: self.to_string().into(),
            retry_after_ms: None,
        };
        let mut response = (self.status(), JsonLine(body)).into_response();
        if let Self::Unauthorized = self {
            // RFC 9110 §11.6.1: a 401 names the scheme it wants.
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"turnstile-admin\""),
            );
        }
        if let Self::Dropped(_) | Self::Shed | Self::RequestTimeout | Self::ShuttingDown = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// A known route asked with a method it does not serve (the routers' fallback for that).
pub(crate) async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}
