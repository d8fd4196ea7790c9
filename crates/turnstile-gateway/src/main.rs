//! The `turnstile` binary: parse flags, load the layered configuration, serve until a signal.

use std::net::SocketAddr;
use std::process::ExitCode;

use turnstile_gateway::cli::Cli;
use turnstile_gateway::{Application, Config, ConfigSource, StartError, shutdown_signal};

/// mimalloc's thread-local heaps instead of glibc's arenas: a proxied request allocates on
/// one worker thread and frees on another (hyper's connection tasks), which is where glibc's
/// malloc took its arena lock (docs/BENCHMARKS.md, "Turnstile as a reverse proxy").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse_with_defaults();
    let (filter, bad_filter) = log_filter(std::env::var("TURNSTILE_LOG").ok());
    tracing_subscriber::fmt()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .with_env_filter(filter)
        .init();
    if let Some(problem) = bad_filter {
        tracing::warn!("TURNSTILE_LOG {problem}; logging at `info` instead");
    }
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
    let source = ConfigSource {
        file: cli.config.clone(),
        overrides: serde_json::to_value(&cli).unwrap_or_default(),
    };
    match run(config, source) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("turnstile: {error:#}");
            // A configuration or rule file to fix is exit 2, as a bad flag is.
            match error.downcast_ref::<StartError>() {
                // An address in use or not ours is a setting to fix too.
                Some(StartError::Config(_) | StartError::Rules(_) | StartError::Bind { .. }) => {
                    ExitCode::from(2)
                }
                _ => ExitCode::FAILURE,
            }
        }
    }
}

/// The log filter `TURNSTILE_LOG` asks for (tracing's `EnvFilter` syntax), or `info` with
/// what is wrong with it. A bare word that is neither a level nor a module path (`verbose`)
/// parses as a target no code logs under, which would silently log nothing: refused too.
fn log_filter(value: Option<String>) -> (tracing_subscriber::EnvFilter, Option<String>) {
    const LEVELS: [&str; 6] = ["off", "error", "warn", "info", "debug", "trace"];
    let fallback = || tracing_subscriber::EnvFilter::new("info");
    let Some(value) = value.filter(|value| !value.trim().is_empty()) else {
        return (fallback(), None);
    };
    let stray = value.split(',').map(str::trim).find(|directive| {
        !directive.contains(['=', ':', '['])
            && !LEVELS
                .iter()
                .any(|level| level.eq_ignore_ascii_case(directive))
            && !directive.starts_with("turnstile")
    });
    if let Some(stray) = stray {
        return (
            fallback(),
            Some(format!(
                "`{value}` is not a filter: `{stray}` is no level ({})",
                LEVELS.join(", ")
            )),
        );
    }
    match tracing_subscriber::EnvFilter::builder().parse(&value) {
        Ok(filter) => (filter, None),
        Err(error) => (
            fallback(),
            Some(format!("`{value}` is not a filter: {error}")),
        ),
    }
}

#[tokio::main]
async fn run(config: Config, source: ConfigSource) -> anyhow::Result<()> {
    let backend = config.backend;
    let mut application = Application::build(config).await?;
    // So the file's policies reload on change and on SIGHUP, watched from before it announces
    // itself.
    application.state().set_config_source(source);
    application.start_reloading();
    // Handlers first, then the announcement: a signal sent once we say we listen is honoured.
    let first_signal = shutdown_signal();
    let shutdown = async move {
        first_signal.await;
        // A second signal during the drain means "now", as for most servers: an operator
        // should not have to wait out `shutdown_grace` for a request that will never finish.
        let second_signal = shutdown_signal();
        tokio::spawn(async move {
            second_signal.await;
            tracing::warn!("second shutdown signal: exiting without finishing the drain");
            std::process::exit(1);
        });
    };
    if let Some(admin) = application.admin_addr() {
        tracing::warn!(address = %admin, "admin listener enabled (fault injection)");
    }
    if let Some(rls) = application.rls_addr() {
        tracing::info!(address = %rls, "rate limit service (gRPC) listening");
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
    let head = tokio::time::timeout(turnstile_gateway::cli::PROBE_TIMEOUT, exchange)
        .await
        .with_context(|| {
            format!(
                "no answer within {:?}",
                turnstile_gateway::cli::PROBE_TIMEOUT
            )
        })?
        .with_context(|| format!("GET http://{target}{path}"))?;
    // "HTTP/1.1 200"
    anyhow::ensure!(
        head.ends_with(b" 200"),
        "GET http://{target}{path} answered {}",
        String::from_utf8_lossy(&head)
    );
    Ok(())
}
