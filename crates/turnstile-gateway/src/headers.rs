//! Rate-limit response headers: `Retry-After` (RFC 9110), the IETF httpapi draft's
//! `RateLimit-Policy` and `RateLimit` (draft-ietf-httpapi-ratelimit-headers-09), and optionally
//! the older `RateLimit-Limit` / `RateLimit-Remaining` / `RateLimit-Reset` trio that many
//! clients still read.

use std::fmt::Write;
use std::time::Duration;

use arrayvec::ArrayString;
use axum::http::{HeaderMap, HeaderName, HeaderValue};
use turnstile_core::Decision;

use crate::policies::NamedPolicy;

static RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
static RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
static RATELIMIT_LIMIT: HeaderName = HeaderName::from_static("ratelimit-limit");
static RATELIMIT_REMAINING: HeaderName = HeaderName::from_static("ratelimit-remaining");
static RATELIMIT_RESET: HeaderName = HeaderName::from_static("ratelimit-reset");

/// Whole seconds, rounded up: a client told to wait 0.2 s must not retry after 0 s.
pub(crate) fn ceil_secs(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The `RateLimit-Policy` value for a policy, computed once at start-up.
pub(crate) fn policy_header(name: &str, limit: u32, period: Duration) -> HeaderValue {
    let value = format!(r#""{name}";q={limit};w={}"#, ceil_secs(period).max(1));
    // Policy names are validated to letters, digits, '_' and '-': always a valid value.
    HeaderValue::from_str(&value).unwrap_or(HeaderValue::from_static("\"policy\""))
}

fn number(value: u64) -> HeaderValue {
    HeaderValue::from(value)
}

/// Adds the rate-limit headers for `decision` under `policy`.
pub(crate) fn insert(
    headers: &mut HeaderMap,
    policy: &NamedPolicy,
    decision: &Decision,
    legacy: bool,
) {
    let reset = ceil_secs(decision.reset_after);
    headers.insert(RATELIMIT_POLICY.clone(), policy.policy_header.clone());
    let mut value = ArrayString::<128>::new();
    if write!(
        value,
        r#""{}";r={};t={}"#,
        policy.name, decision.remaining, reset
    )
    .is_ok()
        && let Ok(value) = HeaderValue::from_str(&value)
    {
        headers.insert(RATELIMIT.clone(), value);
    }
    if let Some(retry_after) = decision.retry_after {
        headers.insert(
            axum::http::header::RETRY_AFTER,
            number(ceil_secs(retry_after).max(1)),
        );
    }
    if legacy {
        headers.insert(RATELIMIT_LIMIT.clone(), number(decision.limit.into()));
        headers.insert(
            RATELIMIT_REMAINING.clone(),
            number(decision.remaining.into()),
        );
        headers.insert(RATELIMIT_RESET.clone(), number(reset));
    }
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
        let value = policy_header("login", 5, Duration::from_secs(60));
        assert_eq!(value, r#""login";q=5;w=60"#);
        let value = policy_header("fast", 10, Duration::from_millis(100));
        assert_eq!(value, r#""fast";q=10;w=1"#);
    }
}
