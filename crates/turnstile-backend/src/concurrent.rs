//! The concurrent backend: a sharded concurrent map from key to an atomic state, updated by
//! compare-and-swap. The ETS design: no actor, no mailbox, callers decide on their own threads.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use dashmap::DashMap;
use dashmap::mapref::entry::Entry;
use tokio_util::sync::CancellationToken;
use turnstile_core::{Clock, Decision, Policy, is_expired};

use crate::faults::Faults;
use crate::state_key::{DigestHasher, KeyDigester, validate_key};
use crate::status::{BackendState, BackendStatus, KillError, KillTarget};
use crate::table::{EvictionReporter, SweepSchedule};
use crate::work::WorkKind;
use crate::{
    Backend, BackendConfig, BackendKind, BoxFuture, BuildContext, CheckError, CheckFuture,
    SimulatedWork,
};

/// Per-key atomic states in a concurrent map.
pub(crate) struct ConcurrentTable {
    /// Keyed by the digest of `(policy id, key)` (see [`KeyDigester`]).
    states: DashMap<u64, AtomicU64, DigestHasher>,
    digester: KeyDigester,
    /// Keys held plus slots reserved by inserts in progress. Reserving before inserting is what
    /// makes `max_keys` exact under concurrency (the map's own `len` sums its shards under
    /// their locks and could be overtaken between the check and the insert).
    len: AtomicUsize,
    max_keys: usize,
    /// Forced-sweep pacing, shared with the actor table's contract. A std mutex because only a
    /// full table's inserts touch it, and it is never held across an `.await`.
    schedule: Mutex<SweepSchedule>,
    /// No key in the table expires before this (see `SweepSchedule`). Atomic so inserts can
    /// lower it with `fetch_min` without a lock.
    earliest_expiry_ns: AtomicU64,
    /// Where sweeps report what they removed (`None`: nowhere, for the redis backend's deny
    /// cache, whose entries are not the backend's keys).
    evictions: Option<EvictionReporter>,
}

impl ConcurrentTable {
    pub(crate) fn new(
        max_keys: usize,
        sweep_interval: std::time::Duration,
        evictions: Option<EvictionReporter>,
    ) -> Self {
        Self {
            states: DashMap::default(),
            digester: KeyDigester::new(),
            len: AtomicUsize::new(0),
            max_keys,
            schedule: Mutex::new(SweepSchedule::new(sweep_interval)),
            earliest_expiry_ns: AtomicU64::new(u64::MAX),
            evictions,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub(crate) fn digester(&self) -> &KeyDigester {
        &self.digester
    }

    /// The state stored for `digest`, if any (for the redis backend's deny cache, which
    /// decides on it without storing).
    pub(crate) fn stored(&self, digest: u64) -> Option<u64> {
        Some(self.states.get(&digest)?.load(Ordering::Acquire))
    }

    /// Raises the state stored for `digest` to at least `state` if the key is held; never
    /// inserts.
    pub(crate) fn raise_held(&self, digest: u64, state: u64) {
        if let Some(cell) = self.states.get(&digest) {
            cell.fetch_max(state, Ordering::AcqRel);
        }
    }

    /// Raises the state stored for `digest` to at least `state` (never lowers it). A full
    /// table with nothing expired keeps what it has: the caller loses a shortcut, not a
    /// decision.
    pub(crate) fn raise(&self, digest: u64, state: u64, now_ns: u64) {
        if is_expired(state, now_ns) {
            return;
        }
        if let Some(cell) = self.states.get(&digest) {
            cell.fetch_max(state, Ordering::AcqRel);
            return;
        }
        if self.reserve_slot(now_ns).is_err() {
            return;
        }
        match self.states.entry(digest) {
            Entry::Occupied(entry) => {
                self.len.fetch_sub(1, Ordering::AcqRel);
                entry.get().fetch_max(state, Ordering::AcqRel);
            }
            Entry::Vacant(entry) => {
                entry.insert(AtomicU64::new(state));
                self.earliest_expiry_ns.fetch_min(state, Ordering::AcqRel);
            }
        }
    }

    /// Decides and records one check. The clock is read while the key's shard lock is held, so
    /// a concurrent sweep (which takes the shard's write lock) can never remove a key that is
    /// live at the instant the check decides.
    pub(crate) fn check(
        &self,
        key: &[u8],
        policy: &Policy,
        cost: u32,
        clock: &dyn Clock,
    ) -> Result<Decision, CheckError> {
        let key = self.digester.digest(policy.id(), key);
        if let Some(cell) = self.states.get(&key) {
            return update(cell.value(), policy, cost, clock.now_ns());
        }
        // Absent. Settle errors and peeks before reserving room: neither inserts anything.
        let verdict = policy.check(0, clock.now_ns(), cost)?;
        if verdict.new_state.is_none() {
            return Ok(verdict.decision);
        }
        self.reserve_slot(clock.now_ns())?;
        match self.states.entry(key) {
            Entry::Occupied(entry) => {
                // Another caller inserted the key meanwhile: give the slot back and update.
                self.len.fetch_sub(1, Ordering::AcqRel);
                update(entry.get(), policy, cost, clock.now_ns())
            }
            Entry::Vacant(entry) => {
                let verdict = policy.check(0, clock.now_ns(), cost)?;
                match verdict.new_state {
                    Some(state) => {
                        entry.insert(AtomicU64::new(state));
                        self.earliest_expiry_ns.fetch_min(state, Ordering::AcqRel);
                    }
                    None => {
                        self.len.fetch_sub(1, Ordering::AcqRel);
                    }
                }
                Ok(verdict.decision)
            }
        }
    }

    fn reserve_slot(&self, now_ns: u64) -> Result<(), CheckError> {
        let try_reserve = || {
            if self.len.fetch_add(1, Ordering::AcqRel) < self.max_keys {
                true
            } else {
                self.len.fetch_sub(1, Ordering::AcqRel);
                false
            }
        };
        if try_reserve() {
            return Ok(());
        }
        let forced = self
            .schedule
            .lock()
            .map(|mut schedule| {
                schedule.take_forced_sweep(now_ns, self.earliest_expiry_ns.load(Ordering::Acquire))
            })
            .unwrap_or(false);
        if forced {
            self.sweep(now_ns);
        }
        if try_reserve() {
            Ok(())
        } else {
            Err(CheckError::TableFull {
                max_keys: self.max_keys,
            })
        }
    }

    /// Removes every expired key if any can have expired; returns how many were removed.
    pub(crate) fn sweep_if_due(&self, now_ns: u64) -> usize {
        if self.earliest_expiry_ns.load(Ordering::Acquire) <= now_ns {
            self.sweep(now_ns)
        } else {
            0
        }
    }

    fn sweep(&self, now_ns: u64) -> usize {
        let mut removed = 0;
        let mut earliest = u64::MAX;
        // Reset the bound first so inserts racing with the sweep lower it again afterwards;
        // the survivors' minimum is folded in below.
        self.earliest_expiry_ns.store(u64::MAX, Ordering::Release);
        self.states.retain(|_, state| {
            let state = state.load(Ordering::Acquire);
            if is_expired(state, now_ns) {
                removed += 1;
                false
            } else {
                earliest = earliest.min(state);
                true
            }
        });
        self.len.fetch_sub(removed, Ordering::AcqRel);
        self.earliest_expiry_ns
            .fetch_min(earliest, Ordering::AcqRel);
        if let Some(evictions) = &self.evictions {
            evictions.record(removed);
        }
        removed
    }
}

/// The compare-and-swap loop: decide on the state read, store only if nobody changed it since.
fn update(
    cell: &AtomicU64,
    policy: &Policy,
    cost: u32,
    now_ns: u64,
) -> Result<Decision, CheckError> {
    let mut current = cell.load(Ordering::Acquire);
    loop {
        let verdict = policy.check(current, now_ns, cost)?;
        let Some(new_state) = verdict.new_state else {
            return Ok(verdict.decision);
        };
        match cell.compare_exchange_weak(current, new_state, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return Ok(verdict.decision),
            Err(actual) => current = actual,
        }
    }
}

/// The ETS-style backend.
///
/// There is no state-owning task: each check runs on its caller's task (the request's own, or
/// a pool worker's). So an injected poison panics *there*, and only that one check is lost; the
/// table, and every other key's state, survive.
pub(crate) struct ConcurrentBackend {
    table: Arc<ConcurrentTable>,
    clock: Arc<dyn Clock>,
    faults: Arc<Faults>,
    simulated_work: Option<SimulatedWork>,
    stopped: AtomicBool,
    /// Ends the periodic sweeper on shutdown.
    sweeper: CancellationToken,
}

impl ConcurrentBackend {
    /// Builds the table and starts its periodic sweeper (must run inside a tokio runtime).
    pub(crate) fn start(config: &BackendConfig, context: &BuildContext) -> Self {
        let clock = Arc::clone(&context.clock);
        let table = Arc::new(ConcurrentTable::new(
            config.max_keys,
            config.sweep_interval,
            Some(EvictionReporter {
                backend: BackendKind::Concurrent,
                observer: Arc::clone(&context.observer),
            }),
        ));
        let sweeper = CancellationToken::new();
        tokio::spawn(sweep_periodically(
            Arc::downgrade(&table),
            Arc::clone(&clock),
            config.sweep_interval,
            sweeper.clone(),
        ));
        Self {
            table,
            clock,
            faults: Arc::clone(&context.faults),
            simulated_work: config.simulated_work,
            stopped: AtomicBool::new(false),
            sweeper,
        }
    }
}

/// Sweeps `table`'s expired keys every `every` until `stop`, or until the table is dropped.
pub(crate) async fn sweep_periodically(
    table: Weak<ConcurrentTable>,
    clock: Arc<dyn Clock>,
    every: std::time::Duration,
    stop: CancellationToken,
) {
    let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => match table.upgrade() {
                Some(table) => {
                    table.sweep_if_due(clock.now_ns());
                }
                None => return,
            },
        }
    }
}

impl Drop for ConcurrentBackend {
    fn drop(&mut self) {
        self.sweeper.cancel();
    }
}

impl Backend for ConcurrentBackend {
    fn kind(&self) -> BackendKind {
        BackendKind::Concurrent
    }

    fn check<'a>(&'a self, key: &'a str, policy: &'a Policy, cost: u32) -> CheckFuture<'a> {
        if self.stopped.load(Ordering::Acquire) {
            return CheckFuture::ready(Err(CheckError::Unavailable));
        }
        if let Err(error) = validate_key(key) {
            return CheckFuture::ready(Err(error));
        }
        self.faults.trip_poison(policy.id(), key);
        // Borrows only: the key is never copied on the way to its digest.
        let decide = move || {
            self.table
                .check(key.as_bytes(), policy, cost, self.clock.as_ref())
        };
        let slow = self.faults.slow_delay();
        match (self.simulated_work, slow) {
            (None, None) => CheckFuture::ready(decide()),
            (Some(work), None) if work.kind == WorkKind::Spin => {
                work.spin();
                CheckFuture::ready(decide())
            }
            (work, slow) => CheckFuture::waiting(async move {
                if let Some(delay) = slow {
                    tokio::time::sleep(delay).await;
                }
                if let Some(work) = work {
                    work.perform().await;
                }
                decide()
            }),
        }
    }

    fn keys_tracked(&self) -> usize {
        self.table.len()
    }

    fn is_ready(&self) -> bool {
        !self.stopped.load(Ordering::Acquire)
    }

    fn status(&self) -> BackendStatus {
        BackendStatus {
            backend: BackendKind::Concurrent,
            state: if self.is_ready() {
                BackendState::Running
            } else {
                BackendState::Stopped
            },
            children: Vec::new(),
            escalations: 0,
            pool: None,
            redis: None,
        }
    }

    fn kill(&self, target: KillTarget) -> BoxFuture<'_, Result<(), KillError>> {
        Box::pin(std::future::ready(Err(target.absent())))
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.stopped.store(true, Ordering::Release);
        self.sweeper.cancel();
        Box::pin(std::future::ready(()))
    }
}
