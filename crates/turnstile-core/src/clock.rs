//! Time as the core sees it: monotonic nanoseconds from an injected source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A source of monotonic time in nanoseconds.
///
/// Backends hold one of these instead of calling `Instant::now()` so that tests can drive time
/// deterministically with a [`ManualClock`]. Readings must never go backwards.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's own origin.
    fn now_ns(&self) -> u64;
}

/// The production clock: nanoseconds elapsed since the clock was created.
#[derive(Debug, Clone, Copy)]
pub struct MonotonicClock {
    origin: Instant,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
        }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        // u64 nanoseconds last 584 years of uptime; saturate rather than wrap past that.
        u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

/// A clock that only moves when told to: every test that involves time uses it.
#[derive(Debug, Default)]
pub struct ManualClock {
    now: AtomicU64,
}

impl ManualClock {
    /// A clock reading `start_ns`.
    pub fn starting_at(start_ns: u64) -> Self {
        Self {
            now: AtomicU64::new(start_ns),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let by = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.now.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `now_ns`; it must not be earlier than the current reading.
    pub fn set(&self, now_ns: u64) {
        let previous = self.now.swap(now_ns, Ordering::SeqCst);
        debug_assert!(previous <= now_ns, "ManualClock moved backwards");
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}
