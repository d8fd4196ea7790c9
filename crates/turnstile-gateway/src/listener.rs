//! The HTTP listeners' accept loop (the main one and the admin API): every connection served
//! by hyper-util with a header-read timeout, at most a cap of connections open at once, and a
//! graceful drain on shutdown. (The gRPC listener's counterpart is `rls::grpc`'s.)
//!
//! # Why by hand
//!
//! `axum::serve` installs no timer for hyper, so its header-read timeout never fires and an idle
//! or half-sent connection stays open forever, and it has no connection cap: about a thousand
//! slowloris connections exhaust a 1,024-descriptor limit until even `/healthz` cannot connect.
//! This loop is axum's (hyper-util's `auto` builder, `TowerToHyperService`, graceful shutdown)
//! with those two added, and the refusal of an idle connection when the cap is reached.
//!
//! # Invariants
//!
//! - A connection waiting longer than `header_read_timeout` for a request's headers (the first,
//!   or the next on a kept-alive connection) is closed: hyper's timer, which starts when the
//!   connection begins waiting for a request.
//! - At most `max_connections` are open (less, when the descriptor limit is lower; see
//!   [`connection_cap`]). A new connection at the cap closes the one that has been idle longest
//!   (no request in progress) to make room; with none idle, the new one is closed. Both are
//!   counted and logged, and never block the accept loop.
//! - Accepting never spins: an accept error (out of descriptors) is logged and retried after a
//!   pause.
//! - Once `grace_over` is cancelled (the end of `shutdown_grace`), a request whose handler has
//!   not answered is answered 503 `shutting_down` instead, so its client learns to retry
//!   rather than seeing its connection cut. A response already started (a proxied body still
//!   streaming) cannot be replaced: its connection is cut when the server stops waiting.

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::response::Response;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tower::Service;

use crate::error::ApiError;

use crate::metrics::Metrics;

/// Descriptors kept free for everything but client connections (the backend's, Redis's, the
/// upstream's, files, the admin and gRPC listeners).
const RESERVED_DESCRIPTORS: u64 = 64;

/// How long accepting pauses after an error (out of descriptors, usually).
const ACCEPT_ERROR_PAUSE: Duration = Duration::from_millis(50);

/// The connection limits of the main listener.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ConnectionLimits {
    pub(crate) header_read_timeout: Duration,
    pub(crate) max_connections: usize,
}

/// Raises the soft descriptor limit to the hard one (the usual 1,024 soft limit is too low for
/// a server), and gives the connection cap that fits under it: `max_connections`, or fewer
/// when the limit leaves less room (then it says so in the log).
pub(crate) fn connection_cap(max_connections: usize) -> usize {
    let limit = match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => limit,
        Err(error) => {
            tracing::warn!(%error, "cannot raise the open-file limit");
            match rlimit::getrlimit(rlimit::Resource::NOFILE) {
                Ok((soft, _)) => soft,
                Err(_) => return max_connections,
            }
        }
    };
    let room =
        usize::try_from(limit.saturating_sub(RESERVED_DESCRIPTORS).max(1)).unwrap_or(usize::MAX);
    if room < max_connections {
        tracing::warn!(
            max_connections,
            open_file_limit = limit,
            cap = room,
            "max_connections is above what the open-file limit allows: capping connections lower"
        );
    }
    max_connections.min(room)
}

/// What one open connection is doing, for choosing which idle one to close.
struct Activity {
    /// Requests in progress (their handler has not answered yet).
    active: AtomicUsize,
    /// When the last request arrived or was answered, in ms since the listener started.
    last_ms: AtomicU64,
    /// Tells the connection to close once its response in progress (if any) is written.
    close: Notify,
    /// Cancelled when the shutdown grace is over (cloned once per connection, so a request
    /// that waits clones it from here without touching the listener).
    grace_over: CancellationToken,
}

/// The open connections.
#[derive(Default)]
struct Registry {
    connections: Mutex<HashMap<u64, Arc<Activity>>>,
}

impl Registry {
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Activity>>> {
        self.connections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Asks the connection idle longest to close; `false` if none is idle.
    fn close_longest_idle(&self) -> bool {
        let connections = self.lock();
        // Ties (the same millisecond) go to the older connection: ids are given in order.
        let idle = connections
            .iter()
            .filter(|(_, activity)| activity.active.load(Ordering::Relaxed) == 0)
            .min_by_key(|(id, activity)| (activity.last_ms.load(Ordering::Relaxed), **id));
        match idle {
            Some((_, activity)) => {
                activity.close.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Serves `service` on `listener` until `stopping` is cancelled, then closes the listener and
/// waits for the open connections to finish their requests (the caller bounds that wait, and
/// cancels `grace_over` when it ends: requests still unanswered are then answered 503).
/// `metrics` is the main listener's (its connection gauge and shed counter); `None` for the
/// admin API, whose refusals are logged only.
pub(crate) async fn serve<S>(
    listener: TcpListener,
    service: S,
    limits: ConnectionLimits,
    metrics: Option<Arc<Metrics>>,
    stopping: CancellationToken,
    grace_over: CancellationToken,
) where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let started = Instant::now();
    let registry = Arc::new(Registry::default());
    // Every connection task holds a receiver: the drain ends when the last one is dropped.
    let (drained_tx, drained_rx) = tokio::sync::watch::channel(());
    let mut next_id = 0_u64;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = stopping.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed; pausing");
                tokio::time::sleep(ACCEPT_ERROR_PAUSE).await;
                continue;
            }
        };
        if limits.max_connections > 0 && registry.len() >= limits.max_connections {
            if registry.close_longest_idle() {
                if let Some(metrics) = &metrics {
                    metrics.record_connection_shed("closed_idle");
                }
                tracing::debug!("at max_connections: closing the connection idle longest");
            } else {
                if let Some(metrics) = &metrics {
                    metrics.record_connection_shed("refused");
                }
                tracing::warn!(%peer, "at max_connections with none idle: connection refused");
                drop(stream);
                continue;
            }
        }
        let _ = stream.set_nodelay(true);
        let id = next_id;
        next_id += 1;
        let activity = Arc::new(Activity {
            active: AtomicUsize::new(0),
            last_ms: AtomicU64::new(elapsed_ms(started)),
            close: Notify::new(),
            grace_over: grace_over.clone(),
        });
        registry.lock().insert(id, Arc::clone(&activity));
        if let Some(metrics) = &metrics {
            metrics.set_open_connections(registry.len());
        }
        let tracked = Tracked {
            inner: service.clone(),
            peer,
            activity: Arc::clone(&activity),
            started,
        };
        let registry = Arc::clone(&registry);
        let metrics = metrics.clone();
        let stopping = stopping.clone();
        let drained = drained_rx.clone();
        tokio::spawn(async move {
            let mut builder = Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout);
            builder.http2().timer(TokioTimer::new());
            let mut connection = std::pin::pin!(builder.serve_connection_with_upgrades(
                TokioIo::new(stream),
                TowerToHyperService::new(tracked)
            ));
            let mut closing = false;
            loop {
                tokio::select! {
                    result = connection.as_mut() => {
                        if let Err(error) = result {
                            tracing::trace!(%error, "connection ended with an error");
                        }
                        break;
                    }
                    // Closing finishes the response in progress, if any, then closes.
                    () = activity.close.notified(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                    () = stopping.cancelled(), if !closing => {
                        closing = true;
                        connection.as_mut().graceful_shutdown();
                    }
                }
            }
            registry.lock().remove(&id);
            if let Some(metrics) = &metrics {
                metrics.set_open_connections(registry.len());
            }
            drop(drained);
        });
    }
    drop(listener);
    drop(drained_rx);
    drained_tx.closed().await;
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The service for one connection: the peer's address as `ConnectInfo`, and the
/// connection's activity kept for [`Registry::close_longest_idle`].
#[derive(Clone)]
struct Tracked<S> {
    inner: S,
    peer: SocketAddr,
    activity: Arc<Activity>,
    started: Instant,
}

impl<S> Service<axum::http::Request<Incoming>> for Tracked<S>
where
    S: Service<axum::extract::Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = TrackedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: axum::http::Request<Incoming>) -> Self::Future {
        let mut request = request.map(Body::new);
        request.extensions_mut().insert(ConnectInfo(self.peer));
        self.activity.active.fetch_add(1, Ordering::Relaxed);
        self.activity
            .last_ms
            .store(elapsed_ms(self.started), Ordering::Relaxed);
        TrackedFuture {
            inner: self.inner.call(request),
            grace_over: None,
            done: Done {
                activity: Arc::clone(&self.activity),
                started: self.started,
            },
        }
    }
}

/// Marks the request done when its answer is ready, or when it is dropped unanswered.
struct Done {
    activity: Arc<Activity>,
    started: Instant,
}

impl Drop for Done {
    fn drop(&mut self) {
        self.activity
            .last_ms
            .store(elapsed_ms(self.started), Ordering::Relaxed);
        self.activity.active.fetch_sub(1, Ordering::Relaxed);
    }
}

pin_project_lite::pin_project! {
    /// The answer to one request of a tracked connection.
    struct TrackedFuture<F> {
        #[pin]
        inner: F,
        // Set the first time `inner` is pending: a request answered at its first poll (most,
        // on the in-process backends) never touches the token.
        #[pin]
        grace_over: Option<WaitForCancellationFutureOwned>,
        done: Done,
    }
}

impl<F> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(answer) = this.inner.poll(cx) {
            return Poll::Ready(answer);
        }
        if this.grace_over.is_none() {
            let grace_over = this.done.activity.grace_over.clone().cancelled_owned();
            this.grace_over.set(Some(grace_over));
        }
        match this.grace_over.as_pin_mut().map(|grace| grace.poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(Ok(axum::response::IntoResponse::into_response(
                ApiError::ShuttingDown,
            ))),
            _ => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn activity(active: usize, last_ms: u64) -> Arc<Activity> {
        Arc::new(Activity {
            active: AtomicUsize::new(active),
            last_ms: AtomicU64::new(last_ms),
            close: Notify::new(),
            grace_over: CancellationToken::new(),
        })
    }

    #[tokio::test]
    async fn the_longest_idle_connection_is_closed_and_busy_ones_never_are() {
        let registry = Registry::default();
        let busy_oldest = activity(1, 0);
        let idle_old = activity(0, 10);
        // Idle as long, but opened later: the tie goes to the older one.
        let idle_new = activity(0, 10);
        for (id, activity) in [&busy_oldest, &idle_old, &idle_new].into_iter().enumerate() {
            registry.lock().insert(id as u64, Arc::clone(activity));
        }
        assert!(registry.close_longest_idle());
        // The notice is stored for the one chosen: it would close at once.
        tokio::time::timeout(Duration::from_secs(5), idle_old.close.notified())
            .await
            .expect("the longest idle was told to close");
        registry.lock().remove(&1);
        registry.lock().remove(&2);
        assert!(
            !registry.close_longest_idle(),
            "a busy connection is never chosen"
        );
    }
}
