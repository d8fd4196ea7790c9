//! The `turnstile` binary: parse flags, load the layered configuration, serve until a signal.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Serialize;
use turnstile_gateway::{Application, Config, shutdown_signal};

/// Turnstile: an HTTP rate limiter with switchable backends (actor, sharded, concurrent, redis).
///
/// Every flag overrides the same setting from the environment (`TURNSTILE_*`) and the config
/// file; see the README's configuration reference for all settings.
#[derive(Debug, Parser, Serialize)]
#[command(version, about)]
struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "TURNSTILE_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,

    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,

    /// Which backend owns the rate-limit state [default: concurrent].
    #[arg(long, value_parser = ["actor", "sharded", "concurrent", "redis"])]
    #[serde(skip_serializing_if = "Option::is_none")]
    backend: Option<String>,

    /// The Redis the `redis` backend keeps its state in [default: redis://127.0.0.1:6379].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    redis_url: Option<String>,

    /// Number of actors for the sharded backend [default: 16].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shards: Option<usize>,

    /// Each actor's mailbox capacity [default: 1024].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    mailbox_capacity: Option<usize>,

    /// How long a check waits for an actor's reply, e.g. 5s [default: 5s].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    call_timeout: Option<String>,

    /// The most keys held at once [default: 1000000].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_keys: Option<usize>,

    /// Check-pool workers in front of the backend; 0 disables the pool [default: 0].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pool_size: Option<usize>,

    /// Enable the admin listener (fault injection, supervision state) on this address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,

    /// Instead of serving, ask the gateway configured here whether it is alive (`GET /healthz`
    /// on its listen address) and exit 0 if so: the container HEALTHCHECK, with no curl in
    /// the image.
    #[arg(long, conflicts_with = "readiness_check")]
    #[serde(skip)]
    healthcheck: bool,

    /// As `--healthcheck`, but asks whether it is ready to decide (`GET /readyz`: its backend
    /// is serving; for redis, Redis is reachable): an exec readiness probe.
    #[arg(long)]
    #[serde(skip)]
    readiness_check: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("TURNSTILE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let config = match Config::load(cli.config.as_deref(), &cli) {
        Ok(config) => config,
        Err(error) => {
            // A bad configuration is the operator's to fix: say what, and exit non-zero.
            eprintln!("turnstile: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.healthcheck || cli.readiness_check {
        let path = if cli.healthcheck {
            "/healthz"
        } else {
            "/readyz"
        };
        return match probe(config.listen, path) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("turnstile: {path} probe failed: {error:#}");
                ExitCode::FAILURE
            }
        };
    }
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("turnstile: {error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn run(config: Config) -> anyhow::Result<()> {
    let backend = config.backend;
    let application = Application::build(config).await?;
    // Handlers first, then the announcement: a signal sent once we say we listen is honoured.
    let shutdown = shutdown_signal();
    if let Some(admin) = application.admin_addr() {
        tracing::warn!(address = %admin, "admin listener enabled (fault injection)");
    }
    tracing::info!(address = %application.local_addr()?, %backend, "turnstile listening");
    application.run_until_stopped(shutdown).await?;
    Ok(())
}

/// `GET <path>` over one HTTP/1.0 request; Ok if the answer is a 200. Written by hand because it is the only HTTP client
/// the binary needs, and a client crate (or curl in the image) for one status line is not
/// worth its weight.
#[tokio::main(flavor = "current_thread")]
async fn probe(listen: SocketAddr, path: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    // A wildcard listen address is reached through loopback.
    let target = match listen.ip() {
        ip if ip.is_unspecified() && listen.is_ipv4() => {
            SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, listen.port()))
        }
        ip if ip.is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, listen.port()))
        }
        _ => listen,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(target).await?;
        let request = format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).await?;
        let mut head = [0_u8; 12];
        stream.read_exact(&mut head).await?;
        std::io::Result::Ok(head)
    };
    let head = tokio::time::timeout(std::time::Duration::from_secs(3), exchange)
        .await
        .context("no answer within 3 s")?
        .with_context(|| format!("GET http://{target}{path}"))?;
    // "HTTP/1.1 200"
    anyhow::ensure!(
        head.ends_with(b" 200"),
        "GET http://{target}{path} answered {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}
