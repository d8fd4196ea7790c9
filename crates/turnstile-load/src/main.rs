//! The `turnstile-load` binary: `run` one scenario against a target, `compare` backends,
//! `serve-trivial` (a bare axum route, the baseline for measuring the generator itself), or
//! `report` (the benchmark scripts' Markdown tables).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;
use turnstile_backend::BackendKind;
use turnstile_load::compare::{self, Targets};
use turnstile_load::engine::{self, RunOptions, Target};
use turnstile_load::live::{self, Hub, LiveBackend};
use turnstile_load::scenario::{Mode, Scenario};
use turnstile_load::timeline::TimelineHandle;

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
        /// Serve the live view while the run goes on (its address is printed), and keep
        /// serving it afterwards until interrupted.
        #[arg(long)]
        live: bool,
        /// Where the live view listens (port 0: one the OS picks).
        #[arg(long, default_value = "127.0.0.1:0", requires = "live")]
        live_listen: std::net::SocketAddr,
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
        /// Serve the live view while the run goes on, with the backends loaded side by side instead of one after the other (its address is printed), and keep
        /// serving it afterwards until interrupted.
        #[arg(long)]
        live: bool,
        /// Where the live view listens (port 0: one the OS picks).
        #[arg(long, default_value = "127.0.0.1:0", requires = "live")]
        live_listen: std::net::SocketAddr,
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
            live,
            live_listen,
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
                progress: interactive && !quiet && !live,
                timeline: None,
                stop: None,
            };
            let run_once = |options: RunOptions| {
                let (scenario, targets) = (&scenario, &targets);
                let (json, hgrm) = (&json, &hgrm);
                async move {
                    let result = engine::run_spread(scenario, targets, &options).await?;
                    print!("{}", result.table());
                    for warning in result.setup_warnings(&scenario.traffic) {
                        eprintln!("turnstile-load: warning: {warning}");
                    }
                    if let Some(path) = json {
                        std::fs::write(path, serde_json::to_string_pretty(&result)?)
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    if let Some(path) = hgrm {
                        std::fs::write(path, result.percentile_distribution())
                            .with_context(|| format!("writing {}", path.display()))?;
                    }
                    anyhow::Ok(match json {
                        Some(path) => format!("result written to {}", path.display()),
                        None => "run finished".to_owned(),
                    })
                }
            };
            if !live {
                let stop = stop_on_signal();
                run_once(RunOptions {
                    stop: Some(stop.clone()),
                    ..options
                })
                .await?;
                return interrupted(&stop);
            }
            let (hub, requests) = Hub::new(&scenario);
            start_live_view(live_listen, &hub).await?;
            serve_runs(&hub, requests, || {
                let timeline = TimelineHandle::default();
                hub.begin_run(vec![LiveBackend {
                    label: options.label.clone(),
                    admin: options.admin.clone(),
                    admin_token: options.admin_token.clone(),
                    timeline: timeline.clone(),
                }]);
                run_once(RunOptions {
                    timeline: Some(timeline),
                    ..options.clone()
                })
            })
            .await
        }
        Command::Compare {
            scenario: path,
            urls,
            backends,
            no_sweep,
            out,
            quiet,
            live,
            live_listen,
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
            let command = std::env::args().collect::<Vec<_>>().join(" ");
            let compare_once = |live: Option<Arc<Hub>>, stop: CancellationToken| {
                let (scenario, targets, out, command) = (&scenario, &targets, &out, &command);
                async move {
                    let options = compare::CompareOptions {
                        progress: interactive && !quiet && live.is_none(),
                        live,
                        stop,
                    };
                    let comparison = compare::compare(scenario, targets.clone(), options).await?;
                    let markdown = turnstile_load::report::write(&comparison, out, command)?;
                    println!("{markdown}");
                    let written = format!("report written to {}", out.display());
                    println!("{written}");
                    anyhow::Ok(written)
                }
            };
            if !live {
                let stop = stop_on_signal();
                compare_once(None, stop.clone()).await?;
                return interrupted(&stop);
            }
            let (hub, requests) = Hub::new(&scenario);
            start_live_view(live_listen, &hub).await?;
            serve_runs(&hub, requests, || {
                compare_once(Some(Arc::clone(&hub)), CancellationToken::new())
            })
            .await
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

/// Binds the live view and serves it in the background; prints where.
async fn start_live_view(listen: std::net::SocketAddr, hub: &Arc<Hub>) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("--live-listen {listen}"))?;
    eprintln!("live view: http://{}/", listener.local_addr()?);
    let hub = Arc::clone(hub);
    tokio::spawn(async move {
        if let Err(error) = live::serve(listener, hub, live::HEADER_READ_TIMEOUT).await {
            eprintln!("turnstile-load: the live view stopped: {error}");
        }
    });
    Ok(())
}

/// Runs `run_once` now, then again each time the live view asks, until interrupted; the live
/// view shows each run's outcome.
async fn serve_runs<F, Fut>(
    hub: &Hub,
    mut requests: tokio::sync::mpsc::Receiver<()>,
    mut run_once: F,
) -> anyhow::Result<()>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<String>>,
{
    loop {
        // Once a signal handler is installed it stays: Ctrl-C must be watched during the
        // runs too, or a second run could not be interrupted.
        let outcome = tokio::select! {
            outcome = run_once() => outcome,
            _ = shutdown_signal() => return Ok(()),
        };
        match outcome {
            Ok(message) => hub.finish(Ok(message)),
            Err(error) => {
                eprintln!("turnstile-load: {error:#}");
                hub.finish(Err(format!("{error:#}")));
            }
        }
        eprintln!("the live view stays up: start another run from it, or press Ctrl-C to stop");
        tokio::select! {
            request = requests.recv() => {
                if request.is_none() {
                    return Ok(());
                }
            }
            _ = shutdown_signal() => return Ok(()),
        }
    }
}

/// A token cancelled at the first Ctrl-C or SIGTERM: the run stops sending, and what was
/// measured is still written (as PID 1 in a container, SIGTERM is how `docker stop` asks).
fn stop_on_signal() -> CancellationToken {
    let stop = CancellationToken::new();
    let cancel = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("turnstile-load: interrupted: stopping the run and writing what was measured");
        cancel.cancel();
    });
    stop
}

/// An error (exit status 2) if the run was cut short: its results are partial.
fn interrupted(stop: &CancellationToken) -> anyhow::Result<()> {
    if stop.is_cancelled() {
        anyhow::bail!("interrupted by a signal: the results written cover only the time measured");
    }
    Ok(())
}

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = async {
            match terminate.as_mut() {
                Some(terminate) => { terminate.recv().await; }
                None => std::future::pending::<()>().await,
            }
        } => {}
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
