//! What a supervisor tells the outside: its state, why a child ended, the snapshot returned by
//! [`Supervisor::status`](super::Supervisor::status), and the observer that hears each event as
//! it happens.

/// The supervisor's own state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum SupervisorState {
    /// Children are running (or restarting).
    Running = 0,
    /// Intensity exceeded: children stopped until the cool-off ends.
    Failed = 1,
    /// Shut down.
    Stopped = 2,
}

/// Why a child ended, as told to the observer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitReason {
    /// It returned (graceful stop, or every handle dropped).
    Normal,
    /// It panicked.
    Panicked,
    /// It was killed from outside (fault injection).
    Killed,
}

/// Receives supervision events as they happen (the gateway turns them into metrics and logs).
pub trait SupervisorObserver: Send + Sync + 'static {
    /// Child `index` ended.
    fn child_exited(&self, _index: usize, _reason: ExitReason) {}
    /// Child `index` was restarted.
    fn child_restarted(&self, _index: usize) {}
    /// The restart intensity was exceeded: the group is failed.
    fn escalated(&self) {}
    /// The cool-off ended: the group runs again.
    fn rearmed(&self) {}
}

/// An observer that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl SupervisorObserver for NoObserver {}

/// One child as seen from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChildStatus {
    /// Whether a live incarnation is registered.
    pub alive: bool,
    /// Restarts of this child since start.
    pub restarts: u64,
    /// Messages waiting in its mailbox.
    pub mailbox_depth: usize,
}

/// A snapshot of a supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupervisionStatus {
    /// Running, failed, or stopped.
    pub state: SupervisorState,
    /// Each child, by index.
    pub children: Vec<ChildStatus>,
    /// Times the intensity was exceeded.
    pub escalations: u64,
}
