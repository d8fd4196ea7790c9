//! Nanoseconds per check for each backend, with `governor`'s keyed limiter as the reference,
//! measured in the same run: 1 and 2 calling threads, one hot key and many keys.
//!
//! Run: `cargo bench -p turnstile-backend --bench check`. Each figure is wall time divided by
//! the number of checks, so with 2 threads a backend that scales shows about half its
//! 1-thread time, and a serialized one does not.
//!
//! The concurrent backend and governor are both driven synchronously from plain threads (the
//! concurrent backend's future is already complete when returned, so it is polled once with a
//! no-op waker). The actor backends need a runtime: their callers are tokio tasks on a
//! 2-worker runtime, which is how the gateway drives them.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]
// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::future::Future;
use std::hint::black_box;
use std::num::NonZeroU32;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use turnstile_backend::{Backend, BackendConfig, BackendKind, BuildContext, MailboxConfig, build};
use turnstile_core::{MonotonicClock, Policy};

/// A million per second with a million burst: the same quota for every contender.
const RATE: u32 = 1_000_000;
const MANY_KEYS: usize = 100_000;

fn policy() -> Policy {
    match Policy::new(0, RATE, Duration::from_secs(1), RATE) {
        Ok(policy) => policy,
        Err(error) => panic!("bench policy: {error}"),
    }
}

fn keys(count: usize) -> Arc<Vec<String>> {
    Arc::new(
        (0..count)
            .map(|i| format!("10.{}.{}.{}", i >> 16, (i >> 8) & 255, i & 255))
            .collect(),
    )
}

/// Polls a future that is expected to be complete already.
fn ready_now<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the concurrent backend never waits without simulated work"),
    }
}

/// Runs `iters` calls of `work(i)` split across `threads` OS threads; returns wall time.
fn on_threads(threads: usize, iters: u64, work: impl Fn(usize) + Sync) -> Duration {
    let per_thread = iters as usize / threads;
    let started = Instant::now();
    std::thread::scope(|scope| {
        for thread in 0..threads {
            let work = &work;
            scope.spawn(move || {
                for i in 0..per_thread {
                    work(thread * 7919 + i);
                }
            });
        }
    });
    started.elapsed()
}

fn backend(kind: BackendKind) -> Arc<dyn Backend> {
    let config = BackendConfig {
        kind,
        max_keys: 10 * MANY_KEYS,
        mailbox: MailboxConfig::bounded(4096),
        ..BackendConfig::default()
    };
    match build(&config, &BuildContext::new(Arc::new(MonotonicClock::new()))) {
        Ok(backend) => backend,
        Err(error) => panic!("bench backend: {error}"),
    }
}

fn bench_checks(c: &mut Criterion) {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => panic!("runtime: {error}"),
    };
    let policy = policy();
    for (shape, key_count) in [("hot_key", 1), ("many_keys", MANY_KEYS)] {
        let keys = keys(key_count);
        for threads in [1usize, 2] {
            let mut group = c.benchmark_group(format!("check/{shape}/{threads}_thread"));
            group.sample_size(20);
            group.warm_up_time(Duration::from_millis(500));
            group.measurement_time(Duration::from_secs(2));

            let governor = RateLimiter::dashmap(
                Quota::per_second(NonZeroU32::new(RATE).unwrap_or(NonZeroU32::MIN))
                    .allow_burst(NonZeroU32::new(RATE).unwrap_or(NonZeroU32::MIN)),
            );
            group.bench_function(BenchmarkId::new("governor", threads), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |i| {
                        let _ = black_box(governor.check_key(&keys[i % keys.len()]));
                    })
                })
            });

            let concurrent = runtime.block_on(async { backend(BackendKind::Concurrent) });
            group.bench_function(BenchmarkId::new("concurrent", threads), |b| {
                b.iter_custom(|iters| {
                    on_threads(threads, iters, |i| {
                        let _ = black_box(ready_now(concurrent.check(
                            &keys[i % keys.len()],
                            &policy,
                            1,
                        )));
                    })
                })
            });

            for kind in [BackendKind::Sharded, BackendKind::Actor] {
                let backend = runtime.block_on(async { backend(kind) });
                group.bench_function(BenchmarkId::new(kind.as_str(), threads), |b| {
                    b.iter_custom(|iters| {
                        let per_task = iters as usize / threads;
                        runtime.block_on(async {
                            let started = Instant::now();
                            let tasks: Vec<_> = (0..threads)
                                .map(|task| {
                                    let backend = Arc::clone(&backend);
                                    let keys = Arc::clone(&keys);
                                    tokio::spawn(async move {
                                        for i in 0..per_task {
                                            let key = &keys[(task * 7919 + i) % keys.len()];
                                            let _ = black_box(backend.check(key, &policy, 1).await);
                                        }
                                    })
                                })
                                .collect();
                            for task in tasks {
                                let _ = task.await;
                            }
                            started.elapsed()
                        })
                    })
                });
                runtime.block_on(backend.shutdown());
            }
            group.finish();
        }
    }
}

criterion_group!(benches, bench_checks);
criterion_main!(benches);
