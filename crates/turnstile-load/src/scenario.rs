//! Scenario files (TOML in `loadtest/`): how much load, of what shape, for how long, and which
//! faults to inject through the admin API while it runs.

use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// A load scenario.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// A short name, used in reports.
    pub name: String,
    /// What the scenario shows, for the report.
    #[serde(default)]
    pub description: String,
    /// Open loop (a fixed arrival rate, latency from each request's scheduled time) or closed
    /// loop (each connection sends as soon as its previous answer is back).
    #[serde(default)]
    pub mode: Mode,
    /// Target arrival rate in requests per second (open loop), unless `stages` is given.
    #[serde(default = "defaults::rate")]
    pub rate: f64,
    /// Connections (HTTP/1.1 keep-alive), each carrying one request at a time.
    #[serde(default = "defaults::connections")]
    pub connections: usize,
    /// Measured duration, after the warm-up.
    #[serde(with = "humantime_serde", default = "defaults::duration")]
    pub duration: Duration,
    /// Load sent before measuring starts (not recorded).
    #[serde(with = "humantime_serde", default = "defaults::warmup")]
    pub warmup: Duration,
    /// Reuse each connection for every request (HTTP/1.1 keep-alive); `false` opens a new
    /// connection per request.
    #[serde(default = "defaults::keep_alive")]
    pub keep_alive: bool,
    /// A request with no answer within this is counted as a timeout.
    #[serde(with = "humantime_serde", default = "defaults::timeout")]
    pub timeout: Duration,
    /// Open-loop rate changes over the measured duration (a ramp or a burst); each stage runs
    /// for its duration at a rate moving linearly from `from` (default: the previous stage's
    /// `to`) to `to`. When present they replace `rate` and `duration`.
    #[serde(default)]
    pub stages: Vec<Stage>,
    /// What the requests look like.
    #[serde(default)]
    pub traffic: Traffic,
    /// Faults injected through the admin API during the measured run.
    #[serde(default)]
    pub faults: Vec<Fault>,
    /// `compare` only: a sweep of shard counts and simulated work, closed loop, measuring
    /// throughput per backend as the work per check grows.
    #[serde(default)]
    pub sweep: Option<Sweep>,
    /// Gateway settings used when `compare` starts the gateways itself (any `turnstile`
    /// configuration key, e.g. `shards`, `simulated_work`, `pool_size`, `policies`).
    #[serde(default)]
    pub gateway: toml::Table,
}

/// The throughput sweep of `compare`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sweep {
    /// Measured time per point.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Closed-loop connections per point.
    pub connections: usize,
    /// Shard counts for the sharded backend (the single actor and the concurrent map run at
    /// every work level too).
    pub shards: Vec<usize>,
    /// Work per check; a zero duration means none.
    pub work: Vec<SweepWork>,
}

/// One work level of the sweep.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepWork {
    /// `sleep` (I/O-like) or `spin` (CPU).
    pub kind: turnstile_backend::WorkKind,
    /// How long per check.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl SweepWork {
    /// A short label such as `1ms sleep`.
    pub fn label(&self) -> String {
        if self.duration.is_zero() {
            "none".to_owned()
        } else {
            let kind = match self.kind {
                turnstile_backend::WorkKind::Sleep => "sleep",
                turnstile_backend::WorkKind::Spin => "spin",
            };
            format!(
                "{} {kind}",
                humantime_serde::re::humantime::format_duration(self.duration)
            )
        }
    }
}

/// Open or closed loop.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A fixed arrival rate regardless of responses (wrk2's model).
    #[default]
    Open,
    /// As fast as responses come back.
    Closed,
}

/// One open-loop stage.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// How long.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
    /// Rate at the start (default: the previous stage's end rate, or `to`).
    pub from: Option<f64>,
    /// Rate at the end.
    pub to: f64,
}

/// Which route and which keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// `check`: `POST /v1/check` with JSON keys; `gateway`: `GET /` on the demo route with
    /// the client IP set through `X-Forwarded-For` (the gateway must trust the generator).
    #[serde(default)]
    pub route: Route,
    /// How keys are drawn.
    #[serde(default)]
    pub keys: KeyDistribution,
    /// Policies to mix (by weight); `check` route only.
    #[serde(default = "defaults::policies")]
    pub policies: Vec<Weighted<String>>,
    /// Costs to mix (by weight); `check` and `rls` routes.
    #[serde(default = "defaults::costs")]
    pub costs: Vec<Weighted<u32>>,
    /// What the `rls` route sends.
    #[serde(default)]
    pub rls: RlsTraffic,
}

/// The `rls` route's calls: `ShouldRateLimit` in `domain`, each with `descriptors`
/// descriptors `[("key", "key-<rank>"), ("part", "<i>")]` for `i` in `0..descriptors` (so the
/// rules need a `key` descriptor with a nested value-less `part`; see `loadtest/rls/`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlsTraffic {
    /// The rule domain.
    #[serde(default = "defaults::rls_domain")]
    pub domain: String,
    /// Descriptors per call (each one checked).
    #[serde(default = "defaults::rls_descriptors")]
    pub descriptors: usize,
}

impl Default for RlsTraffic {
    fn default() -> Self {
        Self {
            domain: defaults::rls_domain(),
            descriptors: defaults::rls_descriptors(),
        }
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Self {
            route: Route::default(),
            keys: KeyDistribution::default(),
            policies: defaults::policies(),
            costs: defaults::costs(),
            rls: RlsTraffic::default(),
        }
    }
}

/// The route under load.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Route {
    /// `POST /v1/check`.
    #[default]
    Check,
    /// `GET /` on the demo gateway route, client IP in `X-Forwarded-For`.
    Gateway,
    /// Envoy's `ShouldRateLimit` over gRPC; the target is the gateway's `rls.listen`.
    Rls,
}

/// A value with a weight.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Weighted<T> {
    /// The value.
    pub value: T,
    /// Its relative weight.
    #[serde(default = "defaults::weight")]
    pub weight: u32,
}

/// How keys (or client IPs) are drawn.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "distribution", rename_all = "lowercase", deny_unknown_fields)]
pub enum KeyDistribution {
    /// Uniformly over `count` keys.
    Uniform {
        /// How many distinct keys.
        count: u64,
    },
    /// Zipf-skewed over `count` keys: key rank r drawn with probability ∝ 1/r^exponent.
    Zipf {
        /// How many distinct keys.
        count: u64,
        /// Skew (1.0 is classic Zipf; larger is more skewed).
        exponent: f64,
    },
    /// Every request on one key.
    Hot,
}

impl Default for KeyDistribution {
    fn default() -> Self {
        Self::Uniform { count: 10_000 }
    }
}

/// A fault injected during the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// When, from the start of the measured run.
    #[serde(with = "humantime_serde")]
    pub at: Duration,
    /// Repeat this often until the run ends.
    #[serde(with = "humantime_serde", default)]
    pub every: Option<Duration>,
    /// What to do.
    pub action: FaultAction,
}

/// An admin API call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FaultAction {
    /// `POST /admin/crash/actor`.
    CrashActor,
    /// `POST /admin/crash/shard/{shard}`.
    CrashShard {
        /// The shard.
        shard: usize,
    },
    /// `POST /admin/crash/worker`.
    CrashWorker,
    /// `POST /admin/poison`.
    Poison {
        /// The key (for the gateway route, a client IP such as `10.0.0.7`).
        key: String,
        /// The policy (default `default`).
        #[serde(default)]
        policy: Option<String>,
    },
    /// `POST /admin/slow`.
    Slow {
        /// Extra delay per check.
        #[serde(with = "humantime_serde")]
        delay: Duration,
        /// For how long.
        #[serde(with = "humantime_serde")]
        duration: Duration,
    },
    /// `POST /admin/backend`: switch to another backend (the old one drains).
    SwitchBackend {
        /// The backend to switch to.
        backend: turnstile_backend::BackendKind,
    },
}

impl FaultAction {
    /// A short label for markers and logs: `crash_actor`, `crash_shard 3`, `slow 50ms`.
    pub fn label(&self) -> String {
        let format = humantime_serde::re::humantime::format_duration;
        match self {
            Self::CrashActor => "crash_actor".to_owned(),
            Self::CrashShard { shard } => format!("crash_shard {shard}"),
            Self::CrashWorker => "crash_worker".to_owned(),
            Self::Poison { key, .. } => format!("poison {key}"),
            Self::Slow { delay, duration } => {
                format!("slow {} for {}", format(*delay), format(*duration))
            }
            Self::SwitchBackend { backend } => format!("switch_backend {backend}"),
        }
    }
}

/// Why a scenario could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// Unreadable file.
    #[error("cannot read scenario {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Not valid TOML or not a scenario.
    #[error("invalid scenario {path}: {source}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: toml::de::Error,
    },
    /// Valid TOML, impossible values.
    #[error("invalid scenario: `{field}`: {problem}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl Scenario {
    /// Reads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, ScenarioError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: display.clone(),
            source,
        })?;
        let scenario: Scenario = toml::from_str(&text).map_err(|source| ScenarioError::Parse {
            path: display,
            source,
        })?;
        scenario.validate()?;
        Ok(scenario)
    }

    /// Checks what types cannot.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        let invalid = |field, problem: &str| ScenarioError::Invalid {
            field,
            problem: problem.to_owned(),
        };
        if self.connections == 0 {
            return Err(invalid("connections", "must be at least 1"));
        }
        if self.mode == Mode::Open
            && self.stages.is_empty()
            && (self.rate.is_nan() || self.rate <= 0.0)
        {
            return Err(invalid("rate", "must be greater than 0 in open-loop mode"));
        }
        if self
            .stages
            .iter()
            .any(|s| s.to < 0.0 || s.from.is_some_and(|f| f < 0.0))
        {
            return Err(invalid("stages", "rates must not be negative"));
        }
        if self.measured_duration().is_zero() {
            return Err(invalid("duration", "must be greater than zero"));
        }
        if self.timeout.is_zero() {
            return Err(invalid("timeout", "must be greater than zero"));
        }
        match self.traffic.keys {
            KeyDistribution::Uniform { count: 0 } | KeyDistribution::Zipf { count: 0, .. } => {
                return Err(invalid("traffic.keys.count", "must be at least 1"));
            }
            KeyDistribution::Zipf { exponent, .. } if exponent.is_nan() || exponent <= 0.0 => {
                return Err(invalid("traffic.keys.exponent", "must be greater than 0"));
            }
            _ => {}
        }
        if self.traffic.policies.iter().all(|p| p.weight == 0) {
            return Err(invalid(
                "traffic.policies",
                "needs at least one positive weight",
            ));
        }
        if self.traffic.costs.iter().all(|c| c.weight == 0) {
            return Err(invalid(
                "traffic.costs",
                "needs at least one positive weight",
            ));
        }
        Ok(())
    }

    /// The measured duration (the stages' total when there are stages).
    pub fn measured_duration(&self) -> Duration {
        if self.stages.is_empty() {
            self.duration
        } else {
            self.stages.iter().map(|stage| stage.duration).sum()
        }
    }

    /// The open-loop target rate at `elapsed` into the measured run (warm-up runs at the
    /// first stage's starting rate).
    pub fn rate_at(&self, elapsed: Duration) -> f64 {
        if self.stages.is_empty() {
            return self.rate;
        }
        let mut start = Duration::ZERO;
        let mut previous = self.stages[0].from.unwrap_or(self.stages[0].to);
        for stage in &self.stages {
            let from = stage.from.unwrap_or(previous);
            if elapsed < start + stage.duration {
                let into = (elapsed.saturating_sub(start)).as_secs_f64();
                let fraction = into / stage.duration.as_secs_f64().max(f64::MIN_POSITIVE);
                return from + (stage.to - from) * fraction;
            }
            start += stage.duration;
            previous = stage.to;
        }
        previous
    }

    /// The mean target rate over the measured run.
    pub fn mean_target_rate(&self) -> f64 {
        if self.stages.is_empty() {
            return self.rate;
        }
        let mut previous = self.stages[0].from.unwrap_or(self.stages[0].to);
        let mut requests = 0.0;
        for stage in &self.stages {
            let from = stage.from.unwrap_or(previous);
            requests += (from + stage.to) / 2.0 * stage.duration.as_secs_f64();
            previous = stage.to;
        }
        requests / self.measured_duration().as_secs_f64()
    }
}

mod defaults {
    use std::time::Duration;

    use super::Weighted;

    pub(super) fn rate() -> f64 {
        1000.0
    }
    pub(super) fn connections() -> usize {
        32
    }
    pub(super) fn duration() -> Duration {
        Duration::from_secs(10)
    }
    pub(super) fn warmup() -> Duration {
        Duration::from_secs(1)
    }
    pub(super) fn timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub(super) fn keep_alive() -> bool {
        true
    }
    pub(super) fn weight() -> u32 {
        1
    }
    pub(super) fn rls_domain() -> String {
        "loadtest".into()
    }
    pub(super) fn rls_descriptors() -> usize {
        1
    }
    pub(super) fn policies() -> Vec<Weighted<String>> {
        vec![Weighted {
            value: "default".into(),
            weight: 1,
        }]
    }
    pub(super) fn costs() -> Vec<Weighted<u32>> {
        vec![Weighted {
            value: 1,
            weight: 1,
        }]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ramp_interpolates_and_averages() {
        let scenario: Scenario = toml::from_str(
            r#"
            name = "ramp"
            [[stages]]
            duration = "10s"
            from = 100.0
            to = 300.0
            [[stages]]
            duration = "10s"
            to = 300.0
            "#,
        )
        .unwrap();
        scenario.validate().unwrap();
        assert_eq!(scenario.measured_duration(), Duration::from_secs(20));
        assert_eq!(scenario.rate_at(Duration::ZERO), 100.0);
        assert_eq!(scenario.rate_at(Duration::from_secs(5)), 200.0);
        assert_eq!(scenario.rate_at(Duration::from_secs(15)), 300.0);
        assert_eq!(scenario.mean_target_rate(), 250.0);
    }

    #[test]
    fn bad_scenarios_name_the_field() {
        let bad = |text: &str, field: &str| {
            let error = toml::from_str::<Scenario>(text)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate().map_err(|e| e.to_string()))
                .unwrap_err();
            assert!(error.contains(field), "{error}");
        };
        bad("name = \"x\"\nconnections = 0", "connections");
        bad("name = \"x\"\nrate = 0.0", "rate");
        bad(
            "name = \"x\"\n[traffic]\nkeys = { distribution = \"zipf\", count = 10, exponent = 0.0 }",
            "exponent",
        );
        bad("name = \"x\"\nmode = \"sideways\"", "mode");
        bad(
            "name = \"x\"\n[[faults]]\nat = \"1s\"\naction = { kind = \"explode\" }",
            "explode",
        );
    }
}
