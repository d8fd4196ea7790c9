//! Bench-only peer for `loadtest/bench-peers.sh`: what a user would pick instead of Turnstile
//! when the limiter can live inside the service, an axum server with the `tower_governor` layer.
//!
//! It serves `GET /*` with a 200 `ok`, limited per client by the first address of
//! `X-Forwarded-For` (`SmartIpKeyExtractor`), with the same GCRA policy as Turnstile's gateway
//! route under the same benchmark: `limit` per `period`, `burst` at once. Not part of the
//! product; nothing depends on it.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::SmartIpKeyExtractor;

/// An axum server limited by tower_governor.
#[derive(Debug, Parser)]
struct Args {
    /// Listen address.
    #[arg(long, default_value = "127.0.0.1:8095")]
    listen: SocketAddr,
    /// Requests per period.
    #[arg(long, default_value_t = 100)]
    limit: u32,
    /// The period, e.g. 1s.
    #[arg(long, default_value = "1s", value_parser = humantime_serde::re::humantime::parse_duration)]
    period: Duration,
    /// Requests admitted at once from idle.
    #[arg(long, default_value_t = 50)]
    burst: u32,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // governor's quota: one cell every `period / limit`, at most `burst` at once: GCRA with the
    // same emission interval and tolerance as Turnstile's policy.
    let emission = args.period / args.limit.max(1);
    let config = GovernorConfigBuilder::default()
        .period(emission)
        .burst_size(args.burst)
        .key_extractor(SmartIpKeyExtractor)
        .finish()
        .context("invalid governor configuration")?;
    let app = axum::Router::new()
        .fallback(|| async { "ok" })
        .layer(GovernorLayer::new(config));
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    eprintln!("peer-governor listening on {}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await?;
    Ok(())
}
