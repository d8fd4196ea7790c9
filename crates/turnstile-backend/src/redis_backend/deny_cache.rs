//! The local over-limit cache: denials answered without Redis, exactly.
//!
//! When Redis denies a check it also says how far ahead the key's TAT is (`reset_after`).
//! A TAT only ever moves forward, and only by admissions. So `sent + reset_after`, where
//! `sent` is this replica's clock just *before* the command left (Redis read its own "now"
//! later), is a lower bound on the key's TAT for as long as the key lives in Redis. While
//! that bound denies even a check of cost 1 (until `TAT - tolerance + emission interval`, the
//! retry instant of a cost-1 check), no check of any cost can be admitted by any replica, so
//! the TAT cannot move: every check in that window is denied, and answered here with what
//! Redis would say, `remaining`, `retry_after` and `reset_after` computed from the cached
//! instant by the core's own arithmetic. Outside it (a smaller cost could pass) the check goes
//! to Redis. (Answering every check the bound denies would be just as safe, but its numbers
//! could be stale: a cost-3 denial followed by an admitted cost-1 check moves the TAT.)
//!
//! The one way it can be stricter than Redis: the Redis key disappears before its TAT (it was
//! deleted, or Redis restarted empty or failed over to a replica that had not received the
//! write). Redis would then admit at once; the cache keeps denying until the cached retry
//! instant, so at most `retry_after` of extra denial per key.
//!
//! Keyed by the Redis key's parts (the policy's *name* and the key), so a reload that renames
//! or renumbers policies never applies one policy's state to another; a reload that changes a
//! policy's numbers is harmless, since Redis too decides on the stored TAT with the numbers the
//! check brings. Bounded by `max_keys` like the in-process tables, swept of expired entries
//! every `sweep_interval`; a full cache keeps what it has and sends the rest to Redis.
//!
//! # Invariants
//!
//! - It holds only keys Redis denied, each at a lower bound of its TAT in the backend's clock.
//! - It never admits, and it answers only while no replica could admit: any other check goes
//!   to Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use turnstile_core::{Clock, Decision, Policy};

use crate::concurrent::{ConcurrentTable, sweep_periodically};

pub(crate) struct DenyCache {
    table: Arc<ConcurrentTable>,
    /// Checks answered here, without Redis.
    hits: AtomicU64,
    /// Ends the sweeper when the backend stops.
    sweeper: CancellationToken,
}

impl DenyCache {
    /// Starts the cache and its sweeper (inside a tokio runtime).
    pub(crate) fn start(max_keys: usize, sweep_interval: Duration, clock: Arc<dyn Clock>) -> Self {
        let table = Arc::new(ConcurrentTable::new(max_keys, sweep_interval, None));
        let sweeper = CancellationToken::new();
        tokio::spawn(sweep_periodically(
            Arc::downgrade(&table),
            clock,
            sweep_interval,
            sweeper.clone(),
        ));
        Self {
            table,
            hits: AtomicU64::new(0),
            sweeper,
        }
    }

    /// Where `key` of the keyspace named `keyspace` lives in the cache.
    pub(crate) fn digest(&self, keyspace: &[u8], key: &[u8]) -> u64 {
        self.table.digester().digest_named(keyspace, key)
    }

    /// The denial Redis would give, if the cached lower bound alone proves one.
    pub(crate) fn denial(
        &self,
        digest: u64,
        policy: &Policy,
        cost: u32,
        now_ns: u64,
    ) -> Option<Decision> {
        let decision = self
            .table
            .denial_of_every_cost(digest, policy, cost, now_ns)?;
        self.hits.fetch_add(1, Ordering::Relaxed);
        Some(decision)
    }

    /// Records Redis's denial of a check sent at `sent_ns`: the key's TAT is at least
    /// `sent_ns + reset_after`.
    pub(crate) fn denied(&self, digest: u64, sent_ns: u64, reset_after: Duration, now_ns: u64) {
        let reset_after_ns = u64::try_from(reset_after.as_nanos()).unwrap_or(u64::MAX);
        self.table
            .raise(digest, sent_ns.saturating_add(reset_after_ns), now_ns);
    }

    /// Checks answered here since start.
    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::Relaxed)
    }

    /// Keys held now.
    pub(crate) fn len(&self) -> usize {
        self.table.len()
    }

    pub(crate) fn stop(&self) {
        self.sweeper.cancel();
    }
}

impl Drop for DenyCache {
    fn drop(&mut self) {
        self.sweeper.cancel();
    }
}
