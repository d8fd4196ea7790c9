//! What a run measured: counts by outcome, latency percentiles, rates; and its renderings
//! (a human table, JSON, and HdrHistogram's percentile-distribution text).

use std::collections::BTreeMap;
use std::fmt::Write;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::client::Outcome;
use crate::scenario::Mode;
use crate::timeline::Timeline;

/// The result of one run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunResult {
    /// The scenario's name.
    pub scenario: String,
    /// What was under load (e.g. the backend), for reports.
    pub label: String,
    /// The base URL.
    pub target: String,
    /// Open or closed loop.
    pub mode: Mode,
    /// Connections used.
    pub connections: usize,
    /// The measured duration, seconds.
    pub duration_seconds: f64,
    /// Open loop: the mean target rate (requests/s); `None` in closed loop.
    pub target_rate: Option<f64>,
    /// Requests sent during the measured window, per second.
    pub sent_rate: f64,
    /// Answers received during the measured window (timeouts and connection errors excluded),
    /// per second: the throughput.
    pub throughput: f64,
    /// Requests sent during the measured window (each counted in exactly one outcome).
    pub requests: u64,
    /// What they came to.
    pub outcomes: Outcomes,
    /// Latency percentiles in milliseconds (open loop: from each request's scheduled time).
    pub latency_ms: Latency,
    /// Faults injected through the admin API, and admin calls that failed.
    pub faults_injected: u64,
    /// Admin calls that did not succeed.
    pub fault_errors: u64,
    /// Ended early by a signal: the rates cover `duration_seconds`, less than planned.
    #[serde(default)]
    pub interrupted: bool,
    /// Second by second, with the faults and restarts marked.
    #[serde(default)]
    pub timeline: Timeline,
    /// The full latency distribution (microseconds), for merging and the `.hgrm` file.
    #[serde(skip)]
    pub histogram: Option<Histogram<u64>>,
}

/// Counts by outcome; every request sent lands in exactly one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcomes {
    /// Admitted.
    pub allowed: u64,
    /// Denied (a decision).
    pub limited: u64,
    /// Dropped by the gateway, by reason (`crashed`, `timeout`, `shed`, …).
    pub dropped: BTreeMap<String, u64>,
    /// Other answers, by status code.
    pub errors: BTreeMap<String, u64>,
    /// No answer within the request timeout.
    pub timeouts: u64,
    /// Connection refused, reset, or closed mid-request.
    pub connection_errors: u64,
}

impl Outcomes {
    /// Every request counted.
    pub fn total(&self) -> u64 {
        self.allowed
            + self.limited
            + self.dropped.values().sum::<u64>()
            + self.errors.values().sum::<u64>()
            + self.timeouts
            + self.connection_errors
    }

    /// Requests that got an answer.
    pub fn answered(&self) -> u64 {
        self.total() - self.timeouts - self.connection_errors
    }

    /// Adds `other`'s counts.
    pub fn merge(&mut self, other: &Outcomes) {
        self.allowed += other.allowed;
        self.limited += other.limited;
        for (reason, count) in &other.dropped {
            *self.dropped.entry(reason.clone()).or_default() += count;
        }
        for (status, count) in &other.errors {
            *self.errors.entry(status.clone()).or_default() += count;
        }
        self.timeouts += other.timeouts;
        self.connection_errors += other.connection_errors;
    }

    /// Dropped checks, all reasons.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.values().sum()
    }

    /// Counts one request's outcome (`None`: no answer within the timeout).
    pub fn count(&mut self, outcome: Option<&Outcome>) {
        match outcome {
            Some(Outcome::Allowed) => self.allowed += 1,
            Some(Outcome::Limited) => self.limited += 1,
            Some(Outcome::Dropped(reason)) => match self.dropped.get_mut(reason) {
                Some(count) => *count += 1,
                None => {
                    self.dropped.insert(reason.clone(), 1);
                }
            },
            Some(Outcome::Error(status)) => {
                *self.errors.entry(status.as_u16().to_string()).or_default() += 1
            }
            Some(Outcome::ConnectionError) => self.connection_errors += 1,
            None => self.timeouts += 1,
        }
    }
}

/// Latency percentiles, milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// 99.9th percentile.
    pub p999: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Latency {
    /// Percentiles of a histogram recorded in microseconds.
    pub fn from_histogram(histogram: &Histogram<u64>) -> Self {
        if histogram.is_empty() {
            return Self::default();
        }
        let ms = |us: u64| us as f64 / 1000.0;
        Self {
            p50: ms(histogram.value_at_quantile(0.50)),
            p90: ms(histogram.value_at_quantile(0.90)),
            p99: ms(histogram.value_at_quantile(0.99)),
            p999: ms(histogram.value_at_quantile(0.999)),
            max: ms(histogram.max()),
            mean: histogram.mean() / 1000.0,
        }
    }
}

impl RunResult {
    /// Warnings about what a run's answers suggest was wrong with the setup, not the target.
    ///
    /// The gateway route identifies clients by `X-Forwarded-For` only from a trusted proxy; a
    /// gateway that does not trust the generator counts every request against one client (the
    /// generator's address), so a scenario meant to spread over many clients is mostly 429.
    pub fn setup_warnings(&self, traffic: &crate::scenario::Traffic) -> Vec<String> {
        use crate::scenario::{KeyDistribution, Route};
        let spread = match traffic.keys {
            KeyDistribution::Uniform { count } | KeyDistribution::Zipf { count, .. } => count,
            KeyDistribution::Hot => 1,
        };
        let mostly_limited = self.requests > 0 && self.outcomes.limited * 2 > self.requests;
        if traffic.route == Route::Gateway && spread > 1 && mostly_limited {
            vec![format!(
                "{:.0}% of answers were 429 although the traffic spreads over {spread} client addresses: \
                 a gateway that does not trust this generator's X-Forwarded-For counts every request \
                 against one client. Start it with TURNSTILE_TRUSTED_PROXIES='[\"127.0.0.1/32\"]' \
                 (or the generator's address).",
                100.0 * self.outcomes.limited as f64 / self.requests as f64
            )]
        } else {
            Vec::new()
        }
    }

    /// A human-readable summary.
    pub fn table(&self) -> String {
        let mut out = String::new();
        // A run of `compare` is labelled by backend; a plain `run` by its URLs, which would
        // repeat the target.
        if self.label.is_empty() || self.label.contains(&self.target) {
            let _ = writeln!(out, "scenario {} against {}", self.scenario, self.target);
        } else {
            let _ = writeln!(
                out,
                "scenario {} against {} ({})",
                self.scenario, self.label, self.target
            );
        }
        let _ = writeln!(
            out,
            "  {} loop, {} connections, {:.1} s measured",
            match self.mode {
                Mode::Open => "open",
                Mode::Closed => "closed",
            },
            self.connections,
            self.duration_seconds
        );
        match self.target_rate {
            Some(target) => {
                let _ = writeln!(
                    out,
                    "  rate       target {target:.0}/s, sent {:.0}/s ({:.1}%), answered {:.0}/s",
                    self.sent_rate,
                    100.0 * self.sent_rate / target.max(f64::MIN_POSITIVE),
                    self.throughput
                );
            }
            None => {
                let _ = writeln!(out, "  throughput {:.0}/s", self.throughput);
            }
        }
        let l = &self.latency_ms;
        let _ = writeln!(
            out,
            "  latency ms p50 {:.3}  p90 {:.3}  p99 {:.3}  p99.9 {:.3}  max {:.3}",
            l.p50, l.p90, l.p99, l.p999, l.max
        );
        let o = &self.outcomes;
        let _ = writeln!(
            out,
            "  requests   {} (allowed {}, limited {})",
            self.requests, o.allowed, o.limited
        );
        for (reason, count) in &o.dropped {
            let _ = writeln!(out, "  dropped    {reason}: {count}");
        }
        for (status, count) in &o.errors {
            let _ = writeln!(out, "  error      HTTP {status}: {count}");
        }
        let _ = writeln!(
            out,
            "  timeouts   {}   connection errors {}",
            o.timeouts, o.connection_errors
        );
        if self.interrupted {
            let _ = writeln!(
                out,
                "  interrupted by a signal: these figures cover only the time measured"
            );
        }
        if self.faults_injected + self.fault_errors > 0 {
            let _ = writeln!(
                out,
                "  faults     {} injected, {} failed",
                self.faults_injected, self.fault_errors
            );
        }
        out
    }

    /// HdrHistogram's percentile-distribution text (`.hgrm`), values in milliseconds, as
    /// HdrHistogram's `outputPercentileDistribution` writes it and plotting tools read it.
    pub fn percentile_distribution(&self) -> String {
        let mut out = String::new();
        let Some(histogram) = &self.histogram else {
            return out;
        };
        let _ = writeln!(
            out,
            "{:>12} {:>14} {:>10} {:>14}\n",
            "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
        );
        // The third column is cumulative (HdrHistogram's TotalCount), as .hgrm readers expect.
        let mut total = 0;
        for step in histogram.iter_quantiles(5) {
            total += step.count_since_last_iteration();
            let quantile = step.quantile_iterated_to();
            let value = step.value_iterated_to() as f64 / 1000.0;
            if quantile < 1.0 {
                let inverse = 1.0 / (1.0 - quantile);
                let _ = writeln!(
                    out,
                    "{value:>12.3} {quantile:>14.12} {total:>10} {inverse:>14.2}"
                );
            } else {
                let _ = writeln!(out, "{value:>12.3} {quantile:>14.12} {total:>10}");
            }
        }
        let _ = writeln!(
            out,
            "#[Mean    = {:>12.3}, StdDeviation   = {:>12.3}]",
            histogram.mean() / 1000.0,
            histogram.stdev() / 1000.0
        );
        let _ = writeln!(
            out,
            "#[Max     = {:>12.3}, Total count    = {:>12}]",
            histogram.max() as f64 / 1000.0,
            histogram.len()
        );
        out
    }
}
