//! OTP-style supervision: restart crashed actors, give up past a restart intensity.
//!
//! A [`Supervisor`] owns N children built by one factory (the single actor is N = 1; each shard
//! of the sharded backend is a child). It keeps a *registry*: one slot per child holding the
//! live [`ActorRef`], swapped atomically when a child is restarted, so callers always reach the
//! current incarnation and never a stale one.
//!
//! - **Restart types** ([`RestartType`]): `permanent` children are always restarted,
//!   `transient` ones only after an abnormal exit (a panic or a kill), `temporary` ones never.
//! - **Strategies** ([`Strategy`]): `one_for_one` restarts the child that died;
//!   `one_for_all` (for the demonstration) kills and restarts every child.
//! - **Restart intensity**: more than `max_restarts` restarts within `window` (OTP's
//!   `max_restarts`/`max_seconds`; Elixir's default 3 in 5 s) and the supervisor *escalates*:
//!   every child is stopped, the group is marked [`SupervisorState::Failed`], callers get
//!   [`CallError::Stopped`] at once, and after `cool_off` the group is re-armed with fresh
//!   children. Unlike OTP, escalation never takes the process down.
//! - **Jittered backoff**: the n-th restart of a child within the window waits
//!   `backoff_base × 2^(n-1)` (capped at `backoff_max`), scaled by a random factor in
//!   [0.5, 1.5), so children that die together do not restart in lockstep (the thundering herd).
//! - A restarted child starts from the factory again: whatever state it held is gone, and so
//!   is every message that was in its mailbox (its callers got [`CallError::Crashed`]).
//!
//! # Layout
//!
//! Split the way tower's `buffer` module is, the handle apart from the task that does the work:
//!
//! - `config.rs`: [`RestartType`], [`Strategy`], [`SupervisorConfig`] (with OTP's and Elixir's
//!   defaults) and [`SupervisorSpec`]: what a supervisor is asked to do.
//! - `status.rs`: [`SupervisorState`], [`ExitReason`], [`ChildStatus`], [`SupervisionStatus`],
//!   and the [`SupervisorObserver`] (with [`NoObserver`]): what it tells the outside.
//! - `intensity.rs`: [`RestartWindow`], the restart-intensity rule, shared with the check pool.
//! - `handle.rs`: [`Supervisor`], the cloneable handle callers use, and `Shared`, the registry
//!   and counters every handle shares with the worker.
//! - `worker.rs`: the task that owns the children (start, exit, restart, backoff, escalation,
//!   cool-off, shutdown) and `Command`, the message a handle sends it.
//! - `tests.rs`: the supervisor's tests, in paused time.
//!
//! The invariants the files keep between them:
//!
//! - **One writer.** Only the worker writes `Shared` (the registry slots, the counters, the
//!   state); handles read it, and ask for changes only by `Command`. So no handle can register
//!   an incarnation, or revive one, behind the worker's back.
//! - **No stale routing.** A slot holds the child's latest incarnation or `None`. The worker
//!   empties it as soon as it sees the child exit or kills it, and stores the new incarnation
//!   as it starts it; between a crash and the worker noticing, a call reaches the dead
//!   incarnation's closed mailbox and fails at once, never an older one.
//! - **Generations.** Every start of a child, and every kill the worker makes on its own
//!   account (`one_for_all`, escalation), bumps the child's generation; exits and restart
//!   timers carry the generation they were for, and those of an earlier incarnation are ignored.
//! - **One intensity window** counts every restart of the group; escalation clears it, so a
//!   re-armed group counts afresh.
//! - **No orphans.** When the last handle is dropped the command channel closes and the worker
//!   stops every child gracefully, as [`Supervisor::shutdown`] does.
//!
//! [`ActorRef`]: crate::ActorRef
//! [`CallError::Stopped`]: crate::CallError::Stopped
//! [`CallError::Crashed`]: crate::CallError::Crashed

mod config;
mod handle;
mod intensity;
mod status;
mod worker;

pub use config::{RestartType, Strategy, SupervisorConfig, SupervisorSpec};
pub use handle::Supervisor;
pub use intensity::RestartWindow;
pub use status::{
    ChildStatus, ExitReason, NoObserver, SupervisionStatus, SupervisorObserver, SupervisorState,
};

#[cfg(test)]
mod tests;
