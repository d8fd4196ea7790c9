//! Rate-limit response headers: `Retry-After` (RFC 9110), the IETF httpapi draft's
//! `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-09), and optionally
//! the older `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` trio that many
//! clients still read.
//!
//! A [`PolicyHeaders`] is made once per policy at start-up and held by whoever names the
//! policy; this module knows nothing of how policies are configured, so the dependency runs
//! one way (`policies` → `headers`).

use std::fmt::Write;
use std::time::Duration;

use arrayvec::ArrayString;
use axum::http::{HeaderMap, HeaderValue};
use turnstile_core::Decision;

use crate::api::{
    RATELIMIT_HEADER, RATELIMIT_LIMIT_HEADER, RATELIMIT_POLICY_HEADER, RATELIMIT_REMAINING_HEADER,
    RATELIMIT_RESET_HEADER,
};

/// Whole seconds, rounded up: a client told to wait 0.2 s must not retry after 0 s.
pub(crate) fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// What one policy's answers carry in their headers, computed once at start-up.
pub(crate) struct PolicyHeaders {
    /// The policy's name, quoted in `RateLimit`.
    name: String,
    /// The whole `RateLimit-Policy` value.
    policy: HeaderValue,
}

impl PolicyHeaders {
    /// The headers of the policy `name`, admitting `limit` per `period`.
    pub(crate) fn new(name: &str, limit: u32, period: Duration) -> Self {
        let value = format!(r#""{name}";q={limit};w={}"#, ceil_secs(period).max(1));
        Self {
            name: name.to_owned(),
            // Policy names are validated to letters, digits, '_' and '-': always a valid value.
            policy: HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("\"policy\"")),
        }
    }

    /// Adds the rate-limit headers for `decision` under this policy.
    pub(crate) fn insert(&self, headers: &mut HeaderMap, decision: &Decision, legacy: bool) {
        let reset = ceil_secs(decision.reset_after);
        headers.insert(RATELIMIT_POLICY_HEADER.clone(), self.policy.clone());
        let mut value = ArrayString::<128>::new();
        if write!(
            value,
            r#""{}";r={};t={}"#,
            self.name, decision.remaining, reset
        )
        .is_ok()
            && let Ok(value) = HeaderValue::from_str(&value)
        {
            headers.insert(RATELIMIT_HEADER.clone(), value);
        }
        if let Some(retry_after) = decision.retry_after {
            headers.insert(
                axum::http::header::RETRY_AFTER,
                number(ceil_secs(retry_after).max(1)),
            );
        }
        if legacy {
            headers.insert(
                RATELIMIT_LIMIT_HEADER.clone(),
                number(decision.limit.into()),
            );
            headers.insert(
                RATELIMIT_REMAINING_HEADER.clone(),
                number(decision.remaining.into()),
            );
            headers.insert(RATELIMIT_RESET_HEADER.clone(), number(reset));
        }
    }
}

fn number(value: u64) -> HeaderValue {
    HeaderValue::from(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::ZERO), 0);
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(2)), 2);
        assert_eq!(ceil_secs(Duration::from_millis(2001)), 3);
    }

    #[test]
    fn policy_header_follows_the_draft() {
        let value = PolicyHeaders::new("login", 5, Duration::from_secs(60)).policy;
        assert_eq!(value, r#""login";q=5;w=60"#);
        let value = PolicyHeaders::new("fast", 10, Duration::from_millis(100)).policy;
        assert_eq!(value, r#""fast";q=10;w=1"#);
    }
}
