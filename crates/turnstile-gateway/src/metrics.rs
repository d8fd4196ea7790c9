//! Prometheus metrics. Labels are bounded: backend, policy (from configuration), result,
//! outcome, reason, child (a shard index, bounded by the configured shard count), fault kind,
//! and for the rate limit service domain and rule (from the rule files: a request's domain
//! that no file loads is `domain=""`), decision, transport and code. A key, an IP or a
//! descriptor value is never a label value.
//!
//! Every series touched on the request path is resolved once at start-up, for every backend
//! kind (the active backend can be switched at run time), so recording is an atomic add, not a
//! label lookup. Supervision events arrive through [`BackendObserver`] as they happen; gauges
//! (keys, mailbox depths, pool) are refreshed from the backend's status at each scrape.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGaugeVec, Opts,
    Registry, TextEncoder,
};
use turnstile_backend::{BackendKind, BackendObserver, BackendState, BackendStatus, ExitReason};

use crate::api::Route;
use crate::error::ApiError;

/// Check latencies span ~1 µs (the concurrent map) to seconds (a backlogged actor, timeouts).
const CHECK_BUCKETS_SECONDS: &[f64] = &[
    1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025,
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// HTTP request durations: from the ~50 µs of a decided check to the request timeout.
const HTTP_BUCKETS_SECONDS: &[f64] = &[
    5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
    10.0, 30.0,
];

const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// Which transport a rate limit service call came over.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Transport {
    Grpc = 0,
    Http = 1,
}

const TRANSPORTS: [&str; 2] = ["grpc", "http"];

/// How a rate limit service call ended (the gRPC status, or the overall code when answered).
#[derive(Debug, Clone, Copy)]
pub(crate) enum RlsCode {
    Ok = 0,
    OverLimit = 1,
    InvalidArgument = 2,
    Unavailable = 3,
}

const RLS_CODES: [&str; 4] = ["ok", "over_limit", "invalid_argument", "unavailable"];

/// One rule's decision counters, resolved when the rules are loaded.
pub(crate) struct RuleCounters {
    pub(crate) ok: IntCounter,
    pub(crate) over_limit: IntCounter,
    pub(crate) shadow_denied: IntCounter,
    pub(crate) unlimited: IntCounter,
}

/// One request rule's counters, resolved when the rules are built.
pub(crate) struct RouteCounters {
    pub(crate) allowed: IntCounter,
    pub(crate) denied: IntCounter,
    pub(crate) shadow_denied: IntCounter,
    /// Matched a rule with no limit that applied (none written, or every one skipped).
    pub(crate) unlimited: IntCounter,
    pub(crate) upstream: UpstreamCounters,
}

/// The upstream's answers to one request rule's forwarded requests (rule `""`: those no rule
/// matched).
pub(crate) struct UpstreamCounters {
    /// Time to the upstream's response headers, by status class.
    pub(crate) responses: [Histogram; 5],
    /// By [`UpstreamError`].
    pub(crate) errors: [IntCounter; 4],
}

/// Why a proxied request got no response from the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UpstreamError {
    /// Refused, unreachable, or not connected within `proxy.connect_timeout`.
    Connect = 0,
    /// No response headers within `proxy.response_header_timeout`.
    Timeout = 1,
    /// The exchange broke off (the upstream closed, or sent something that is not HTTP).
    Protocol = 2,
    /// The client's body went over `proxy.max_body_bytes` while streaming.
    BodyTooLarge = 3,
}

impl UpstreamError {
    pub(crate) const LABELS: [&'static str; 4] =
        ["connect", "timeout", "protocol", "body_too_large"];

    pub(crate) fn label(self) -> &'static str {
        Self::LABELS[self as usize]
    }
}

/// The `action` label values of `turnstile_http_connections_shed_total`.
const CONNECTION_SHED_ACTIONS: [&str; 2] = ["closed_idle", "refused"];

const ROUTE_DECISIONS: [&str; 5] = [
    "allowed",
    "denied",
    "shadow_denied",
    "unlimited",
    "unmatched",
];

/// The `kind` label values of `turnstile_faults_injected_total`.
pub(crate) const FAULT_KINDS: [&str; 4] = ["crash", "poison", "slow", "switch"];

const KINDS: usize = BackendKind::ALL.len();

fn kind_index(kind: BackendKind) -> usize {
    BackendKind::ALL
        .iter()
        .position(|candidate| *candidate == kind)
        .unwrap_or(0)
}

/// What became of a check, for the latency histogram.
#[derive(Debug, Clone, Copy)]
pub(crate) enum CheckOutcome {
    Allowed = 0,
    Limited = 1,
    Dropped = 2,
    Invalid = 3,
}

const OUTCOMES: [&str; 4] = ["allowed", "limited", "dropped", "invalid"];

/// The two decision counters of one policy, for every backend kind, resolved at start-up.
#[derive(Clone)]
pub(crate) struct PolicyCounters {
    allowed: [IntCounter; KINDS],
    limited: [IntCounter; KINDS],
}

/// The gateway's metrics, in their own registry (so tests can run many gateways at once).
pub struct Metrics {
    registry: Registry,
    decisions: IntCounterVec,
    dropped: IntCounterVec,
    check_duration: Vec<[Histogram; 4]>,
    keys_tracked: IntGaugeVec,
    build_info: IntGaugeVec,
    backend_up: IntGaugeVec,
    restarts: IntCounterVec,
    escalations: IntCounterVec,
    mailbox_depth: IntGaugeVec,
    pool_size: IntGaugeVec,
    pool_available: IntGaugeVec,
    pool_waiting: IntGaugeVec,
    pool_replaced: IntCounterVec,
    faults: IntCounterVec,
    keys_evicted: IntCounterVec,
    /// Indexed by route (as in [`Route::ALL`]) and status class, resolved at start-up.
    http_duration: Vec<[Histogram; 5]>,
    rls_decisions: IntCounterVec,
    /// By transport and code, resolved at start-up.
    rls_calls: [[IntCounter; 4]; 2],
    /// By transport.
    rls_duration: [Histogram; 2],
    rules_loaded: prometheus::IntGauge,
    config_reloads: IntCounterVec,
    route_decisions: IntCounterVec,
    open_connections: prometheus::IntGauge,
    connections_shed: IntCounterVec,
    rls_connections_refused: prometheus::IntCounter,
    upstream_duration: HistogramVec,
    upstream_errors: IntCounterVec,
    /// The redis backend's gauges (no labels: one backend has them; reset like the others
    /// when another backend is active).
    redis_in_flight: IntGaugeVec,
    redis_waiting: IntGaugeVec,
    redis_deny_cache_keys: IntGaugeVec,
    /// Follows the backend's own count of local denials (kept by the backend, so its hot path
    /// never resolves a metric), brought up to date at each scrape under `scrape_sync`.
    redis_local_denials: prometheus::IntCounter,
    scrape_sync: std::sync::Mutex<()>,
}

fn counter(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

fn gauge(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels)?;
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

impl Metrics {
    /// Creates and registers every metric; `active` is the backend serving at start-up, and
    /// actor backends run `shards` children (1 for the single actor).
    pub fn new(active: BackendKind, shards: usize) -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let check_duration = HistogramVec::new(
            HistogramOpts::new(
                "turnstile_check_duration_seconds",
                "Time from handing a check to the backend to its answer, by backend and outcome.",
            )
            .buckets(CHECK_BUCKETS_SECONDS.to_vec()),
            &["backend", "outcome"],
        )?;
        registry.register(Box::new(check_duration.clone()))?;
        let check_duration = BackendKind::ALL
            .iter()
            .map(|kind| {
                OUTCOMES.map(|outcome| check_duration.with_label_values(&[kind.as_str(), outcome]))
            })
            .collect();
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "turnstile_http_request_duration_seconds",
                "HTTP request durations, by route template and status class.",
            )
            .buckets(HTTP_BUCKETS_SECONDS.to_vec()),
            &["route", "status_class"],
        )?;
        registry.register(Box::new(http_duration.clone()))?;
        let http_duration = Route::ALL
            .iter()
            .map(|route| {
                STATUS_CLASSES.map(|class| http_duration.with_label_values(&[route.label(), class]))
            })
            .collect();
        let drop_reasons = ApiError::drop_reasons().collect::<Vec<_>>().join(", ");
        let rls_calls = counter(
            &registry,
            "turnstile_rls_requests_total",
            "Rate limit service calls, by transport (grpc, http) and code (ok, over_limit, invalid_argument, unavailable).",
            &["transport", "code"],
        )?;
        let rls_duration = HistogramVec::new(
            HistogramOpts::new(
                "turnstile_rls_request_duration_seconds",
                "Time to answer a rate limit service call, every descriptor decided, by transport.",
            )
            .buckets(HTTP_BUCKETS_SECONDS.to_vec()),
            &["transport"],
        )?;
        registry.register(Box::new(rls_duration.clone()))?;
        let rules_loaded = prometheus::IntGauge::new(
            "turnstile_rls_rules",
            "Rules with a rate_limit in the rule files in force.",
        )?;
        registry.register(Box::new(rules_loaded.clone()))?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "turnstile_upstream_request_duration_seconds",
                "Time from forwarding a request to the upstream's response headers, by request rule and status class.",
            )
            .buckets(HTTP_BUCKETS_SECONDS.to_vec()),
            &["rule", "status_class"],
        )?;
        registry.register(Box::new(upstream_duration.clone()))?;
        let open_connections = prometheus::IntGauge::new(
            "turnstile_http_connections",
            "Connections open on the main listener.",
        )?;
        registry.register(Box::new(open_connections.clone()))?;
        let rls_connections_refused = prometheus::IntCounter::new(
            "turnstile_rls_connections_refused_total",
            "Connections to the rate limit service's gRPC listener refused at its cap (max_connections).",
        )?;
        registry.register(Box::new(rls_connections_refused.clone()))?;
        let redis_local_denials = prometheus::IntCounter::new(
            "turnstile_redis_local_denials_total",
            "Checks the redis backend's local deny cache denied without a Redis command.",
        )?;
        registry.register(Box::new(redis_local_denials.clone()))?;
        let metrics = Self {
            redis_in_flight: gauge(
                &registry,
                "turnstile_redis_in_flight",
                "Checks waiting on Redis now (at most redis.max_in_flight), over the multiplexed connection.",
                &[],
            )?,
            redis_waiting: gauge(
                &registry,
                "turnstile_redis_waiting",
                "Checks waiting for one of the redis.max_in_flight slots.",
                &[],
            )?,
            redis_deny_cache_keys: gauge(
                &registry,
                "turnstile_redis_local_deny_cache_keys",
                "Keys in the redis backend's local deny cache.",
                &[],
            )?,
            redis_local_denials,
            scrape_sync: std::sync::Mutex::new(()),
            open_connections,
            rls_connections_refused,
            connections_shed: counter(
                &registry,
                "turnstile_http_connections_shed_total",
                "Connections shed at max_connections, by action (closed_idle: the one idle longest was closed to make room; refused: none was idle, the new one was closed).",
                &["action"],
            )?,
            route_decisions: counter(
                &registry,
                "turnstile_route_decisions_total",
                &format!(
                    "Requests on the gateway route and forward-auth, by request rule (`[[routes]]` name; \"\" when none matched) and decision ({}).",
                    ROUTE_DECISIONS.join(", ")
                ),
                &["rule", "decision"],
            )?,
            upstream_duration,
            upstream_errors: counter(
                &registry,
                "turnstile_upstream_errors_total",
                &format!(
                    "Proxied requests that got no response from the upstream, by request rule and reason ({}).",
                    UpstreamError::LABELS.join(", ")
                ),
                &["rule", "reason"],
            )?,
            rls_decisions: counter(
                &registry,
                "turnstile_rls_decisions_total",
                "Rate limit service decisions per descriptor, by domain and rule (from the rule files) and decision (ok, over_limit, shadow_denied, unlimited, no_rule).",
                &["domain", "rule", "decision"],
            )?,
            rls_calls: TRANSPORTS.map(|transport| {
                RLS_CODES.map(|code| rls_calls.with_label_values(&[transport, code]))
            }),
            rls_duration: TRANSPORTS.map(|transport| rls_duration.with_label_values(&[transport])),
            rules_loaded,
            config_reloads: counter(
                &registry,
                "turnstile_config_reloads_total",
                "Reloads of the rule files and the TOML file's policies, request rules and upstream (on change or SIGHUP), by result (ok, or error: what was in force stays).",
                &["result"],
            )?,
            decisions: counter(
                &registry,
                "turnstile_decisions_total",
                "Rate-limit decisions made, by backend, policy and result (allowed or limited).",
                &["backend", "policy", "result"],
            )?,
            dropped: counter(
                &registry,
                "turnstile_dropped_checks_total",
                &format!("Checks that got no decision ({drop_reasons}), by backend and reason."),
                &["backend", "reason"],
            )?,
            check_duration,
            keys_tracked: gauge(
                &registry,
                "turnstile_keys_tracked",
                "Keys currently held by the active backend.",
                &["backend"],
            )?,
            build_info: gauge(
                &registry,
                "turnstile_build_info",
                "Always 1; labels carry the version and the active backend.",
                &["version", "backend"],
            )?,
            backend_up: gauge(
                &registry,
                "turnstile_backend_up",
                "1 while the active backend serves; 0 while it is failed (restart intensity exceeded) or stopped.",
                &["backend"],
            )?,
            restarts: counter(
                &registry,
                "turnstile_actor_restarts_total",
                "Actor restarts by the supervisor, by backend and child (shard index; 0 for the single actor).",
                &["backend", "child"],
            )?,
            escalations: counter(
                &registry,
                "turnstile_supervisor_escalations_total",
                "Times a backend's supervisor exceeded its restart intensity and failed the backend.",
                &["backend"],
            )?,
            mailbox_depth: gauge(
                &registry,
                "turnstile_mailbox_depth",
                "Messages waiting in each actor's mailbox, by backend and child.",
                &["backend", "child"],
            )?,
            pool_size: gauge(
                &registry,
                "turnstile_pool_workers",
                "Check-pool workers currently created.",
                &["backend"],
            )?,
            pool_available: gauge(
                &registry,
                "turnstile_pool_available",
                "Idle check-pool workers.",
                &["backend"],
            )?,
            pool_waiting: gauge(
                &registry,
                "turnstile_pool_waiting",
                "Callers waiting for a check-pool worker.",
                &["backend"],
            )?,
            pool_replaced: counter(
                &registry,
                "turnstile_pool_workers_replaced_total",
                "Dead check-pool workers replaced.",
                &["backend"],
            )?,
            faults: counter(
                &registry,
                "turnstile_faults_injected_total",
                "Faults injected through the admin API, by kind (crash, poison, slow, switch).",
                &["kind"],
            )?,
            keys_evicted: counter(
                &registry,
                "turnstile_keys_evicted_total",
                "Expired keys swept out of a backend's table (periodic or forced sweeps), by backend.",
                &["backend"],
            )?,
            http_duration,
            registry,
        };
        metrics.set_active(active);
        metrics.start_counters_at_zero(shards);
        Ok(metrics)
    }

    /// Creates every bounded counter series at zero. A series born at its first increment
    /// makes `increase()` and `rate()` miss that increment (Prometheus has no earlier sample
    /// to compare with), so the first crash or escalation would never show on a dashboard.
    fn start_counters_at_zero(&self, shards: usize) {
        for kind in BackendKind::ALL {
            let backend = kind.as_str();
            for reason in ApiError::drop_reasons() {
                self.dropped.with_label_values(&[backend, reason]);
            }
            self.escalations.with_label_values(&[backend]);
            self.pool_replaced.with_label_values(&[backend]);
            self.keys_evicted.with_label_values(&[backend]);
            let children = match kind {
                BackendKind::Actor => 1,
                BackendKind::Sharded => shards.max(1),
                BackendKind::Concurrent | BackendKind::Redis => 0,
            };
            for child in 0..children {
                self.restarts
                    .with_label_values(&[backend, &child.to_string()]);
            }
        }
        for kind in FAULT_KINDS {
            self.faults.with_label_values(&[kind]);
        }
        for result in ["ok", "error"] {
            self.config_reloads.with_label_values(&[result]);
        }
        for action in CONNECTION_SHED_ACTIONS {
            self.connections_shed.with_label_values(&[action]);
        }
        // The RLS call counters were resolved (so created at 0) in `new`.
    }

    /// The decision counters of one rule (called for each rule at every load).
    pub(crate) fn rule_counters(&self, domain: &str, rule: &str) -> RuleCounters {
        let resolve = |decision| {
            self.rls_decisions
                .with_label_values(&[domain, rule, decision])
        };
        RuleCounters {
            ok: resolve("ok"),
            over_limit: resolve("over_limit"),
            shadow_denied: resolve("shadow_denied"),
            unlimited: resolve("unlimited"),
        }
    }

    /// The counters of one request rule (called for each rule at every build).
    pub(crate) fn route_counters(&self, rule: &str) -> RouteCounters {
        let decision = |decision| self.route_decisions.with_label_values(&[rule, decision]);
        RouteCounters {
            allowed: decision("allowed"),
            denied: decision("denied"),
            shadow_denied: decision("shadow_denied"),
            unlimited: decision("unlimited"),
            upstream: self.upstream_counters(rule),
        }
    }

    /// The upstream counters of one request rule (`""`: requests no rule matched).
    pub(crate) fn upstream_counters(&self, rule: &str) -> UpstreamCounters {
        UpstreamCounters {
            responses: STATUS_CLASSES
                .map(|class| self.upstream_duration.with_label_values(&[rule, class])),
            errors: UpstreamError::LABELS
                .map(|reason| self.upstream_errors.with_label_values(&[rule, reason])),
        }
    }

    /// Counts a connection shed at `max_connections` (`closed_idle` or `refused`).
    pub(crate) fn record_connection_shed(&self, action: &'static str) {
        self.connections_shed.with_label_values(&[action]).inc();
    }

    /// Counts a connection to the gRPC listener refused at its cap.
    pub(crate) fn record_grpc_connection_refused(&self) {
        self.rls_connections_refused.inc();
    }

    pub(crate) fn set_open_connections(&self, open: usize) {
        self.open_connections
            .set(i64::try_from(open).unwrap_or(i64::MAX));
    }

    /// Connections open on the main listener now.
    pub fn open_connections(&self) -> i64 {
        self.open_connections.get()
    }

    /// Connections to the gRPC listener refused at its cap so far.
    pub fn rls_connections_refused_total(&self) -> u64 {
        self.rls_connections_refused.get()
    }

    /// Connections shed at `max_connections` with `action` so far.
    pub fn connections_shed_total(&self, action: &str) -> u64 {
        self.connections_shed.with_label_values(&[action]).get()
    }

    /// The counter of requests no request rule matched.
    pub(crate) fn route_unmatched(&self) -> IntCounter {
        self.route_decisions.with_label_values(&["", "unmatched"])
    }

    /// Requests on the gateway route and forward-auth so far, by request rule and decision
    /// (the counter `/metrics` exports).
    pub fn route_decisions_total(&self, rule: &str, decision: &str) -> u64 {
        self.route_decisions
            .with_label_values(&[rule, decision])
            .get()
    }

    /// Proxied requests of `rule` that got no upstream response for `reason` so far.
    pub fn upstream_errors_total(&self, rule: &str, reason: &str) -> u64 {
        self.upstream_errors
            .with_label_values(&[rule, reason])
            .get()
    }

    /// Proxied requests of `rule` answered by the upstream so far, whatever the status.
    pub fn upstream_responses_total(&self, rule: &str) -> u64 {
        STATUS_CLASSES
            .iter()
            .map(|class| {
                self.upstream_duration
                    .with_label_values(&[rule, class])
                    .get_sample_count()
            })
            .sum()
    }

    /// The `no_rule` counter of a loaded domain (`""` for every domain not loaded).
    pub(crate) fn unmatched_counter(&self, domain: &str) -> IntCounter {
        self.rls_decisions
            .with_label_values(&[domain, "", "no_rule"])
    }

    pub(crate) fn set_rules_loaded(&self, rules: usize) {
        self.rules_loaded
            .set(i64::try_from(rules).unwrap_or(i64::MAX));
    }

    /// Records one rate limit service call.
    pub(crate) fn record_rls(&self, transport: Transport, code: RlsCode, elapsed: Duration) {
        self.rls_calls[transport as usize][code as usize].inc();
        self.rls_duration[transport as usize].observe(elapsed.as_secs_f64());
    }

    pub(crate) fn record_reload(&self, ok: bool) {
        self.config_reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Checks handed to a backend of `kind` so far, whatever their outcome (the sample count
    /// of `turnstile_check_duration_seconds`).
    pub fn checks_total(&self, kind: BackendKind) -> u64 {
        self.check_duration[kind_index(kind)]
            .iter()
            .map(Histogram::get_sample_count)
            .sum()
    }

    /// Rule-file reloads with `result` (`ok` or `error`) so far.
    pub fn config_reloads_total(&self, result: &str) -> u64 {
        self.config_reloads.with_label_values(&[result]).get()
    }

    /// Rate limit service decisions so far for `rule` (its label) of `domain`.
    pub fn rls_decisions_total(&self, domain: &str, rule: &str, decision: &str) -> u64 {
        self.rls_decisions
            .with_label_values(&[domain, rule, decision])
            .get()
    }

    /// Marks `kind` as the active backend in `turnstile_build_info`.
    pub(crate) fn set_active(&self, kind: BackendKind) {
        self.build_info.reset();
        self.build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION"), kind.as_str()])
            .set(1);
    }

    /// The counters for one policy (called once per policy at start-up).
    pub(crate) fn policy_counters(&self, policy: &str) -> PolicyCounters {
        let resolve = |result| {
            BackendKind::ALL.map(|kind| {
                self.decisions
                    .with_label_values(&[kind.as_str(), policy, result])
            })
        };
        PolicyCounters {
            allowed: resolve("allowed"),
            limited: resolve("limited"),
        }
    }

    pub(crate) fn record_check(&self, kind: BackendKind, outcome: CheckOutcome, elapsed: Duration) {
        self.check_duration[kind_index(kind)][outcome as usize].observe(elapsed.as_secs_f64());
    }

    pub(crate) fn record_decision(counters: &PolicyCounters, kind: BackendKind, allowed: bool) {
        let index = kind_index(kind);
        if allowed {
            counters.allowed[index].inc();
        } else {
            counters.limited[index].inc();
        }
    }

    /// Counts a dropped check; `reason` is one of the bounded drop reasons.
    pub(crate) fn record_drop(&self, kind: BackendKind, reason: &'static str) {
        self.dropped
            .with_label_values(&[kind.as_str(), reason])
            .inc();
    }

    /// Records one HTTP request to `route`.
    pub(crate) fn record_http(&self, route: Route, status: u16, elapsed: Duration) {
        let class = usize::from(status / 100).clamp(1, 5) - 1;
        if let Some(by_class) = self.http_duration.get(route.index()) {
            by_class[class].observe(elapsed.as_secs_f64());
        }
    }

    pub(crate) fn record_fault(&self, kind: &'static str) {
        self.faults.with_label_values(&[kind]).inc();
    }

    /// Checks dropped for `reason` by `kind` so far (the counter `/metrics` exports).
    pub fn dropped_total(&self, kind: BackendKind, reason: &str) -> u64 {
        self.dropped
            .with_label_values(&[kind.as_str(), reason])
            .get()
    }

    /// Decisions made by `kind` under `policy` with `result` (the counter `/metrics` exports).
    pub fn decisions_total(&self, kind: BackendKind, policy: &str, result: &str) -> u64 {
        self.decisions
            .with_label_values(&[kind.as_str(), policy, result])
            .get()
    }

    /// Restarts of `child` of `kind` (the counter `/metrics` exports).
    pub fn restarts_total(&self, kind: BackendKind, child: usize) -> u64 {
        self.restarts
            .with_label_values(&[kind.as_str(), &child.to_string()])
            .get()
    }

    /// Escalations of `kind`'s supervisor (the counter `/metrics` exports).
    pub fn escalations_total(&self, kind: BackendKind) -> u64 {
        self.escalations.with_label_values(&[kind.as_str()]).get()
    }

    /// Keys swept out of `kind`'s table (the counter `/metrics` exports).
    pub fn keys_evicted_total(&self, kind: BackendKind) -> u64 {
        self.keys_evicted.with_label_values(&[kind.as_str()]).get()
    }

    /// Faults injected of `kind` (the counter `/metrics` exports).
    pub fn faults_total(&self, kind: &str) -> u64 {
        self.faults.with_label_values(&[kind]).get()
    }

    /// Renders every metric in the Prometheus text format, refreshing the gauges from the
    /// active backend's status first.
    pub(crate) fn render(
        &self,
        status: &BackendStatus,
        keys_tracked: usize,
    ) -> Result<String, prometheus::Error> {
        let backend = status.backend.as_str();
        // Gauges describe the active backend only: a switched-away backend's series vanish.
        for gauge in [
            &self.keys_tracked,
            &self.backend_up,
            &self.mailbox_depth,
            &self.pool_size,
            &self.pool_available,
            &self.pool_waiting,
            &self.redis_in_flight,
            &self.redis_waiting,
            &self.redis_deny_cache_keys,
        ] {
            gauge.reset();
        }
        let clamp = |value: usize| i64::try_from(value).unwrap_or(i64::MAX);
        self.keys_tracked
            .with_label_values(&[backend])
            .set(clamp(keys_tracked));
        self.backend_up
            .with_label_values(&[backend])
            .set(i64::from(status.state == BackendState::Running));
        for child in &status.children {
            self.mailbox_depth
                .with_label_values(&[backend, &child.index.to_string()])
                .set(clamp(child.mailbox_depth));
        }
        if let Some(pool) = &status.pool {
            self.pool_size
                .with_label_values(&[backend])
                .set(clamp(pool.size));
            self.pool_available
                .with_label_values(&[backend])
                .set(clamp(pool.available));
            self.pool_waiting
                .with_label_values(&[backend])
                .set(clamp(pool.waiting));
        }
        if let Some(redis) = &status.redis {
            self.redis_in_flight
                .with_label_values::<&str>(&[])
                .set(clamp(redis.in_flight));
            self.redis_waiting
                .with_label_values::<&str>(&[])
                .set(clamp(redis.waiting));
            if let Some(keys) = redis.local_deny_cache_keys {
                self.redis_deny_cache_keys
                    .with_label_values::<&str>(&[])
                    .set(clamp(keys));
            }
            let _sync = self
                .scrape_sync
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let counted = self.redis_local_denials.get();
            if redis.local_denials >= counted {
                self.redis_local_denials
                    .inc_by(redis.local_denials - counted);
            } else {
                // A new redis backend (a run-time switch) counts from 0: a counter reset,
                // which `rate()` and `increase()` handle.
                self.redis_local_denials.reset();
                self.redis_local_denials.inc_by(redis.local_denials);
            }
        }
        let mut buffer = Vec::new();
        TextEncoder::new().encode(&self.registry.gather(), &mut buffer)?;
        String::from_utf8(buffer).map_err(|error| prometheus::Error::Msg(error.to_string()))
    }
}

impl BackendObserver for Metrics {
    fn child_exited(&self, _backend: BackendKind, _child: usize, _reason: ExitReason) {}

    fn child_restarted(&self, backend: BackendKind, child: usize) {
        self.restarts
            .with_label_values(&[backend.as_str(), &child.to_string()])
            .inc();
    }

    fn escalated(&self, backend: BackendKind) {
        self.escalations
            .with_label_values(&[backend.as_str()])
            .inc();
    }

    fn pool_worker_replaced(&self, backend: BackendKind) {
        self.pool_replaced
            .with_label_values(&[backend.as_str()])
            .inc();
    }

    fn keys_evicted(&self, backend: BackendKind, count: usize) {
        self.keys_evicted
            .with_label_values(&[backend.as_str()])
            .inc_by(u64::try_from(count).unwrap_or(u64::MAX));
    }
}
