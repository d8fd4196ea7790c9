//! What a check answers.

use std::time::Duration;

/// The answer to one check, as a client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// The policy's `limit` (requests per period), echoed for rate-limit headers.
    pub limit: u32,
    /// How many cost-1 requests would be admitted right after this decision.
    pub remaining: u32,
    /// Time until the key is fully idle again (its whole burst available).
    pub reset_after: Duration,
    /// When denied: the earliest time after which the same request would be admitted.
    /// `None` when allowed.
    pub retry_after: Option<Duration>,
}

/// A decision plus what the caller must store for the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict {
    /// The decision to return.
    pub decision: Decision,
    /// The key's new state, when the check changed it (`None` for denials and peeks: leave the
    /// stored state exactly as it was).
    pub new_state: Option<u64>,
}
