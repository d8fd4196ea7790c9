//! The bottleneck in real time: checks per second each backend sustains when every check does
//! `simulated_work` inside the state owner, with many concurrent callers.
//!
//! Run: `cargo bench -p turnstile-backend --bench bottleneck` (about 30 s). The conformance
//! suite pins the same shape in virtual time; this measures it on the wall clock, where tokio's
//! millisecond timer granularity and the machine's two cores also have a say.

// Bench code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use turnstile_backend::{
    Backend, BackendConfig, BackendKind, BuildContext, MailboxConfig, SimulatedWork, WorkKind,
    build,
};
use turnstile_core::{MonotonicClock, Policy};

const CALLERS: usize = 512;
const RUN: Duration = Duration::from_secs(3);

async fn throughput(backend: Arc<dyn Backend>) -> f64 {
    let policy = Policy::new(0, 1_000_000, Duration::from_secs(1), 1_000_000).unwrap();
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let callers: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (backend, done, stop) =
                (Arc::clone(&backend), Arc::clone(&done), Arc::clone(&stop));
            tokio::spawn(async move {
                let key = format!("client-{caller}");
                while !stop.load(Ordering::Relaxed) {
                    if backend.check(&key, &policy, 1).await.is_ok() {
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                }
            })
        })
        .collect();
    // Warm up, then count over the run.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = done.load(Ordering::Relaxed);
    let started = Instant::now();
    tokio::time::sleep(RUN).await;
    let checks = done.load(Ordering::Relaxed) - before;
    let rate = checks as f64 / started.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let _ = caller.await;
    }
    backend.shutdown().await;
    rate
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    println!("| backend | shards | work per check | checks/s (median of 3) | ideal |");
    println!("|---|---|---|---|---|");
    let work = SimulatedWork {
        kind: WorkKind::Sleep,
        duration: Duration::from_millis(1),
    };
    for (kind, shards) in [
        (BackendKind::Actor, 1),
        (BackendKind::Sharded, 16),
        (BackendKind::Sharded, 64),
        (BackendKind::Concurrent, 1),
    ] {
        let config = BackendConfig {
            kind,
            shards,
            mailbox: MailboxConfig::bounded(CALLERS),
            simulated_work: Some(work),
            ..BackendConfig::default()
        };
        let mut rates: Vec<f64> = (0..3)
            .map(|_| {
                runtime.block_on(async {
                    let backend =
                        build(&config, &BuildContext::new(Arc::new(MonotonicClock::new())))
                            .unwrap();
                    throughput(backend).await
                })
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        let ideal = match kind {
            BackendKind::Concurrent => format!("{CALLERS} callers / 1 ms = {}", CALLERS * 1000),
            _ => format!("{shards} / 1 ms = {}", shards * 1000),
        };
        println!(
            "| {kind} | {} | 1 ms sleep | {:.0} | {ideal} |",
            if kind == BackendKind::Sharded {
                shards.to_string()
            } else {
                "-".into()
            },
            rates[1],
        );
    }
}
