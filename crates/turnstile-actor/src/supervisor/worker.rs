//! The supervisor's task, which owns the children: it starts each incarnation and registers
//! it, notices every exit, decides on a restart by restart type, strategy and intensity,
//! schedules it after a jittered backoff, escalates and re-arms after the cool-off, and stops
//! everything on shutdown. Handles reach it only through [`Command`]s.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use super::config::{RestartType, Strategy, SupervisorConfig, SupervisorSpec};
use super::handle::Shared;
use super::intensity::RestartWindow;
use super::status::{ExitReason, SupervisorObserver, SupervisorState};
use crate::{Actor, ActorRef, ActorTask, MailboxConfig};

/// What a handle asks of the worker.
pub(super) enum Command {
    /// Kill child `index` as an external crash would (fault injection).
    Kill(usize),
    /// Stop every child gracefully, then end; the sender is told once they have.
    Stop(oneshot::Sender<()>),
}

/// Starts every child, so the registry is full before the caller returns its handle, then
/// runs the supervising task until a [`Command::Stop`] or until every handle is gone.
pub(super) fn spawn<A: Actor>(
    shared: Arc<Shared<A>>,
    spec: SupervisorSpec,
    factory: impl Fn(usize) -> A + Send + Sync + 'static,
    commands: mpsc::Receiver<Command>,
) {
    let SupervisorSpec {
        children: count,
        mailbox,
        call_timeout,
        supervision: config,
        observer,
    } = spec;
    let rng = match config.jitter_seed {
        Some(seed) => fastrand::Rng::with_seed(seed),
        None => fastrand::Rng::new(),
    };
    let history = RestartWindow::new(config.max_restarts, config.window);
    let mut task = SupervisorTask {
        shared,
        factory: Box::new(factory),
        mailbox,
        call_timeout,
        config,
        observer,
        rng,
        children: (0..count).map(|_| None).collect(),
        generations: vec![0; count],
        history,
        exits: JoinSet::new(),
        timers: JoinSet::new(),
    };
    for index in 0..count {
        task.start_child(index);
    }
    tokio::spawn(task.run(commands));
}

struct RunningChild {
    abort: AbortHandle,
    stop: tokio_util::sync::CancellationToken,
    /// Set when the supervisor itself kills the child, so its exit is not counted as a crash.
    killed_by_supervisor: bool,
}

struct SupervisorTask<A: Actor> {
    shared: Arc<Shared<A>>,
    factory: Box<dyn Fn(usize) -> A + Send + Sync>,
    mailbox: MailboxConfig,
    call_timeout: Duration,
    config: SupervisorConfig,
    observer: Arc<dyn SupervisorObserver>,
    rng: fastrand::Rng,
    children: Vec<Option<RunningChild>>,
    /// Bumped at every start of a child, so exits of earlier incarnations are recognised.
    generations: Vec<u64>,
    /// When restarts happened, for the intensity window.
    history: RestartWindow,
    exits: JoinSet<(usize, u64, Result<(), tokio::task::JoinError>)>,
    /// Pending restarts: each completes with the child to start (`None`: re-arm everything).
    timers: JoinSet<(Option<usize>, u64)>,
}

impl<A: Actor> SupervisorTask<A> {
    fn start_child(&mut self, index: usize) {
        let (actor_ref, task): (ActorRef<A>, ActorTask) =
            crate::spawn((self.factory)(index), self.mailbox, self.call_timeout);
        self.generations[index] += 1;
        let generation = self.generations[index];
        self.children[index] = Some(RunningChild {
            abort: task.handle.abort_handle(),
            stop: task.stop.clone(),
            killed_by_supervisor: false,
        });
        self.shared.slots[index].store(Some(Arc::new(actor_ref)));
        self.exits
            .spawn(async move { (index, generation, task.handle.await) });
    }

    async fn run(mut self, mut commands: mpsc::Receiver<Command>) {
        loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Kill(index)) => {
                        if let Some(child) = self.children.get(index).and_then(Option::as_ref) {
                            child.abort.abort();
                        }
                    }
                    Some(Command::Stop(done)) => {
                        self.stop_all().await;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop_all().await;
                        return;
                    }
                },
                Some(Ok((index, generation, result))) = self.exits.join_next() => {
                    self.on_exit(index, generation, result);
                }
                Some(Ok((target, generation))) = self.timers.join_next() => match target {
                    Some(index) if self.generations[index] == generation => self.start_child(index),
                    Some(_) => {}
                    None => self.rearm(),
                },
            }
        }
    }

    fn on_exit(
        &mut self,
        index: usize,
        generation: u64,
        result: Result<(), tokio::task::JoinError>,
    ) {
        if self.generations[index] != generation {
            return;
        }
        let Some(child) = self.children[index].take() else {
            return;
        };
        self.shared.slots[index].store(None);
        if child.killed_by_supervisor {
            return;
        }
        let reason = match &result {
            Ok(()) => ExitReason::Normal,
            Err(error) if error.is_panic() => ExitReason::Panicked,
            // Cancelled: only fault injection aborts a child without marking it.
            Err(_) => ExitReason::Killed,
        };
        self.observer.child_exited(index, reason);
        let restart = match self.config.restart {
            RestartType::Permanent => true,
            RestartType::Transient => reason != ExitReason::Normal,
            RestartType::Temporary => false,
        };
        if !restart || self.state_is(SupervisorState::Failed) {
            return;
        }
        let Some(nth) = self.history.record(Instant::now()) else {
            self.escalate();
            return;
        };
        match self.config.strategy {
            Strategy::OneForOne => {
                let delay = self.backoff(nth);
                self.schedule(Some(index), delay);
            }
            Strategy::OneForAll => {
                for other in 0..self.children.len() {
                    self.kill_quietly(other);
                    // Each child draws its own jitter: that is what breaks the lockstep.
                    let delay = self.backoff(nth);
                    self.schedule(Some(other), delay);
                }
            }
        }
    }

    fn state_is(&self, state: SupervisorState) -> bool {
        self.shared.state.load(Ordering::Acquire) == state as u8
    }

    /// The delay before the `nth` restart within the window, with jitter.
    fn backoff(&mut self, nth: usize) -> Duration {
        let exponent = u32::try_from(nth.saturating_sub(1))
            .unwrap_or(u32::MAX)
            .min(20);
        let delay = self
            .config
            .backoff_base
            .saturating_mul(1 << exponent)
            .min(self.config.backoff_max);
        delay.mul_f64(0.5 + self.rng.f64())
    }

    fn schedule(&mut self, target: Option<usize>, delay: Duration) {
        let generation = target.map_or(0, |index| self.generations[index]);
        if let Some(index) = target {
            self.shared.restarts[index].fetch_add(1, Ordering::Relaxed);
            self.observer.child_restarted(index);
        }
        self.timers.spawn(async move {
            tokio::time::sleep(delay).await;
            (target, generation)
        });
    }

    fn kill_quietly(&mut self, index: usize) {
        if let Some(child) = self.children[index].as_mut() {
            child.killed_by_supervisor = true;
            child.abort.abort();
        }
        self.children[index] = None;
        self.shared.slots[index].store(None);
        // A later incarnation must not be confused with this one's exit.
        self.generations[index] += 1;
    }

    fn escalate(&mut self) {
        for index in 0..self.children.len() {
            self.kill_quietly(index);
        }
        self.timers.abort_all();
        self.history.clear();
        self.shared
            .state
            .store(SupervisorState::Failed as u8, Ordering::Release);
        self.shared.escalations.fetch_add(1, Ordering::Relaxed);
        self.observer.escalated();
        let cool_off = self.config.cool_off;
        self.timers.spawn(async move {
            tokio::time::sleep(cool_off).await;
            (None, 0)
        });
    }

    fn rearm(&mut self) {
        for index in 0..self.children.len() {
            if self.children[index].is_none() {
                self.start_child(index);
            }
        }
        self.shared
            .state
            .store(SupervisorState::Running as u8, Ordering::Release);
        self.observer.rearmed();
    }

    async fn stop_all(&mut self) {
        self.shared
            .state
            .store(SupervisorState::Stopped as u8, Ordering::Release);
        self.timers.abort_all();
        for index in 0..self.children.len() {
            self.shared.slots[index].store(None);
            if let Some(child) = self.children[index].take() {
                child.stop.cancel();
            }
        }
        // Wait for every child to finish its queue.
        while self.exits.join_next().await.is_some() {}
    }
}
