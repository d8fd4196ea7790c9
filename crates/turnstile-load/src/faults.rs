//! Fault injection through a gateway's admin API: the scenario's schedule, and the one-off
//! calls of the live view's buttons. Each injection is marked on the run's timeline with the
//! gateway's answer, accepted or not.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use turnstile_gateway::api::admin;

use crate::client::Connection;
use crate::engine::Target;
use crate::scenario::{FaultAction, Scenario};
use crate::timeline::{Event, EventKind, TimelineHandle};

/// Whether the gateway accepted an injection, with its answer (or why there was none).
pub type Injected = Result<String, String>;

/// Sends `action` to the admin API at `admin` and gives the gateway's answer.
pub async fn inject(
    connection: &mut Connection,
    admin: &Target,
    token: Option<&str>,
    action: &FaultAction,
) -> Injected {
    let request = admin_request(action, &admin.host, token);
    match connection.fetch(request).await {
        Some((status, body)) => {
            let body = String::from_utf8_lossy(&body).trim().to_owned();
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("HTTP {}: {body}", status.as_u16()))
            }
        }
        None => Err(format!("the admin API at {} did not answer", admin.url)),
    }
}

/// Marks an injection of `action` on `timeline`: accepted, with the gateway's answer, or
/// refused, with why.
pub fn mark(
    timeline: &TimelineHandle,
    kind: EventKind,
    action: &FaultAction,
    answer: &Injected,
) -> Event {
    let (ok, detail) = match answer {
        Ok(detail) => (true, detail.clone()),
        Err(why) => (false, why.clone()),
    };
    timeline.mark(kind, action.label(), ok, detail)
}

/// Fires the scenario's faults at their times (measured from `measure_from`, until `end`),
/// marking each on `timeline`, until `stop`; returns (injected, failed).
pub(crate) async fn inject_scheduled(
    scenario: Scenario,
    admin: Option<Target>,
    admin_token: Option<String>,
    timeline: TimelineHandle,
    (measure_from, end): (Instant, Instant),
    stop: CancellationToken,
) -> (u64, u64) {
    if scenario.faults.is_empty() {
        return (0, 0);
    }
    let Some(admin) = admin else {
        tracing::warn!("the scenario has faults but no admin URL was given: none injected");
        return (0, scenario.faults.len() as u64);
    };
    let mut schedule: BTreeMap<Instant, Vec<FaultAction>> = BTreeMap::new();
    for fault in &scenario.faults {
        let mut at = measure_from + fault.at;
        while at < end {
            schedule.entry(at).or_default().push(fault.action.clone());
            match fault.every {
                Some(every) if !every.is_zero() => at += every,
                _ => break,
            }
        }
    }
    let (mut injected, mut failed) = (0, 0);
    let mut connection = Connection::new(admin.address);
    for (at, actions) in schedule {
        tokio::select! {
            () = tokio::time::sleep_until(at) => {}
            () = stop.cancelled() => break,
        }
        for action in actions {
            let answer = inject(&mut connection, &admin, admin_token.as_deref(), &action).await;
            match &answer {
                Ok(_) => injected += 1,
                Err(error) => {
                    tracing::warn!(?action, %error, "fault injection failed");
                    failed += 1;
                }
            }
            mark(&timeline, EventKind::ScenarioFault, &action, &answer);
        }
    }
    (injected, failed)
}

/// The admin API request that carries out `action`.
fn admin_request(action: &FaultAction, host: &str, token: Option<&str>) -> Request<Full<Bytes>> {
    let (path, body) = match action {
        FaultAction::CrashActor => (admin::CRASH_ACTOR.to_owned(), String::new()),
        FaultAction::CrashShard { shard } => (admin::crash_shard(*shard), String::new()),
        FaultAction::CrashWorker => (admin::CRASH_WORKER.to_owned(), String::new()),
        FaultAction::Poison { key, policy } => (
            admin::POISON.to_owned(),
            serde_json::to_string(&admin::PoisonRequest {
                key: key.clone(),
                policy: policy.clone(),
            })
            .unwrap_or_default(),
        ),
        FaultAction::Slow { delay, duration } => (
            admin::SLOW.to_owned(),
            serde_json::to_string(&admin::SlowRequest {
                delay: *delay,
                duration: *duration,
            })
            .unwrap_or_default(),
        ),
        FaultAction::SwitchBackend { backend } => (
            admin::BACKEND.to_owned(),
            serde_json::to_string(&admin::SwitchRequest { backend: *backend }).unwrap_or_default(),
        ),
    };
    let mut request = Request::post(path)
        .header("host", host)
        .header("content-type", "application/json");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    request
        .body(Full::new(Bytes::from(body)))
        .unwrap_or_else(|_| Request::new(Full::new(Bytes::new())))
}
