//! `--live`: one page on loopback that shows every backend's [timeline](crate::timeline)
//! side by side while the run goes on, with buttons that inject the seed lessons' faults
//! through each gateway's admin API.
//!
//! # Layout
//!
//! - this file: the [`Hub`] (what the page shows: the current run's backends and their
//!   timelines) and the router over it, [`app`].
//! - [`api`]: the JSON the page reads and posts, and the one error type of the routes.
//! - `page.html`, `live.js`, `live.css`: the page, shipped inside the binary (no CDN, no
//!   network: it works offline), drawn with plain SVG.
//!
//! # Routes
//!
//! - `GET /`, `GET /live.js`, `GET /live.css`: the page.
//! - `GET /api/state[?since=SECONDS]`: the run and every backend's timeline ([`api::State`]);
//!   with `since`, only the samples after it, so a long run is not sent again every second.
//! - `POST /api/inject` ([`api::InjectRequest`]): a fault on one backend, marked on its
//!   timeline.
//! - `POST /api/runs`: start the scenario again once the current run has finished.
//!
//! # Invariants
//!
//! - The page reads only this server, never Prometheus or the gateways: what it shows is what
//!   the load generator measured and polled.
//! - At most one run at a time: a second start is refused (409) while one is in progress.
//! - Every refusal is a 4xx with an [`api::ErrorBody`]; no request changes anything unless it
//!   succeeds.

pub mod api;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Json, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use tokio::sync::mpsc;

use crate::client::Connection;
use crate::engine::Target;
use crate::faults;
use crate::scenario::Scenario;
use crate::timeline::{EventKind, TimelineHandle};
use api::{BackendState, InjectRequest, LiveError, RunStatus};

/// The page's files: path, content type, contents.
pub const ASSETS: [(&str, &str, &str); 3] = [
    ("/", "text/html; charset=utf-8", include_str!("page.html")),
    (
        "/live.js",
        "text/javascript; charset=utf-8",
        include_str!("live.js"),
    ),
    (
        "/live.css",
        "text/css; charset=utf-8",
        include_str!("live.css"),
    ),
];

/// One backend of the run, as the live view knows it.
#[derive(Debug, Clone)]
pub struct LiveBackend {
    /// Its label (the backend's name, or the `--url` label).
    pub label: String,
    /// Its admin API, for the buttons (`None`: the buttons are refused for it).
    pub admin: Option<Target>,
    /// Bearer token for the admin API.
    pub admin_token: Option<String>,
    /// Its timeline, filled by the run.
    pub timeline: TimelineHandle,
}

/// What the page shows, shared by the run and the routes.
pub struct Hub {
    scenario: Scenario,
    inner: Mutex<Current>,
    /// Asks the command for another run (capacity 1: one pending request at most).
    start_requests: mpsc::Sender<()>,
}

struct Current {
    /// Counts runs from 1; 0 before the first starts.
    run: u64,
    status: RunStatus,
    message: Option<String>,
    started: Option<SystemTime>,
    backends: Vec<LiveBackend>,
}

impl Hub {
    /// A hub for `scenario`, and the receiver of the page's requests for another run.
    pub fn new(scenario: &Scenario) -> (Arc<Self>, mpsc::Receiver<()>) {
        let (start_requests, receiver) = mpsc::channel(1);
        let hub = Self {
            scenario: scenario.clone(),
            inner: Mutex::new(Current {
                run: 0,
                status: RunStatus::Starting,
                message: None,
                started: None,
                backends: Vec::new(),
            }),
            start_requests,
        };
        (Arc::new(hub), receiver)
    }

    fn with<T>(&self, f: impl FnOnce(&mut Current) -> T) -> T {
        // Plain data: a panic elsewhere while holding the lock leaves it usable.
        f(&mut self.inner.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// A run starts on these backends.
    pub fn begin_run(&self, backends: Vec<LiveBackend>) {
        self.with(|current| {
            current.run += 1;
            current.status = RunStatus::Running;
            current.message = None;
            current.started = Some(SystemTime::now());
            current.backends = backends;
        });
    }

    /// The run ended: `Ok` with what to tell the reader (where the report is), or why it
    /// failed.
    pub fn finish(&self, outcome: Result<String, String>) {
        self.with(|current| {
            let (status, message) = match outcome {
                Ok(message) => (RunStatus::Finished, message),
                Err(error) => (RunStatus::Failed, error),
            };
            current.status = status;
            current.message = Some(message);
        });
    }

    /// The page's view of the run; with `since`, only the samples after that many seconds.
    pub fn state(&self, since: Option<f64>) -> api::State {
        self.with(|current| api::State {
            scenario: api::ScenarioInfo {
                name: self.scenario.name.clone(),
                description: self.scenario.description.trim().to_owned(),
                faults: self.scenario.faults.len(),
            },
            run: current.run,
            since,
            status: current.status,
            message: current.message.clone(),
            started_unix_ms: current.started.and_then(|started| {
                started
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .ok()
                    .and_then(|d| u64::try_from(d.as_millis()).ok())
            }),
            backends: current
                .backends
                .iter()
                .map(|backend| BackendState {
                    label: backend.label.clone(),
                    admin: backend.admin.is_some(),
                    timeline: match since {
                        Some(since) => backend.timeline.snapshot_since(since),
                        None => backend.timeline.snapshot(),
                    },
                })
                .collect(),
        })
    }

    /// Asks for another run; refused while one is in progress.
    pub fn request_run(&self) -> Result<u64, LiveError> {
        self.with(|current| match current.status {
            RunStatus::Starting | RunStatus::Running => Err(LiveError::RunInProgress(current.run)),
            RunStatus::Finished | RunStatus::Failed => {
                self.start_requests
                    .try_send(())
                    .map_err(|_| LiveError::RunInProgress(current.run))?;
                current.status = RunStatus::Starting;
                current.message = None;
                Ok(current.run + 1)
            }
        })
    }

    /// The backend labelled `label` of the run in progress, if it can take a fault now.
    fn injectable(&self, label: &str) -> Result<LiveBackend, LiveError> {
        self.with(|current| {
            let Some(backend) = current.backends.iter().find(|b| b.label == label) else {
                return Err(LiveError::UnknownBackend {
                    label: label.to_owned(),
                    known: current
                        .backends
                        .iter()
                        .map(|b| b.label.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            };
            if current.status != RunStatus::Running {
                return Err(LiveError::NotRunning);
            }
            if backend.admin.is_none() {
                return Err(LiveError::NoAdmin(label.to_owned()));
            }
            if let Some(reason) = backend.timeline.ended() {
                return Err(LiveError::Gone {
                    label: label.to_owned(),
                    reason,
                });
            }
            Ok(backend.clone())
        })
    }
}

/// The live view's router over `hub`.
pub fn app(hub: Arc<Hub>) -> Router {
    let mut router = Router::new();
    for (path, content_type, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }),
        );
    }
    router
        .route("/api/state", get(state))
        .route("/api/inject", post(inject))
        .route("/api/runs", post(start_run))
        .fallback(|| async { LiveError::NotFound })
        .method_not_allowed_fallback(|| async { LiveError::MethodNotAllowed })
        .with_state(hub)
}

/// How long a connection may go without sending a complete request head (its first, or the
/// next on a kept-alive connection) before it is closed.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once; one more is closed at once (the page needs one or two).
pub const MAX_CONNECTIONS: usize = 64;

/// Serves the live view on `listener` until the process ends.
///
/// By hand rather than `axum::serve`, which gives hyper no timer (so its header-read timeout
/// never fires) and takes any number of connections: here an idle or half-sent connection is
/// closed after `header_read_timeout`, and at most [`MAX_CONNECTIONS`] are open, so idle
/// clients cannot keep the page from its state.
pub async fn serve(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    header_read_timeout: Duration,
) -> std::io::Result<()> {
    let app = app(hub);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of descriptors, most likely: pause rather than spin.
                tracing::warn!(%error, "live view: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let served = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(header_read_timeout)
                .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                .await;
            if let Err(error) = served {
                tracing::debug!(%error, "live view: connection ended");
            }
        });
    }
}

async fn state(
    State(hub): State<Arc<Hub>>,
    query: Result<Query<api::StateQuery>, QueryRejection>,
) -> Result<Response, LiveError> {
    let Query(query) = query.map_err(|rejection| LiveError::BadQuery(rejection.body_text()))?;
    if let Some(since) = query.since
        && !(since.is_finite() && since >= 0.0)
    {
        return Err(LiveError::BadQuery(format!(
            "`since` must be a number of seconds, at least 0 (got {since})"
        )));
    }
    Ok(Json(hub.state(query.since)).into_response())
}

async fn inject(
    State(hub): State<Arc<Hub>>,
    body: Result<Json<InjectRequest>, JsonRejection>,
) -> Result<Response, LiveError> {
    let Json(request) = body.map_err(|rejection| LiveError::BadBody(rejection.body_text()))?;
    let backend = hub.injectable(&request.backend)?;
    let Some(admin) = &backend.admin else {
        return Err(LiveError::NoAdmin(backend.label));
    };
    let mut connection = Connection::new(admin.address);
    let answer = faults::inject(
        &mut connection,
        admin,
        backend.admin_token.as_deref(),
        &request.action,
    )
    .await;
    let event = faults::mark(
        &backend.timeline,
        EventKind::LiveFault,
        &request.action,
        &answer,
    );
    match answer {
        Ok(_) => Ok(Json(event).into_response()),
        Err(answer) => Err(LiveError::Refused {
            label: backend.label,
            action: event.label,
            answer,
        }),
    }
}

async fn start_run(State(hub): State<Arc<Hub>>) -> Result<Response, LiveError> {
    let run = hub.request_run()?;
    Ok((StatusCode::ACCEPTED, Json(api::RunStarted { run })).into_response())
}
