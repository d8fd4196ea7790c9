//! The single-owner key table an actor keeps: a plain hash map, no synchronisation, because
//! exactly one task ever touches it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use turnstile_core::{Decision, Policy, State, is_expired};

use crate::state_key::{DigestHasher, KeyDigester};
use crate::{BackendKind, BackendObserver, CheckError};

/// Where a table reports the keys its sweeps remove (the `keys evicted` counter).
#[derive(Clone)]
pub(crate) struct EvictionReporter {
    pub(crate) backend: BackendKind,
    pub(crate) observer: Arc<dyn BackendObserver>,
}

impl EvictionReporter {
    pub(crate) fn record(&self, removed: usize) {
        if removed > 0 {
            tracing::debug!(backend = %self.backend, removed, "swept expired keys");
            self.observer.keys_evicted(self.backend, removed);
        }
    }
}

/// A table full of live keys is swept at most this many times per sweep interval, so a spray of
/// new keys against a full table does not rescan the whole table on every request.
const FORCED_SWEEPS_PER_INTERVAL: u32 = 10;

/// How often a full table may force a sweep.
///
/// Shared by the actor table and the concurrent table so both keep the same memory contract.
/// Each table keeps its own `earliest_expiry_ns` (a lower bound on when any of its keys
/// expires: checks only ever move a key's state later, and every insert lowers the bound to the
/// new key's state if earlier), in whatever form its concurrency needs, and passes it in.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SweepSchedule {
    /// The earliest time a full table may sweep again.
    next_forced_sweep_ns: u64,
    forced_sweep_gap_ns: u64,
}

impl SweepSchedule {
    pub(crate) fn new(sweep_interval: Duration) -> Self {
        let gap = sweep_interval / FORCED_SWEEPS_PER_INTERVAL;
        Self {
            next_forced_sweep_ns: 0,
            forced_sweep_gap_ns: u64::try_from(gap.as_nanos()).unwrap_or(u64::MAX),
        }
    }

    /// Whether a full table whose keys expire no earlier than `earliest_expiry_ns` should
    /// sweep now (and, if so, records that it did).
    pub(crate) fn take_forced_sweep(&mut self, now_ns: u64, earliest_expiry_ns: u64) -> bool {
        if earliest_expiry_ns <= now_ns && now_ns >= self.next_forced_sweep_ns {
            self.next_forced_sweep_ns = now_ns.saturating_add(self.forced_sweep_gap_ns);
            true
        } else {
            false
        }
    }
}

/// Per-key states owned by one actor.
pub(crate) struct KeyTable {
    /// Keyed by the digest of `(policy id, key)` (see [`KeyDigester`]).
    states: HashMap<u64, State, DigestHasher>,
    digester: KeyDigester,
    max_keys: usize,
    /// No key in the table expires before this (see [`SweepSchedule`]).
    earliest_expiry_ns: u64,
    schedule: SweepSchedule,
    evictions: EvictionReporter,
}

impl KeyTable {
    pub(crate) fn new(
        max_keys: usize,
        sweep_interval: Duration,
        evictions: EvictionReporter,
    ) -> Self {
        Self {
            states: HashMap::default(),
            digester: KeyDigester::new(),
            max_keys,
            earliest_expiry_ns: u64::MAX,
            schedule: SweepSchedule::new(sweep_interval),
            evictions,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.states.len()
    }

    /// Decides and records one check.
    pub(crate) fn check(
        &mut self,
        key: &[u8],
        policy: &Policy,
        cost: u32,
        now_ns: u64,
    ) -> Result<Decision, CheckError> {
        let key = self.digester.digest(policy.id(), key);
        if let Some(state) = self.states.get_mut(&key) {
            let verdict = policy.check(*state, now_ns, cost)?;
            if let Some(new_state) = verdict.new_state {
                *state = new_state;
            }
            return Ok(verdict.decision);
        }
        let verdict = policy.check(0, now_ns, cost)?;
        if let Some(new_state) = verdict.new_state {
            if self.states.len() >= self.max_keys {
                if self
                    .schedule
                    .take_forced_sweep(now_ns, self.earliest_expiry_ns)
                {
                    self.sweep(now_ns);
                }
                if self.states.len() >= self.max_keys {
                    return Err(CheckError::TableFull {
                        max_keys: self.max_keys,
                    });
                }
            }
            self.states.insert(key, new_state);
            self.earliest_expiry_ns = self.earliest_expiry_ns.min(new_state);
        }
        Ok(verdict.decision)
    }

    /// Removes every expired key if any can have expired; returns how many were removed.
    pub(crate) fn sweep_if_due(&mut self, now_ns: u64) -> usize {
        if self.earliest_expiry_ns <= now_ns {
            self.sweep(now_ns)
        } else {
            0
        }
    }

    fn sweep(&mut self, now_ns: u64) -> usize {
        let before = self.states.len();
        let mut earliest = u64::MAX;
        self.states.retain(|_, state| {
            let keep = !is_expired(*state, now_ns);
            if keep {
                earliest = earliest.min(*state);
            }
            keep
        });
        self.earliest_expiry_ns = earliest;
        let removed = before - self.states.len();
        self.evictions.record(removed);
        removed
    }
}
