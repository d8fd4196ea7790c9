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

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::{Actor, ActorRef, ActorTask, CallError, MailboxConfig};

/// When a child that exited is restarted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RestartType {
    /// Always.
    Permanent,
    /// Only after an abnormal exit (panic, kill).
    Transient,
    /// Never.
    Temporary,
}

/// Which children are restarted when one dies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
#[derive(Clone)]
pub struct SupervisorSpec {
    /// How many children the factory builds (indices `0..children`). Fixed for the
    /// supervisor's life, because callers route by index (a shard count, for the backends).
    pub children: usize,
    /// Each child's mailbox. Every incarnation gets a fresh, empty one: a restart drops the
    /// old mailbox with the actor, which is how its queued callers learn of the crash.
    pub mailbox: MailboxConfig,
    /// The call timeout every incarnation's [`ActorRef`] enforces, so that a caller of a slow
    /// or stuck child gets [`CallError::Timeout`] instead of waiting forever.
    pub call_timeout: Duration,
    /// The restart type, strategy, intensity, backoff and cool-off: when a dead child comes
    /// back, and when the group gives up.
    pub supervision: SupervisorConfig,
    /// Told of every exit, restart, escalation and re-arm, as it happens (the backends turn
    /// these into metrics and logs); [`NoObserver`] when nobody listens.
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

/// Restart intensity bookkeeping: how many restarts happened within the sliding window.
///
/// Shared by [`Supervisor`] and by anything else that replaces dead workers (the check pool),
/// so every restart in Turnstile obeys the same rule: more than `max_restarts` within `window`
/// is too many.
#[derive(Debug, Clone)]
pub struct RestartWindow {
    max_restarts: u32,
    window: Duration,
    history: VecDeque<Instant>,
}

impl RestartWindow {
    /// Allows `max_restarts` restarts within any `window`.
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        Self {
            max_restarts,
            window,
            history: VecDeque::new(),
        }
    }

    /// Records a restart at `now`. Returns which restart this is within the window (1-based),
    /// or `None` if it exceeds the intensity, in which case the history is cleared (the
    /// caller escalates, and starts counting afresh when it re-arms).
    pub fn record(&mut self, now: Instant) -> Option<usize> {
        while self
            .history
            .front()
            .is_some_and(|at| now.duration_since(*at) >= self.window)
        {
            self.history.pop_front();
        }
        if self.history.len() >= self.max_restarts as usize {
            self.history.clear();
            return None;
        }
        self.history.push_back(now);
        Some(self.history.len())
    }

    /// Forgets every recorded restart.
    pub fn clear(&mut self) {
        self.history.clear();
    }
}

enum Command {
    Kill(usize),
    Stop(oneshot::Sender<()>),
}

struct Shared<A: Actor> {
    /// The registry: the live incarnation of each child, or `None` while it is down.
    slots: Vec<ArcSwapOption<ActorRef<A>>>,
    restarts: Vec<AtomicU64>,
    escalations: AtomicU64,
    state: AtomicU8,
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
        let SupervisorSpec {
            children: count,
            mailbox,
            call_timeout,
            supervision: config,
            observer,
        } = spec;
        let shared = Arc::new(Shared {
            slots: (0..count).map(|_| ArcSwapOption::empty()).collect(),
            restarts: (0..count).map(|_| AtomicU64::new(0)).collect(),
            escalations: AtomicU64::new(0),
            state: AtomicU8::new(SupervisorState::Running as u8),
        });
        let (commands, receiver) = mpsc::channel(64);
        let rng = match config.jitter_seed {
            Some(seed) => fastrand::Rng::with_seed(seed),
            None => fastrand::Rng::new(),
        };
        let history = RestartWindow::new(config.max_restarts, config.window);
        let mut task = SupervisorTask {
            shared: Arc::clone(&shared),
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
        tokio::spawn(task.run(receiver));
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

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// Counts calls; `Panic` crashes it. Each incarnation starts from zero.
    struct Counter(u32);

    enum Msg {
        Increment,
        Panic,
    }

    impl Actor for Counter {
        type Call = Msg;
        type Reply = u32;

        async fn handle_call(&mut self, call: Msg) -> u32 {
            match call {
                Msg::Increment => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    self.0 += 1;
                    self.0
                }
                Msg::Panic => panic!("crash requested by the test"),
            }
        }
    }

    #[derive(Default)]
    struct Recorder(Mutex<Vec<String>>);

    impl Recorder {
        fn events(&self) -> Vec<String> {
            self.0.lock().unwrap().clone()
        }
        fn push(&self, event: String) {
            self.0.lock().unwrap().push(event);
        }
    }

    impl SupervisorObserver for Recorder {
        fn child_exited(&self, index: usize, reason: ExitReason) {
            self.push(format!("exit {index} {reason:?}"));
        }
        fn child_restarted(&self, index: usize) {
            self.push(format!("restart {index}"));
        }
        fn escalated(&self) {
            self.push("escalated".into());
        }
        fn rearmed(&self) {
            self.push("rearmed".into());
        }
    }

    fn config() -> SupervisorConfig {
        SupervisorConfig {
            jitter_seed: Some(7),
            ..SupervisorConfig::default()
        }
    }

    fn start(children: usize, config: SupervisorConfig) -> (Supervisor<Counter>, Arc<Recorder>) {
        let recorder = Arc::new(Recorder::default());
        let supervisor = Supervisor::start(
            SupervisorSpec {
                children,
                mailbox: MailboxConfig::bounded(64),
                call_timeout: Duration::from_secs(5),
                supervision: config,
                observer: Arc::clone(&recorder) as Arc<dyn SupervisorObserver>,
            },
            |_| Counter(0),
        );
        (supervisor, recorder)
    }

    /// Lets the supervisor react and any backoff within the window elapse (virtual time; the
    /// third restart in a window waits at most 40 ms × 1.5).
    async fn settle() {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    #[tokio::test(start_paused = true)]
    async fn a_crashed_child_is_restarted_empty_and_the_registry_points_at_it() {
        let (supervisor, recorder) = start(2, config());
        assert_eq!(supervisor.call(0, Msg::Increment).await, Ok(1));
        assert_eq!(supervisor.call(0, Msg::Increment).await, Ok(2));
        assert_eq!(supervisor.call(1, Msg::Increment).await, Ok(1));
        let before = supervisor.child(0).unwrap();

        // A crash with callers queued behind it: each of them gets Crashed at once.
        let queued: Vec<_> = (0..3)
            .map(|_| {
                let supervisor = supervisor.clone();
                tokio::spawn(async move { supervisor.call(0, Msg::Increment).await })
            })
            .collect();
        tokio::task::yield_now().await;
        let crash = supervisor.clone();
        let crashing = tokio::spawn(async move { crash.call(0, Msg::Panic).await });
        for call in queued {
            // Queued before the panic message: served; the counter shows it.
            assert!(call.await.unwrap().is_ok());
        }
        assert_eq!(crashing.await.unwrap(), Err(CallError::Crashed));
        settle().await;

        let after = supervisor.child(0).unwrap();
        assert!(
            !Arc::ptr_eq(&before, &after),
            "the registry points at the new incarnation"
        );
        assert!(before.is_closed());
        assert_eq!(
            supervisor.call(0, Msg::Increment).await,
            Ok(1),
            "state starts empty"
        );
        assert_eq!(
            supervisor.call(1, Msg::Increment).await,
            Ok(2),
            "the sibling kept its state"
        );
        let status = supervisor.status();
        assert_eq!(status.state, SupervisorState::Running);
        assert_eq!(status.children[0].restarts, 1);
        assert_eq!(status.children[1].restarts, 0);
        assert_eq!(recorder.events(), vec!["exit 0 Panicked", "restart 0"]);
    }

    #[tokio::test(start_paused = true)]
    async fn past_the_restart_intensity_the_group_fails_then_rearms_after_the_cool_off() {
        let (supervisor, recorder) = start(2, config());
        // Three crashes within 5 s are tolerated…
        for _ in 0..3 {
            assert_eq!(
                supervisor.call(0, Msg::Panic).await,
                Err(CallError::Crashed)
            );
            settle().await;
            assert_eq!(supervisor.state(), SupervisorState::Running);
        }
        // …a fourth within the window escalates: the whole group stops.
        assert!(supervisor.kill(1).await);
        settle().await;
        assert_eq!(supervisor.state(), SupervisorState::Failed);
        assert_eq!(
            supervisor.call(0, Msg::Increment).await,
            Err(CallError::Stopped)
        );
        assert_eq!(
            supervisor.call(1, Msg::Increment).await,
            Err(CallError::Stopped)
        );
        assert_eq!(supervisor.status().escalations, 1);

        // The cool-off (10 s) ends: fresh children, restart history forgotten.
        tokio::time::sleep(Duration::from_secs(10)).await;
        assert_eq!(supervisor.state(), SupervisorState::Running);
        assert_eq!(supervisor.call(0, Msg::Increment).await, Ok(1));
        assert_eq!(supervisor.call(1, Msg::Increment).await, Ok(1));
        let events = recorder.events();
        assert_eq!(
            events.iter().filter(|e| e.starts_with("restart")).count(),
            3
        );
        assert_eq!(
            events[events.len() - 3..],
            ["exit 1 Killed", "escalated", "rearmed"]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn crashes_spread_over_more_than_the_window_never_escalate() {
        let (supervisor, _) = start(1, config());
        for _ in 0..10 {
            assert_eq!(
                supervisor.call(0, Msg::Panic).await,
                Err(CallError::Crashed)
            );
            tokio::time::sleep(Duration::from_secs(2)).await;
        }
        assert_eq!(supervisor.state(), SupervisorState::Running);
        assert_eq!(supervisor.status().children[0].restarts, 10);
    }

    #[tokio::test(start_paused = true)]
    async fn temporary_children_are_not_restarted() {
        let (supervisor, _) = start(
            1,
            SupervisorConfig {
                restart: RestartType::Temporary,
                ..config()
            },
        );
        assert_eq!(
            supervisor.call(0, Msg::Panic).await,
            Err(CallError::Crashed)
        );
        settle().await;
        assert!(supervisor.child(0).is_none());
        assert_eq!(
            supervisor.call(0, Msg::Increment).await,
            Err(CallError::Stopped)
        );
    }

    #[tokio::test(start_paused = true)]
    async fn one_for_all_restarts_every_child() {
        let (supervisor, recorder) = start(
            3,
            SupervisorConfig {
                strategy: Strategy::OneForAll,
                ..config()
            },
        );
        for index in 0..3 {
            assert_eq!(supervisor.call(index, Msg::Increment).await, Ok(1));
        }
        assert_eq!(
            supervisor.call(1, Msg::Panic).await,
            Err(CallError::Crashed)
        );
        settle().await;
        for index in 0..3 {
            assert_eq!(
                supervisor.call(index, Msg::Increment).await,
                Ok(1),
                "child {index} restarted"
            );
            assert_eq!(supervisor.status().children[index].restarts, 1);
        }
        assert_eq!(recorder.events()[0], "exit 1 Panicked");
    }

    #[tokio::test(start_paused = true)]
    async fn children_that_die_together_restart_at_jittered_times() {
        let (supervisor, _) = start(
            8,
            SupervisorConfig {
                strategy: Strategy::OneForAll,
                backoff_base: Duration::from_millis(100),
                ..config()
            },
        );
        assert_eq!(
            supervisor.call(0, Msg::Panic).await,
            Err(CallError::Crashed)
        );
        let started = Instant::now();
        let mut restarted_at = vec![None; 8];
        while restarted_at.iter().any(Option::is_none) {
            tokio::time::sleep(Duration::from_millis(1)).await;
            for (index, at) in restarted_at.iter_mut().enumerate() {
                if at.is_none() && supervisor.child(index).is_some() {
                    *at = Some(started.elapsed());
                }
            }
        }
        let mut times: Vec<_> = restarted_at.into_iter().flatten().collect();
        // All within the jitter range of the first backoff: [50 ms, 150 ms)…
        assert!(
            times
                .iter()
                .all(|t| *t >= Duration::from_millis(49) && *t <= Duration::from_millis(151)),
            "{times:?}"
        );
        times.sort();
        times.dedup();
        // …and not in lockstep.
        assert!(times.len() >= 4, "restarts bunched together: {times:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn shutdown_lets_children_finish_their_queues() {
        let (supervisor, _) = start(1, config());
        let calls: Vec<_> = (0..5)
            .map(|_| {
                let supervisor = supervisor.clone();
                tokio::spawn(async move { supervisor.call(0, Msg::Increment).await })
            })
            .collect();
        tokio::task::yield_now().await;
        supervisor.shutdown().await;
        let mut served = Vec::new();
        for call in calls {
            served.push(call.await.unwrap().unwrap());
        }
        assert_eq!(served, vec![1, 2, 3, 4, 5]);
        assert_eq!(supervisor.state(), SupervisorState::Stopped);
        assert_eq!(
            supervisor.call(0, Msg::Increment).await,
            Err(CallError::Stopped)
        );
    }
}
