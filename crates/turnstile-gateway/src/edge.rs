//! What every request meets before the router: it is timed into
//! `turnstile_http_request_duration_seconds`, and on the rate-limited routes it is shed when
//! `max_concurrent_requests` are already in flight (503, a `shed` drop) and cut off at
//! `request_timeout` (503, a `timeout` drop). Routes that read a JSON body take their place
//! only once the body is in (`Slot::take_after_body`), so clients that stall mid-body cannot
//! use up `max_concurrent_requests`. The operational endpoints are neither limited
//! nor cut off, so health checks and scrapes still answer when the gateway is saturated.
//!
//! # Why by hand
//!
//! This was tower's `load_shed`, `concurrency_limit` and `timeout` under axum's
//! `HandleErrorLayer`, plus `axum::middleware::from_fn` for the timing, each applied with
//! `Router::layer`. Those are built for other needs: a semaphore whose waiters we never have
//! (we shed, never wait) and whose every release takes its waiter-list mutex; a boxed future
//! and a cloned service per request for the error handler and for `from_fn`; and a boxed
//! service per route for each `Router::layer`. Together they were about 15% of the gateway's
//! CPU per request in the profile of issue 8 (docs/BENCHMARKS.md). Here it is one service
//! around the router, one atomic in-flight count, and one future with no allocation.
//!
//! # Invariants
//!
//! - At most `max_concurrent_requests` rate-limited requests are in flight (0: no limit), and a
//!   request is shed only when that many are. A request still sending its JSON body is not in
//!   flight: it holds a connection, bounded by `body_read_timeout`, not a slot. A slot is held by the request's future and given
//!   back when it is dropped, whether it completed, timed out, or the client went away.
//! - Every request is timed and counted once, by the route it asked for, whatever answered it;
//!   a client-chosen path is never a label (see [`Route::of_path`]).

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use tokio::time::Sleep;
use tower::Service;

use crate::api::Route;
use crate::error::ApiError;
use crate::state::AppState;

/// `inner` (the router) behind the gateway's timing, shedding and request timeout.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    state: Arc<AppState>,
}

impl<S> Edge<S> {
    pub(crate) fn new(inner: S, state: Arc<AppState>) -> Self {
        Self { inner, state }
    }
}

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = EdgeFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        let started = Instant::now();
        let route = Route::of_path(request.uri().path());
        let state = Arc::clone(&self.state);
        let (stage, slot) = if route.is_operational() {
            let stage = Stage::Unlimited {
                inner: self.inner.call(request),
            };
            (stage, Slot::none(state))
        } else if route.reads_body() {
            // The handler takes its slot once the body is in (`Slot::take_after_body`).
            let stage = Stage::Limited {
                inner: self.inner.call(request),
                deadline: tokio::time::sleep(state.request_timeout),
            };
            (stage, Slot::none(state))
        } else {
            match Slot::take(state) {
                Ok(slot) => {
                    let stage = Stage::Limited {
                        inner: self.inner.call(request),
                        deadline: tokio::time::sleep(slot.state.request_timeout),
                    };
                    (stage, slot)
                }
                Err(state) => {
                    let answer = ready(Ok(overload_response(&state, ApiError::Shed)));
                    (Stage::Answered { answer }, Slot::none(state))
                }
            }
        };
        EdgeFuture {
            stage,
            started,
            route,
            slot,
        }
    }
}

/// A place among the in-flight rate-limited requests, given back on drop.
pub(crate) struct Slot {
    state: Arc<AppState>,
    held: bool,
}

impl Slot {
    /// No place held: an operational request, or a shed one.
    fn none(state: Arc<AppState>) -> Self {
        Self { state, held: false }
    }

    /// A place, unless `max_concurrent_requests` are in flight (then the state comes back).
    fn take(state: Arc<AppState>) -> Result<Self, Arc<AppState>> {
        let max = state.max_concurrent_requests;
        if max == 0 {
            return Ok(Self::none(state));
        }
        // Relaxed: the count guards no other memory; each update is atomic on its own.
        let taken = state
            .in_flight
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .is_ok();
        if taken {
            Ok(Self { state, held: true })
        } else {
            Err(state)
        }
    }
}

impl Slot {
    /// A place for a request whose body has been read, or the `shed` error (counted).
    pub(crate) fn take_after_body(state: &Arc<AppState>) -> Result<Self, ApiError> {
        Self::take(Arc::clone(state)).map_err(|state| {
            state
                .metrics
                .record_drop(state.backend_kind(), ApiError::Shed.code());
            ApiError::Shed
        })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if self.held {
            self.state.in_flight.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

pin_project_lite::pin_project! {
    #[project = StageProjection]
    enum Stage<F> {
        /// Answered without the router (shed).
        Answered { #[pin] answer: Ready<Result<Response, Infallible>> },
        /// An operational endpoint: no limit, no deadline.
        Unlimited { #[pin] inner: F },
        /// A rate-limited route, racing the request timeout.
        Limited { #[pin] inner: F, #[pin] deadline: Sleep },
    }
}

pin_project_lite::pin_project! {
    /// The answer to one request; records its duration when it completes.
    pub struct EdgeFuture<F> {
        #[pin]
        stage: Stage<F>,
        started: Instant,
        route: Route,
        slot: Slot,
    }
}

impl<F> Future for EdgeFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = match this.stage.project() {
            StageProjection::Answered { answer } => answer.poll(cx),
            StageProjection::Unlimited { inner } => inner.poll(cx),
            // The answer first: a request that is done is never turned into a timeout.
            StageProjection::Limited { inner, deadline } => match inner.poll(cx) {
                Poll::Ready(result) => Poll::Ready(result),
                Poll::Pending => deadline.poll(cx).map(|()| {
                    Ok(overload_response(
                        &this.slot.state,
                        ApiError::RequestTimeout,
                    ))
                }),
            },
        };
        if let Poll::Ready(Ok(response)) = &result {
            let state = &this.slot.state;
            state.metrics.record_http(
                *this.route,
                response.status().as_u16(),
                this.started.elapsed(),
            );
        }
        result
    }
}

/// What a shed or timed-out request gets, counted as a drop of the active backend.
fn overload_response(state: &AppState, dropped: ApiError) -> Response {
    state
        .metrics
        .record_drop(state.backend_kind(), dropped.code());
    dropped.into_response()
}
