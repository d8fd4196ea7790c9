//! `bench-rls.sh`'s results: Envoy's rate limit service over gRPC next to `/v1/check` over
//! HTTP, per backend, as one Markdown table.
//!
//! The input is one JSON object per line, one per `turnstile-load run`: its round, backend,
//! transport (`http` for `/v1/check`, `grpc` for `ShouldRateLimit`), throughput (closed loop),
//! p50 and p99 (ms), and the gateway's CPU µs per call over the sampled window. Each cell is the
//! median over the rounds; the last column is the gRPC call's CPU over the HTTP check's, per
//! round then the median (lower is better; the target is at most 1).

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
    throughput: f64,
    p50: f64,
    p99: f64,
    cpu_us_per_call: f64,
}

/// The table for `results` (JSON lines).
pub fn table(results: &str) -> Result<String, TableError> {
    let mut runs: BTreeMap<(&str, &str), Vec<Run>> = BTreeMap::new();
    let parsed: Vec<Run> = results
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            serde_json::from_str(line).map_err(|source| TableError::Result {
                line: index + 1,
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    for run in parsed {
        let backend = BACKENDS
            .iter()
            .find(|backend| **backend == run.backend)
            .copied()
            .unwrap_or("other");
        let transport = if run.transport == "grpc" {
            "grpc"
        } else {
            "http"
        };
        runs.entry((backend, transport)).or_default().push(run);
    }
    let mut out = String::from(
        "| backend | `/v1/check` (HTTP) calls/s | `ShouldRateLimit` (gRPC) calls/s | HTTP p50 / p99 ms | gRPC p50 / p99 ms | HTTP CPU µs/call | gRPC CPU µs/call | gRPC / HTTP CPU |\n|---|---|---|---|---|---|---|---|\n",
    );
    for backend in BACKENDS {
        let (Some(http), Some(grpc)) = (runs.get(&(backend, "http")), runs.get(&(backend, "grpc")))
        else {
            continue;
        };
        let med = |runs: &[Run], field: fn(&Run) -> f64| {
            median(&runs.iter().map(field).collect::<Vec<_>>()).unwrap_or(0.0)
        };
        // The CPU ratio of each round, then the median of those.
        let ratios: Vec<f64> = grpc
            .iter()
            .filter_map(|grpc| {
                let http = http.iter().find(|http| http.round == grpc.round)?;
                (http.cpu_us_per_call > 0.0).then(|| grpc.cpu_us_per_call / http.cpu_us_per_call)
            })
            .collect();
        let _ = writeln!(
            out,
            "| {backend} | {} | {} | {:.2} / {:.2} | {:.2} / {:.2} | {:.2} | {:.2} | {} |",
            grouped(med(http, |run| run.throughput)),
            grouped(med(grpc, |run| run.throughput)),
            med(http, |run| run.p50),
            med(http, |run| run.p99),
            med(grpc, |run| run.p50),
            med(grpc, |run| run.p99),
            med(http, |run| run.cpu_us_per_call),
            med(grpc, |run| run.cpu_us_per_call),
            median(&ratios).map_or_else(|| "–".to_owned(), |ratio| format!("{ratio:.2}")),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_takes_medians_per_backend_and_transport_and_the_cpu_ratio_per_round() {
        let line = |round, backend, transport, throughput, cpu| {
            format!(
                r#"{{"round":{round},"backend":"{backend}","transport":"{transport}","throughput":{throughput},"p50":0.5,"p99":1.25,"cpu_us_per_call":{cpu}}}"#
            )
        };
        let results = [
            line(1, "concurrent", "http", 40000.0, 20.0),
            line(1, "concurrent", "grpc", 30000.0, 18.0),
            line(2, "concurrent", "http", 42000.0, 22.0),
            line(2, "concurrent", "grpc", 32000.0, 24.2),
            line(3, "concurrent", "http", 41000.0, 21.0),
            line(3, "concurrent", "grpc", 31000.0, 21.0),
            line(1, "actor", "http", 9000.0, 30.0),
        ]
        .join("\n");
        let table = table(&results).unwrap();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 3, "{table}");
        // Ratios 0.90, 1.10, 1.00: median 1.00. The actor has no gRPC run: no row.
        assert_eq!(
            rows[2],
            "| concurrent | 41,000 | 31,000 | 0.50 / 1.25 | 0.50 / 1.25 | 21.00 | 21.00 | 1.00 |"
        );
        assert!(matches!(
            super::table("not json"),
            Err(TableError::Result { line: 1, .. })
        ));
    }
}
