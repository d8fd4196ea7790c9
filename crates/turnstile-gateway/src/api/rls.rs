//! Envoy's rate limit service on the wire: the gRPC names, the limits on one request, and the
//! proto3 JSON of `RateLimitRequest` / `RateLimitResponse` that `POST /v1/ratelimit` speaks
//! (envoyproxy/ratelimit's `/json` endpoint: 200 when OK, 429 when OVER_LIMIT).
//!
//! The gRPC transport uses `envoy-types`' generated messages; these JSON types are written by
//! hand because `envoy-types` has no serde support, and they follow the proto3 JSON mapping:
//! lowerCamelCase names (the proto names accepted too), enums by name, `uint64` as a number or
//! a string, `Duration` as `"1.5s"`.

use std::borrow::Cow;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The gRPC service Envoy calls (`ShouldRateLimit` is its one method).
pub const GRPC_SERVICE: &str = "envoy.service.ratelimit.v3.RateLimitService";

/// How the message of an `UNAVAILABLE` answer starts (a check was dropped); the drop reason
/// follows, then `)`. Clients read the reason from it (see [`unavailable_reason`]).
pub const UNAVAILABLE_PREFIX: &str = "the rate limiter could not decide (";

/// The drop reason in an `UNAVAILABLE` answer's message, if it is the gateway's.
pub fn unavailable_reason(message: &str) -> Option<&str> {
    message.strip_prefix(UNAVAILABLE_PREFIX)?.strip_suffix(')')
}

/// The most descriptors one request may carry.
pub const MAX_DESCRIPTORS: usize = 64;
/// The most entries one descriptor may carry.
pub const MAX_ENTRIES: usize = 32;
/// The longest domain, entry key or entry value, in bytes.
pub const MAX_TEXT_LEN: usize = 1024;

/// `RateLimitRequest`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitRequest<'a> {
    /// The rule domain.
    #[serde(borrow, default)]
    pub domain: Cow<'a, str>,
    /// What to limit on: each is checked.
    #[serde(borrow, default)]
    pub descriptors: Vec<RateLimitDescriptor<'a>>,
    /// The cost of this request (0 or absent: 1).
    #[serde(
        rename = "hitsAddend",
        alias = "hits_addend",
        default,
        deserialize_with = "proto_uint"
    )]
    pub hits_addend: u64,
}

/// `RateLimitDescriptor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitDescriptor<'a> {
    /// Its entries, outermost first.
    #[serde(borrow, default)]
    pub entries: Vec<Entry<'a>>,
    /// This descriptor's own cost, overriding the request's.
    #[serde(
        rename = "hitsAddend",
        alias = "hits_addend",
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_proto_uint"
    )]
    pub hits_addend: Option<u64>,
    /// A limit override (not supported: refused as invalid rather than silently ignored).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<serde_json::Value>,
    /// Refill instead of consume (not supported: refused as invalid).
    #[serde(
        rename = "isNegativeHits",
        alias = "is_negative_hits",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub is_negative_hits: bool,
}

/// One `key`/`value` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry<'a> {
    /// The descriptor key (`remote_address`, `generic_key`...).
    #[serde(borrow, default)]
    pub key: Cow<'a, str>,
    /// Its value.
    #[serde(borrow, default)]
    pub value: Cow<'a, str>,
}

/// `RateLimitResponse.Code`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Code {
    /// Under the limit (or not limited).
    #[serde(rename = "OK")]
    Ok,
    /// Over the limit.
    #[serde(rename = "OVER_LIMIT")]
    OverLimit,
}

/// `RateLimitResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimitResponse {
    /// OVER_LIMIT if any descriptor is.
    pub overall_code: Code,
    /// One per request descriptor, in order.
    pub statuses: Vec<DescriptorStatus>,
    /// `Retry-After` and the RateLimit headers when over the limit, for Envoy to pass on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_headers_to_add: Vec<HeaderValue>,
}

/// `RateLimitResponse.DescriptorStatus`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DescriptorStatus {
    /// This descriptor's code.
    pub code: Code,
    /// The rule's limit; absent when no rule (or an unlimited one) matched.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_limit: Option<RateLimit>,
    /// Requests that could still be made now.
    pub limit_remaining: u32,
    /// Until the limit is fully available again (`"1.5s"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_until_reset: Option<String>,
}

/// `RateLimitResponse.RateLimit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    /// The rule's `name` (absent when unnamed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// As configured (0 for a blocking rule).
    pub requests_per_unit: u32,
    /// `SECOND`, `MINUTE`, `HOUR`, `DAY`, `WEEK`, `MONTH` or `YEAR`.
    pub unit: Cow<'static, str>,
}

/// `config.core.v3.HeaderValue`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderValue {
    /// The header name.
    pub key: String,
    /// Its value.
    pub value: String,
}

/// A `google.protobuf.Duration` in proto3 JSON: seconds with 0, 3, 6 or 9 decimals, `s`.
pub fn duration_json(duration: Duration) -> String {
    let (secs, nanos) = (duration.as_secs(), duration.subsec_nanos());
    match nanos {
        0 => format!("{secs}s"),
        _ if nanos % 1_000_000 == 0 => format!("{secs}.{:03}s", nanos / 1_000_000),
        _ if nanos % 1_000 == 0 => format!("{secs}.{:06}s", nanos / 1_000),
        _ => format!("{secs}.{nanos:09}s"),
    }
}

/// A proto3 JSON unsigned integer: a number, or a string of digits.
#[derive(Deserialize)]
#[serde(untagged)]
enum ProtoUint<'a> {
    Number(u64),
    Text(#[serde(borrow)] Cow<'a, str>),
}

fn proto_uint<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u64, D::Error> {
    Ok(optional_proto_uint(deserializer)?.unwrap_or(0))
}

fn optional_proto_uint<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<u64>, D::Error> {
    match Option::<ProtoUint<'de>>::deserialize(deserializer)? {
        None => Ok(None),
        Some(ProtoUint::Number(number)) => Ok(Some(number)),
        Some(ProtoUint::Text(text)) => text
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom(format!("`{text}` is not an unsigned integer"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_follow_proto3_json() {
        assert_eq!(duration_json(Duration::ZERO), "0s");
        assert_eq!(duration_json(Duration::from_millis(1500)), "1.500s");
        assert_eq!(duration_json(Duration::from_micros(1)), "0.000001s");
        assert_eq!(
            duration_json(Duration::from_nanos(60_000_000_001)),
            "60.000000001s"
        );
    }

    #[test]
    fn requests_accept_proto_and_camel_names_and_string_integers() {
        let camel: RateLimitRequest<'_> = serde_json::from_str(
            r#"{"domain":"d","descriptors":[{"entries":[{"key":"k","value":"v"}],"hitsAddend":"3"}],"hitsAddend":2}"#,
        )
        .unwrap();
        let snake: RateLimitRequest<'_> = serde_json::from_str(
            r#"{"domain":"d","descriptors":[{"entries":[{"key":"k","value":"v"}],"hits_addend":3}],"hits_addend":"2"}"#,
        )
        .unwrap();
        assert_eq!(camel, snake);
        assert_eq!(camel.hits_addend, 2);
        assert_eq!(camel.descriptors[0].hits_addend, Some(3));
        assert!(serde_json::from_str::<RateLimitRequest<'_>>(r#"{"domian":"d"}"#).is_err());
    }
}
