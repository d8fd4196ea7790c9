//! How a `(policy, key)` pair becomes one table key.
//!
//! Tables store a single byte string per entry: the policy id (2 bytes, big-endian) followed by
//! the key's bytes. One table, one `max_keys`, one sweep serve every policy, and a key checked
//! under two policies has two independent states. Lookups build the composite key in a stack
//! buffer, so the hot path allocates only when a new key is inserted.

use arrayvec::ArrayVec;

use crate::CheckError;

/// The longest key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

const PREFIX_LEN: usize = 2;

/// A composite key built on the stack (an `ArrayVec`, so the unused tail is never zeroed).
pub(crate) struct StateKey {
    bytes: ArrayVec<u8, { PREFIX_LEN + MAX_KEY_LEN }>,
}

impl StateKey {
    /// Validates `key` and composes it with `policy_id`.
    pub(crate) fn new(policy_id: u16, key: &str) -> Result<Self, CheckError> {
        let key = key.as_bytes();
        if key.is_empty() {
            return Err(CheckError::EmptyKey);
        }
        if key.len() > MAX_KEY_LEN {
            return Err(CheckError::KeyTooLong {
                len: key.len(),
                max: MAX_KEY_LEN,
            });
        }
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
