//! Policies and the GCRA decision itself.

use std::time::Duration;

use crate::decision::{Decision, Verdict};

/// A key's stored state: its theoretical arrival time in clock nanoseconds; `0` means absent.
pub type State = u64;

/// Whether `state` is expired at `now_ns`, and so indistinguishable from an absent key.
///
/// Backends use this to decide which keys they may drop.
#[inline]
pub fn is_expired(state: State, now_ns: u64) -> bool {
    state <= now_ns
}

/// Why a policy's numbers were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// `limit` was zero.
    #[error("limit must be at least 1")]
    ZeroLimit,
    /// `burst` was zero.
    #[error("burst must be at least 1")]
    ZeroBurst,
    /// `period` was zero.
    #[error("period must be greater than zero")]
    ZeroPeriod,
    /// The period divided by the limit is under one nanosecond.
    #[error(
        "period {period:?} is too short for a limit of {limit}: the emission interval would be under 1 ns"
    )]
    RateTooHigh {
        /// The configured period.
        period: Duration,
        /// The configured limit.
        limit: u32,
    },
    /// `burst × period / limit` does not fit the clock's range.
    #[error("burst × period / limit is too long to represent (over ~584 years)")]
    ToleranceOverflow,
}

/// A check whose cost can never be admitted by its policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("cost {cost} exceeds the policy's burst of {burst}: it could never be admitted")]
pub struct CostExceedsBurst {
    /// The requested cost.
    pub cost: u32,
    /// The policy's burst.
    pub burst: u32,
}

/// A validated rate-limit policy: `limit` requests per `period`, at most `burst` at once.
///
/// `id` names the policy's keyspace: the same key checked under two policies has two independent
/// states. Backends store state per `(id, key)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    id: u16,
    limit: u32,
    burst: u32,
    period: Duration,
    /// `T = period / limit`, truncated to whole nanoseconds (so a policy may admit up to
    /// `limit` requests per `period` plus a sub-nanosecond rounding surplus, never fewer).
    emission_ns: u64,
    /// `τ = burst × T`.
    tolerance_ns: u64,
}

impl Policy {
    /// The keyspace reserved for descriptor rules (Envoy's rate limit service, route rules):
    /// every rule's state lives under this id, its key naming the domain, the rule and the
    /// descriptor, so named policies (ids `0..RULES_KEYSPACE`) never share state with a rule.
    pub const RULES_KEYSPACE: u16 = u16::MAX;

    /// Validates and precomputes a policy.
    pub fn new(id: u16, limit: u32, period: Duration, burst: u32) -> Result<Self, PolicyError> {
        if limit == 0 {
            return Err(PolicyError::ZeroLimit);
        }
        if burst == 0 {
            return Err(PolicyError::ZeroBurst);
        }
        if period.is_zero() {
            return Err(PolicyError::ZeroPeriod);
        }
        let emission = period.as_nanos() / u128::from(limit);
        if emission == 0 {
            return Err(PolicyError::RateTooHigh { period, limit });
        }
        let emission_ns = u64::try_from(emission).map_err(|_| PolicyError::ToleranceOverflow)?;
        let tolerance_ns = emission_ns
            .checked_mul(u64::from(burst))
            // Keep headroom so `now + τ` cannot overflow for any realistic uptime.
            .filter(|t| *t < u64::MAX / 4)
            .ok_or(PolicyError::ToleranceOverflow)?;
        Ok(Self {
            id,
            limit,
            burst,
            period,
            emission_ns,
            tolerance_ns,
        })
    }

    /// The keyspace this policy's states live in.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Requests admitted per period, sustained.
    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Requests admitted at once from idle.
    pub fn burst(&self) -> u32 {
        self.burst
    }

    /// The period `limit` applies to.
    pub fn period(&self) -> Duration {
        self.period
    }

    /// The emission interval `T`: the time one unit of cost takes to refill.
    pub fn emission_interval(&self) -> Duration {
        Duration::from_nanos(self.emission_ns)
    }

    /// Decides a check of `cost` units for a key whose stored state is `state`, at `now_ns`.
    ///
    /// Pure: the caller stores [`Verdict::new_state`] if it is `Some`, and must do so atomically
    /// with respect to the `state` it read (a compare-and-swap, or exclusive ownership).
    pub fn check(&self, state: State, now_ns: u64, cost: u32) -> Result<Verdict, CostExceedsBurst> {
        if cost > self.burst {
            return Err(CostExceedsBurst {
                cost,
                burst: self.burst,
            });
        }
        // An expired state is an absent key: the burst is fully available from `now`.
        let base = state.max(now_ns);
        // A peek (cost 0) is answered as a cost-1 request would be, without consuming.
        let units = u64::from(cost.max(1));
        let pushed = base.saturating_add(self.emission_ns.saturating_mul(units));
        let allow_at = pushed.saturating_sub(self.tolerance_ns);
        let allowed = allow_at <= now_ns;

        let (state_after, new_state) = if allowed && cost > 0 {
            (pushed, Some(pushed))
        } else {
            (base, None)
        };
        let headroom = now_ns
            .saturating_add(self.tolerance_ns)
            .saturating_sub(state_after);
        let remaining = u32::try_from(headroom / self.emission_ns).unwrap_or(u32::MAX);

        Ok(Verdict {
            decision: Decision {
                allowed,
                limit: self.limit,
                remaining: remaining.min(self.burst),
                reset_after: Duration::from_nanos(state_after - now_ns),
                retry_after: (!allowed).then(|| Duration::from_nanos(allow_at - now_ns)),
            },
            new_state,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MS: u64 = 1_000_000;

    fn example() -> Policy {
        // The crate docs' worked example: 10 per second, burst 5.
        Policy::new(0, 10, Duration::from_secs(1), 5).unwrap()
    }

    /// Applies a check to `state` the way a backend would.
    fn apply(policy: &Policy, state: &mut State, now_ns: u64, cost: u32) -> Decision {
        let verdict = policy.check(*state, now_ns, cost).unwrap();
        if let Some(new_state) = verdict.new_state {
            *state = new_state;
        }
        verdict.decision
    }

    #[test]
    fn worked_example_from_the_crate_docs() {
        let policy = example();
        let mut tat = 0;
        for expected_remaining in (0..5).rev() {
            let d = apply(&policy, &mut tat, 0, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, expected_remaining);
            assert_eq!(d.retry_after, None);
            assert_eq!(d.limit, 10);
        }
        assert_eq!(tat, 500 * MS);

        let sixth = apply(&policy, &mut tat, 0, 1);
        assert!(!sixth.allowed);
        assert_eq!(sixth.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(sixth.reset_after, Duration::from_millis(500));
        assert_eq!(tat, 500 * MS, "a denial never changes state");

        let seventh = apply(&policy, &mut tat, 100 * MS, 1);
        assert!(seventh.allowed);
        assert_eq!(seventh.remaining, 0);
        assert_eq!(tat, 600 * MS);

        let eighth = apply(&policy, &mut tat, 150 * MS, 1);
        assert!(!eighth.allowed);
        assert_eq!(eighth.retry_after, Some(Duration::from_millis(50)));

        let later = apply(&policy, &mut tat, 1000 * MS, 1);
        assert!(later.allowed);
        assert_eq!(later.remaining, 4);
        assert_eq!(later.reset_after, Duration::from_millis(100));
        assert_eq!(tat, 1100 * MS);
    }

    #[test]
    fn a_greedy_client_gets_burst_plus_limit_in_its_first_second() {
        let policy = example();
        let mut tat = 0;
        // Ask every millisecond for one second (inclusive of both ends).
        let admitted = (0..=1000)
            .filter(|ms| apply(&policy, &mut tat, ms * MS, 1).allowed)
            .count();
        assert_eq!(admitted, 15);
        // And exactly `limit` in each following second.
        let admitted = (1001..=2000)
            .filter(|ms| apply(&policy, &mut tat, ms * MS, 1).allowed)
            .count();
        assert_eq!(admitted, 10);
    }

    #[test]
    fn cost_consumes_several_units_at_once_and_may_not_exceed_burst() {
        let policy = example();
        let mut tat = 0;
        let d = apply(&policy, &mut tat, 0, 3);
        assert!(d.allowed);
        assert_eq!(d.remaining, 2);
        let d = apply(&policy, &mut tat, 0, 3);
        assert!(!d.allowed, "only 2 units left");
        assert_eq!(d.remaining, 2, "a denial reports what is still there");
        assert_eq!(d.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(
            policy.check(tat, 0, 6),
            Err(CostExceedsBurst { cost: 6, burst: 5 })
        );
    }

    #[test]
    fn peek_answers_like_cost_one_and_never_consumes() {
        let policy = example();
        let mut tat = 0;
        let peek = policy.check(tat, 0, 0).unwrap();
        assert!(peek.decision.allowed);
        assert_eq!(peek.decision.remaining, 5);
        assert_eq!(peek.new_state, None);
        for _ in 0..5 {
            apply(&policy, &mut tat, 0, 1);
        }
        let peek = policy.check(tat, 0, 0).unwrap();
        assert!(!peek.decision.allowed);
        assert_eq!(peek.decision.retry_after, Some(Duration::from_millis(100)));
        assert_eq!(peek.new_state, None);
    }

    #[test]
    fn invalid_policies_are_refused_with_the_reason() {
        let second = Duration::from_secs(1);
        assert_eq!(Policy::new(0, 0, second, 1), Err(PolicyError::ZeroLimit));
        assert_eq!(Policy::new(0, 1, second, 0), Err(PolicyError::ZeroBurst));
        assert_eq!(
            Policy::new(0, 1, Duration::ZERO, 1),
            Err(PolicyError::ZeroPeriod)
        );
        assert!(matches!(
            Policy::new(0, 10, Duration::from_nanos(5), 1),
            Err(PolicyError::RateTooHigh { .. })
        ));
        assert_eq!(
            Policy::new(0, 1, Duration::from_secs(u64::MAX / 2), u32::MAX),
            Err(PolicyError::ToleranceOverflow)
        );
    }

    proptest! {
        /// The defining property: an expired state decides exactly like an absent one.
        #[test]
        fn expired_state_equals_absent(
            limit in 1u32..1000, burst in 1u32..100, period_ms in 1u64..10_000,
            state in 0u64..1_000_000_000_000, ahead in 0u64..1_000_000_000_000, cost in 0u32..100,
        ) {
            let policy = Policy::new(0, limit, Duration::from_millis(period_ms), burst).unwrap();
            let now = state + ahead;
            prop_assume!(is_expired(state, now));
            prop_assert_eq!(policy.check(state, now, cost), policy.check(0, now, cost));
        }

        /// Over any window, admitted units never exceed burst + window / T (+1 for the boundary).
        #[test]
        fn admitted_never_exceeds_burst_plus_rate(
            limit in 1u32..100, burst in 1u32..20, period_ms in 10u64..2_000,
            steps in proptest::collection::vec((0u64..50_000_000, 0u32..4), 1..200),
        ) {
            let policy = Policy::new(0, limit, Duration::from_millis(period_ms), burst).unwrap();
            let mut tat = 0;
            let mut now = 0;
            let mut admitted = 0u64;
            for (dt, cost) in steps {
                now += dt;
                if let Ok(v) = policy.check(tat, now, cost) {
                    if v.decision.allowed { admitted += u64::from(cost); }
                    if let Some(s) = v.new_state { tat = s; }
                }
            }
            let t = policy.emission_interval().as_nanos() as u64;
            prop_assert!(admitted <= u64::from(burst) + now / t + 1);
        }
    }
}
