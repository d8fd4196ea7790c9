//! `turnstile-load compare`: the same scenario against every backend, plus a throughput sweep
//! over shard counts and work per check, into one report.
//!
//! Gateways are either given as URLs or started here, in this process but each on its own
//! tokio runtime and threads, on loopback ports chosen by the OS, with the scenario's
//! `[gateway]` settings, the load generator trusted as a proxy (so `X-Forwarded-For` sets the
//! client IP), and an admin listener for the scenario's faults.

use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use turnstile_backend::{BackendKind, SimulatedWork};
use turnstile_gateway::Config;
use turnstile_gateway::testing::{self, RunningGateway};

use crate::engine::{self, RunOptions, Target};
use crate::result::RunResult;
use crate::scenario::{KeyDistribution, Mode, Route, Scenario, Sweep, SweepWork, Traffic};

/// Starts a gateway with `backend`, the scenario's gateway settings, then `extra`, on
/// loopback ports with an admin listener, through the gateway's own harness.
pub fn start_gateway(
    backend: BackendKind,
    settings: &toml::Table,
    extra: &toml::Table,
) -> anyhow::Result<RunningGateway> {
    let config = gateway_config(backend, settings, extra)?;
    Ok(testing::spawn(testing::on_loopback(config))?)
}

/// The gateway configuration for a local run: defaults, then the scenario's settings, then
/// what the harness needs (backend, trust in the generator, no shedding). No `TURNSTILE_*`
/// variable of this process applies.
fn gateway_config(
    backend: BackendKind,
    settings: &toml::Table,
    extra: &toml::Table,
) -> anyhow::Result<Config> {
    #[derive(Serialize)]
    struct Harness {
        backend: BackendKind,
        trusted_proxies: [&'static str; 2],
        max_concurrent_requests: usize,
    }
    Config::from_toml(
        &[&settings.to_string(), &extra.to_string()],
        &Harness {
            backend,
            trusted_proxies: ["127.0.0.1/32", "::1/128"],
            max_concurrent_requests: 0,
        },
    )
    .context("the scenario's [gateway] settings are not a valid turnstile configuration")
}

/// One point of the sweep.
#[derive(Debug, Clone, Serialize)]
pub struct SweepPoint {
    /// `actor`, `sharded×16`, `concurrent`, …
    pub config: String,
    /// The work level's label.
    pub work: String,
    /// Answers per second.
    pub throughput: f64,
    /// Median latency, ms.
    pub p50_ms: f64,
}

/// Everything `compare` measured.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// The scenario.
    pub scenario: Scenario,
    /// One run per backend.
    pub runs: Vec<RunResult>,
    /// The sweep, if the scenario asks for one.
    pub sweep: Vec<SweepPoint>,
}

/// Where the gateways under comparison come from.
pub enum Targets {
    /// Start one per backend here.
    Local(Vec<BackendKind>),
    /// Running gateways.
    Urls {
        /// `(label, url, admin url)`.
        gateways: Vec<(String, String, Option<String>)>,
        /// Bearer token for their admin APIs.
        admin_token: Option<String>,
    },
}

/// Runs the comparison.
pub async fn compare(
    scenario: &Scenario,
    targets: Targets,
    progress: bool,
) -> anyhow::Result<Comparison> {
    let mut runs = Vec::new();
    match targets {
        Targets::Local(backends) => {
            for backend in backends {
                let gateway = start_gateway(backend, &scenario.gateway, &toml::Table::new())?;
                let options = RunOptions {
                    label: backend.to_string(),
                    admin: None,
                    admin_token: None,
                    progress,
                };
                // The `rls` route calls the gateway's gRPC listener; the others its HTTP one.
                let url = match (scenario.traffic.route, gateway.rls) {
                    (Route::Rls, Some(rls)) => format!("http://{rls}"),
                    _ => gateway.url(),
                };
                let result = run_against(scenario, &url, gateway.admin_url(), options).await;
                tokio::task::spawn_blocking(move || gateway.stop()).await??;
                runs.push(result?);
            }
        }
        Targets::Urls {
            gateways,
            admin_token,
        } => {
            for (label, url, admin) in gateways {
                let options = RunOptions {
                    label,
                    admin: None,
                    admin_token: admin_token.clone(),
                    progress,
                };
                runs.push(run_against(scenario, &url, admin, options).await?);
            }
        }
    }
    let sweep = match &scenario.sweep {
        Some(sweep) => run_sweep(scenario, sweep, progress).await?,
        None => Vec::new(),
    };
    Ok(Comparison {
        scenario: scenario.clone(),
        runs,
        sweep,
    })
}

/// Runs `scenario` against the gateway at `url`, with its admin API at `admin` (if any)
/// filled into `options`.
async fn run_against(
    scenario: &Scenario,
    url: &str,
    admin: Option<String>,
    mut options: RunOptions,
) -> anyhow::Result<RunResult> {
    let target = Target::parse(url).await?;
    if let Some(admin) = admin {
        options.admin = Some(Target::parse(&admin).await?);
    }
    let result = engine::run(scenario, &target, &options).await?;
    eprintln!("{}", result.table());
    Ok(result)
}

async fn run_sweep(
    scenario: &Scenario,
    sweep: &Sweep,
    progress: bool,
) -> anyhow::Result<Vec<SweepPoint>> {
    let point_scenario = Scenario {
        name: format!("{}-sweep", scenario.name),
        description: String::new(),
        mode: Mode::Closed,
        rate: 1.0,
        connections: sweep.connections,
        duration: sweep.duration,
        warmup: Duration::from_millis(500),
        keep_alive: true,
        timeout: Duration::from_secs(10),
        stages: Vec::new(),
        traffic: Traffic {
            route: Route::Check,
            keys: KeyDistribution::Uniform { count: 100_000 },
            ..Traffic::default()
        },
        faults: Vec::new(),
        sweep: None,
        gateway: toml::Table::new(),
    };
    let mut configs: Vec<(String, BackendKind, usize)> =
        vec![("actor".into(), BackendKind::Actor, 1)];
    configs.extend(
        sweep
            .shards
            .iter()
            .map(|n| (format!("sharded×{n}"), BackendKind::Sharded, *n)),
    );
    configs.push(("concurrent".into(), BackendKind::Concurrent, 1));
    let mut points = Vec::new();
    for work in &sweep.work {
        for (name, backend, shards) in &configs {
            #[derive(Serialize)]
            struct PointSettings {
                shards: usize,
                simulated_work: Option<SimulatedWork>,
                policies: toml::Table,
            }
            let settings = PointSettings {
                shards: *shards,
                simulated_work: simulated(work),
                policies: unlimited_policy(),
            };
            let settings = toml::Table::try_from(settings)?;
            let gateway = start_gateway(*backend, &toml::Table::new(), &settings)?;
            let result = engine::run(
                &point_scenario,
                &Target::parse(&gateway.url()).await?,
                &RunOptions {
                    label: name.clone(),
                    admin: None,
                    admin_token: None,
                    progress,
                },
            )
            .await;
            tokio::task::spawn_blocking(move || gateway.stop()).await??;
            let result = result?;
            eprintln!(
                "sweep {name:>12} work {:>10}: {:>9.0} checks/s",
                work.label(),
                result.throughput
            );
            points.push(SweepPoint {
                config: name.clone(),
                work: work.label(),
                throughput: result.throughput,
                p50_ms: result.latency_ms.p50,
            });
        }
    }
    Ok(points)
}

fn simulated(work: &SweepWork) -> Option<SimulatedWork> {
    (!work.duration.is_zero()).then_some(SimulatedWork {
        kind: work.kind,
        duration: work.duration,
    })
}

/// A `default` policy that never limits, so the sweep measures the backends, not the policy.
fn unlimited_policy() -> toml::Table {
    let mut policy = toml::Table::new();
    policy.insert("limit".into(), toml::Value::Integer(1_000_000_000));
    policy.insert("period".into(), toml::Value::String("1s".into()));
    policy.insert("burst".into(), toml::Value::Integer(1_000_000_000));
    let mut policies = toml::Table::new();
    policies.insert("default".into(), toml::Value::Table(policy));
    policies
}
