//! The shipped Grafana dashboards, read as JSON, and every PromQL expression in them: panel
//! targets (rows' nested panels included), annotation queries, and query variables.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::LazyLock;

use regex::Regex;
use serde_json::Value;

use crate::workspace_root;

/// One dashboard file.
pub struct Dashboard {
    /// The file name, for messages.
    pub file: String,
    /// Its JSON.
    pub json: Value,
}

/// One PromQL expression and where it sits, for messages.
#[derive(Debug, Clone)]
pub struct Query {
    /// `file › panel title › refId`, `file › annotation name`, or `file › variable name`.
    pub location: String,
    /// The expression as written (template variables still in it).
    pub expr: String,
}

/// Every `dashboards/*.json`, sorted by name. Panics if one is not JSON.
pub fn load() -> Vec<Dashboard> {
    let dir = workspace_root().join("dashboards");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", dir.display()))
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("readable dashboard");
            Dashboard {
                file: path.file_name().unwrap().to_string_lossy().into_owned(),
                json: serde_json::from_str(&text)
                    .unwrap_or_else(|error| panic!("{} is not JSON: {error}", path.display())),
            }
        })
        .collect()
}

/// Every panel, with rows' collapsed children flattened in.
pub fn panels(dashboard: &Dashboard) -> Vec<&Value> {
    let mut out = Vec::new();
    for panel in dashboard.json["panels"].as_array().into_iter().flatten() {
        out.push(panel);
        out.extend(panel["panels"].as_array().into_iter().flatten());
    }
    out
}

/// The `label_values(selector, label)` of a query variable, as `(selector, label)`.
pub fn label_values(query: &str) -> Option<(String, String)> {
    static LABEL_VALUES: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^\s*label_values\(\s*(.+?)\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)\s*$").unwrap()
    });
    let captures = LABEL_VALUES.captures(query)?;
    Some((captures[1].to_owned(), captures[2].to_owned()))
}

/// Every PromQL expression in `dashboard`. A `label_values(selector, label)` variable yields
/// its selector (the PromQL Grafana sends to find the values).
pub fn queries(dashboard: &Dashboard) -> Vec<Query> {
    let mut out = Vec::new();
    for panel in panels(dashboard) {
        let title = panel["title"].as_str().unwrap_or("(untitled)");
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                out.push(Query {
                    location: format!(
                        "{} › {title} › {}",
                        dashboard.file,
                        target["refId"].as_str().unwrap_or("?")
                    ),
                    expr: expr.to_owned(),
                });
            }
        }
    }
    for annotation in dashboard.json["annotations"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if let Some(expr) = annotation["expr"].as_str() {
            out.push(Query {
                location: format!(
                    "{} › annotation {}",
                    dashboard.file,
                    annotation["name"].as_str().unwrap_or("?")
                ),
                expr: expr.to_owned(),
            });
        }
    }
    for variable in dashboard.json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
    {
        if variable["type"] != "query" {
            continue;
        }
        let query = variable["query"]["query"]
            .as_str()
            .or_else(|| variable["query"].as_str())
            .unwrap_or_default();
        let expr = label_values(query).map_or_else(|| query.to_owned(), |(selector, _)| selector);
        out.push(Query {
            location: format!(
                "{} › variable {}",
                dashboard.file,
                variable["name"].as_str().unwrap_or("?")
            ),
            expr,
        });
    }
    out
}

/// The names of a dashboard's template variables.
pub fn variable_names(dashboard: &Dashboard) -> BTreeSet<String> {
    dashboard.json["templating"]["list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|variable| variable["name"].as_str().map(str::to_owned))
        .collect()
}

/// Grafana's built-in interval variables, and what the tests substitute for them: a window
/// long enough to span the whole test run, so a rate over it sees every sample.
pub const BUILT_IN_WINDOWS: [&str; 3] = ["__rate_interval", "__interval", "__range"];

/// `expr` with Grafana's variables replaced: each built-in window by `window`, each
/// dashboard variable by `all` (what "All" means for a multi-value regex variable).
pub fn substitute(expr: &str, variables: &BTreeSet<String>, window: &str, all: &str) -> String {
    static VARIABLE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"\$\{([a-zA-Z_][a-zA-Z0-9_]*)(?::[a-z]+)?\}|\$([a-zA-Z_][a-zA-Z0-9_]*)")
            .unwrap()
    });
    VARIABLE
        .replace_all(expr, |captures: &regex::Captures<'_>| {
            let name = captures
                .get(1)
                .or_else(|| captures.get(2))
                .map_or("", |m| m.as_str());
            if BUILT_IN_WINDOWS.contains(&name) {
                window.to_owned()
            } else if variables.contains(name) {
                all.to_owned()
            } else {
                // Left in place: the caller's check that no `$` remains reports it.
                captures[0].to_owned()
            }
        })
        .into_owned()
}

/// Metric names an expression reads: raw `turnstile_*` names (with `_bucket`, `_count`,
/// `_sum` kept as written) and recording-rule names (`level:metric:operations`).
pub fn metric_names(expr: &str) -> BTreeSet<String> {
    static NAME: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"[a-z_]+:turnstile_[a-z0-9_]+:[a-z0-9_]+|\bturnstile_[a-z0-9_]+").unwrap()
    });
    NAME.find_iter(expr)
        .map(|m| m.as_str().to_owned())
        .collect()
}

/// The metric family a sample name belongs to (`_bucket`, `_count`, `_sum` stripped).
pub fn family(sample: &str) -> &str {
    ["_bucket", "_count", "_sum"]
        .iter()
        .find_map(|suffix| sample.strip_suffix(suffix))
        .unwrap_or(sample)
}

/// The recording rules in `deploy/prometheus/rules.yml`, as `(record, expr)`.
///
/// Read line by line (`- record:` then `expr:`) rather than with a YAML parser: the file is
/// ours and flat, and `promtool check rules` validates it as YAML in the Prometheus test.
pub fn recording_rules() -> Vec<(String, String)> {
    let path = workspace_root().join("deploy/prometheus/rules.yml");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    let mut rules = Vec::new();
    let mut record = None;
    for line in text.lines().map(str::trim) {
        if let Some(name) = line.strip_prefix("- record:") {
            record = Some(name.trim().to_owned());
        } else if let Some(expr) = line.strip_prefix("expr:")
            && let Some(name) = record.take()
        {
            rules.push((name, expr.trim().to_owned()));
        }
    }
    rules
}

/// The metric names documented in `docs/METRICS.md` (the first column of its table).
pub fn documented_metrics() -> BTreeSet<String> {
    let path = workspace_root().join("docs/METRICS.md");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    text.lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once('`'))
        .map(|(name, _)| name.to_owned())
        .collect()
}
