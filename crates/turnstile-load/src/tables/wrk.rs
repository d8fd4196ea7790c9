//! `bench-wrk.sh`'s results: the gateway route's server CPU per request by two yardsticks
//! (wrk, and turnstile-load's closed loop), as ratios to the bare route of the same round.
//!
//! The input is one JSON object per line, one per run: its round, yardstick (`wrk-c32`,
//! `wrk-c64`, `turnstile-load-c64`), target (`bare`: the bare axum route; `mirror`: the bare
//! route answering the gateway's denied response byte for byte; `allowed`, `denied`: the
//! gateway route), the rate the yardstick reached (req/s) and the server's CPU µs per request
//! over the sampled window. One row per yardstick and target, each cell the median over the
//! rounds; the ratio columns are the target's CPU per request over the bare route's (and, for
//! `denied`, over the mirror's) in the same round: median, then the spread.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde::Deserialize;

use super::{TableError, grouped, median, median_and_spread};

const YARDSTICKS: [&str; 3] = ["wrk-c32", "wrk-c64", "turnstile-load-c64"];
const TARGETS: [&str; 4] = ["bare", "mirror", "allowed", "denied"];

#[derive(Debug, Deserialize)]
struct Run {
    round: u32,
    yardstick: String,
    target: String,
    rate: f64,
    cpu_us_per_request: f64,
}

/// The table for `results` (JSON lines).
pub fn table(results: &str) -> Result<String, TableError> {
    // (yardstick, target) → runs.
    let mut runs: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    for run in super::runs::<Run>(results)? {
        let yardstick = YARDSTICKS.iter().position(|name| *name == run.yardstick);
        let target = TARGETS.iter().position(|name| *name == run.target);
        if let (Some(yardstick), Some(target)) = (yardstick, target) {
            runs.entry((yardstick, target)).or_default().push(run);
        }
    }
    let mut out = String::from(
        "| yardstick | server | req/s | CPU µs/req | CPU vs bare | CPU vs mirror |\n|---|---|---|---|---|---|\n",
    );
    for ((yardstick, target), group) in &runs {
        let ratio_to = |reference: usize| {
            let Some(peers) = runs.get(&(*yardstick, reference)) else {
                return "–".to_owned();
            };
            let ratios: Vec<f64> = group
                .iter()
                .filter_map(|run| {
                    let peer = peers.iter().find(|peer| peer.round == run.round)?;
                    (peer.cpu_us_per_request > 0.0)
                        .then(|| run.cpu_us_per_request / peer.cpu_us_per_request)
                })
                .collect();
            median_and_spread(&ratios).unwrap_or_else(|| "–".to_owned())
        };
        let versus_bare = if *target == 0 {
            "–".to_owned()
        } else {
            ratio_to(0)
        };
        let versus_mirror = if TARGETS[*target] == "denied" {
            ratio_to(1)
        } else {
            "–".to_owned()
        };
        let rates: Vec<f64> = group.iter().map(|run| run.rate).collect();
        let cpu: Vec<f64> = group.iter().map(|run| run.cpu_us_per_request).collect();
        let _ = writeln!(
            out,
            "| {} | {} | {} | {:.1} | {versus_bare} | {versus_mirror} |",
            YARDSTICKS[*yardstick],
            TARGETS[*target],
            grouped(median(&rates).unwrap_or(0.0)),
            median(&cpu).unwrap_or(0.0),
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_per_yardstick_and_server_with_cpu_ratios_in_the_same_round() {
        let line = |round, yardstick, target, cpu| {
            format!(
                r#"{{"round":{round},"yardstick":"{yardstick}","target":"{target}","rate":50000,"cpu_us_per_request":{cpu}}}"#
            )
        };
        let results = [
            line(1, "wrk-c32", "bare", 10.0),
            line(1, "wrk-c32", "mirror", 11.0),
            line(1, "wrk-c32", "allowed", 12.0),
            line(1, "wrk-c32", "denied", 13.2),
            line(2, "wrk-c32", "bare", 20.0),
            line(2, "wrk-c32", "mirror", 20.0),
            line(2, "wrk-c32", "allowed", 22.0),
            line(2, "wrk-c32", "denied", 26.0),
            line(1, "turnstile-load-c64", "allowed", 9.0),
        ]
        .join("\n");
        let table = table(&results).unwrap();
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 7, "{table}");
        assert_eq!(rows[2], "| wrk-c32 | bare | 50,000 | 15.0 | – | – |");
        assert_eq!(
            rows[3],
            "| wrk-c32 | mirror | 50,000 | 15.5 | 1.05 (1.00-1.10) | – |"
        );
        assert_eq!(
            rows[4],
            "| wrk-c32 | allowed | 50,000 | 17.0 | 1.15 (1.10-1.20) | – |"
        );
        // Over bare: 1.32 and 1.30; over the mirror: 1.20 and 1.30.
        assert_eq!(
            rows[5],
            "| wrk-c32 | denied | 50,000 | 19.6 | 1.31 (1.30-1.32) | 1.25 (1.20-1.30) |"
        );
        // No bare run for that yardstick: no ratio.
        assert_eq!(
            rows[6],
            "| turnstile-load-c64 | allowed | 50,000 | 9.0 | – | – |"
        );
        assert!(matches!(
            super::table("[]"),
            Err(TableError::Result { line: 1, .. })
        ));
    }
}
