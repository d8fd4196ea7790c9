//! Reading JSON request bodies, one way for every route: the content type is checked before
//! the body is read (415), the body is read up to `body_limit_bytes` (413) within
//! `body_read_timeout` (408: a client that stalls mid-body is cut off), then parsed with
//! serde (400 for broken JSON, 422 for a wrong, missing or unknown field), each as an
//! [`ApiError`] naming the problem.
//!
//! [`AppJson`] is the extractor (axum's `FromRequest` pattern, with our rejection) for handlers
//! that take an owned value; `/v1/check`, whose body borrows from the bytes to avoid copying
//! the key, calls [`read_json`] and [`parse_json`] itself.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, header};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::error::ApiError;
use crate::state::AppState;

/// A JSON body of type `T`, rejected as an [`ApiError`].
pub(crate) struct AppJson<T>(pub(crate) T);

impl<T: DeserializeOwned> FromRequest<Arc<AppState>> for AppJson<T> {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &Arc<AppState>) -> Result<Self, ApiError> {
        let (parts, body) = request.into_parts();
        let bytes = read_json(&parts.headers, body, state).await?;
        parse_json(&bytes).map(AppJson)
    }
}

/// The body's bytes, if the content type is JSON and the body within `body_limit_bytes`,
/// arrived within `body_read_timeout`.
pub(crate) async fn read_json(
    headers: &HeaderMap,
    body: Body,
    state: &AppState,
) -> Result<Bytes, ApiError> {
    if !is_json(headers) {
        return Err(ApiError::UnsupportedMediaType);
    }
    let limit = state.body_limit_bytes;
    let timeout = state.body_read_timeout;
    // The limit is applied here rather than by a `DefaultBodyLimit` layer: a router-wide
    // layer costs every request (most read no body) a boxed service.
    let collected = tokio::time::timeout(timeout, Limited::new(body, limit).collect())
        .await
        .map_err(|_| ApiError::BodyReadTimeout { timeout })?
        .map_err(|error| {
            if error.is::<LengthLimitError>() {
                ApiError::BodyTooLarge { limit }
            } else {
                ApiError::UnreadableBody(error.to_string())
            }
        })?;
    Ok(collected.to_bytes())
}

/// `bytes` as a `T`: 400 if it is not JSON, 422 if it is but does not fit `T`. Every body is
/// a JSON object: serde would also read a struct from an array of its fields in order
/// (`["user-42","default",1]`), which no client means.
pub(crate) fn parse_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, ApiError> {
    let first = bytes.iter().find(|byte| !byte.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(
            match serde_json::from_slice::<serde::de::IgnoredAny>(bytes) {
                Ok(_) => ApiError::InvalidField("the body must be a JSON object".into()),
                Err(error) => ApiError::InvalidJson(error.to_string()),
            },
        );
    }
    serde_json::from_slice(bytes).map_err(|error| {
        if error.is_data() {
            ApiError::InvalidField(error.to_string())
        } else {
            ApiError::InvalidJson(error.to_string())
        }
    })
}

/// `application/json`, or any `application/*+json`, parameters ignored.
fn is_json(headers: &HeaderMap) -> bool {
    let Some(content_type) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = content_type.split(';').next().unwrap_or("").trim();
    let Some((kind, subtype)) = essence.split_once('/') else {
        return false;
    };
    let structured_json = subtype
        .len()
        .checked_sub(5)
        .and_then(|start| subtype.get(start..))
        .is_some_and(|suffix| suffix.eq_ignore_ascii_case("+json"));
    kind.eq_ignore_ascii_case("application")
        && (subtype.eq_ignore_ascii_case("json") || structured_json)
}
