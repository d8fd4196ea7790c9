//! How a `(policy, key)` pair becomes one table key.
//!
//! One table, one `max_keys`, one sweep serve every policy, and a key checked under two
//! policies has two independent states. The in-process tables store only a 64-bit digest of
//! `(policy id, key)` ([`KeyDigester`]), computed from the two parts as they are: the concurrent
//! backend's hot path neither allocates nor copies the key, not even for a new key. Where the
//! pair must be one byte string (shard routing, fault injection, the actor's message), it is
//! the policy id (2 bytes, big-endian) followed by the key's bytes, built on the stack
//! ([`StateKey`]).

use arrayvec::ArrayVec;

use crate::CheckError;

pub use turnstile_core::MAX_KEY_LEN;

const PREFIX_LEN: usize = 2;

/// A composite key built on the stack (an `ArrayVec`, so the unused tail is never zeroed).
pub(crate) struct StateKey {
    bytes: ArrayVec<u8, { PREFIX_LEN + MAX_KEY_LEN }>,
}

/// Whether `key` is acceptable: not empty, at most [`MAX_KEY_LEN`] bytes.
pub(crate) fn validate_key(key: &str) -> Result<(), CheckError> {
    if key.is_empty() {
        return Err(CheckError::EmptyKey);
    }
    if key.len() > MAX_KEY_LEN {
        return Err(CheckError::KeyTooLong {
            len: key.len(),
            max: MAX_KEY_LEN,
        });
    }
    Ok(())
}

impl StateKey {
    /// Validates `key` and composes it with `policy_id`.
    pub(crate) fn new(policy_id: u16, key: &str) -> Result<Self, CheckError> {
        validate_key(key)?;
        let key = key.as_bytes();
        let mut bytes = ArrayVec::new();
        // Both fit: the capacity is the prefix plus the longest key accepted above.
        let _ = bytes.try_extend_from_slice(&policy_id.to_be_bytes());
        let _ = bytes.try_extend_from_slice(key);
        Ok(Self { bytes })
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// What a key table stores in place of a `(policy, key)` pair: its 64-bit digest under a seed drawn
/// at random for each table.
///
/// Why not the key itself: an entry is then 16 bytes (digest and state) with no heap
/// allocation, instead of a fat pointer to a separately allocated key: a third of the memory
/// per tracked key, and no allocation when a new key arrives. The cost is that two distinct
/// keys whose digests collide share one limit. With 64-bit digests that takes about 2^32 keys
/// to become likely (at 1M keys the chance of any collision is about 3 in 100 million), and
/// since the seed is random per table and never leaves the process, a client cannot craft
/// keys that collide with someone else's.
pub(crate) struct KeyDigester(ahash::RandomState);

impl KeyDigester {
    pub(crate) fn new() -> Self {
        Self(ahash::RandomState::new())
    }

    /// The digest of `key` under policy `policy_id`. The id is fixed-width, so no two
    /// distinct pairs feed the hasher the same input.
    pub(crate) fn digest(&self, policy_id: u16, key: &[u8]) -> u64 {
        self.0.hash_one((policy_id, key))
    }

    /// The digest of `key` in a keyspace named by bytes (the redis backend's local deny cache,
    /// whose keyspaces are the policies' names, as in the Redis keys). Slices hash with their
    /// length, so no two distinct pairs feed the hasher the same input.
    pub(crate) fn digest_named(&self, keyspace: &[u8], key: &[u8]) -> u64 {
        self.0.hash_one((keyspace, key))
    }
}

/// Tables keyed by [`KeyDigester`] digests, which are already uniformly distributed: hashing
/// them again would only cost time.
pub(crate) type DigestHasher = nohash_hasher::BuildNoHashHasher<u64>;
