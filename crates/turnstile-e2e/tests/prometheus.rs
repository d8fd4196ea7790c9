//! The dashboards proven against a real Prometheus (Debian's package; `.ci/run` installs it).
//!
//! Two gateways run on loopback (sharded with a check pool, and concurrent), scraped every
//! second by a Prometheus loaded with the shipped recording rules. `turnstile-load` drives
//! them while the sharded one has a pool worker crashed and a shard crashed past its restart
//! intensity, so drop, restart, escalation and replacement series exist. Then every PromQL
//! expression of every dashboard (variables substituted) is evaluated through the HTTP API:
//! a parse error or an empty result fails the test. `promtool` checks the shipped files.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use turnstile_backend::BackendKind;
use turnstile_e2e::dashboards::{self, Query};
use turnstile_e2e::{
    Process, external_tool, free_port, http_client, metrics_text, parse_json, scratch_dir,
    wait_until, workspace_root,
};
use turnstile_load::compare::start_gateway;
use turnstile_load::engine::{self, RunOptions, Target};
use turnstile_load::scenario::Scenario;

/// What the substituted variables stand for: every instance, every backend, and a window
/// spanning the whole run (so the faults are inside every `increase` and `rate`).
const ALL: &str = ".*";
const WINDOW: &str = "1m";

fn promtool(promtool: &Path, args: &[&str]) {
    let output = Command::new(promtool).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "promtool {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
#[cfg_attr(
    not(has_promtool),
    ignore = "needs promtool (Debian package prometheus; .ci/run installs it)"
)]
fn promtool_accepts_the_shipped_configuration_and_rules() {
    let Some(promtool_path) = external_tool("promtool", "prometheus") else {
        return;
    };
    let deploy = workspace_root().join("deploy/prometheus");
    promtool(
        &promtool_path,
        &[
            "check",
            "config",
            deploy.join("prometheus.yml").to_str().unwrap(),
        ],
    );
    promtool(
        &promtool_path,
        &["check", "rules", deploy.join("rules.yml").to_str().unwrap()],
    );
}

/// Gateway settings: a policy tight enough that the load is partly limited and keys expire
/// (so sweeps evict), a little I/O-like work so mailboxes hold something when a shard dies,
/// and a short cool-off so the escalated backend recovers within the run.
const GATEWAY_SETTINGS: &str = r#"
shards = 4
pool_size = 4
sweep_interval = "1s"
simulated_work = { kind = "sleep", duration = "500us" }

[supervision]
cool_off = "4s"

[policies.default]
limit = 5
period = "1s"
"#;

/// Load on both gateways, and faults on the sharded one: a worker crash, then four shard
/// crashes 300 ms apart, one more than the restart intensity (3 in 5 s) tolerates.
const SCENARIO: &str = r#"
name = "dashboards-proof"
mode = "open"
rate = 300
connections = 8
duration = "10s"
warmup = "0s"
timeout = "2s"

[traffic]
# Zipf: the head keys exceed their limit (limited decisions), the tail keys go idle long
# enough to expire between hits (evictions).
keys = { distribution = "zipf", count = 2000, exponent = 1.1 }

[[faults]]
at = "1s"
action = { kind = "crash_worker" }

[[faults]]
at = "2s"
action = { kind = "crash_shard", shard = 0 }

[[faults]]
at = "2300ms"
action = { kind = "crash_shard", shard = 0 }

[[faults]]
at = "2600ms"
action = { kind = "crash_shard", shard = 0 }

[[faults]]
at = "2900ms"
action = { kind = "crash_shard", shard = 0 }
"#;

struct Prometheus {
    process: Process,
    url: String,
    client: reqwest::Client,
}

impl Prometheus {
    async fn start(binary: &Path, dir: &Path, targets: &[String]) -> Self {
        let rules = workspace_root().join("deploy/prometheus/rules.yml");
        let config = format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {rules}\n\
             scrape_configs:\n  - job_name: turnstile\n    static_configs:\n      - targets: [{targets}]\n",
            rules = rules.display(),
            targets = targets
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", "),
        );
        let config_path = dir.join("prometheus.yml");
        std::fs::write(&config_path, config).unwrap();
        let port = free_port();
        let listen = format!("--web.listen-address=127.0.0.1:{port}");
        let config_flag = format!("--config.file={}", config_path.display());
        let storage = format!("--storage.tsdb.path={}", dir.join("data").display());
        let mut process = Process::start(
            "prometheus",
            binary,
            &[&config_flag, &storage, &listen],
            dir.join("prometheus.log"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let client = http_client();
        wait_until("Prometheus to be ready", Duration::from_secs(60), || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let response = client.get(format!("{url}/-/ready")).send().await.ok()?;
                response.status().is_success().then_some(())
            }
        })
        .await;
        process.assert_running();
        Self {
            process,
            url,
            client,
        }
    }

    /// Evaluates `expr` now: `Ok(series)` or `Err(message)` for a query Prometheus rejects.
    async fn query(&self, expr: &str) -> Result<Vec<serde_json::Value>, String> {
        let response = self
            .client
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", expr)])
            .send()
            .await
            .map_err(|error| format!("request failed: {error}"))?;
        let body = parse_json(&response.text().await.unwrap());
        if body["status"] != "success" {
            return Err(format!("{}: {}", body["errorType"], body["error"]));
        }
        Ok(body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_prometheus),
    ignore = "needs prometheus (Debian package prometheus; .ci/run installs it)"
)]
async fn every_dashboard_query_returns_data_from_a_real_prometheus() {
    let Some(binary) = external_tool("prometheus", "prometheus") else {
        return;
    };
    let settings: toml::Table = toml::from_str(GATEWAY_SETTINGS).unwrap();
    let sharded = start_gateway(BackendKind::Sharded, &settings, &toml::Table::new()).unwrap();
    let concurrent =
        start_gateway(BackendKind::Concurrent, &settings, &toml::Table::new()).unwrap();
    let dir = scratch_dir();
    let prometheus = Prometheus::start(
        &binary,
        dir.path(),
        &[sharded.address.to_string(), concurrent.address.to_string()],
    )
    .await;
    wait_until(
        "both gateways to be scraped",
        Duration::from_secs(60),
        || async {
            let up = prometheus.query("up{job=\"turnstile\"} == 1").await.ok()?;
            (up.len() == 2).then_some(())
        },
    )
    .await;

    let scenario: Scenario = toml::from_str(SCENARIO).unwrap();
    let targets = [
        Target::parse(&format!("http://{}", sharded.address))
            .await
            .unwrap(),
        Target::parse(&format!("http://{}", concurrent.address))
            .await
            .unwrap(),
    ];
    let options = RunOptions {
        label: "dashboards-proof".into(),
        admin: Some(Target::parse(&sharded.admin_url().unwrap()).await.unwrap()),
        ..RunOptions::default()
    };
    let result = engine::run_spread(&scenario, &targets, &options)
        .await
        .unwrap();
    // The fifth fault may be refused (the backend has failed by then); the others land.
    let outcomes = &result.outcomes;
    assert!(
        result.faults_injected >= 4,
        "{} faults injected",
        result.faults_injected
    );
    assert!(
        outcomes.allowed > 0 && outcomes.limited > 0 && !outcomes.dropped.is_empty(),
        "{outcomes:?}"
    );

    // Every raw metric a dashboard reads is one the gateways actually export.
    let exported = metrics_text(sharded.address).await + &metrics_text(concurrent.address).await;
    let exported: BTreeSet<&str> = exported
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.split(['{', ' ']).next())
        .collect();
    let all_dashboards = dashboards::load();
    let mut queries: Vec<(Query, String)> = Vec::new();
    for dashboard in &all_dashboards {
        let variables = dashboards::variable_names(dashboard);
        for query in dashboards::queries(dashboard) {
            for name in dashboards::metric_names(&query.expr) {
                assert!(
                    name.contains(':') || exported.contains(name.as_str()),
                    "{}: `{name}` is not exported by the gateway",
                    query.location
                );
            }
            let expr = dashboards::substitute(&query.expr, &variables, WINDOW, ALL);
            assert!(
                !expr.contains('$'),
                "{}: unsubstituted {expr}",
                query.location
            );
            queries.push((query, expr));
        }
    }
    assert!(queries.len() >= 30, "only {} queries found", queries.len());

    // Evaluate every expression. A rejected query fails at once; an empty one is retried for
    // a while, since recording rules and the last scrapes may still be catching up.
    let mut pending: Vec<&(Query, String)> = queries.iter().collect();
    let mut rounds = 0;
    while !pending.is_empty() {
        let mut still_empty = Vec::new();
        for entry in pending {
            let (query, expr) = entry;
            match prometheus.query(expr).await {
                Err(error) => panic!("{}: Prometheus rejected `{expr}`: {error}", query.location),
                Ok(series) if series.is_empty() => still_empty.push(entry),
                Ok(_) => {}
            }
        }
        pending = still_empty;
        rounds += 1;
        if !pending.is_empty() && rounds >= 20 {
            let empty: Vec<String> = pending
                .iter()
                .map(|(query, expr)| format!("  {}: {expr}", query.location))
                .collect();
            panic!(
                "these dashboard queries returned no data:\n{}\nPrometheus log:\n{}",
                empty.join("\n"),
                prometheus.process.log()
            );
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
    eprintln!(
        "{} dashboard queries evaluated with data (in {rounds} round(s))",
        queries.len()
    );
    sharded.stop().unwrap();
    concurrent.stop().unwrap();
}
