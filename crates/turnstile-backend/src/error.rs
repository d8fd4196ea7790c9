//! Every way a check can fail.

use turnstile_actor::CallError;
use turnstile_core::CostExceedsBurst;

/// Why a check produced no decision.
///
/// Two families: the request itself is invalid (the caller's fault: a 4xx at the gateway), or
/// the check was *dropped* by the backend (counted with [`CheckError::reason`] and answered per
/// the policy's failure mode).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CheckError {
    /// The cost can never be admitted by the policy.
    #[error(transparent)]
    CostExceedsBurst(#[from] CostExceedsBurst),
    /// The key is longer than [`crate::MAX_KEY_LEN`].
    #[error("key is {len} bytes; the maximum is {max}")]
    KeyTooLong {
        /// The key's length in bytes.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The key is empty.
    #[error("key is empty")]
    EmptyKey,
    /// The table holds `max_keys` live keys and none has expired: a new key is refused.
    #[error("the key table is full ({max_keys} live keys)")]
    TableFull {
        /// The configured cap.
        max_keys: usize,
    },
    /// The owning actor's mailbox was full.
    #[error("the backend's mailbox is full")]
    MailboxFull,
    /// No answer within the call timeout.
    #[error("the backend did not answer within the call timeout")]
    Timeout,
    /// The owning actor crashed while the check was queued or being handled.
    #[error("the backend crashed while handling the check")]
    Crashed,
    /// The backend is not serving (stopped, restarting, or failed past its restart intensity).
    #[error("the backend is unavailable")]
    Unavailable,
    /// No pool worker became free within the pool's wait timeout.
    #[error("no check worker became free within the pool's wait timeout")]
    PoolTimeout,
    /// The backend's store failed (Redis unreachable, refused the command, or erred).
    #[error("the rate-limit store failed")]
    BackendError,
}

impl CheckError {
    /// The [`reason`](Self::reason) of every drop (every error for which
    /// [`is_drop`](Self::is_drop) holds), so metrics can start each series at zero.
    pub const DROP_REASONS: [&'static str; 7] = [
        "table_full",
        "mailbox_full",
        "timeout",
        "crashed",
        "unavailable",
        "pool_timeout",
        "backend_error",
    ];

    /// A bounded, stable label for metrics and JSON errors.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::CostExceedsBurst(_) => "cost_exceeds_burst",
            Self::KeyTooLong { .. } => "key_too_long",
            Self::EmptyKey => "empty_key",
            Self::TableFull { .. } => "table_full",
            Self::MailboxFull => "mailbox_full",
            Self::Timeout => "timeout",
            Self::Crashed => "crashed",
            Self::Unavailable => "unavailable",
            Self::PoolTimeout => "pool_timeout",
            Self::BackendError => "backend_error",
        }
    }

    /// Whether the backend dropped the check (as opposed to the request being invalid).
    pub fn is_drop(&self) -> bool {
        !matches!(
            self,
            Self::CostExceedsBurst(_) | Self::KeyTooLong { .. } | Self::EmptyKey
        )
    }
}

impl From<CallError> for CheckError {
    fn from(error: CallError) -> Self {
        match error {
            CallError::MailboxFull => Self::MailboxFull,
            CallError::Timeout => Self::Timeout,
            CallError::Crashed => Self::Crashed,
            CallError::Stopped => Self::Unavailable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drop_reasons_are_exactly_the_reasons_of_drops() {
        let every_error = [
            CheckError::CostExceedsBurst(turnstile_core::CostExceedsBurst { cost: 2, burst: 1 }),
            CheckError::KeyTooLong { len: 1, max: 0 },
            CheckError::EmptyKey,
            CheckError::TableFull { max_keys: 1 },
            CheckError::MailboxFull,
            CheckError::Timeout,
            CheckError::Crashed,
            CheckError::Unavailable,
            CheckError::PoolTimeout,
            CheckError::BackendError,
        ];
        let drops: Vec<&str> = every_error
            .iter()
            .filter(|error| error.is_drop())
            .map(CheckError::reason)
            .collect();
        assert_eq!(drops, CheckError::DROP_REASONS);
    }
}
