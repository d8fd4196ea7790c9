//! Fault injection, shared by every backend built from one context: poison a key so its next
//! check panics inside whatever owns the state, or make every check slow for a while.
//!
//! Both are read on the hot path through one atomic flag each, so a gateway with no fault
//! injected pays two relaxed loads per check and takes no lock.

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use crate::CheckError;
use crate::state_key::StateKey;

/// The payload of the panic a poisoned key's check unwinds with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InjectedFault;

/// The faults currently injected.
#[derive(Debug, Default)]
pub struct Faults {
    /// Composite `(policy, key)` table keys whose next check panics.
    poisoned: Mutex<HashSet<Box<[u8]>>>,
    any_poisoned: AtomicBool,
    /// Extra delay per check, until a deadline.
    slow: Mutex<Option<(Instant, Duration)>>,
    any_slow: AtomicBool,
}

impl Faults {
    /// Poisons `key` under policy `policy_id`: its next check panics inside the state owner
    /// (the actor, shard, pool worker, or the caller's own task for the concurrent map).
    pub fn poison(&self, policy_id: u16, key: &str) -> Result<(), CheckError> {
        let state_key = StateKey::new(policy_id, key)?;
        if let Ok(mut poisoned) = self.poisoned.lock() {
            poisoned.insert(state_key.as_bytes().into());
            self.any_poisoned.store(true, Ordering::Release);
        }
        Ok(())
    }

    /// Unwinds (panics, with an [`InjectedFault`] payload and without running the panic hook)
    /// if `key` is poisoned under policy `policy_id`. Called by the state owner, where
    /// the panic belongs. With nothing poisoned this is one atomic load: the composite key is
    /// only built when some key is poisoned.
    #[inline]
    pub(crate) fn trip_poison(&self, policy_id: u16, key: &str) {
        if self.any_poisoned.load(Ordering::Acquire) {
            self.trip_poison_if_set(policy_id, key);
        }
    }

    /// Consumes the poison of `key` under `policy_id` if it has one (a poison fires once),
    /// then panics.
    #[cold]
    fn trip_poison_if_set(&self, policy_id: u16, key: &str) {
        let Ok(state_key) = StateKey::new(policy_id, key) else {
            return;
        };
        let Ok(mut poisoned) = self.poisoned.lock() else {
            return;
        };
        let hit = poisoned.remove(state_key.as_bytes());
        self.any_poisoned
            .store(!poisoned.is_empty(), Ordering::Release);
        // Released before the panic, so the mutex is not poisoned along with the key.
        drop(poisoned);
        if hit {
            tracing::warn!(policy_id, "injected fault: a poisoned key's check panics");
            // Unwound without the panic hook: the hook is what prints the message and, with
            // `RUST_BACKTRACE=1` (common in containers), captures and symbolizes a backtrace on
            // the runtime worker for ~100 ms, holding up every task on it. An injected crash
            // must cost what a crash costs (the state owner's death), not that.
            std::panic::resume_unwind(Box::new(InjectedFault));
        }
    }

    /// Makes every check take `delay` longer, for `duration` from now.
    pub fn slow_down(&self, delay: Duration, duration: Duration) {
        if let Ok(mut slow) = self.slow.lock() {
            *slow = Some((Instant::now() + duration, delay));
            self.any_slow.store(true, Ordering::Release);
        }
    }

    /// The extra delay to apply to a check now, if a slow-down is in force.
    #[inline]
    pub(crate) fn slow_delay(&self) -> Option<Duration> {
        if !self.any_slow.load(Ordering::Acquire) {
            return None;
        }
        self.slow_delay_in_force()
    }

    #[cold]
    fn slow_delay_in_force(&self) -> Option<Duration> {
        let mut slow = self.slow.lock().ok()?;
        match *slow {
            Some((until, delay)) if Instant::now() < until => Some(delay),
            _ => {
                *slow = None;
                self.any_slow.store(false, Ordering::Release);
                None
            }
        }
    }
}
