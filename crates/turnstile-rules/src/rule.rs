//! What a matched descriptor is limited by.

use std::time::Duration;

use arrayvec::ArrayString;
use turnstile_core::Policy;

/// A rate limit's unit of time: envoyproxy/ratelimit's units (the `Unit` enum of
/// `RateLimitResponse.RateLimit`), with its lengths (a month is 30 days, a year 365).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// One second.
    Second,
    /// 60 seconds.
    Minute,
    /// 3600 seconds.
    Hour,
    /// 86400 seconds.
    Day,
    /// 7 days.
    Week,
    /// 30 days.
    Month,
    /// 365 days.
    Year,
}

impl Unit {
    /// Every unit, in proto enum order of length.
    pub const ALL: [Unit; 7] = [
        Unit::Second,
        Unit::Minute,
        Unit::Hour,
        Unit::Day,
        Unit::Week,
        Unit::Month,
        Unit::Year,
    ];

    /// The unit a file names, case-insensitively (`minute`, `MINUTE`), as envoyproxy/ratelimit
    /// reads it.
    pub fn parse(name: &str) -> Option<Unit> {
        Unit::ALL
            .into_iter()
            .find(|unit| unit.proto_name().eq_ignore_ascii_case(name))
    }

    /// The proto enum name (`SECOND`...), which is also the proto3 JSON form.
    pub fn proto_name(self) -> &'static str {
        match self {
            Unit::Second => "SECOND",
            Unit::Minute => "MINUTE",
            Unit::Hour => "HOUR",
            Unit::Day => "DAY",
            Unit::Week => "WEEK",
            Unit::Month => "MONTH",
            Unit::Year => "YEAR",
        }
    }

    /// How long one unit is.
    pub fn duration(self) -> Duration {
        const DAY: u64 = 86_400;
        Duration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3600,
            Unit::Day => DAY,
            Unit::Week => 7 * DAY,
            Unit::Month => 30 * DAY,
            Unit::Year => 365 * DAY,
        })
    }
}

/// What a rule does to the descriptors it matches.
#[derive(Debug, Clone, PartialEq)]
pub enum Limit {
    /// `unlimited: true`: always OK, without touching the backend.
    Unlimited,
    /// `requests_per_unit: 0`: always OVER_LIMIT (the blocking idiom), without touching the
    /// backend.
    Blocked {
        /// The configured unit (reported back as the current limit's unit).
        unit: Unit,
    },
    /// `requests_per_unit` per `unit × unit_multiplier`, decided by GCRA.
    Limited {
        /// As configured.
        requests_per_unit: u32,
        /// As configured.
        unit: Unit,
        /// The GCRA policy: limit `requests_per_unit` per `unit × unit_multiplier`, burst as
        /// configured (default `requests_per_unit`), in [`Policy::RULES_KEYSPACE`].
        policy: Policy,
    },
}

/// One descriptor of a rule file that carries a `rate_limit`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in its [`RuleSet`](crate::RuleSet), so callers can keep per-rule data in a
    /// vector beside it.
    pub index: usize,
    /// The domain it belongs to.
    pub domain: String,
    /// envoyproxy/ratelimit's full key of the descriptor: `domain.key_value.key...`. From the
    /// configuration only, so a bounded metric label.
    pub label: String,
    /// `rate_limit.name` (empty when unnamed): reported as the current limit's name, and what
    /// `replaces` refers to.
    pub name: String,
    /// What it does.
    pub limit: Limit,
    /// Decided and counted, but always answered OK.
    pub shadow_mode: bool,
    /// Names of the limits this one replaces when both match one request.
    pub replaces: Vec<String>,
    /// A short signature of the limit, part of every key of this rule: a reload that changes
    /// the limit starts its counters afresh, one that keeps it keeps them.
    pub(crate) state_tag: ArrayString<48>,
}

impl Rule {
    /// `(requests_per_unit, unit)` to report as the current limit; `None` when unlimited.
    pub fn current_limit(&self) -> Option<(u32, Unit)> {
        match &self.limit {
            Limit::Unlimited => None,
            Limit::Blocked { unit } => Some((0, *unit)),
            Limit::Limited {
                requests_per_unit,
                unit,
                ..
            } => Some((*requests_per_unit, *unit)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_parse_case_insensitively_and_only_by_proto_name() {
        for unit in Unit::ALL {
            assert_eq!(Unit::parse(unit.proto_name()), Some(unit));
            assert_eq!(
                Unit::parse(&unit.proto_name().to_ascii_lowercase()),
                Some(unit)
            );
        }
        assert_eq!(Unit::parse("minutes"), None);
        assert_eq!(Unit::parse("UNKNOWN"), None);
        assert_eq!(Unit::parse(""), None);
        assert_eq!(Unit::Month.duration(), Duration::from_secs(30 * 86_400));
    }
}
