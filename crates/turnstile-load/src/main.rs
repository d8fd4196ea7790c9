//! The `turnstile-load` binary: `run` one scenario against a target, `compare` backends,
//! `serve-trivial` (a bare axum route, the baseline for measuring the generator itself), or
//! `report` (the benchmark scripts' Markdown tables).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use turnstile_backend::BackendKind;
use turnstile_load::compare::{self, Targets};
use turnstile_load::engine::{self, RunOptions, Target};
use turnstile_load::scenario::{Mode, Scenario};

/// Load generator for Turnstile.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Cli {
    /// Bearer token for the gateways' admin API (fault injection), when they require one.
    #[arg(
        long,
        global = true,
        env = "TURNSTILE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run one scenario against a running gateway.
    Run {
        /// Scenario file (TOML); flags below override its values.
        #[arg(long, default_value = "loadtest/steady.toml")]
        scenario: PathBuf,
        /// The gateway, e.g. http://127.0.0.1:8080; repeat to spread the connections across
        /// several replicas.
        #[arg(long, default_value = "http://127.0.0.1:8080")]
        target: Vec<String>,
        /// The gateway's admin API, for the scenario's faults.
        #[arg(long)]
        admin: Option<String>,
        /// Open-loop rate (requests/s).
        #[arg(long)]
        rate: Option<f64>,
        /// Closed loop instead of open loop.
        #[arg(long)]
        closed: bool,
        /// Connections.
        #[arg(long)]
        connections: Option<usize>,
        /// Measured duration, e.g. 30s.
        #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
        duration: Option<Duration>,
        /// Warm-up, e.g. 2s.
        #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
        warmup: Option<Duration>,
        /// Per-request timeout, e.g. 2s.
        #[arg(long, value_parser = humantime_serde::re::humantime::parse_duration)]
        timeout: Option<Duration>,
        /// Open a new connection for every request instead of HTTP/1.1 keep-alive.
        #[arg(long)]
        no_keep_alive: bool,
        /// Write the result as JSON here.
        #[arg(long)]
        json: Option<PathBuf>,
        /// Write the HdrHistogram percentile distribution here.
        #[arg(long)]
        hgrm: Option<PathBuf>,
        /// No progress bar.
        #[arg(long)]
        quiet: bool,
    },
    /// Run a scenario against each backend and write a report.
    Compare {
        /// Scenario file (TOML).
        #[arg(long, default_value = "loadtest/compare.toml")]
        scenario: PathBuf,
        /// Compare these running gateways (`label=http://host:port`, optionally
        /// `label=http://host:port,admin=http://host:port`) instead of starting them here.
        #[arg(long = "url")]
        urls: Vec<String>,
        /// Backends to start (when no --url is given).
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "actor,sharded,concurrent"
        )]
        backends: Vec<BackendKind>,
        /// Skip the scenario's sweep.
        #[arg(long)]
        no_sweep: bool,
        /// Report directory.
        #[arg(long, default_value = "target/turnstile-report")]
        out: PathBuf,
        /// No progress bars.
        #[arg(long)]
        quiet: bool,
    },
    /// Serve a bare axum route (`GET /` → 200 "ok"): the baseline for measuring the generator
    /// and the gateway; or, with `--mirror`, one captured answer of another server.
    ServeTrivial {
        /// Listen address.
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// Answer every request with the bytes of one answer of this URL (e.g. a gateway's
        /// denied route), captured at start: the cost of writing that response, no decision.
        #[arg(long)]
        mirror: Option<String>,
        /// The status of the answer `--mirror` captures (requests are sent until one has it).
        #[arg(long, default_value_t = 429, requires = "mirror")]
        mirror_status: u16,
    },
    /// Print a Markdown table of docs/BENCHMARKS.md from a benchmark script's raw output.
    #[command(subcommand)]
    Report(turnstile_load::tables::Report),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TURNSTILE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("turnstile-load: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli.command, cli.admin_token)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("turnstile-load: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn execute(command: Command, admin_token: Option<String>) -> anyhow::Result<()> {
    let interactive = std::io::IsTerminal::is_terminal(&std::io::stderr());
    match command {
        Command::Run {
            scenario,
            target,
            admin,
            rate,
            closed,
            connections,
            duration,
            warmup,
            timeout,
            no_keep_alive,
            json,
            hgrm,
            quiet,
        } => {
            let mut scenario = Scenario::load(&scenario)?;
            if let Some(rate) = rate {
                scenario.rate = rate;
                scenario.stages.clear();
            }
            if closed {
                scenario.mode = Mode::Closed;
            }
            if let Some(connections) = connections {
                scenario.connections = connections;
            }
            if let Some(duration) = duration {
                scenario.duration = duration;
                scenario.stages.clear();
            }
            if let Some(warmup) = warmup {
                scenario.warmup = warmup;
            }
            if let Some(timeout) = timeout {
                scenario.timeout = timeout;
            }
            if no_keep_alive {
                scenario.keep_alive = false;
            }
            scenario.validate()?;
            let mut targets = Vec::with_capacity(target.len());
            for url in &target {
                targets.push(Target::parse(url).await?);
            }
            let admin = match admin {
                Some(admin) => Some(Target::parse(&admin).await?),
                None => None,
            };
            let options = RunOptions {
                label: target.join(","),
                admin,
                admin_token,
                progress: interactive && !quiet,
            };
            let result = engine::run_spread(&scenario, &targets, &options).await?;
            print!("{}", result.table());
            for warning in result.setup_warnings(&scenario.traffic) {
                eprintln!("turnstile-load: warning: {warning}");
            }
            if let Some(path) = json {
                std::fs::write(&path, serde_json::to_string_pretty(&result)?)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if let Some(path) = hgrm {
                std::fs::write(&path, result.percentile_distribution())
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(())
        }
        Command::Compare {
            scenario: path,
            urls,
            backends,
            no_sweep,
            out,
            quiet,
        } => {
            let mut scenario = Scenario::load(&path)?;
            if no_sweep {
                scenario.sweep = None;
            }
            let targets = if urls.is_empty() {
                Targets::Local(backends)
            } else {
                Targets::Urls {
                    gateways: urls
                        .iter()
                        .map(|spec| parse_url_spec(spec))
                        .collect::<anyhow::Result<Vec<_>>>()?,
                    admin_token,
                }
            };
            let comparison = compare::compare(&scenario, targets, interactive && !quiet).await?;
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let markdown = turnstile_load::report::write(&comparison, &out, &command)?;
            println!("{markdown}");
            println!("report written to {}", out.display());
            Ok(())
        }
        Command::ServeTrivial {
            listen,
            mirror,
            mirror_status,
        } => {
            let mirror = match mirror {
                Some(url) => {
                    let status = axum::http::StatusCode::from_u16(mirror_status)
                        .context("--mirror-status")?;
                    Some(turnstile_load::trivial::capture(&url, status).await?)
                }
                None => None,
            };
            let listener = tokio::net::TcpListener::bind(listen).await?;
            match &mirror {
                Some(_) => eprintln!("serving the mirrored answer on {}", listener.local_addr()?),
                None => eprintln!("serving GET / on {}", listener.local_addr()?),
            }
            turnstile_load::trivial::serve(listener, mirror).await?;
            Ok(())
        }
        Command::Report(report) => {
            print!("{}", report.render()?);
            Ok(())
        }
    }
}

/// `label=url[,admin=url]`.
fn parse_url_spec(spec: &str) -> anyhow::Result<(String, String, Option<String>)> {
    let mut parts = spec.split(',');
    let first = parts.next().unwrap_or_default();
    let (label, url) = first
        .split_once('=')
        .with_context(|| format!("--url `{spec}` must look like label=http://host:port"))?;
    let admin = parts
        .find_map(|part| part.strip_prefix("admin="))
        .map(str::to_owned);
    Ok((label.to_owned(), url.to_owned(), admin))
}
