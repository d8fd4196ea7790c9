//! `bench-proxy.sh`'s results: Turnstile as a rate-limiting reverse proxy next to nginx's
//! `limit_req` + `proxy_pass` and the upstream alone, as one Markdown table.
//!
//! The input is one JSON object per line, one per `turnstile-load run`: its round, traffic
//! (`allowed`: a limit nothing reaches; `denied`: almost every request refused), target
//! (`upstream`, `nginx`, `turnstile`), mode, throughput (req/s), p50 and p99 (ms), and the
//! server's CPU µs per request over the sampled window (the proxy's own process and its
//! children; the upstream's CPU is not in it). Throughput and CPU come from the closed-loop
//! runs (the maximum), p50 and p99 from the open-loop runs (a fixed rate, the same for every
//! server of a round). One row per traffic and target, each cell the median over the rounds;
//! the last columns are Turnstile's over nginx's in the same round (median, then the spread).

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::{TableError, grouped, median, median_and_spread};

const TRAFFIC: [&str; 2] = ["allowed", "denied"];
const TARGETS: [&str; 3] = ["upstream", "nginx", "turnstile"];
const CLOSED: &str = "closed";
const OPEN: &str = "open";

#[derive(Debug, Deserialize)]
struct Run {
    round: u32,
    traffic: String,
    target: String,
    mode: String,
    throughput: f64,
    p50: f64,
    p99: f64,
    cpu_us_per_request: f64,
}

/// The table for `results` (JSON lines).
pub fn table(results: &str) -> Result<String, TableError> {
    // (traffic, target) → runs.
    let mut runs: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    for run in super::runs::<Run>(results)? {
        let traffic = TRAFFIC.iter().position(|traffic| *traffic == run.traffic);
        let target = TARGETS.iter().position(|target| *target == run.target);
        if let (Some(traffic), Some(target)) = (traffic, target) {
            runs.entry((traffic, target)).or_default().push(run);
        }
    }
    let mut out = String::from(
        "| traffic | server | req/s | p50 / p99 ms | CPU µs/req | req/s vs nginx | p99 vs nginx |\n|---|---|---|---|---|---|---|\n",
    );
    for ((traffic, target), group) in &runs {
        let med = |mode: &str, field: fn(&Run) -> f64| {
            let values: Vec<f64> = group
                .iter()
                .filter(|run| run.mode == mode)
                .map(field)
                .collect();
            median(&values).unwrap_or(0.0)
        };
        let nginx = runs.get(&(*traffic, 1));
        let versus = |mode: &str, field: fn(&Run) -> f64| {
            let ratios: Vec<f64> = group
                .iter()
                .filter(|run| run.mode == mode)
                .filter_map(|run| {
                    let peer = nginx?
                        .iter()
                        .find(|peer| peer.round == run.round && peer.mode == mode)?;
                    (field(peer) > 0.0).then(|| field(run) / field(peer))
                })
                .collect();
            match median_and_spread(&ratios) {
                Some(cell) if TARGETS[*target] == "turnstile" => cell,
                _ => "–".to_owned(),
            }
        };
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.2} / {:.2} | {:.1} | {} | {} |",
            TRAFFIC[*traffic],
            TARGETS[*target],
            grouped(med(CLOSED, |run| run.throughput)),
            med(OPEN, |run| run.p50),
            med(OPEN, |run| run.p99),
            med(CLOSED, |run| run.cpu_us_per_request),
            versus(CLOSED, |run| run.throughput),
            versus(OPEN, |run| run.p99),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_traffic_and_server_with_ratios_to_nginx_in_the_same_round() {
        // A closed-loop run (throughput, CPU) and an open-loop one (latency) each.
        let line = |round, traffic, target, throughput, p99| {
            format!(
                r#"{{"round":{round},"traffic":"{traffic}","target":"{target}","mode":"closed","throughput":{throughput},"p50":9.0,"p99":9.0,"cpu_us_per_request":40.0}}
{{"round":{round},"traffic":"{traffic}","target":"{target}","mode":"open","throughput":1000,"p50":0.5,"p99":{p99},"cpu_us_per_request":0}}"#
            )
        };
        let results = [
            line(1, "allowed", "nginx", 10000.0, 2.0),
            line(1, "allowed", "turnstile", 11000.0, 2.0),
            line(2, "allowed", "nginx", 12000.0, 2.0),
            line(2, "allowed", "turnstile", 12000.0, 3.0),
            line(1, "allowed", "upstream", 30000.0, 1.0),
            line(1, "denied", "turnstile", 50000.0, 1.0),
        ]
        .join("\n");
        let table = table(&results).unwrap();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 6, "{table}");
        assert_eq!(
            rows[2],
            "| allowed | upstream | 30,000 | 0.50 / 1.00 | 40.0 | – | – |"
        );
        assert_eq!(
            rows[3],
            "| allowed | nginx | 11,000 | 0.50 / 2.00 | 40.0 | – | – |"
        );
        // Throughput 1.10 and 1.00 (median 1.05); p99 1.00 and 1.50 (median 1.25).
        assert_eq!(
            rows[4],
            "| allowed | turnstile | 11,500 | 0.50 / 2.50 | 40.0 | 1.05 (1.00-1.10) | 1.25 (1.00-1.50) |"
        );
        // No nginx run for denied traffic: no ratio.
        assert_eq!(
            rows[5],
            "| denied | turnstile | 50,000 | 0.50 / 1.00 | 40.0 | – | – |"
        );
        assert!(matches!(
            super::table("{}"),
            Err(TableError::Result { line: 1, .. })
        ));
    }
}
