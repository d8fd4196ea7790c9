//! `POST /v1/ratelimit`: `ShouldRateLimit` in proto3 JSON, answered 200 when OK and 429 when
//! OVER_LIMIT (envoyproxy/ratelimit's `/json`), 400 for bad input, 503 when a check is dropped.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::api::rls::{
    Code, DescriptorStatus, Entry, HeaderValue, RateLimit, RateLimitRequest, RateLimitResponse,
    duration_json,
};
use crate::error::ApiError;
use crate::extract::{parse_json, read_json};
use crate::json_body::JsonLine;
use crate::metrics::{RlsCode, Transport};
use crate::rls::{Answer, Descriptors, RlsError, should_rate_limit};
use crate::state::AppState;

type EntryPairs<'e> =
    std::iter::Map<std::slice::Iter<'e, Entry<'e>>, fn(&'e Entry<'e>) -> (&'e str, &'e str)>;

fn pair<'e>(entry: &'e Entry<'e>) -> (&'e str, &'e str) {
    (&entry.key, &entry.value)
}

impl<'a> Descriptors for RateLimitRequest<'a> {
    type Entries<'e>
        = EntryPairs<'e>
    where
        Self: 'e;

    fn domain(&self) -> &str {
        &self.domain
    }

    fn len(&self) -> usize {
        self.descriptors.len()
    }

    fn entries<'e>(&'e self, descriptor: usize) -> Self::Entries<'e> {
        let entries: &'e [Entry<'e>] = self
            .descriptors
            .get(descriptor)
            .map_or(&[], |descriptor| &descriptor.entries);
        entries.iter().map(pair as fn(_) -> _)
    }

    fn descriptor_hits(&self, descriptor: usize) -> Option<u64> {
        self.descriptors.get(descriptor)?.hits_addend
    }

    fn has_limit_override(&self, descriptor: usize) -> bool {
        self.descriptors
            .get(descriptor)
            .is_some_and(|descriptor| descriptor.limit.is_some())
    }

    fn has_negative_hits(&self, descriptor: usize) -> bool {
        self.descriptors
            .get(descriptor)
            .is_some_and(|descriptor| descriptor.is_negative_hits)
    }

    fn hits_addend(&self) -> u64 {
        self.hits_addend
    }
}

impl From<RlsError> for ApiError {
    fn from(error: RlsError) -> Self {
        match error {
            RlsError::Invalid { .. } => ApiError::InvalidArgument(error.to_string()),
            RlsError::Unavailable(error) => ApiError::Dropped(error),
        }
    }
}

/// The proto3 JSON of an [`Answer`].
pub(crate) fn response_json(answer: &Answer) -> RateLimitResponse {
    let code = |over_limit| {
        if over_limit {
            Code::OverLimit
        } else {
            Code::Ok
        }
    };
    RateLimitResponse {
        overall_code: code(answer.over_limit),
        statuses: answer
            .statuses
            .iter()
            .map(|status| DescriptorStatus {
                code: code(status.over_limit),
                current_limit: status
                    .limit
                    .as_ref()
                    .map(|(requests_per_unit, unit, name)| RateLimit {
                        name: name.clone(),
                        requests_per_unit: *requests_per_unit,
                        unit: unit.proto_name().into(),
                    }),
                limit_remaining: status.remaining,
                duration_until_reset: status.reset_after.map(duration_json),
            })
            .collect(),
        response_headers_to_add: answer
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some(HeaderValue {
                    key: name.as_str().to_owned(),
                    value: value.to_str().ok()?.to_owned(),
                })
            })
            .collect(),
    }
}

/// `POST /v1/ratelimit`.
pub(crate) async fn rate_limit(State(state): State<Arc<AppState>>, request: Request) -> Response {
    let started = Instant::now();
    let result = answer(&state, request).await;
    let code = match &result {
        Ok((code, _)) => *code,
        Err(ApiError::Dropped(_)) => RlsCode::Unavailable,
        Err(_) => RlsCode::InvalidArgument,
    };
    state
        .metrics
        .record_rls(Transport::Http, code, started.elapsed());
    match result {
        Ok((_, response)) => response,
        Err(error) => error.into_response(),
    }
}

async fn answer(state: &Arc<AppState>, request: Request) -> Result<(RlsCode, Response), ApiError> {
    let (parts, body) = request.into_parts();
    let body = read_json(&parts.headers, body, state).await?;
    // Only now, with the whole body here, does the request take a place among those in flight.
    let _in_flight = crate::edge::Slot::take_after_body(state)?;
    let request: RateLimitRequest<'_> = parse_json(&body)?;
    let answer = should_rate_limit(state, &request).await?;
    let (code, status) = if answer.over_limit {
        (RlsCode::OverLimit, StatusCode::TOO_MANY_REQUESTS)
    } else {
        (RlsCode::Ok, StatusCode::OK)
    };
    let body = response_json(&answer);
    let mut response = (status, JsonLine(body)).into_response();
    response.headers_mut().extend(answer.headers);
    Ok((code, response))
}
