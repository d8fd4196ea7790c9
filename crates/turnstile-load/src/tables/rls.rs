//! `bench-rls.sh`'s results: Envoy's rate limit service over gRPC next to `/v1/check` over
//! HTTP, per backend, as one Markdown table.
//!
//! The input is one JSON object per line, one per `turnstile-load run`: its round, backend,
//! transport (`http` for `/v1/check`, `grpc` for `ShouldRateLimit`), descriptors per call (1
//! for `/v1/check`: one decision per call), throughput (calls/s, closed loop), p50 and p99
//! (ms), and the gateway's CPU µs per call over the sampled window. One row per backend and
//! kind of call; each cell is the median over the rounds. The last column is the CPU per
//! *decision* over `/v1/check`'s on the same backend, per round then the median (lower is
//! better; the target is at most 1).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::{TableError, grouped, median};

/// The backends, in the order of the table's rows (those with no results are left out).
const BACKENDS: [&str; 4] = ["actor", "sharded", "concurrent", "redis"];

#[derive(Debug, Deserialize)]
struct Run {
    round: u32,
    backend: String,
    transport: String,
    #[serde(default = "one")]
    descriptors: u32,
    throughput: f64,
    p50: f64,
    p99: f64,
    cpu_us_per_call: f64,
}

fn one() -> u32 {
    1
}

impl Run {
    fn cpu_per_decision(&self) -> f64 {
        self.cpu_us_per_call / f64::from(self.descriptors.max(1))
    }
}

/// The table for `results` (JSON lines).
pub fn table(results: &str) -> Result<String, TableError> {
    // (backend, is gRPC, descriptors) → runs; `/v1/check` sorts first.
    let mut runs: BTreeMap<(usize, bool, u32), Vec<Run>> = BTreeMap::new();
    for run in super::runs::<Run>(results)? {
        let Some(backend) = BACKENDS.iter().position(|backend| *backend == run.backend) else {
            continue;
        };
        let grpc = run.transport == "grpc";
        runs.entry((backend, grpc, run.descriptors))
            .or_default()
            .push(run);
    }
    let mut out = String::from(
        "| backend | call | calls/s | decisions/s | p50 / p99 ms | CPU µs/call | CPU µs/decision | CPU per decision / `/v1/check`'s |\n|---|---|---|---|---|---|---|---|\n",
    );
    for ((backend, grpc, descriptors), group) in &runs {
        let med = |field: fn(&Run) -> f64| {
            median(&group.iter().map(field).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        let check = runs.get(&(*backend, false, 1));
        let ratios: Vec<f64> = group
            .iter()
            .filter_map(|run| {
                let check = check?.iter().find(|check| check.round == run.round)?;
                (check.cpu_per_decision() > 0.0)
                    .then(|| run.cpu_per_decision() / check.cpu_per_decision())
            })
            .collect();
        let call = if *grpc {
            format!(
                "`ShouldRateLimit` (gRPC), {descriptors} descriptor{}",
                if *descriptors == 1 { "" } else { "s" }
            )
        } else {
            "`/v1/check` (HTTP)".to_owned()
        };
        let _ = writeln!(
            out,
            "| {} | {call} | {} | {} | {:.2} / {:.2} | {:.2} | {:.2} | {} |",
            BACKENDS[*backend],
            grouped(med(|run| run.throughput)),
            grouped(med(|run| run.throughput * f64::from(run.descriptors.max(1)))),
            med(|run| run.p50),
            med(|run| run.p99),
            med(|run| run.cpu_us_per_call),
            med(Run::cpu_per_decision),
            median(&ratios).map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}")),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_backend_and_call_with_medians_and_the_per_decision_cpu_ratio() {
        let line = |round, backend, transport, descriptors, throughput, cpu| {
            format!(
                r#"{{"round":{round},"backend":"{backend}","transport":"{transport}","descriptors":{descriptors},"throughput":{throughput},"p50":0.5,"p99":1.25,"cpu_us_per_call":{cpu}}}"#
            )
        };
        let results = [
            line(1, "concurrent", "http", 1, 40000.0, 20.0),
            line(1, "concurrent", "grpc", 3, 30000.0, 54.0),
            line(2, "concurrent", "http", 1, 42000.0, 22.0),
            line(2, "concurrent", "grpc", 3, 32000.0, 72.6),
            line(3, "concurrent", "http", 1, 41000.0, 21.0),
            line(3, "concurrent", "grpc", 3, 31000.0, 63.0),
            line(1, "actor", "grpc", 1, 9000.0, 30.0),
        ]
        .join("\n");
        let table = table(&results).unwrap();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 5, "{table}");
        // The actor has no /v1/check run: no ratio.
        assert_eq!(
            rows[2],
            "| actor | `ShouldRateLimit` (gRPC), 1 descriptor | 9,000 | 9,000 | 0.50 / 1.25 | 30.00 | 30.00 | – |"
        );
        assert_eq!(
            rows[3],
            "| concurrent | `/v1/check` (HTTP) | 41,000 | 41,000 | 0.50 / 1.25 | 21.00 | 21.00 | 1.00 |"
        );
        // Per decision 18, 24.2, 21 against 20, 22, 21: ratios 0.90, 1.10, 1.00.
        assert_eq!(
            rows[4],
            "| concurrent | `ShouldRateLimit` (gRPC), 3 descriptors | 31,000 | 93,000 | 0.50 / 1.25 | 63.00 | 21.00 | 1.00 |"
        );
        assert!(matches!(
            super::table("not json"),
            Err(TableError::Result { line: 1, .. })
        ));
    }
}
