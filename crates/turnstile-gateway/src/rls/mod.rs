//! Envoy's rate limit service (`envoy.service.ratelimit.v3.RateLimitService/ShouldRateLimit`):
//! a request's descriptors matched to envoyproxy/ratelimit rules and decided by the active
//! backend, over gRPC ([`grpc`]) and over HTTP/JSON (`POST /v1/ratelimit`, [`json`]).
//!
//! # Layout
//!
//! - this module: [`should_rate_limit`], the one decision both transports call, over the
//!   [`Descriptors`] view both request types give; [`Answer`], what it decided.
//! - `rules`: [`ActiveRules`], the loaded rule set with what the request path needs per rule
//!   (headers, counters), swapped whole on a reload.
//! - `grpc`: the tonic service and `grpc.health.v1`, on `rls.listen`.
//! - `json`: the `/v1/ratelimit` handler.
//!
//! # Semantics (envoyproxy/ratelimit's, where it has one)
//!
//! - Every descriptor of a request is checked, and each one under its limit is consumed even
//!   when another is over the limit (envoy's default). `overall_code` is OVER_LIMIT if any
//!   descriptor is.
//! - No rule (unknown domain, no match at the descriptor's depth, or a limit another matched
//!   rule `replaces`): OK, no current limit, the backend untouched. So is `unlimited`.
//!   `requests_per_unit: 0`: OVER_LIMIT, the backend untouched.
//! - The cost is the descriptor's `hits_addend`, else the request's; 0 counts as 1. A cost
//!   over the rule's burst is OVER_LIMIT (it could never be admitted).
//! - A check the backend drops fails the whole call (`UNAVAILABLE` / 503), counted in
//!   `turnstile_dropped_checks_total`, so Envoy's `failure_mode_deny` decides, never a silent OK.
//! - Shadow mode (a rule's `shadow_mode`, or `rls.shadow_mode`): decided, consumed and counted
//!   (`shadow_denied`), answered OK.
//!
//! # Invariants
//!
//! - A call sees one rule set from start to end: it holds the set it started with, so a reload
//!   in the middle never mixes old and new rules in one answer.
//! - Bad input changes no state: the whole request is validated before any check.
//! - Metric labels come from the configuration (domain, rule label), never from a request.

pub(crate) mod grpc;
mod incoming;
pub(crate) mod json;
mod rules;

use std::borrow::Cow;
use std::time::Duration;

use axum::http::HeaderMap;
use turnstile_backend::CheckError;
use turnstile_core::Decision;
use turnstile_rules::{Limit, Match, Unit};

pub(crate) use rules::ActiveRules;
pub use rules::RulesError;

use crate::api::rls::{MAX_DESCRIPTORS, MAX_ENTRIES, MAX_TEXT_LEN};
use crate::routes::run_check;
use crate::state::AppState;

/// A `ShouldRateLimit` request as either transport decodes it.
pub(crate) trait Descriptors {
    /// One descriptor's entries, `(key, value)`.
    type Entries<'a>: ExactSizeIterator<Item = (&'a str, &'a str)>
    where
        Self: 'a;

    fn domain(&self) -> &str;
    /// How many descriptors.
    fn len(&self) -> usize;
    fn entries(&self, descriptor: usize) -> Self::Entries<'_>;
    /// The descriptor's own `hits_addend`, if it has one.
    fn descriptor_hits(&self, descriptor: usize) -> Option<u64>;
    /// Whether the descriptor carries a limit override (not supported).
    fn has_limit_override(&self, descriptor: usize) -> bool;
    /// Whether the descriptor asks to refill rather than consume (not supported).
    fn has_negative_hits(&self, descriptor: usize) -> bool;
    /// The request's `hits_addend`.
    fn hits_addend(&self) -> u64;
}

/// Why a call got no answer.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RlsError {
    /// Bad input: gRPC `INVALID_ARGUMENT`, HTTP 400.
    #[error("`{field}` {problem}")]
    Invalid {
        field: String,
        problem: Cow<'static, str>,
    },
    /// A check was dropped: gRPC `UNAVAILABLE`, HTTP 503.
    #[error("{}{})", crate::api::rls::UNAVAILABLE_PREFIX, .0.reason())]
    Unavailable(CheckError),
}

impl RlsError {
    fn invalid(field: impl Into<String>, problem: impl Into<Cow<'static, str>>) -> Self {
        Self::Invalid {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

/// What a call decided.
#[derive(Debug)]
pub(crate) struct Answer {
    pub(crate) over_limit: bool,
    /// One per request descriptor, in order.
    pub(crate) statuses: Vec<Status>,
    /// When over the limit: `Retry-After` and the RateLimit headers of the descriptor that
    /// waits longest.
    pub(crate) headers: HeaderMap,
}

/// One descriptor's answer.
#[derive(Debug)]
pub(crate) struct Status {
    pub(crate) over_limit: bool,
    /// `(requests_per_unit, unit, name)` of the rule; `None` when no rule limits it.
    pub(crate) limit: Option<(u32, Unit, String)>,
    pub(crate) remaining: u32,
    pub(crate) reset_after: Option<Duration>,
}

impl Status {
    /// No rule, or an unlimited one.
    fn unlimited() -> Self {
        Self {
            over_limit: false,
            limit: None,
            remaining: u32::MAX,
            reset_after: None,
        }
    }
}

/// Checks the whole request before anything is decided.
fn validate(request: &impl Descriptors) -> Result<(), RlsError> {
    let text = |field: String, text: &str, empty_ok: bool| {
        if text.is_empty() && !empty_ok {
            return Err(RlsError::invalid(field, "must not be empty"));
        }
        if text.len() > MAX_TEXT_LEN {
            return Err(RlsError::invalid(
                field,
                format!("is {} bytes; the maximum is {MAX_TEXT_LEN}", text.len()),
            ));
        }
        Ok(())
    };
    text("domain".into(), request.domain(), false)?;
    let count = request.len();
    if count == 0 {
        return Err(RlsError::invalid("descriptors", "must not be empty"));
    }
    if count > MAX_DESCRIPTORS {
        return Err(RlsError::invalid(
            "descriptors",
            format!("has {count} descriptors; the maximum is {MAX_DESCRIPTORS}"),
        ));
    }
    cost(request.hits_addend()).map_err(|problem| RlsError::invalid("hits_addend", problem))?;
    for descriptor in 0..count {
        let entries = request.entries(descriptor);
        let field = |rest: &str| format!("descriptors[{descriptor}].{rest}");
        if entries.len() == 0 {
            return Err(RlsError::invalid(field("entries"), "must not be empty"));
        }
        if entries.len() > MAX_ENTRIES {
            return Err(RlsError::invalid(
                field("entries"),
                format!(
                    "has {} entries; the maximum is {MAX_ENTRIES}",
                    entries.len()
                ),
            ));
        }
        for (position, (key, value)) in entries.enumerate() {
            text(field(&format!("entries[{position}].key")), key, false)?;
            text(field(&format!("entries[{position}].value")), value, true)?;
        }
        if let Some(hits) = request.descriptor_hits(descriptor) {
            cost(hits).map_err(|problem| RlsError::invalid(field("hits_addend"), problem))?;
        }
        for (asked, unsupported) in [
            (request.has_limit_override(descriptor), "limit"),
            (request.has_negative_hits(descriptor), "is_negative_hits"),
        ] {
            if asked {
                return Err(RlsError::invalid(
                    field(unsupported),
                    "is not supported by Turnstile (configure the limit in the rule files)",
                ));
            }
        }
    }
    Ok(())
}

/// A `hits_addend` as a cost: 0 counts as 1 (envoy's rule), and it must fit a `u32`.
fn cost(hits: u64) -> Result<u32, &'static str> {
    u32::try_from(hits.max(1)).map_err(|_| "is over 4294967295")
}

/// Decides a `ShouldRateLimit` call on the active rules and backend.
pub(crate) async fn should_rate_limit(
    state: &AppState,
    request: &impl Descriptors,
) -> Result<Answer, RlsError> {
    validate(request)?;
    // Held to the end of the call: a reload meanwhile does not touch this answer.
    let rules = state.rules();
    let domain = request.domain();
    let count = request.len();
    let mut matches: Vec<Option<Match<'_>>> = (0..count)
        .map(|descriptor| rules.set.find(domain, request.entries(descriptor)))
        .collect();
    drop_replaced(&mut matches);
    let shadow_everything = state.rls_shadow_mode;
    let mut statuses = Vec::with_capacity(count);
    let mut longest_wait: Option<(usize, Decision)> = None;
    for (descriptor, found) in matches.iter().enumerate() {
        let Some(found) = found else {
            rules.count_unmatched(domain);
            statuses.push(Status::unlimited());
            continue;
        };
        let rule = found.rule;
        let counters = rules.counters(rule);
        let decision = match &rule.limit {
            Limit::Unlimited => {
                counters.unlimited.inc();
                statuses.push(Status::unlimited());
                continue;
            }
            Limit::Blocked { unit } => Decision {
                allowed: false,
                limit: 0,
                remaining: 0,
                reset_after: unit.duration(),
                retry_after: None,
            },
            Limit::Limited { policy, .. } => {
                // Validated above, so this cannot fail; answered as OK at cost 1 if it did.
                let cost = cost(
                    request
                        .descriptor_hits(descriptor)
                        .unwrap_or(request.hits_addend()),
                )
                .unwrap_or(1);
                match run_check(state, found.key.as_str(), policy, cost).await.1 {
                    Ok(decision) => decision,
                    // More than the burst at once can never be admitted: over the limit.
                    Err(CheckError::CostExceedsBurst(_)) => Decision {
                        allowed: false,
                        limit: policy.limit(),
                        remaining: 0,
                        reset_after: Duration::ZERO,
                        retry_after: None,
                    },
                    Err(error) => return Err(RlsError::Unavailable(error)),
                }
            }
        };
        let shadowed = !decision.allowed && (rule.shadow_mode || shadow_everything);
        if decision.allowed {
            counters.ok.inc();
        } else if shadowed {
            counters.shadow_denied.inc();
        } else {
            counters.over_limit.inc();
            let waits_longer = longest_wait
                .as_ref()
                .is_none_or(|(_, longest)| decision.retry_after > longest.retry_after);
            if waits_longer {
                longest_wait = Some((rule.index, decision));
            }
        }
        statuses.push(Status {
            over_limit: !decision.allowed && !shadowed,
            limit: rule
                .current_limit()
                .map(|(requests_per_unit, unit)| (requests_per_unit, unit, rule.name.clone())),
            remaining: decision.remaining,
            reset_after: Some(decision.reset_after),
        });
    }
    let mut headers = HeaderMap::new();
    if let Some((rule, decision)) = longest_wait {
        rules.insert_headers(
            rule,
            &mut headers,
            &decision,
            state.legacy_ratelimit_headers,
        );
    }
    Ok(Answer {
        over_limit: statuses.iter().any(|status| status.over_limit),
        statuses,
        headers,
    })
}

/// Removes the matches whose limit another match of the same request `replaces`
/// (envoyproxy/ratelimit's `replaces`: a specific limit standing in for a general one).
fn drop_replaced(matches: &mut [Option<Match<'_>>]) {
    if !matches
        .iter()
        .flatten()
        .any(|found| !found.rule.replaces.is_empty())
    {
        return;
    }
    let replaced: Vec<&str> = matches
        .iter()
        .flatten()
        .flat_map(|found| {
            let rule = found.rule;
            rule.replaces.iter().map(String::as_str)
        })
        .collect();
    for slot in matches.iter_mut() {
        if slot.as_ref().is_some_and(|found| {
            !found.rule.name.is_empty() && replaced.contains(&found.rule.name.as_str())
        }) {
            *slot = None;
        }
    }
}
