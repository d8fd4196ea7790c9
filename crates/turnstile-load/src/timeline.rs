//! The run as it unfolds: one [`Sample`] per second of what the generator saw (offered and
//! answered rates, latency, outcomes) and what the gateway said about itself (mailbox depth,
//! restarts, escalations, from its admin API), with the faults injected and the restarts seen
//! marked as [`Event`]s on the same time axis. The report draws it afterwards; the live view
//! reads it while the run goes on.
//!
//! # Invariants
//!
//! - Time is seconds since the run started sending (warm-up included; `warmup_seconds` says
//!   where measuring began), and samples are in strictly increasing `t`.
//! - A request is counted in the sample of the second its answer (or its failure) came in, so
//!   a second's latency percentiles are those of the answers received in it.
//! - The connections record into their own `IntervalRecorder`, a lock that only the sampler
//!   contends for, once a second, and that nobody holds across an `.await`.
//! - Once the gateway stops answering, the series stops: no sample is added after `ended`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::Full;
use hyper::Request;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use turnstile_backend::{BackendKind, BackendState, BackendStatus};
use turnstile_gateway::api::admin;

use crate::client::{Connection, Outcome};
use crate::engine::{Target, new_histogram};
use crate::result::Outcomes;
use crate::scenario::{Mode, Scenario};

/// How often a sample is taken.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// How long the sampler waits for the gateway's admin API before the second goes without
/// gateway figures.
const POLL_TIMEOUT: Duration = Duration::from_millis(500);

/// One run's series.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Timeline {
    /// Where measuring began, seconds from the start (the warm-up before it).
    pub warmup_seconds: f64,
    /// One per second, in increasing `t`.
    pub samples: Vec<Sample>,
    /// Faults injected (by the scenario or the live view's buttons), restarts and escalations
    /// seen, in increasing `t`.
    pub events: Vec<Event>,
    /// Why the series stopped before the run did (the gateway stopped answering).
    pub ended: Option<String>,
}

/// One second of the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// The end of the second, seconds since the start.
    pub t: f64,
    /// Open loop: the schedule's rate over this second, what the clients offer whether or not
    /// the generator could send it all (`None` in closed loop, where the rate is whatever the
    /// answers allow).
    pub offered: Option<f64>,
    /// Requests actually sent, per second (below `offered` when every connection is waiting
    /// on a slow answer).
    pub sent: f64,
    /// Answers received (of any kind), per second.
    pub answered: f64,
    /// What the requests that finished in this second came to.
    pub outcomes: Outcomes,
    /// Median latency of the answers in this second, ms (`None`: no answer).
    pub p50_ms: Option<f64>,
    /// 99th percentile, ms.
    pub p99_ms: Option<f64>,
    /// The gateway's own figures (`None` without an admin API, or when it did not answer).
    pub gateway: Option<GatewaySample>,
}

/// What the gateway's admin API reported at the end of a second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewaySample {
    /// The backend serving.
    pub backend: BackendKind,
    /// Running, failed (cooling off) or stopped.
    pub state: BackendState,
    /// The deepest mailbox: the actor's, or the busiest shard's (`None`: no actors).
    pub mailbox_depth: Option<usize>,
    /// Which actor has it (the shard number; 0 for the single actor).
    pub busiest_child: Option<usize>,
    /// Restarts of all actors since the gateway started.
    pub restarts: u64,
    /// Supervisor escalations since the gateway started.
    pub escalations: u64,
}

impl GatewaySample {
    /// The figures of an admin API supervision snapshot.
    pub fn of(status: &BackendStatus) -> Self {
        let busiest = status
            .children
            .iter()
            .max_by_key(|child| child.mailbox_depth);
        Self {
            backend: status.backend,
            state: status.state,
            mailbox_depth: busiest.map(|child| child.mailbox_depth),
            busiest_child: busiest.map(|child| child.index),
            restarts: status.children.iter().map(|child| child.restarts).sum(),
            escalations: status.escalations,
        }
    }
}

/// Something that happened at a point in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Seconds since the start, in milliseconds' precision.
    pub t_ms: u64,
    /// What kind of thing.
    pub kind: EventKind,
    /// A short label for the marker: `crash_actor`, `crash_shard 3`, `restart ×2`.
    pub label: String,
    /// For a fault: whether the gateway accepted it; its answer when it did not.
    pub ok: bool,
    /// The gateway's answer, or what was seen.
    pub detail: String,
}

impl Event {
    /// Its time in seconds.
    pub fn t(&self) -> f64 {
        self.t_ms as f64 / 1000.0
    }
}

/// What an [`Event`] marks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A fault from the scenario's schedule.
    ScenarioFault,
    /// A fault from the live view.
    LiveFault,
    /// Actors were restarted since the previous sample.
    Restart,
    /// The supervisor gave up since the previous sample.
    Escalation,
}

/// A run's timeline, shared between the run (which fills it) and the live view (which reads
/// it and adds the faults it injects).
#[derive(Debug, Clone, Default)]
pub struct TimelineHandle {
    inner: Arc<Mutex<Shared>>,
}

#[derive(Debug, Default)]
struct Shared {
    /// When the run started sending: the zero of `t` (`None` until it starts).
    origin: Option<Instant>,
    timeline: Timeline,
}

impl TimelineHandle {
    fn with<T>(&self, f: impl FnOnce(&mut Shared) -> T) -> T {
        // A panic elsewhere while holding this lock leaves plain data: keep using it.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// Marks the start: `t` counts from `origin`; measuring begins `warmup` later.
    pub(crate) fn begin(&self, origin: Instant, warmup: Duration) {
        self.with(|shared| {
            shared.origin = Some(origin);
            shared.timeline = Timeline {
                warmup_seconds: warmup.as_secs_f64(),
                ..Timeline::default()
            };
        });
    }

    /// A copy of the series so far.
    pub fn snapshot(&self) -> Timeline {
        self.with(|shared| shared.timeline.clone())
    }

    /// A copy with only the samples after `since` seconds (all events: they are few), for a
    /// reader that has the earlier ones.
    pub fn snapshot_since(&self, since: f64) -> Timeline {
        self.with(|shared| {
            let timeline = &shared.timeline;
            let first = timeline.samples.partition_point(|s| s.t <= since);
            Timeline {
                warmup_seconds: timeline.warmup_seconds,
                samples: timeline.samples[first..].to_vec(),
                events: timeline.events.clone(),
                ended: timeline.ended.clone(),
            }
        })
    }

    /// Why the series stopped (the gateway stopped answering), if it has.
    pub fn ended(&self) -> Option<String> {
        self.with(|shared| shared.timeline.ended.clone())
    }

    /// Whether the series has stopped.
    pub fn has_ended(&self) -> bool {
        self.with(|shared| shared.timeline.ended.is_some())
    }

    /// Records an event now (or at 0 before the run starts).
    pub fn mark(&self, kind: EventKind, label: String, ok: bool, detail: String) -> Event {
        let now = Instant::now();
        self.with(|shared| {
            let t_ms = shared.origin.map_or(0, |origin| {
                u64::try_from(now.saturating_duration_since(origin).as_millis()).unwrap_or(u64::MAX)
            });
            let event = Event {
                t_ms,
                kind,
                label,
                ok,
                detail,
            };
            // Concurrent markers may arrive out of order by a hair: keep the list sorted.
            let at = shared.timeline.events.partition_point(|e| e.t_ms <= t_ms);
            shared.timeline.events.insert(at, event.clone());
            event
        })
    }

    fn push(&self, sample: Sample) {
        self.with(|shared| {
            if shared.timeline.ended.is_none() {
                shared.timeline.samples.push(sample);
            }
        });
    }

    fn end(&self, reason: String) {
        self.with(|shared| {
            shared.timeline.ended.get_or_insert(reason);
        });
    }
}

/// One connection's counts since the sampler last took them.
pub(crate) struct IntervalRecorder {
    inner: Mutex<Interval>,
}

struct Interval {
    sent: u64,
    histogram: Histogram<u64>,
    outcomes: Outcomes,
}

impl IntervalRecorder {
    pub(crate) fn new() -> Self {
        Self {
            inner: Mutex::new(Interval {
                sent: 0,
                histogram: new_histogram(),
                outcomes: Outcomes::default(),
            }),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Interval) -> T) -> T {
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A request went out.
    pub(crate) fn sent(&self) {
        self.with(|interval| interval.sent += 1);
    }

    /// A request finished: its outcome (`None`: timed out) and latency.
    pub(crate) fn finished(&self, outcome: Option<&Outcome>, micros: u64) {
        self.with(|interval| {
            if matches!(outcome, Some(outcome) if *outcome != Outcome::ConnectionError) {
                let _ = interval.histogram.record(micros.max(1));
            }
            interval.outcomes.count(outcome);
        });
    }

    /// Moves this connection's counts into `into` and starts a new interval.
    fn drain_into(&self, into: &mut Interval) {
        self.with(|interval| {
            into.sent += std::mem::take(&mut interval.sent);
            let _ = into.histogram.add(&interval.histogram);
            interval.histogram.reset();
            into.outcomes.merge(&std::mem::take(&mut interval.outcomes));
        });
    }
}

/// Where the sampler reads the gateway's own figures.
pub(crate) struct GatewayPoll {
    pub(crate) admin: Target,
    pub(crate) admin_token: Option<String>,
}

/// The run's time line: when it started, when measuring began, when it ends.
pub(crate) struct Span {
    pub(crate) start: Instant,
    pub(crate) measure_from: Instant,
    pub(crate) end: Instant,
}

/// Takes a sample every second of `span` (and one for the last part-second) into `timeline`,
/// until `stop`.
pub(crate) async fn sample(
    recorders: Vec<Arc<IntervalRecorder>>,
    timeline: TimelineHandle,
    poll: Option<GatewayPoll>,
    scenario: Scenario,
    span: Span,
    stop: CancellationToken,
) {
    let Span {
        start,
        measure_from,
        end,
    } = span;
    let mut admin = poll.map(|poll| (Connection::new(poll.admin.address), poll));
    let mut previous: Option<GatewaySample> = None;
    let mut last = start;
    let mut interval = Interval {
        sent: 0,
        histogram: new_histogram(),
        outcomes: Outcomes::default(),
    };
    loop {
        let mut at = (last + SAMPLE_INTERVAL).min(end);
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            // Ended early: one last sample of the part-second.
            () = stop.cancelled() => at = Instant::now().min(at),
        }
        for recorder in &recorders {
            recorder.drain_into(&mut interval);
        }
        let seconds = at.saturating_duration_since(last).as_secs_f64();
        let gateway = match &mut admin {
            Some((connection, poll)) => match poll_gateway(connection, poll).await {
                Polled::Status(status) => Some(GatewaySample::of(&status)),
                Polled::NoAnswer => None,
                Polled::Unreachable => {
                    timeline.end(format!(
                        "the gateway stopped answering at {:.0} s: its admin API refused the connection",
                        at.saturating_duration_since(start).as_secs_f64()
                    ));
                    None
                }
            },
            None => None,
        };
        let outcomes = &interval.outcomes;
        if outcomes.answered() == 0 && outcomes.connection_errors > 0 {
            timeline.end(format!(
                "the gateway stopped answering at {:.0} s: {} connection errors and no answer in the last second",
                at.saturating_duration_since(start).as_secs_f64(),
                outcomes.connection_errors
            ));
        }
        if let (Some(before), Some(now)) = (&previous, &gateway) {
            mark_supervision(&timeline, before, now);
        }
        if gateway.is_some() {
            previous.clone_from(&gateway);
        }
        let percentile = |q: f64| {
            (!interval.histogram.is_empty())
                .then(|| interval.histogram.value_at_quantile(q) as f64 / 1000.0)
        };
        // The schedule's rate at the middle of the second (warm-up runs at the first rate).
        let middle = last + at.saturating_duration_since(last) / 2;
        let offered = (scenario.mode == Mode::Open)
            .then(|| scenario.rate_at(middle.saturating_duration_since(measure_from)));
        timeline.push(Sample {
            t: at.saturating_duration_since(start).as_secs_f64(),
            offered,
            sent: interval.sent as f64 / seconds.max(f64::MIN_POSITIVE),
            answered: outcomes.answered() as f64 / seconds.max(f64::MIN_POSITIVE),
            outcomes: std::mem::take(&mut interval.outcomes),
            p50_ms: percentile(0.5),
            p99_ms: percentile(0.99),
            gateway,
        });
        interval.sent = 0;
        interval.histogram.reset();
        last = at;
        if at >= end || timeline.has_ended() || stop.is_cancelled() {
            return;
        }
    }
}

/// Marks the restarts and escalations that happened between two snapshots.
fn mark_supervision(timeline: &TimelineHandle, before: &GatewaySample, now: &GatewaySample) {
    let restarts = now.restarts.saturating_sub(before.restarts);
    if restarts > 0 {
        timeline.mark(
            EventKind::Restart,
            format!("restart ×{restarts}"),
            true,
            format!(
                "{restarts} actor restart{} in the {} backend",
                if restarts == 1 { "" } else { "s" },
                now.backend
            ),
        );
    }
    if now.escalations > before.escalations {
        timeline.mark(
            EventKind::Escalation,
            "escalation".to_owned(),
            true,
            format!(
                "the {} supervisor exceeded its restart intensity: the backend is {}",
                now.backend,
                serde_json::to_value(now.state)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default()
            ),
        );
    }
}

enum Polled {
    Status(BackendStatus),
    /// It answered, but not with a snapshot, or not in time.
    NoAnswer,
    /// The connection was refused or broke: the gateway is gone.
    Unreachable,
}

async fn poll_gateway(connection: &mut Connection, poll: &GatewayPoll) -> Polled {
    let mut request = Request::get(admin::SUPERVISION).header("host", &poll.admin.host);
    if let Some(token) = &poll.admin_token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    let Ok(request) = request.body(Full::new(Bytes::new())) else {
        return Polled::NoAnswer;
    };
    match tokio::time::timeout(POLL_TIMEOUT, connection.fetch(request)).await {
        Ok(Some((status, body))) if status.is_success() => serde_json::from_slice(&body)
            .map(Polled::Status)
            .unwrap_or(Polled::NoAnswer),
        Ok(Some(_)) => Polled::NoAnswer,
        Ok(None) => Polled::Unreachable,
        Err(_) => {
            // The answer may still arrive on this connection: use a fresh one next time.
            connection.reset();
            Polled::NoAnswer
        }
    }
}

/// Totals of each drop reason over a timeline's samples, for charts' legends.
pub fn drop_reasons(timeline: &Timeline) -> BTreeMap<String, u64> {
    let mut reasons = BTreeMap::new();
    for sample in &timeline.samples {
        for (reason, count) in &sample.outcomes.dropped {
            *reasons.entry(reason.clone()).or_default() += count;
        }
    }
    reasons
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_supervision_snapshot_gives_the_busiest_actor_and_total_restarts() {
        let status: BackendStatus = serde_json::from_value(serde_json::json!({
            "backend": "sharded",
            "state": "running",
            "children": [
                { "index": 0, "alive": true, "restarts": 2, "mailbox_depth": 3 },
                { "index": 1, "alive": true, "restarts": 1, "mailbox_depth": 40 },
                { "index": 2, "alive": false, "restarts": 0, "mailbox_depth": 0 }
            ],
            "escalations": 1,
            "pool": null,
            "redis": null
        }))
        .unwrap();
        let sample = GatewaySample::of(&status);
        assert_eq!(sample.mailbox_depth, Some(40));
        assert_eq!(sample.busiest_child, Some(1));
        assert_eq!(sample.restarts, 3);
        assert_eq!(sample.escalations, 1);
    }

    #[test]
    fn restarts_and_escalations_between_snapshots_become_markers() {
        let timeline = TimelineHandle::default();
        let before = GatewaySample {
            backend: BackendKind::Actor,
            state: BackendState::Running,
            mailbox_depth: Some(0),
            busiest_child: Some(0),
            restarts: 1,
            escalations: 0,
        };
        let now = GatewaySample {
            restarts: 3,
            escalations: 1,
            state: BackendState::Failed,
            ..before.clone()
        };
        mark_supervision(&timeline, &before, &before);
        assert!(timeline.snapshot().events.is_empty());
        mark_supervision(&timeline, &before, &now);
        let events = timeline.snapshot().events;
        assert_eq!(events.len(), 2);
        assert_eq!(events[0].kind, EventKind::Restart);
        assert_eq!(events[0].label, "restart ×2");
        assert_eq!(events[1].kind, EventKind::Escalation);
        assert!(
            events[1].detail.ends_with("the backend is failed"),
            "{events:?}"
        );
    }

    #[test]
    fn no_sample_is_added_once_the_series_has_ended() {
        let timeline = TimelineHandle::default();
        timeline.push(Sample::default());
        timeline.end("gone".into());
        timeline.end("second reason ignored".into());
        timeline.push(Sample::default());
        let snapshot = timeline.snapshot();
        assert_eq!(snapshot.samples.len(), 1);
        assert_eq!(snapshot.ended.as_deref(), Some("gone"));
    }
}
