//! Behaviour of the actor primitives, with tokio's clock paused: no test sleeps in real time.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// An actor that records the order it handled calls in, taking `work` of (virtual) time for
/// each, and panics on the call `poison`.
struct Recorder {
    handled: Arc<std::sync::Mutex<Vec<u32>>>,
    work: Duration,
    poison: Option<u32>,
}

impl Actor for Recorder {
    type Call = u32;
    type Reply = u32;

    async fn handle_call(&mut self, call: u32) -> u32 {
        tokio::time::sleep(self.work).await;
        assert_ne!(Some(call), self.poison, "poisoned call {call}");
        if let Ok(mut handled) = self.handled.lock() {
            handled.push(call);
        }
        call * 10
    }
}

fn recorder(work: Duration, poison: Option<u32>) -> (Recorder, Arc<std::sync::Mutex<Vec<u32>>>) {
    let handled = Arc::new(std::sync::Mutex::new(Vec::new()));
    (
        Recorder {
            handled: Arc::clone(&handled),
            work,
            poison,
        },
        handled,
    )
}

const SECOND: Duration = Duration::from_secs(1);

#[tokio::test(start_paused = true)]
async fn calls_are_handled_one_at_a_time_in_order() {
    let (actor, handled) = recorder(Duration::from_millis(100), None);
    let (actor_ref, _task) = spawn(actor, MailboxConfig::bounded(64), 5 * SECOND);
    let started = tokio::time::Instant::now();
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let actor_ref = actor_ref.clone();
            tokio::spawn(async move { actor_ref.call(i).await })
        })
        .collect();
    for (i, call) in calls.into_iter().enumerate() {
        assert_eq!(call.await.unwrap(), Ok(i as u32 * 10));
    }
    // Serialized: ten calls of 100 ms take a full second, not 100 ms.
    assert_eq!(started.elapsed(), SECOND);
    assert_eq!(*handled.lock().unwrap(), (0..10).collect::<Vec<_>>());
}

#[tokio::test(start_paused = true)]
async fn a_full_rejecting_mailbox_fails_at_once() {
    let (actor, _) = recorder(SECOND, None);
    let (actor_ref, _task) = spawn(actor, MailboxConfig::bounded(2), 60 * SECOND);
    // One call being handled, two waiting: the mailbox is full.
    let mut in_flight = Vec::new();
    for i in 0..3 {
        let actor_ref = actor_ref.clone();
        in_flight.push(tokio::spawn(async move { actor_ref.call(i).await }));
        // Let the actor take the first call before the next ones arrive.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(actor_ref.depth(), 2);
    assert_eq!(actor_ref.call(99).await, Err(CallError::MailboxFull));
    for call in in_flight {
        assert!(call.await.unwrap().is_ok());
    }
}

#[tokio::test(start_paused = true)]
async fn the_depth_counts_messages_in_the_mailbox_not_senders_waiting_for_room() {
    let (actor, _) = recorder(SECOND, None);
    let mailbox = MailboxConfig::Bounded {
        capacity: 2,
        when_full: FullPolicy::Wait,
    };
    let (actor_ref, _task) = spawn(actor, mailbox, Duration::from_millis(2500));
    let calls: Vec<_> = (0..10)
        .map(|i| {
            let actor_ref = actor_ref.clone();
            tokio::spawn(async move { actor_ref.call(i).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(10)).await;
    // One being handled, two in the mailbox, seven waiting for room.
    assert_eq!(actor_ref.depth(), 2);
    for call in calls {
        let _ = call.await.unwrap();
    }
    // The timed-out senders left nothing behind; what was queued has been taken.
    tokio::time::sleep(10 * SECOND).await;
    assert_eq!(actor_ref.depth(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_waiting_mailbox_waits_within_the_call_timeout() {
    let (actor, _) = recorder(SECOND, None);
    let mailbox = MailboxConfig::Bounded {
        capacity: 1,
        when_full: FullPolicy::Wait,
    };
    let (actor_ref, _task) = spawn(actor, mailbox, Duration::from_millis(2500));
    let results: Vec<_> = (0..4)
        .map(|i| {
            let actor_ref = actor_ref.clone();
            tokio::spawn(async move { actor_ref.call(i).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for result in results {
        outcomes.push(result.await.unwrap());
    }
    // Calls finish at 1 s and 2 s; the third would finish at 3 s, past the 2.5 s timeout.
    assert_eq!(
        outcomes,
        vec![
            Ok(0),
            Ok(10),
            Err(CallError::Timeout),
            Err(CallError::Timeout)
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn a_slow_actor_times_callers_out_at_exactly_the_call_timeout() {
    let (actor, handled) = recorder(10 * SECOND, None);
    let (actor_ref, _task) = spawn(actor, MailboxConfig::bounded(8), 5 * SECOND);
    let started = tokio::time::Instant::now();
    let first = tokio::spawn({
        let actor_ref = actor_ref.clone();
        async move { actor_ref.call(1).await }
    });
    let second = tokio::spawn({
        let actor_ref = actor_ref.clone();
        async move { actor_ref.call(2).await }
    });
    assert_eq!(first.await.unwrap(), Err(CallError::Timeout));
    assert_eq!(second.await.unwrap(), Err(CallError::Timeout));
    assert_eq!(started.elapsed(), 5 * SECOND);
    // The first call finishes handling at 10 s; the second, abandoned while queued, is skipped.
    tokio::time::sleep(20 * SECOND).await;
    assert_eq!(*handled.lock().unwrap(), vec![1]);
}

#[tokio::test(start_paused = true)]
async fn a_crash_fails_the_caller_and_everything_queued_at_once() {
    let (actor, handled) = recorder(Duration::from_millis(200), Some(3));
    let (actor_ref, task) = spawn(actor, MailboxConfig::bounded(64), 60 * SECOND);
    let started = tokio::time::Instant::now();
    let calls: Vec<_> = (0..8)
        .map(|i| {
            let actor_ref = actor_ref.clone();
            tokio::spawn(async move { actor_ref.call(i).await })
        })
        .collect();
    let mut outcomes = Vec::new();
    for call in calls {
        outcomes.push(call.await.unwrap());
    }
    let crashed = Err(CallError::Crashed);
    assert_eq!(
        outcomes,
        vec![
            Ok(0),
            Ok(10),
            Ok(20),
            crashed,
            crashed,
            crashed,
            crashed,
            crashed
        ]
    );
    // Nobody waited for a timeout: the failures arrived when the 4th call crashed, at 800 ms.
    assert_eq!(started.elapsed(), Duration::from_millis(800));
    assert_eq!(*handled.lock().unwrap(), vec![0, 1, 2]);
    assert!(task.join().await.unwrap_err().is_panic());
    assert_eq!(actor_ref.call(9).await, Err(CallError::Stopped));
}

#[tokio::test(start_paused = true)]
async fn stop_finishes_what_was_queued_then_refuses() {
    let (actor, handled) = recorder(Duration::from_millis(100), None);
    let (actor_ref, task) = spawn(actor, MailboxConfig::bounded(64), 60 * SECOND);
    let calls: Vec<_> = (0..5)
        .map(|i| {
            let actor_ref = actor_ref.clone();
            tokio::spawn(async move { actor_ref.call(i).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    task.stop().await.unwrap();
    for call in calls {
        assert!(call.await.unwrap().is_ok());
    }
    assert_eq!(handled.lock().unwrap().len(), 5);
    assert_eq!(actor_ref.call(9).await, Err(CallError::Stopped));
}

#[tokio::test(start_paused = true)]
async fn the_unbounded_demo_mailbox_grows_without_limit() {
    let (actor, _) = recorder(SECOND, None);
    let (actor_ref, task) = spawn(actor, MailboxConfig::Unbounded, 3600 * SECOND);
    let senders: Vec<_> = (0..5_000)
        .map(|i| {
            let actor_ref = actor_ref.clone();
            tokio::spawn(async move { actor_ref.call(i).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(1)).await;
    // Everything but the one being handled is waiting: nothing pushed back on the senders.
    assert_eq!(actor_ref.depth(), 4_999);
    task.abort();
    for sender in senders {
        assert!(sender.await.unwrap().is_err());
    }
}

struct Ticker(Arc<AtomicUsize>);

impl Actor for Ticker {
    type Call = ();
    type Reply = usize;

    async fn handle_call(&mut self, (): ()) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    fn tick_interval(&self) -> Option<Duration> {
        Some(SECOND)
    }

    fn handle_tick(&mut self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
}

#[tokio::test(start_paused = true)]
async fn ticks_run_on_the_actor_between_messages() {
    let ticks = Arc::new(AtomicUsize::new(0));
    let (actor_ref, _task) = spawn(
        Ticker(Arc::clone(&ticks)),
        MailboxConfig::bounded(1),
        SECOND,
    );
    assert_eq!(actor_ref.call(()).await, Ok(0));
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert_eq!(actor_ref.call(()).await, Ok(3));
}
