//! The one error type of the HTTP API. Every variant becomes a status and a JSON body
//! `{"error": "<code>", "message": "<what is wrong>"}`; internals (backend error chains, panics)
//! never reach the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use turnstile_backend::CheckError;

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
    /// The body could not be read.
    #[error("request body could not be read: {0}")]
    UnreadableBody(String),
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
    /// The backend dropped the check and the policy fails closed.
    #[error("the rate limiter could not decide ({}); the policy fails closed", .0.reason())]
    Dropped(CheckError),
    /// The admin API needs its bearer token.
    #[error("missing or wrong bearer token")]
    Unauthorized,
    /// No such admin route.
    #[error("no such route")]
    NotFound,
    /// A crash could not be injected.
    #[error("{0}")]
    Kill(turnstile_backend::KillError),
    /// Route exists, method does not.
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    /// A fault of ours, never of the request.
    #[error("internal error")]
    Internal,
}

impl ApiError {
    fn status(&self) -> StatusCode {
        match self {
            Self::InvalidJson(_) | Self::UnreadableBody(_) | Self::InvalidKeyHeader { .. } => {
                StatusCode::BAD_REQUEST
            }
            Self::InvalidField(_)
            | Self::EmptyKey
            | Self::KeyTooLong { .. }
            | Self::UnknownPolicy { .. }
            | Self::CostExceedsBurst { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Dropped(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Unauthorized => StatusCode::UNAUTHORIZED,
            Self::NotFound | Self::Kill(turnstile_backend::KillError::NoSuchChild(_)) => {
                StatusCode::NOT_FOUND
            }
            Self::Kill(_) => StatusCode::CONFLICT,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
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
            Self::UnreadableBody(_) => "unreadable_body",
            Self::EmptyKey => "empty_key",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::UnknownPolicy { .. } => "unknown_policy",
            Self::CostExceedsBurst { .. } => "cost_exceeds_burst",
            Self::InvalidKeyHeader { .. } => "invalid_key_header",
            Self::Dropped(error) => error.reason(),
            Self::MethodNotAllowed => "method_not_allowed",
            Self::Unauthorized => "unauthorized",
            Self::NotFound => "not_found",
            Self::Kill(turnstile_backend::KillError::NoSuchChild(_)) => "no_such_actor",
            Self::Kill(turnstile_backend::KillError::NoPool) => "no_pool",
            Self::Kill(turnstile_backend::KillError::NoIdleWorker) => "no_idle_worker",
            Self::Kill(turnstile_backend::KillError::NotRunning(_)) => "not_running",
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
        let body = serde_json::json!({ "error": self.code(), "message": self.to_string() });
        let mut response = (self.status(), axum::Json(body)).into_response();
        if let Self::Dropped(_) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
