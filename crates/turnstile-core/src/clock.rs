//! Time as the core sees it: monotonic nanoseconds from an injected source.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A source of monotonic time in nanoseconds.
///
/// Backends hold one of these instead of calling `Instant::now()` so that tests can drive time
/// deterministically with a [`ManualClock`]. Readings must never go backwards.
pub trait Clock: Send + Sync + 'static {
    /// Nanoseconds since this clock's own origin.
    fn now_ns(&self) -> u64;
}

/// The production clock: nanoseconds elapsed since the clock was created.
///
/// Reads the CPU's time-stamp counter through `quanta` (calibrated against the OS monotonic
/// clock, falling back to it where no usable TSC exists): `Instant::now()` costs ~25 ns on the
/// virtual machines measured in docs/BENCHMARKS.md, as much as an entire check.
#[derive(Debug, Clone)]
pub struct MonotonicClock {
    clock: quanta::Clock,
    origin: u64,
}

impl MonotonicClock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        let clock = quanta::Clock::new();
        let origin = clock.raw();
        Self { clock, origin }
    }
}

impl Default for MonotonicClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        self.clock.delta_as_nanos(self.origin, self.clock.raw())
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
