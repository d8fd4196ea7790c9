//! `bench-peers.sh`'s results as Markdown tables of ratios to the baseline.
//!
//! The input is one JSON object per line, one per `turnstile-load run`: its round, policy
//! (`allowed`, `denied`, or `none` for the baseline), keys (`many`, `hot`), target (`baseline`
//! for the bare axum route, or a contender), mode (`closed`, `open`), throughput, p50 and p99
//! (ms), the server's CPU µs per request (closed loop; null when not sampled), and its
//! allowed, limited and other (neither) answers.
//!
//! Every ratio compares a target with the bare axum route measured in the same round:
//! throughput (closed loop) as target / baseline (higher is better), the server's CPU time per
//! request in that closed-loop run as target / baseline (lower is better; what the limiter
//! costs its host, and steadier than throughput when the machine is shared), latency (open
//! loop at 70% of the baseline's maximum, same keys) as target / baseline (lower is better).
//! Each cell is the median over the rounds, with the spread (min-max) after it.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use serde::Deserialize;

use super::{TableError, grouped, median, median_and_spread, percent, runs, spread};

/// The contenders, in the order of the table's rows (those with no results are left out).
const TARGETS: [&str; 5] = ["actor", "sharded", "concurrent", "tower_governor", "nginx"];
const POLICIES: [&str; 2] = ["allowed", "denied"];
const KEYS: [&str; 2] = ["many", "hot"];
const BASELINE: &str = "baseline";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Mode {
    Closed,
    Open,
}

/// One line of the results.
#[derive(Debug, Deserialize)]
struct Run {
    round: u32,
    policy: String,
    keys: String,
    target: String,
    mode: Mode,
    throughput: f64,
    p50: f64,
    p99: f64,
    #[serde(default)]
    cpu_us_per_request: Option<f64>,
    allowed: i64,
    limited: i64,
    other: i64,
}

impl Run {
    /// The CPU figure when one was sampled (a zero means none was).
    fn cpu(&self) -> Option<f64> {
        self.cpu_us_per_request.filter(|cpu| *cpu != 0.0)
    }
}

/// One row of the table: every round's figure for each column.
#[derive(Debug, Default)]
struct Cells {
    throughput: Vec<f64>,
    cpu: Vec<f64>,
    p50: Vec<f64>,
    p99: Vec<f64>,
    admitted: Vec<f64>,
    other: Vec<f64>,
}

/// The three summary lines, a blank line, and the table (policy × keys × target).
pub fn table(results: &str) -> Result<String, TableError> {
    let runs: Vec<Run> = runs(results)?;
    let mut closed_baseline = BTreeMap::new();
    let mut open_baseline = BTreeMap::new();
    for run in runs.iter().filter(|run| run.target == BASELINE) {
        match run.mode {
            Mode::Closed => closed_baseline.insert(run.round, run),
            Mode::Open => open_baseline.insert((run.round, run.keys.as_str()), run),
        };
    }
    let mut cells: HashMap<(&str, &str, &str), Cells> = HashMap::new();
    for run in runs.iter().filter(|run| run.target != BASELINE) {
        let row = cells
            .entry((&run.policy, &run.keys, &run.target))
            .or_default();
        match run.mode {
            Mode::Closed => {
                let base =
                    closed_baseline
                        .get(&run.round)
                        .ok_or_else(|| TableError::NoBaseline {
                            mode: "closed-loop",
                            at: format!(" in round {}", run.round),
                        })?;
                row.throughput.push(ratio(
                    run.throughput,
                    base.throughput,
                    "throughput",
                    run.round,
                )?);
                if let (Some(cpu), Some(base_cpu)) = (run.cpu(), base.cpu()) {
                    row.cpu.push(cpu / base_cpu);
                }
                let answered = (run.allowed + run.limited + run.other).max(1);
                row.admitted.push(run.allowed as f64 / answered as f64);
                row.other.push(run.other as f64);
            }
            Mode::Open => {
                let base = open_baseline
                    .get(&(run.round, run.keys.as_str()))
                    .ok_or_else(|| TableError::NoBaseline {
                        mode: "open-loop",
                        at: format!(" in round {} with {} keys", run.round, run.keys),
                    })?;
                row.p50.push(ratio(run.p50, base.p50, "p50", run.round)?);
                row.p99.push(ratio(run.p99, base.p99, "p99", run.round)?);
            }
        }
    }

    let mut out = String::new();
    let rates: Vec<f64> = closed_baseline.values().map(|run| run.throughput).collect();
    let rate = median(&rates).ok_or_else(|| TableError::NoBaseline {
        mode: "closed-loop",
        at: String::new(),
    })?;
    let (low, high) = spread(&rates);
    let _ = writeln!(
        out,
        "Baseline (bare axum route, closed loop, 64 connections): median {} req/s over {} rounds ({}-{}).",
        grouped(rate),
        rates.len(),
        grouped(low),
        grouped(high)
    );
    let cpus: Vec<f64> = closed_baseline
        .values()
        .filter_map(|run| run.cpu())
        .collect();
    if let Some(cpu) = median(&cpus) {
        let (low, high) = spread(&cpus);
        let _ = writeln!(
            out,
            "Baseline server CPU per request (closed loop): median {cpu:.2} µs ({low:.2}-{high:.2})."
        );
    }
    let p50s: Vec<f64> = open_baseline.values().map(|run| run.p50).collect();
    let p99s: Vec<f64> = open_baseline.values().map(|run| run.p99).collect();
    let no_open = || TableError::NoBaseline {
        mode: "open-loop",
        at: String::new(),
    };
    let _ = writeln!(
        out,
        "Open-loop rate for the latency columns: 70% of each round's baseline maximum; baseline p50 {:.2} ms, p99 {:.2} ms.",
        median(&p50s).ok_or_else(no_open)?,
        median(&p99s).ok_or_else(no_open)?
    );
    out.push('\n');
    out.push_str("| policy | keys | target | throughput / baseline | CPU per request / baseline | p50 / baseline | p99 / baseline | admitted | not decided |\n");
    out.push_str("|---|---|---|---|---|---|---|---|---|\n");
    let targets = TARGETS
        .iter()
        .filter(|target| runs.iter().any(|run| run.target == **target));
    let empty = Cells::default();
    for policy in POLICIES {
        for keys in KEYS {
            for target in targets.clone() {
                let row = cells.get(&(policy, keys, *target)).unwrap_or(&empty);
                let admitted =
                    median(&row.admitted).map_or_else(|| "-".to_owned(), |share| percent(share, 0));
                // A count: the median's whole part, as the rounds' counts are whole.
                let other = median(&row.other).map_or_else(
                    || "-".to_owned(),
                    |other| format!("{}", other.trunc() as i64),
                );
                let _ = writeln!(
                    out,
                    "| {policy} | {keys} | {target} | {} | {} | {} | {} | {admitted} | {other} |",
                    ratio_cell(&row.throughput),
                    ratio_cell(&row.cpu),
                    ratio_cell(&row.p50),
                    ratio_cell(&row.p99),
                );
            }
        }
    }
    Ok(out)
}

fn ratio(value: f64, base: f64, measure: &'static str, round: u32) -> Result<f64, TableError> {
    if base == 0.0 {
        return Err(TableError::ZeroBaseline { measure, round });
    }
    Ok(value / base)
}

/// `median (min-max)`, or `-` when there is nothing to show.
fn ratio_cell(values: &[f64]) -> String {
    median_and_spread(values).unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs as bench-peers.sh records them, written as a table: a header row of field names,
    /// then one run per row; `-` is null.
    fn results(table: &str) -> String {
        let mut rows = table.lines().filter(|row| !row.trim().is_empty());
        let names: Vec<&str> = rows.next().unwrap().split_whitespace().collect();
        let mut text = String::new();
        for row in rows {
            let run: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .zip(row.split_whitespace())
                .map(|(name, field)| {
                    let value = match field {
                        "-" => serde_json::Value::Null,
                        _ => serde_json::from_str(field).unwrap_or_else(|_| field.into()),
                    };
                    ((*name).to_owned(), value)
                })
                .collect();
            text.push_str(&format!("{}\n", serde_json::Value::Object(run)));
        }
        text
    }

    const HEADER: &str = "| policy | keys | target | throughput / baseline | CPU per request / baseline | p50 / baseline | p99 / baseline | admitted | not decided |\n|---|---|---|---|---|---|---|---|---|\n";

    #[test]
    fn three_rounds_give_each_targets_median_ratio_to_its_rounds_baseline_and_the_spread() {
        // In round 3, denied/hot/concurrent's CPU figure of 0 is one that was not sampled.
        let text = results(
            "
            round policy  keys target     mode   throughput p50  p99 cpu_us_per_request allowed limited other
            1     none    many baseline   closed 100000.0   0.6  1.2 8.0                300000  0       0
            1     none    many baseline   open   70000.0    1.6  3.2 -                  210000  0       0
            1     none    hot  baseline   open   70000.0    1.8  4.0 -                  210000  0       0
            1     allowed many concurrent closed 95000.0    0.6  1.3 8.4                285000  0       0
            1     allowed many concurrent open   70000.0    1.5  3.0 -                  210000  0       0
            1     denied  hot  concurrent closed 90000.0    0.6  1.4 8.8                3       269990  7
            1     denied  hot  concurrent open   70000.0    1.9  5.0 -                  3       209997  0
            1     allowed many nginx      closed 102000.0   0.6  1.2 8.2                306000  0       0
            2     none    many baseline   closed 120000.0   0.5  1.0 8.5                360000  0       0
            2     none    many baseline   open   84000.0    1.7  3.4 -                  252000  0       0
            2     none    hot  baseline   open   84000.0    2.0  3.6 -                  252000  0       0
            2     allowed many concurrent closed 126000.0   0.5  1.1 8.1                378000  0       0
            2     allowed many concurrent open   84000.0    1.7  2.7 -                  252000  0       0
            2     denied  hot  concurrent closed 108000.0   0.5  1.2 9.0                3       323996  1
            2     denied  hot  concurrent open   84000.0    2.2  7.2 -                  3       251997  0
            3     none    many baseline   closed 110000.0   0.55 1.1 10.0               330000  0       0
            3     none    many baseline   open   77000.0    1.5  3.0 -                  231000  0       0
            3     none    hot  baseline   open   77000.0    1.9  3.8 -                  231000  0       0
            3     allowed many concurrent closed 99000.0    0.55 1.2 11.0               297000  0       0
            3     allowed many concurrent open   77000.0    1.2  3.3 -                  231000  0       0
            3     denied  hot  concurrent closed 99000.0    0.55 1.3 0.0                3       296995  2
            3     denied  hot  concurrent open   77000.0    1.9  4.6 -                  3       230997  0
            ",
        );
        let expected = String::from(
            "Baseline (bare axum route, closed loop, 64 connections): median 110,000 req/s over 3 rounds (100,000-120,000).\n\
             Baseline server CPU per request (closed loop): median 8.50 µs (8.00-10.00).\n\
             Open-loop rate for the latency columns: 70% of each round's baseline maximum; baseline p50 1.75 ms, p99 3.50 ms.\n\
             \n",
        ) + HEADER
            + "| allowed | many | concurrent | 0.95 (0.90-1.05) | 1.05 (0.95-1.10) | 0.94 (0.80-1.00) | 0.94 (0.79-1.10) | 100% | 0 |\n\
               | allowed | many | nginx | 1.02 (1.02-1.02) | 1.02 (1.02-1.02) | - | - | 100% | 0 |\n\
               | allowed | hot | concurrent | - | - | - | - | - | - |\n\
               | allowed | hot | nginx | - | - | - | - | - | - |\n\
               | denied | many | concurrent | - | - | - | - | - | - |\n\
               | denied | many | nginx | - | - | - | - | - | - |\n\
               | denied | hot | concurrent | 0.90 (0.90-0.90) | 1.08 (1.06-1.10) | 1.06 (1.00-1.10) | 1.25 (1.21-2.00) | 0% | 2 |\n\
               | denied | hot | nginx | - | - | - | - | - | - |\n";
        assert_eq!(table(&text).unwrap(), expected);
    }

    #[test]
    fn two_rounds_take_the_mean_of_the_middle_pair_and_no_cpu_line_when_none_was_sampled() {
        let fields = "round policy keys target mode throughput p50 p99 cpu_us_per_request allowed limited other";
        let mut text = results(&format!(
            "{fields}
            1 none   many baseline       closed 97745.4  0.6   1.2   - 300000 0      0
            1 none   many baseline       open   68000.0  1.71  3.49  - 200000 0      0
            1 denied many tower_governor closed 44000.0  1.0   9.0   - 20000  110000 1
            1 denied many tower_governor open   30000.0  636.3 942.1 - 20000  90000  0"
        ));
        // Blank lines are skipped.
        text.push('\n');
        text += &results(&format!(
            "{fields}
            2 none   many baseline       closed 119927.0 0.5   1.0   - 360000 0      0
            2 none   many baseline       open   84000.0  1.65  3.3   - 252000 0      0
            2 denied many tower_governor closed 54000.0  1.0   8.0   - 24000  138000 2
            2 denied many tower_governor open   31000.0  500.0 800.0 - 24000  100000 0"
        ));
        let expected = String::from(
            "Baseline (bare axum route, closed loop, 64 connections): median 108,836 req/s over 2 rounds (97,745-119,927).\n\
             Open-loop rate for the latency columns: 70% of each round's baseline maximum; baseline p50 1.68 ms, p99 3.40 ms.\n\
             \n",
        ) + HEADER
            + "| allowed | many | tower_governor | - | - | - | - | - | - |\n\
               | allowed | hot | tower_governor | - | - | - | - | - | - |\n\
               | denied | many | tower_governor | 0.45 (0.45-0.45) | - | 337.57 (303.03-372.11) | 256.18 (242.42-269.94) | 15% | 1 |\n\
               | denied | hot | tower_governor | - | - | - | - | - | - |\n";
        assert_eq!(table(&text).unwrap(), expected);
    }

    #[test]
    fn a_run_without_its_rounds_baseline_or_against_a_zero_one_is_an_error() {
        let fields = "round policy keys target mode throughput p50 p99 allowed limited other";
        let closed = "1 none many baseline closed 1000.0 1.0 2.0 3000 0 0";
        let open = "1 none many baseline open 700.0 1.0 2.0 2100 0 0";
        let error = table(&results(&format!(
            "{fields}\n{closed}\n{open}\n2 allowed many actor closed 900.0 1.0 2.0 2700 0 0"
        )))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no closed-loop baseline run (target `baseline`) in round 2"
        );

        let error = table(&results(&format!(
            "{fields}\n{closed}\n{open}\n1 allowed hot actor open 700.0 1.0 2.0 2100 0 0"
        )))
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            "no open-loop baseline run (target `baseline`) in round 1 with hot keys"
        );

        let error = table(&results(&format!(
            "{fields}\n1 none many baseline closed 0.0 1.0 2.0 0 0 0\n{open}\n\
             1 allowed many actor closed 900.0 1.0 2.0 2700 0 0"
        )))
        .unwrap_err();
        assert!(
            matches!(
                error,
                TableError::ZeroBaseline {
                    measure: "throughput",
                    round: 1
                }
            ),
            "{error}"
        );

        let error = table(&results(&format!("{fields}\n{open}"))).unwrap_err();
        assert_eq!(
            error.to_string(),
            "no closed-loop baseline run (target `baseline`)"
        );
    }

    #[test]
    fn a_line_that_is_not_a_run_names_its_line() {
        let text = results(
            "round policy keys target mode throughput p50 p99 allowed limited other
             1 none many baseline closed 1000.0 1.0 2.0 3000 0 0",
        ) + "{\"round\": 1, \"mode\": \"sideways\"}\n";
        let error = table(&text).unwrap_err();
        assert!(
            matches!(error, TableError::Result { line: 2, .. }),
            "{error}"
        );
    }
}
