//! criterion's medians for `cargo bench -p turnstile-backend --bench check`, as one table.
//!
//! criterion saves each benchmark's estimates as
//! `<dir>/check_<shape>_<n>_thread/<contender>/<n>/new/estimates.json`; the table has one row
//! per contender and one column per shape and thread count, each cell the median time per
//! check and, for all but governor, its ratio to governor's in the same column. A benchmark
//! that has not been run shows `n/a`.

use std::fmt::Write;
use std::path::Path;

use serde::Deserialize;

use super::{TableError, grouped};

const SHAPES: [&str; 2] = ["hot_key", "many_keys"];
const THREADS: [u32; 2] = [1, 2];
/// The reference first: every other row is a ratio to it.
const CONTENDERS: [&str; 4] = ["governor", "concurrent", "sharded", "actor"];
const REFERENCE: &str = "governor";

/// The part of criterion's `estimates.json` the table reads.
#[derive(Debug, Deserialize)]
struct Estimates {
    median: Estimate,
}

#[derive(Debug, Deserialize)]
struct Estimate {
    point_estimate: f64,
}

/// The table, from criterion's output directory (usually `target/criterion`).
pub fn table(dir: &Path) -> Result<String, TableError> {
    // A mistyped directory is an error, not a table of `n/a`s.
    std::fs::read_dir(dir).map_err(|source| TableError::Read {
        path: dir.to_owned(),
        source,
    })?;
    let columns: Vec<(&str, u32)> = SHAPES
        .iter()
        .flat_map(|shape| THREADS.iter().map(move |threads| (*shape, *threads)))
        .collect();
    let mut out = String::from("| contender |");
    for (shape, threads) in &columns {
        let plural = if *threads > 1 { "s" } else { "" };
        let _ = write!(
            out,
            " {}, {threads} thread{plural} |",
            shape.replace('_', " ")
        );
    }
    out.push('\n');
    out.push_str(&"|---".repeat(columns.len() + 1));
    out.push_str("|\n");
    for contender in CONTENDERS {
        let _ = write!(out, "| {contender} |");
        for (shape, threads) in &columns {
            let value = median_ns(dir, shape, *threads, contender)?;
            let reference = median_ns(dir, shape, *threads, REFERENCE)?;
            let cell = match (value, reference) {
                (None, _) => "n/a".to_owned(),
                (Some(value), Some(reference)) if contender != REFERENCE && reference != 0.0 => {
                    format!("{} ns ({:.2}×)", grouped(value), value / reference)
                }
                (Some(value), _) => format!("{} ns", grouped(value)),
            };
            let _ = write!(out, " {cell} |");
        }
        out.push('\n');
    }
    Ok(out)
}

/// The median ns per check of one benchmark, or `None` when it has no estimates.
fn median_ns(
    dir: &Path,
    shape: &str,
    threads: u32,
    contender: &str,
) -> Result<Option<f64>, TableError> {
    let path = dir
        .join(format!("check_{shape}_{threads}_thread"))
        .join(contender)
        .join(threads.to_string())
        .join("new")
        .join("estimates.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => return Err(TableError::Read { path, source }),
    };
    let estimates: Estimates =
        serde_json::from_str(&text).map_err(|source| TableError::Estimates { path, source })?;
    Ok(Some(estimates.median.point_estimate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn estimate(dir: &Path, shape: &str, threads: u32, contender: &str, median: f64) {
        let new = dir
            .join(format!("check_{shape}_{threads}_thread"))
            .join(contender)
            .join(threads.to_string())
            .join("new");
        std::fs::create_dir_all(&new).unwrap();
        let estimates = serde_json::json!({
            "mean": { "point_estimate": median * 1.01, "standard_error": 0.3 },
            "median": { "point_estimate": median, "standard_error": 0.2 },
        });
        std::fs::write(new.join("estimates.json"), estimates.to_string()).unwrap();
    }

    #[test]
    fn each_contender_is_a_ratio_to_governor_in_its_column_and_missing_runs_are_na() {
        let dir = tempfile::tempdir().unwrap();
        for (shape, threads, contender, median) in [
            ("hot_key", 1, "governor", 26.4),
            ("hot_key", 1, "concurrent", 39.3),
            ("hot_key", 1, "sharded", 751.2),
            ("hot_key", 1, "actor", 960.0),
            // No governor here: the others have no ratio.
            ("hot_key", 2, "concurrent", 64.0),
            ("hot_key", 2, "actor", 803.5),
            ("many_keys", 1, "governor", 43.0),
            ("many_keys", 1, "concurrent", 47.2),
            ("many_keys", 1, "actor", 1196.4),
            // A zero reference gives no ratio either.
            ("many_keys", 2, "governor", 0.0),
            ("many_keys", 2, "concurrent", 35.0),
        ] {
            estimate(dir.path(), shape, threads, contender, median);
        }
        assert_eq!(
            table(dir.path()).unwrap(),
            "| contender | hot key, 1 thread | hot key, 2 threads | many keys, 1 thread | many keys, 2 threads |\n\
             |---|---|---|---|---|\n\
             | governor | 26 ns | n/a | 43 ns | 0 ns |\n\
             | concurrent | 39 ns (1.49×) | 64 ns | 47 ns (1.10×) | 35 ns |\n\
             | sharded | 751 ns (28.45×) | n/a | n/a | n/a |\n\
             | actor | 960 ns (36.36×) | 804 ns | 1,196 ns (27.82×) | n/a |\n"
        );
    }

    #[test]
    fn a_directory_that_is_not_there_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let error = table(&dir.path().join("criterion")).unwrap_err();
        assert!(matches!(error, TableError::Read { .. }), "{error}");
    }

    #[test]
    fn estimates_criterion_did_not_write_are_an_error() {
        let dir = tempfile::tempdir().unwrap();
        estimate(dir.path(), "hot_key", 1, "governor", 26.4);
        let broken = dir.path().join("check_many_keys_2_thread/actor/2/new");
        std::fs::create_dir_all(&broken).unwrap();
        std::fs::write(broken.join("estimates.json"), r#"{"median": {}}"#).unwrap();
        let error = table(dir.path()).unwrap_err();
        assert!(
            matches!(&error, TableError::Estimates { path, .. } if path.ends_with("check_many_keys_2_thread/actor/2/new/estimates.json")),
            "{error}"
        );
    }
}
