//! The live view's wire format: what `GET /api/state` returns, what `POST /api/inject` takes,
//! and the error every route answers with when it refuses.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::scenario::FaultAction;
use crate::timeline::Timeline;

/// `GET /api/state`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    /// The scenario being run.
    pub scenario: ScenarioInfo,
    /// Which run (from 1; 0 before the first).
    pub run: u64,
    /// As asked: the timelines hold only the samples after this many seconds.
    pub since: Option<f64>,
    /// Where the run is.
    pub status: RunStatus,
    /// When finished: where the report is; when failed: why.
    pub message: Option<String>,
    /// When the run started, ms since the Unix epoch.
    pub started_unix_ms: Option<u64>,
    /// One per backend under load, in the order given.
    pub backends: Vec<BackendState>,
}

/// The scenario, as the page heads it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Its name.
    pub name: String,
    /// What it does.
    pub description: String,
    /// How many faults its schedule has.
    pub faults: usize,
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Asked for; the gateways are starting.
    Starting,
    /// Load is being sent.
    Running,
    /// Done; the report is written.
    Finished,
    /// Stopped by an error.
    Failed,
}

/// One backend's column.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BackendState {
    /// Its label.
    pub label: String,
    /// Whether faults can be injected into it (it has an admin API).
    pub admin: bool,
    /// Its series so far.
    pub timeline: Timeline,
}

/// The query of `GET /api/state`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateQuery {
    /// Only the samples after this many seconds since the run started.
    pub since: Option<f64>,
}

/// `POST /api/inject`: which backend, and what to do to it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectRequest {
    /// A backend's label, as in [`State::backends`].
    pub backend: String,
    /// The fault, as a scenario file spells it: `{"kind": "crash_actor"}`,
    /// `{"kind": "crash_shard", "shard": 3}`, `{"kind": "poison", "key": "10.0.0.7"}`,
    /// `{"kind": "slow", "delay": "50ms", "duration": "2s"}`,
    /// `{"kind": "switch_backend", "backend": "concurrent"}`.
    pub action: FaultAction,
}

/// `POST /api/runs`, accepted.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunStarted {
    /// The number the new run will have.
    pub run: u64,
}

/// The body of every refusal.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable code.
    pub error: String,
    /// What is wrong, for a person.
    pub message: String,
}

/// Why a live-view request was refused.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LiveError {
    /// The body is not an [`InjectRequest`].
    #[error("{0}")]
    BadBody(String),
    /// The query string is not a [`StateQuery`].
    #[error("{0}")]
    BadQuery(String),
    /// No backend by that label in this run.
    #[error("no backend `{label}` in this run (there are: {known})")]
    UnknownBackend {
        /// As given.
        label: String,
        /// The run's labels.
        known: String,
    },
    /// The backend has no admin API.
    #[error(
        "`{0}` has no admin API to inject faults through (give it as --url label=URL,admin=URL)"
    )]
    NoAdmin(String),
    /// No run is in progress (the gateways may be stopped).
    #[error("no run is in progress: start one first")]
    NotRunning,
    /// The backend's gateway stopped answering.
    #[error("`{label}` cannot take faults any more: {reason}")]
    Gone {
        /// The backend.
        label: String,
        /// Why its series ended.
        reason: String,
    },
    /// The gateway refused the fault (or did not answer).
    #[error("`{label}` refused {action}: {answer}")]
    Refused {
        /// The backend.
        label: String,
        /// The fault.
        action: String,
        /// The gateway's answer.
        answer: String,
    },
    /// A run is in progress.
    #[error("run {0} is still in progress: wait for it to finish before starting another")]
    RunInProgress(u64),
    /// No such route.
    #[error("no such page")]
    NotFound,
    /// The route exists, with another method.
    #[error("method not allowed here")]
    MethodNotAllowed,
}

impl LiveError {
    /// The status and stable code.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            Self::BadBody(_) => (StatusCode::BAD_REQUEST, "invalid_body"),
            Self::BadQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            Self::UnknownBackend { .. } => (StatusCode::BAD_REQUEST, "unknown_backend"),
            Self::NoAdmin(_) => (StatusCode::CONFLICT, "no_admin_api"),
            Self::NotRunning => (StatusCode::CONFLICT, "not_running"),
            Self::Gone { .. } => (StatusCode::CONFLICT, "backend_gone"),
            Self::Refused { .. } => (StatusCode::CONFLICT, "injection_refused"),
            Self::RunInProgress(_) => (StatusCode::CONFLICT, "run_in_progress"),
            Self::NotFound => (StatusCode::NOT_FOUND, "not_found"),
            Self::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
        }
    }
}

impl IntoResponse for LiveError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let body = ErrorBody {
            error: code.to_owned(),
            message: self.to_string(),
        };
        (status, Json(body)).into_response()
    }
}
