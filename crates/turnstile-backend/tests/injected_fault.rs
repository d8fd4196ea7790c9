//! An injected poison unwinds without running the panic hook: no message printed by the hook
//! and, with `RUST_BACKTRACE=1`, no backtrace captured and symbolized on the runtime worker
//! (~100 ms during which every task on it waits). Its own test binary: the hook it installs
//! is process-wide.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use turnstile_backend::{BackendConfig, BackendKind, BuildContext, InjectedFault, build};
use turnstile_core::{ManualClock, Policy};

#[tokio::test]
async fn a_poisoned_check_unwinds_without_the_panic_hook() {
    let hooked = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&hooked);
    std::panic::set_hook(Box::new(move |_| {
        counted.fetch_add(1, Ordering::SeqCst);
    }));
    let context = BuildContext::new(Arc::new(ManualClock::default()));
    let config = BackendConfig {
        kind: BackendKind::Concurrent,
        ..BackendConfig::default()
    };
    let backend = build(&config, &context).unwrap();
    let policy = Policy::new(0, 10, std::time::Duration::from_secs(1), 10).unwrap();
    context.faults.poison(0, "victim").unwrap();
    // The concurrent map decides inside `check` itself, on the caller's task.
    let unwound = std::panic::catch_unwind(AssertUnwindSafe(|| {
        drop(backend.check("victim", &policy, 1));
    }))
    .expect_err("the poisoned check unwinds");
    assert!(unwound.downcast_ref::<InjectedFault>().is_some());
    assert_eq!(hooked.load(Ordering::SeqCst), 0, "the panic hook ran");
    // A poison fires once; the hook still works for real panics.
    assert!(backend.check("victim", &policy, 1).await.is_ok());
    let _ = std::panic::catch_unwind(|| panic!("a real bug"));
    assert_eq!(hooked.load(Ordering::SeqCst), 1);
    let _ = std::panic::take_hook();
}
