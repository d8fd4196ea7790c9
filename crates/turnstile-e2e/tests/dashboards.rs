//! The dashboards' structure and the metrics they read, checked without any tool: every
//! panel and annotation points at the provisioned datasource, every variable a query uses is
//! defined, and every metric a query names is documented (or is one of our recording rules,
//! whose own inputs are documented). `tests/prometheus.rs` then proves the queries against
//! real data.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use turnstile_e2e::dashboards::{self, BUILT_IN_WINDOWS};
use turnstile_e2e::workspace_root;

/// The datasource uid the provisioning file gives Prometheus.
fn provisioned_datasource_uid() -> String {
    let path = workspace_root().join("deploy/grafana/provisioning/datasources/prometheus.yml");
    let text = std::fs::read_to_string(path).unwrap();
    text.lines()
        .find_map(|line| line.trim().strip_prefix("uid:"))
        .expect("the datasource has a fixed uid")
        .trim()
        .to_owned()
}

#[test]
fn both_dashboards_exist_with_instance_and_backend_variables() {
    let all = dashboards::load();
    let titles: Vec<&str> = all
        .iter()
        .map(|d| d.json["title"].as_str().unwrap())
        .collect();
    assert!(
        titles.iter().any(|t| t.contains("Backend comparison")),
        "{titles:?}"
    );
    assert!(titles.iter().any(|t| t.contains("faults")), "{titles:?}");
    let mut uids = BTreeSet::new();
    for dashboard in &all {
        assert!(
            uids.insert(dashboard.json["uid"].as_str().unwrap().to_owned()),
            "duplicate uid"
        );
        let variables = dashboards::variable_names(dashboard);
        for name in ["instance", "backend"] {
            assert!(
                variables.contains(name),
                "{}: no `{name}` variable",
                dashboard.file
            );
        }
    }
}

#[test]
fn both_dashboards_annotate_faults_restarts_and_escalations() {
    for dashboard in dashboards::load() {
        let annotated: BTreeSet<String> = dashboards::queries(&dashboard)
            .iter()
            .filter(|query| query.location.contains("annotation"))
            .flat_map(|query| dashboards::metric_names(&query.expr))
            .collect();
        for metric in [
            "turnstile_faults_injected_total",
            "turnstile_actor_restarts_total",
            "turnstile_supervisor_escalations_total",
        ] {
            assert!(
                annotated.contains(metric),
                "{}: no annotation from {metric}",
                dashboard.file
            );
        }
    }
}

/// The comparison dashboard shows what `turnstile-load --live` shows, from the metrics:
/// throughput, p99, the deepest mailbox, drops by reason, restarts and escalations.
#[test]
fn the_comparison_dashboard_has_the_live_views_panels() {
    let all = dashboards::load();
    let comparison = all
        .iter()
        .find(|d| d.file == "backend-comparison.json")
        .unwrap();
    let exprs: Vec<String> = dashboards::queries(comparison)
        .into_iter()
        .filter(|query| !query.location.contains("annotation"))
        .map(|query| query.expr)
        .collect();
    let has = |needle: &str| exprs.iter().any(|expr| expr.contains(needle));
    assert!(has("rate(turnstile_decisions_total"), "decided per second");
    assert!(
        has("rate(turnstile_http_request_duration_seconds_count"),
        "received per second"
    );
    assert!(has("histogram_quantile(0.99"), "p99");
    assert!(
        has("max by (backend) (turnstile_mailbox_depth"),
        "the deepest mailbox per backend"
    );
    assert!(has("reason"), "drops by reason");
    assert!(has("turnstile_actor_restarts_total"), "restarts");
    assert!(has("turnstile_supervisor_escalations_total"), "escalations");
}

#[test]
fn panels_are_laid_out_without_overlap_and_use_the_provisioned_datasource() {
    let uid = provisioned_datasource_uid();
    for dashboard in dashboards::load() {
        let mut ids = BTreeSet::new();
        let mut cells = BTreeSet::new();
        for panel in dashboards::panels(&dashboard) {
            let title = panel["title"].as_str().unwrap_or("?");
            assert!(
                ids.insert(panel["id"].as_u64().unwrap()),
                "{title}: duplicate id"
            );
            let grid = &panel["gridPos"];
            let (x, y, w, h) = (
                grid["x"].as_u64().unwrap(),
                grid["y"].as_u64().unwrap(),
                grid["w"].as_u64().unwrap(),
                grid["h"].as_u64().unwrap(),
            );
            assert!(x + w <= 24, "{title}: wider than the grid");
            for cell in (x..x + w).flat_map(|cx| (y..y + h).map(move |cy| (cx, cy))) {
                assert!(
                    cells.insert(cell),
                    "{}: {title} overlaps another panel",
                    dashboard.file
                );
            }
            if panel["type"] == "row" {
                continue;
            }
            assert_eq!(panel["datasource"]["uid"], uid.as_str(), "{title}");
            let targets = panel["targets"].as_array().unwrap();
            assert!(!targets.is_empty(), "{title}: no query");
            for target in targets {
                assert_eq!(target["datasource"]["uid"], uid.as_str(), "{title}");
            }
        }
    }
}

#[test]
fn queries_use_only_defined_variables() {
    for dashboard in dashboards::load() {
        let variables = dashboards::variable_names(&dashboard);
        for query in dashboards::queries(&dashboard) {
            let substituted = dashboards::substitute(&query.expr, &variables, "1m", ".*");
            assert!(
                !substituted.contains('$'),
                "{}: undefined variable in {}",
                query.location,
                query.expr
            );
        }
        assert!(BUILT_IN_WINDOWS.iter().all(|w| !variables.contains(*w)));
    }
}

#[test]
fn every_metric_a_dashboard_reads_is_documented_or_a_recording_rule_over_documented_ones() {
    let documented = dashboards::documented_metrics();
    assert!(
        documented.len() >= 16,
        "docs/METRICS.md lists {documented:?}"
    );
    let rules = dashboards::recording_rules();
    assert!(!rules.is_empty());
    for (record, expr) in &rules {
        for name in dashboards::metric_names(expr) {
            assert!(
                documented.contains(dashboards::family(&name)),
                "recording rule {record} reads undocumented {name}"
            );
        }
    }
    let recorded: BTreeSet<&str> = rules.iter().map(|(record, _)| record.as_str()).collect();
    let mut used = BTreeSet::new();
    for dashboard in dashboards::load() {
        for query in dashboards::queries(&dashboard) {
            for name in dashboards::metric_names(&query.expr) {
                let known = recorded.contains(name.as_str())
                    || documented.contains(dashboards::family(&name));
                assert!(
                    known,
                    "{}: `{name}` is neither documented nor recorded",
                    query.location
                );
                used.insert(name);
            }
        }
    }
    // Every recording rule earns its keep.
    for record in recorded {
        assert!(
            used.contains(record),
            "recording rule {record} is used by no dashboard"
        );
    }
}
