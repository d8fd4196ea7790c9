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
//! One check at a time per reopening. A key hammered far past its limit reopens once per
//! emission interval: the instant its bound admits a cost-1 check again, every check arriving
//! would go to Redis until an answer comes back, one round trip's worth of the key's traffic
//! per emission. So when the bound admits exactly one unit (the window just reopened), one
//! check *claims* the key and goes to Redis; the others wait for its answer (within their own
//! `command_timeout`), which raises the bound (a denial, or an admission that used the unit),
//! and are then answered from it. A key with more room than one unit is never claimed: its
//! checks go to Redis side by side.
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
//! - It holds only keys Redis denied, each at a lower bound of its TAT in the backend's clock
//!   (raised by later denials, and by admissions of keys it holds).
//! - It never admits, and it answers only while no replica could admit: any other check goes
//!   to Redis.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use turnstile_core::{Clock, Decision, Policy};

use crate::concurrent::{ConcurrentTable, sweep_periodically};
use crate::state_key::DigestHasher;

pub(crate) struct DenyCache {
    table: Arc<ConcurrentTable>,
    /// Keys claimed by the one check at Redis for them now, each with what wakes the checks
    /// waiting for its answer. Holds a key only for one round trip, and only keys the table
    /// holds.
    claims: DashMap<u64, Arc<Notify>, DigestHasher>,
    /// Checks answered here, without Redis.
    hits: AtomicU64,
    /// Ends the sweeper when the backend stops.
    sweeper: CancellationToken,
}

/// What the cache says about a check.
#[derive(Debug, PartialEq)]
pub(crate) enum Lookup {
    /// Denied, as Redis would: answer this.
    Denied(Decision),
    /// The key's window has just reopened for one unit: one check at a time goes to Redis.
    Reopened,
    /// Not held, or with room for more than one unit: ask Redis.
    Ask,
}

/// The claim on a key of the check at Redis for it; dropping it wakes the waiting checks.
pub(crate) struct Claim<'a> {
    cache: &'a DenyCache,
    digest: u64,
    done: Arc<Notify>,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.cache.claims.remove(&self.digest);
        self.done.notify_waiters();
    }
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
            claims: DashMap::default(),
            hits: AtomicU64::new(0),
            sweeper,
        }
    }

    /// Where `key` of the keyspace named `keyspace` lives in the cache.
    pub(crate) fn digest(&self, keyspace: &[u8], key: &[u8]) -> u64 {
        self.table.digester().digest_named(keyspace, key)
    }

    /// What to do with a check of `cost` at `now_ns` (see [`Lookup`]).
    pub(crate) fn lookup(&self, digest: u64, policy: &Policy, cost: u32, now_ns: u64) -> Lookup {
        let Some(bound) = self.table.stored(digest) else {
            return Lookup::Ask;
        };
        // Errors (a cost over the burst) were answered before the cache is asked.
        let Ok(smallest) = policy.check(bound, now_ns, 1) else {
            return Lookup::Ask;
        };
        if smallest.decision.allowed {
            // Admitting one unit would leave none: the window has just reopened.
            return if smallest.decision.remaining == 0 {
                Lookup::Reopened
            } else {
                Lookup::Ask
            };
        }
        // A cost-1 denial implies the same for every larger cost (and peeks answer as cost 1).
        match policy.check(bound, now_ns, cost) {
            Ok(verdict) if !verdict.decision.allowed => {
                self.hits.fetch_add(1, Ordering::Relaxed);
                Lookup::Denied(verdict.decision)
            }
            _ => Lookup::Ask,
        }
    }

    /// Claims `digest` for the calling check, or gives what the claim's holder will notify
    /// when its answer is in.
    pub(crate) fn try_claim(&self, digest: u64) -> Result<Claim<'_>, Arc<Notify>> {
        match self.claims.entry(digest) {
            dashmap::mapref::entry::Entry::Occupied(entry) => Err(Arc::clone(entry.get())),
            dashmap::mapref::entry::Entry::Vacant(entry) => {
                let done = Arc::new(Notify::new());
                entry.insert(Arc::clone(&done));
                Ok(Claim {
                    cache: self,
                    digest,
                    done,
                })
            }
        }
    }

    /// Whether `done` still belongs to the claim on `digest` (checked after subscribing to
    /// it, so a claim released in between is never waited for).
    pub(crate) fn still_claimed(&self, digest: u64, done: &Arc<Notify>) -> bool {
        self.claims
            .get(&digest)
            .is_some_and(|claim| Arc::ptr_eq(claim.value(), done))
    }

    /// Records Redis's answer to a check sent at `sent_ns`: the key's TAT is at least
    /// `sent_ns + reset_after`. A denial puts the key in the cache; an admission only raises
    /// a key the cache already holds.
    pub(crate) fn answered(
        &self,
        digest: u64,
        allowed: bool,
        sent_ns: u64,
        reset_after: Duration,
        now_ns: u64,
    ) {
        let reset_after_ns = u64::try_from(reset_after.as_nanos()).unwrap_or(u64::MAX);
        let bound = sent_ns.saturating_add(reset_after_ns);
        if allowed {
            self.table.raise_held(digest, bound);
        } else {
            self.table.raise(digest, bound, now_ns);
        }
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

#[cfg(test)]
mod tests {
    use turnstile_core::ManualClock;

    use super::*;

    const MS: u64 = 1_000_000;

    fn cache(max_keys: usize) -> DenyCache {
        DenyCache::start(
            max_keys,
            Duration::from_secs(60),
            Arc::new(ManualClock::default()),
        )
    }

    /// 10 per second (one every 100 ms), burst 5: tolerance 500 ms.
    fn policy() -> Policy {
        Policy::new(0, 10, Duration::from_secs(1), 5).unwrap()
    }

    #[tokio::test]
    async fn answers_only_while_every_cost_is_denied_and_as_the_core_would() {
        let policy = policy();
        let cache = cache(10);
        let key = cache.digest(b"policy", b"key");
        assert_eq!(cache.lookup(key, &policy, 1, 0), Lookup::Ask, "absent");
        // Denied at 0 with the TAT 550 ms ahead: a cost-1 check waits until 150 ms.
        cache.answered(key, false, 0, Duration::from_millis(550), 0);
        for (now, cost) in [(0, 1), (0, 5), (149 * MS, 1), (149 * MS, 0)] {
            let expected = policy.check(550 * MS, now, cost).unwrap().decision;
            assert!(!expected.allowed);
            assert_eq!(
                cache.lookup(key, &policy, cost, now),
                Lookup::Denied(expected)
            );
        }
        // From 150 ms one unit is free: one check at a time goes to Redis, whatever its cost
        // (the bound would still deny cost 2 until 250 ms, but an admission moves the TAT).
        assert_eq!(cache.lookup(key, &policy, 1, 150 * MS), Lookup::Reopened);
        assert_eq!(cache.lookup(key, &policy, 2, 150 * MS), Lookup::Reopened);
        // With room for two units or more, checks go to Redis side by side.
        assert_eq!(cache.lookup(key, &policy, 1, 250 * MS), Lookup::Ask);
        assert_eq!(cache.hits(), 4);
    }

    #[tokio::test]
    async fn a_bound_is_only_ever_raised_and_a_full_cache_keeps_what_it_has() {
        let policy = policy();
        let cache = cache(1);
        let key = cache.digest(b"policy", b"key");
        cache.answered(key, false, 0, Duration::from_millis(600), 0);
        // An older answer arriving late does not lower the bound.
        cache.answered(key, false, 0, Duration::from_millis(550), 0);
        let Lookup::Denied(decision) = cache.lookup(key, &policy, 1, 0) else {
            panic!("denied")
        };
        assert_eq!(decision.reset_after, Duration::from_millis(600));
        // An admission raises a held key...
        cache.answered(key, true, 0, Duration::from_millis(700), 0);
        let Lookup::Denied(decision) = cache.lookup(key, &policy, 1, 0) else {
            panic!("denied")
        };
        assert_eq!(decision.reset_after, Duration::from_millis(700));
        // ...and never inserts one.
        let other = cache.digest(b"policy", b"other");
        cache.answered(other, true, 0, Duration::from_millis(600), 0);
        assert_eq!(cache.lookup(other, &policy, 1, 0), Lookup::Ask);
        // The cache is full: another denied key is not held (its checks go to Redis).
        cache.answered(other, false, 0, Duration::from_millis(600), 0);
        assert_eq!(cache.lookup(other, &policy, 1, 0), Lookup::Ask);
        assert_eq!(cache.len(), 1);
        // The same key under another policy's name is another key.
        assert_ne!(cache.digest(b"policy-2", b"key"), key);
    }

    #[tokio::test]
    async fn one_claim_per_key_and_its_release_wakes_the_waiters() {
        let cache = cache(10);
        let key = cache.digest(b"policy", b"key");
        let claim = cache.try_claim(key).ok().unwrap();
        let Err(done) = cache.try_claim(key) else {
            panic!("a second claim on one key")
        };
        assert!(cache.try_claim(cache.digest(b"policy", b"other")).is_ok());
        let waiting = done.notified();
        assert!(cache.still_claimed(key, &done));
        drop(claim);
        // Woken by the release (created before it, so notified even unpolled).
        waiting.await;
        assert!(!cache.still_claimed(key, &done));
        assert!(cache.try_claim(key).is_ok());
    }
}
