//! What a supervisor is asked to do: the restart type and strategy, the intensity, backoff
//! and cool-off numbers (with OTP's and Elixir's defaults), and the [`SupervisorSpec`] that
//! [`Supervisor::start`](super::Supervisor::start) takes.

use std::sync::Arc;
use std::time::Duration;

use super::status::SupervisorObserver;
use crate::MailboxConfig;

/// When a child that exited is restarted.
/// Configured by these names (`permanent`, `transient`, `temporary`): serde's names are the
/// configuration's, so the gateway needs no copy of this enum.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RestartType {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (panic, kill).
    Transient,
    /// Never.
    Temporary,
}

/// Which children are restarted when one dies.
/// Configured as `one_for_one` / `one_for_all`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Only the child that died.
    OneForOne,
    /// Every child (the others are killed first, losing their mailboxes too).
    OneForAll,
}

/// How a supervisor restarts and when it gives up.
#[derive(Debug, Clone, PartialEq)]
pub struct SupervisorConfig {
    /// Which children restart together.
    pub strategy: Strategy,
    /// When children are restarted.
    pub restart: RestartType,
    /// Restarts allowed within `window`; one more escalates.
    pub max_restarts: u32,
    /// The intensity window.
    pub window: Duration,
    /// First restart delay (before jitter).
    pub backoff_base: Duration,
    /// Largest restart delay (before jitter).
    pub backoff_max: Duration,
    /// How long a failed group stays failed before it is re-armed.
    pub cool_off: Duration,
    /// Seed for the backoff jitter (`None`: random). Tests fix it.
    pub jitter_seed: Option<u64>,
}

impl Default for SupervisorConfig {
    fn default() -> Self {
        Self {
            strategy: Strategy::OneForOne,
            restart: RestartType::Permanent,
            max_restarts: 3,
            window: Duration::from_secs(5),
            backoff_base: Duration::from_millis(10),
            backoff_max: Duration::from_secs(1),
            cool_off: Duration::from_secs(10),
            jitter_seed: None,
        }
    }
}

/// Everything [`Supervisor::start`] needs besides the factory: how many children, how callers
/// reach them, how they are restarted, and who hears about it.
///
/// A struct rather than positional arguments so that each call site names what every value is
/// for, and a new setting is a new field with no caller to reorder.
///
/// [`Supervisor::start`]: super::Supervisor::start
#[derive(Clone)]
pub struct SupervisorSpec {
    /// How many children the factory builds (indices `0..children`). Fixed for the
    /// supervisor's life, because callers route by index (a shard count, for the backends).
    pub children: usize,
    /// Each child's mailbox. Every incarnation gets a fresh, empty one: a restart drops the
    /// old mailbox with the actor, which is how its queued callers learn of the crash.
    pub mailbox: MailboxConfig,
    /// The call timeout every incarnation's [`ActorRef`](crate::ActorRef) enforces, so that a
    /// caller of a slow or stuck child gets [`CallError::Timeout`](crate::CallError::Timeout)
    /// instead of waiting forever.
    pub call_timeout: Duration,
    /// The restart type, strategy, intensity, backoff and cool-off: when a dead child comes
    /// back, and when the group gives up.
    pub supervision: SupervisorConfig,
    /// Told of every exit, restart, escalation and re-arm, as it happens (the backends turn
    /// these into metrics and logs); [`NoObserver`](super::NoObserver) when nobody listens.
    pub observer: Arc<dyn SupervisorObserver>,
}

impl std::fmt::Debug for SupervisorSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The observer is a trait object with no Debug of its own.
        f.debug_struct("SupervisorSpec")
            .field("children", &self.children)
            .field("mailbox", &self.mailbox)
            .field("call_timeout", &self.call_timeout)
            .field("supervision", &self.supervision)
            .finish_non_exhaustive()
    }
}
