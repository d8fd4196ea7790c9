//! `turnstile-load compare`: the same scenario against every backend, plus a throughput sweep
//! over shard counts and work per check, into one report.
//!
//! Gateways are either given as URLs or started here, in this process but each on its own
//! tokio runtime and threads, on loopback ports chosen by the OS, with the scenario's
//! `[gateway]` settings, the load generator trusted as a proxy (so `X-Forwarded-For` sets the
//! client IP), and an admin listener for the scenario's faults.
//!
//! The backends run one after the other, each with the machine to itself; with a live view
//! ([`CompareOptions::live`]) they run at the same time, side by side. A cancelled
//! [`CompareOptions::stop`] ends the comparison early with what was measured.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::Serialize;
use tokio_util::sync::CancellationToken;
use turnstile_backend::{BackendKind, SimulatedWork};
use turnstile_gateway::Config;
use turnstile_gateway::testing::{self, RunningGateway};

use crate::engine::{self, RunOptions, Target};
use crate::live::{Hub, LiveBackend};
use crate::result::RunResult;
use crate::scenario::{KeyDistribution, Mode, Route, Scenario, Sweep, SweepWork, Traffic};
use crate::timeline::TimelineHandle;

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
    /// Whether the backends ran at the same time (`--live`) rather than one after the other.
    #[serde(default)]
    pub side_by_side: bool,
    /// Ended early by a signal: some runs (or sweep points) are short or missing.
    #[serde(default)]
    pub interrupted: bool,
}

/// Where the gateways under comparison come from.
#[derive(Debug, Clone)]
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

/// One gateway under comparison, ready to be loaded.
struct Prepared {
    label: String,
    url: String,
    admin: Option<Target>,
    admin_token: Option<String>,
    /// A backend to start here when its run begins (sequential runs start each gateway only
    /// when its turn comes, so an idle one does not share the machine with the one loaded).
    deferred: Option<BackendKind>,
    /// Started here: stopped when its run ends.
    local: Option<RunningGateway>,
}

/// How `compare` runs.
#[derive(Default)]
pub struct CompareOptions {
    /// Draw progress bars on stderr.
    pub progress: bool,
    /// Show the runs on this live view, side by side.
    pub live: Option<Arc<Hub>>,
    /// Cancelled to end early (a signal): the run in progress stops, no further backend or
    /// sweep point starts, and the comparison holds what was measured.
    pub stop: CancellationToken,
}

/// Runs the comparison. Without a live view, one backend after the other, so each has the
/// machine to itself; with one, all at once, side by side (their figures then share the
/// machine, which the report says).
pub async fn compare(
    scenario: &Scenario,
    targets: Targets,
    options: CompareOptions,
) -> anyhow::Result<Comparison> {
    let CompareOptions {
        progress,
        live,
        stop,
    } = options;
    let runs = match &live {
        None => {
            let mut runs = Vec::new();
            for gateway in prepare(scenario, &targets, false).await? {
                if stop.is_cancelled() {
                    break;
                }
                runs.push(run_prepared(scenario, gateway, progress, None, &stop).await?);
            }
            runs
        }
        Some(hub) => {
            let gateways = prepare(scenario, &targets, true).await?;
            let timelines: Vec<TimelineHandle> =
                gateways.iter().map(|_| TimelineHandle::default()).collect();
            hub.begin_run(
                gateways
                    .iter()
                    .zip(&timelines)
                    .map(|(gateway, timeline)| LiveBackend {
                        label: gateway.label.clone(),
                        admin: gateway.admin.clone(),
                        admin_token: gateway.admin_token.clone(),
                        timeline: timeline.clone(),
                    })
                    .collect(),
            );
            let runs = gateways
                .into_iter()
                .zip(timelines)
                .map(|(gateway, timeline)| {
                    run_prepared(scenario, gateway, false, Some(timeline), &stop)
                });
            futures_util::future::join_all(runs)
                .await
                .into_iter()
                .collect::<anyhow::Result<Vec<_>>>()?
        }
    };
    let sweep = match &scenario.sweep {
        Some(sweep) if !stop.is_cancelled() => run_sweep(scenario, sweep, progress, &stop).await?,
        _ => Vec::new(),
    };
    Ok(Comparison {
        scenario: scenario.clone(),
        runs,
        sweep,
        side_by_side: live.is_some(),
        interrupted: stop.is_cancelled(),
    })
}

/// Resolves the gateways given by URL; starts the local ones now if `start_now`, else when
/// their turn comes.
async fn prepare(
    scenario: &Scenario,
    targets: &Targets,
    start_now: bool,
) -> anyhow::Result<Vec<Prepared>> {
    let mut prepared = Vec::new();
    match targets {
        Targets::Local(backends) => {
            for backend in backends {
                let mut gateway = Prepared {
                    label: backend.to_string(),
                    url: String::new(),
                    admin: None,
                    admin_token: None,
                    deferred: Some(*backend),
                    local: None,
                };
                if start_now {
                    start_local(scenario, &mut gateway).await?;
                }
                prepared.push(gateway);
            }
        }
        Targets::Urls {
            gateways,
            admin_token,
        } => {
            for (label, url, admin) in gateways {
                Target::parse(url).await?;
                let admin = match admin {
                    Some(admin) => Some(Target::parse(admin).await?),
                    None => None,
                };
                prepared.push(Prepared {
                    label: label.clone(),
                    url: url.clone(),
                    admin,
                    admin_token: admin_token.clone(),
                    deferred: None,
                    local: None,
                });
            }
        }
    }
    Ok(prepared)
}

/// Starts the gateway's deferred backend here and fills in where it listens.
async fn start_local(scenario: &Scenario, gateway: &mut Prepared) -> anyhow::Result<()> {
    let Some(backend) = gateway.deferred.take() else {
        return Ok(());
    };
    let running = start_gateway(backend, &scenario.gateway, &toml::Table::new())?;
    // The `rls` route calls the gateway's gRPC listener; the others its HTTP one.
    gateway.url = match (scenario.traffic.route, running.rls) {
        (Route::Rls, Some(rls)) => format!("http://{rls}"),
        _ => running.url(),
    };
    gateway.admin = match running.admin_url() {
        Some(admin) => Some(Target::parse(&admin).await?),
        None => None,
    };
    gateway.local = Some(running);
    Ok(())
}

/// Loads one prepared gateway (starting it first if its start was deferred), then stops it if
/// it was started here.
async fn run_prepared(
    scenario: &Scenario,
    mut gateway: Prepared,
    progress: bool,
    timeline: Option<TimelineHandle>,
    stop: &CancellationToken,
) -> anyhow::Result<RunResult> {
    start_local(scenario, &mut gateway).await?;
    let options = RunOptions {
        label: gateway.label.clone(),
        admin: gateway.admin.clone(),
        admin_token: gateway.admin_token.clone(),
        progress,
        timeline,
        stop: Some(stop.clone()),
    };
    let result = run_against(scenario, &gateway.url, options).await;
    if let Some(local) = gateway.local.take() {
        tokio::task::spawn_blocking(move || local.stop()).await??;
    }
    result
}

/// Runs `scenario` against the gateway at `url` and prints its table.
async fn run_against(
    scenario: &Scenario,
    url: &str,
    options: RunOptions,
) -> anyhow::Result<RunResult> {
    let target = Target::parse(url).await?;
    let result = engine::run(scenario, &target, &options).await?;
    eprintln!("{}", result.table());
    Ok(result)
}

async fn run_sweep(
    scenario: &Scenario,
    sweep: &Sweep,
    progress: bool,
    stop: &CancellationToken,
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
            if stop.is_cancelled() {
                return Ok(points);
            }
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
                    progress,
                    stop: Some(stop.clone()),
                    ..RunOptions::default()
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
