//! The supervisor's tests: restarts, the registry, intensity and escalation, restart types and
//! strategies, jitter, and graceful shutdown, all in paused (virtual) time.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::{
    ExitReason, RestartType, Strategy, Supervisor, SupervisorConfig, SupervisorObserver,
    SupervisorSpec, SupervisorState,
};
use crate::{Actor, CallError, MailboxConfig};

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
