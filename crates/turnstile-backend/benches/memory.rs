//! Memory per tracked key: each in-process backend holding 1,000,000 IPv4-address keys, with
//! every heap byte counted by an instrumented global allocator (`stats_alloc`). Prints bytes per
//! key; `loadtest/bench-peers.sh` puts the numbers in docs/BENCHMARKS.md.
//!
//! `cargo bench -p turnstile-backend --bench memory`

// A bench binary: a panic is how it reports a broken setup.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::alloc::System;
use std::sync::Arc;
use std::time::Duration;

use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use turnstile_backend::{BackendConfig, BackendKind, BuildContext, MailboxConfig, build};
use turnstile_core::{Clock, ManualClock, Policy};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const KEYS: u32 = 1_000_000;

/// `10.a.b.c` for the n-th key: the length mix of real IPv4 client keys (8 to 13 bytes here).
fn ipv4_key(n: u32, buffer: &mut String) {
    use std::fmt::Write;
    buffer.clear();
    let [_, a, b, c] = n.to_be_bytes();
    let _ = write!(buffer, "10.{a}.{b}.{c}");
}

fn main() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // One per hour: nothing expires, nothing is swept while measuring.
    let policy = Policy::new(0, 1, Duration::from_secs(3600), 1).unwrap();
    println!("| backend | keys | heap bytes | bytes per key |");
    println!("|---|---|---|---|");
    for kind in BackendKind::IN_PROCESS {
        let bytes = runtime.block_on(async {
            let clock: Arc<dyn Clock> = Arc::new(ManualClock::default());
            let config = BackendConfig {
                kind,
                shards: 16,
                max_keys: 2 * KEYS as usize,
                mailbox: MailboxConfig::bounded(1024),
                ..BackendConfig::default()
            };
            let region = Region::new(GLOBAL);
            let backend = build(&config, &BuildContext::new(clock)).unwrap();
            let mut key = String::with_capacity(16);
            for n in 0..KEYS {
                ipv4_key(n, &mut key);
                assert!(backend.check(&key, &policy, 1).await.unwrap().allowed);
            }
            assert_eq!(backend.keys_tracked(), KEYS as usize);
            let change = region.change();
            backend.shutdown().await;
            change.bytes_allocated as i64 - change.bytes_deallocated as i64
        });
        println!(
            "| {kind} | {KEYS} | {bytes} | {:.1} |",
            bytes as f64 / f64::from(KEYS)
        );
    }
}
