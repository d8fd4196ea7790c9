//! `turnstile-load report …`: the Markdown tables of docs/BENCHMARKS.md, made from what the
//! benchmark scripts in `loadtest/` collect.
//!
//! - [`peers`]: `bench-peers.sh`'s results (JSON lines) as ratios to the bare axum route of the
//!   same round (`report peers FILE`).
//! - [`criterion`]: criterion's medians for `cargo bench -p turnstile-backend --bench check`,
//!   each contender next to governor (`report criterion [DIR]`).
//! - [`profile`]: `perf script -F ip,sym` output of the gateway summed by stage of a request,
//!   and the hottest functions (`report profile FILE`).
//! - [`rls`]: `bench-rls.sh`'s results: `ShouldRateLimit` over gRPC next to `/v1/check` over
//!   HTTP, per backend (`report rls FILE`).
//! - [`proxy`]: `bench-proxy.sh`'s results: Turnstile's reverse proxy next to nginx
//!   `limit_req` + `proxy_pass` and the upstream alone (`report proxy FILE`).
//! - [`wrk`]: `bench-wrk.sh`'s results: the gateway route's server CPU per request by wrk and
//!   by turnstile-load, as ratios to the bare route (`report wrk FILE`).
//!
//! The scripts only drive external programs (servers, load, `cargo bench`, `perf`); everything
//! that turns their output into figures lives here, with tests that pin the exact text.
//! Numbers are formatted as the figures in docs/BENCHMARKS.md are: medians, thousands
//! separators, two decimals for ratios, one for shares.

pub mod criterion;
pub mod peers;
pub mod profile;
pub mod proxy;
pub mod rls;
pub mod wrk;

use std::path::{Path, PathBuf};

/// Why a table could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// An input file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line of the peers results is not one run's JSON record.
    #[error("results line {line} is not a run")]
    Result {
        /// The line, from 1.
        line: usize,
        /// The cause.
        source: serde_json::Error,
    },
    /// A criterion `estimates.json` is not what criterion writes.
    #[error("invalid criterion estimates {path}")]
    Estimates {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// Every ratio needs the bare route measured in the same round, and there is none.
    #[error("no {mode} baseline run (target `baseline`){at}")]
    NoBaseline {
        /// `closed-loop` or `open-loop`.
        mode: &'static str,
        /// Where it is missing (`" in round 2"`, `" in round 2 with hot keys"`), or empty when
        /// there is none at all.
        at: String,
    },
    /// A baseline figure is zero, so nothing can be a ratio to it.
    #[error("the baseline's {measure} in round {round} is 0: no ratio to it")]
    ZeroBaseline {
        /// `throughput`, `p50` or `p99`.
        measure: &'static str,
        /// The round.
        round: u32,
    },
    /// A stage pattern of the profile summary does not compile (a bug in this module).
    #[error("invalid stage pattern `{pattern}`")]
    Pattern {
        /// The pattern.
        pattern: &'static str,
        /// The cause.
        source: Box<regex::Error>,
    },
}

/// The tables, as `turnstile-load report` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Report {
    /// `bench-peers.sh`'s results (JSON lines) as tables of ratios to the bare route.
    Peers {
        /// The results, e.g. target/bench-peers/results.jsonl.
        file: PathBuf,
    },
    /// criterion's median ns per check for each contender, and its ratio to governor's.
    Criterion {
        /// criterion's output directory, after `cargo bench -p turnstile-backend --bench check`.
        #[arg(default_value = "target/criterion")]
        dir: PathBuf,
    },
    /// `perf script -F ip,sym` output of the gateway: share of samples per request stage, and
    /// the functions with the most samples of their own.
    Profile {
        /// The `perf script` output.
        file: PathBuf,
    },
    /// `bench-rls.sh`'s results (JSON lines): the rate limit service over gRPC next to
    /// `/v1/check` over HTTP, per backend.
    Rls {
        /// The results, e.g. target/bench-rls/results.jsonl.
        file: PathBuf,
    },
    /// `bench-proxy.sh`'s results (JSON lines): Turnstile's reverse proxy next to nginx and
    /// the upstream alone.
    Proxy {
        /// The results, e.g. target/bench-proxy/results.jsonl.
        file: PathBuf,
    },
    /// `bench-wrk.sh`'s results (JSON lines): the gateway route's server CPU per request by
    /// wrk and by turnstile-load, as ratios to the bare route.
    Wrk {
        /// The results, e.g. target/bench-wrk/results.jsonl.
        file: PathBuf,
    },
}

impl Report {
    /// The Markdown this subcommand prints.
    pub fn render(&self) -> Result<String, TableError> {
        match self {
            Self::Peers { file } => peers::table(&String::from_utf8_lossy(&read(file)?)),
            Self::Criterion { dir } => criterion::table(dir),
            Self::Profile { file } => profile::summary(&read(file)?),
            Self::Rls { file } => rls::table(&String::from_utf8_lossy(&read(file)?)),
            Self::Proxy { file } => proxy::table(&String::from_utf8_lossy(&read(file)?)),
            Self::Wrk { file } => wrk::table(&String::from_utf8_lossy(&read(file)?)),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, TableError> {
    std::fs::read(path).map_err(|source| TableError::Read {
        path: path.to_owned(),
        source,
    })
}

/// One run record per non-blank line of a bench script's results (JSON lines), or the line
/// that is not one.
fn runs<T: serde::de::DeserializeOwned>(results: &str) -> Result<Vec<T>, TableError> {
    results
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|source| TableError::Result {
                line: index + 1,
                source,
            })
        })
        .collect()
}

/// The median (the mean of the two middle values for an even count); `None` when empty.
fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let middle = sorted.len() / 2;
    match sorted.len() {
        0 => None,
        n if n % 2 == 1 => sorted.get(middle).copied(),
        _ => Some((sorted.get(middle - 1)? + sorted.get(middle)?) / 2.0),
    }
}

/// The smallest and the largest value (`(inf, -inf)` when empty).
fn spread(values: &[f64]) -> (f64, f64) {
    values
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), &value| {
            (low.min(value), high.max(value))
        })
}

/// `median (min-max)` of `values` with two decimals, e.g. `1.05 (1.00-1.10)`; `None` when empty.
fn median_and_spread(values: &[f64]) -> Option<String> {
    let median = median(values)?;
    let (low, high) = spread(values);
    Some(format!("{median:.2} ({low:.2}-{high:.2})"))
}

/// `value` rounded to a whole number, with a comma between groups of three digits: 113,064.
fn grouped(value: f64) -> String {
    let whole = format!("{value:.0}");
    let (sign, digits) = match whole.strip_prefix('-') {
        Some(digits) => ("-", digits),
        None => ("", whole.as_str()),
    };
    if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
        return whole;
    }
    let mut out = String::from(sign);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// `share` (a fraction) as a percentage with `decimals` decimals: 0.543 → `54.3%`.
fn percent(share: f64, decimals: usize) -> String {
    format!("{:.decimals$}%", share * 100.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_take_the_middle_or_the_mean_of_the_two_middle_values() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(spread(&[2.0, 0.5, 9.0]), (0.5, 9.0));
    }

    #[test]
    fn whole_numbers_are_grouped_by_thousands() {
        assert_eq!(grouped(0.4), "0");
        assert_eq!(grouped(999.5), "1,000");
        assert_eq!(grouped(113_064.2), "113,064");
        assert_eq!(grouped(1_234_567.0), "1,234,567");
        assert_eq!(grouped(-4_321.0), "-4,321");
        assert_eq!(grouped(f64::INFINITY), "inf");
        assert_eq!(percent(0.5432, 1), "54.3%");
        assert_eq!(percent(0.095, 0), "10%");
    }
}
