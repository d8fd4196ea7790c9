//! The handle users hold: [`Supervisor`] starts the group, routes each call through the
//! registry to a child's live incarnation, reports status, and asks the worker (by
//! [`Command`]) to kill a child or to shut down. It only reads the registry; the worker alone
//! changes it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use arc_swap::ArcSwapOption;
use tokio::sync::{mpsc, oneshot};

use super::config::SupervisorSpec;
use super::status::{ChildStatus, SupervisionStatus, SupervisorState};
use super::worker::{self, Command};
use crate::{Actor, ActorRef, CallError};

/// What every handle shares with the worker. The worker writes it; handles only read it.
pub(super) struct Shared<A: Actor> {
    /// The registry: the live incarnation of each child, or `None` while it is down.
    pub(super) slots: Vec<ArcSwapOption<ActorRef<A>>>,
    /// Restarts of each child since start.
    pub(super) restarts: Vec<AtomicU64>,
    /// Times the restart intensity was exceeded.
    pub(super) escalations: AtomicU64,
    /// A [`SupervisorState`] as its `u8` discriminant, so reading it takes no lock.
    pub(super) state: AtomicU8,
}

/// A supervised group of actors and the registry that routes to them.
pub struct Supervisor<A: Actor> {
    shared: Arc<Shared<A>>,
    commands: mpsc::Sender<Command>,
}

impl<A: Actor> Clone for Supervisor<A> {
    fn clone(&self) -> Self {
        Self {
            shared: Arc::clone(&self.shared),
            commands: self.commands.clone(),
        }
    }
}

impl<A: Actor> Supervisor<A> {
    /// Starts `spec.children` children built by `factory(index)` and the task that supervises
    /// them. `factory` is called again for every restart. Must be called inside a tokio runtime.
    pub fn start(
        spec: SupervisorSpec,
        factory: impl Fn(usize) -> A + Send + Sync + 'static,
    ) -> Self {
        let count = spec.children;
        let shared = Arc::new(Shared {
            slots: (0..count).map(|_| ArcSwapOption::empty()).collect(),
            restarts: (0..count).map(|_| AtomicU64::new(0)).collect(),
            escalations: AtomicU64::new(0),
            state: AtomicU8::new(SupervisorState::Running as u8),
        });
        let (commands, receiver) = mpsc::channel(64);
        worker::spawn(Arc::clone(&shared), spec, factory, receiver);
        Self { shared, commands }
    }

    /// The live incarnation of child `index`, if it is up.
    pub fn child(&self, index: usize) -> Option<Arc<ActorRef<A>>> {
        self.shared
            .slots
            .get(index)
            .and_then(ArcSwapOption::load_full)
    }

    /// How many children.
    pub fn len(&self) -> usize {
        self.shared.slots.len()
    }

    /// Whether there are no children.
    pub fn is_empty(&self) -> bool {
        self.shared.slots.is_empty()
    }

    /// Calls child `index`. While it is down (restarting, or the group failed) the call fails
    /// at once with [`CallError::Stopped`].
    pub async fn call(&self, index: usize, call: A::Call) -> Result<A::Reply, CallError> {
        // Guard, not Arc: no reference-count traffic on the hot path.
        let slot = self
            .shared
            .slots
            .get(index)
            .ok_or(CallError::Stopped)?
            .load();
        match slot.as_ref() {
            Some(actor) => actor.call(call).await,
            None => Err(CallError::Stopped),
        }
    }

    /// The supervisor's state.
    pub fn state(&self) -> SupervisorState {
        match self.shared.state.load(Ordering::Acquire) {
            0 => SupervisorState::Running,
            1 => SupervisorState::Failed,
            _ => SupervisorState::Stopped,
        }
    }

    /// Kills child `index` at once, as an external crash: its queued callers get
    /// [`CallError::Crashed`], and the supervisor handles it like any abnormal exit.
    /// Returns `false` when there is no live incarnation to kill (no such child, restarting,
    /// the group failed, or the supervisor stopped).
    pub async fn kill(&self, index: usize) -> bool {
        self.child(index).is_some() && self.commands.send(Command::Kill(index)).await.is_ok()
    }

    /// A snapshot of every child.
    pub fn status(&self) -> SupervisionStatus {
        SupervisionStatus {
            state: self.state(),
            children: (0..self.len())
                .map(|index| {
                    let child = self.child(index);
                    ChildStatus {
                        alive: child.as_ref().is_some_and(|c| !c.is_closed()),
                        restarts: self.shared.restarts[index].load(Ordering::Relaxed),
                        mailbox_depth: child.map_or(0, |c| c.depth()),
                    }
                })
                .collect(),
            escalations: self.shared.escalations.load(Ordering::Relaxed),
        }
    }

    /// Stops every child gracefully (they finish their queues) and the supervisor with them.
    pub async fn shutdown(&self) {
        let (done, stopped) = oneshot::channel();
        if self.commands.send(Command::Stop(done)).await.is_ok() {
            let _ = stopped.await;
        }
    }
}
