//! Prometheus metrics. Labels are bounded: backend, policy (from configuration), result,
//! outcome, reason. A key or an IP is never a label value.
//!
//! Every series touched on the request path is resolved once at start-up, so recording is an
//! atomic add, not a label lookup.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};
use turnstile_backend::BackendKind;

/// Check latencies span ~1 µs (the concurrent map) to seconds (a backlogged actor, timeouts).
const CHECK_BUCKETS_SECONDS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The gateway's metrics, in their own registry (so tests can run many gateways at once).
pub struct Metrics {
    registry: Registry,
    backend: &'static str,
    decisions: IntCounterVec,
    dropped: IntCounterVec,
    keys_tracked: IntGauge,
    check_allowed: Histogram,
    check_limited: Histogram,
    check_dropped: Histogram,
    check_invalid: Histogram,
}

/// The two decision counters of one policy, resolved at start-up.
#[derive(Clone)]
pub(crate) struct PolicyCounters {
    allowed: IntCounter,
    limited: IntCounter,
}

/// What became of a check, for the latency histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CheckOutcome {
    Allowed,
    Limited,
    Dropped,
    Invalid,
}

impl Metrics {
    /// Creates and registers every metric for a gateway running `backend`.
    pub fn new(backend: BackendKind) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let backend = backend.as_str();
        let decisions = IntCounterVec::new(
            Opts::new(
                "turnstile_decisions_total",
                "Rate-limit decisions made, by backend, policy and result (allowed or limited).",
            ),
            &["backend", "policy", "result"],
        )?;
        let dropped = IntCounterVec::new(
            Opts::new(
                "turnstile_dropped_checks_total",
                "Checks the backend did not decide, by backend and reason.",
            ),
            &["backend", "reason"],
        )?;
        let check_duration = HistogramVec::new(
            HistogramOpts::new(
                "turnstile_check_duration_seconds",
                "Time from handing a check to the backend to its answer, by backend and outcome.",
            )
            .buckets(CHECK_BUCKETS_SECONDS.to_vec()),
            &["backend", "outcome"],
        )?;
        let keys_tracked = IntGaugeVec::new(
            Opts::new(
                "turnstile_keys_tracked",
                "Keys currently held by the backend.",
            ),
            &["backend"],
        )?;
        let build_info = IntGaugeVec::new(
            Opts::new(
                "turnstile_build_info",
                "Always 1; labels carry the version and the running backend.",
            ),
            &["version", "backend"],
        )?;
        registry.register(Box::new(decisions.clone()))?;
        registry.register(Box::new(dropped.clone()))?;
        registry.register(Box::new(check_duration.clone()))?;
        registry.register(Box::new(keys_tracked.clone()))?;
        registry.register(Box::new(build_info.clone()))?;
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), backend])
            .set(1);
        Ok(Self {
            registry,
            backend,
            keys_tracked: keys_tracked.with_label_values(&[backend]),
            check_allowed: check_duration.with_label_values(&[backend, "allowed"]),
            check_limited: check_duration.with_label_values(&[backend, "limited"]),
            check_dropped: check_duration.with_label_values(&[backend, "dropped"]),
            check_invalid: check_duration.with_label_values(&[backend, "invalid"]),
            decisions,
            dropped,
        })
    }

    /// The counters for one policy (called once per policy at start-up).
    pub(crate) fn policy_counters(&self, policy: &str) -> PolicyCounters {
        PolicyCounters {
            allowed: self
                .decisions
                .with_label_values(&[self.backend, policy, "allowed"]),
            limited: self
                .decisions
                .with_label_values(&[self.backend, policy, "limited"]),
        }
    }

    pub(crate) fn record_check(&self, outcome: CheckOutcome, elapsed: Duration) {
        let histogram = match outcome {
            CheckOutcome::Allowed => &self.check_allowed,
            CheckOutcome::Limited => &self.check_limited,
            CheckOutcome::Dropped => &self.check_dropped,
            CheckOutcome::Invalid => &self.check_invalid,
        };
        histogram.observe(elapsed.as_secs_f64());
    }

    pub(crate) fn record_decision(counters: &PolicyCounters, allowed: bool) {
        if allowed {
            counters.allowed.inc();
        } else {
            counters.limited.inc();
        }
    }

    /// Counts a dropped check; `reason` is one of the backend's bounded reasons.
    pub(crate) fn record_drop(&self, reason: &'static str) {
        self.dropped
            .with_label_values(&[self.backend, reason])
            .inc();
    }

    /// How many checks were dropped for `reason` so far (the same counter `/metrics` exports).
    pub fn dropped_total(&self, reason: &str) -> u64 {
        self.dropped
            .with_label_values(&[self.backend, reason])
            .get()
    }

    /// Renders every metric in the Prometheus text format, refreshing gauges first.
    pub(crate) fn render(&self, keys_tracked: usize) -> Result<String, prometheus::Error> {
        self.keys_tracked
            .set(i64::try_from(keys_tracked).unwrap_or(i64::MAX));
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }
}
