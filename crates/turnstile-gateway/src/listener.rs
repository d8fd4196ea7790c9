//! The HTTP listeners' accept loop (the main one and the admin API): every connection served
//! by hyper-util, closed when idle past a header-read timeout, at most a cap of connections open at once, and a
//! graceful drain on shutdown. (The gRPC listener's counterpart is `rls::grpc`'s.)
//!
//! # Why by hand
//!
//! `axum::serve` installs no timer for hyper, so its header-read timeout never fires and an idle
//! or half-sent connection stays open forever, and it has no connection cap: about a thousand
//! slowloris connections exhaust a 1,024-descriptor limit until even `/healthz` cannot connect.
//! This loop is axum's (hyper-util's `auto` builder, `TowerToHyperService`, graceful shutdown)
//! with those two added, and the refusal of an idle connection when the cap is reached.
//! hyper's own header-read timer is not used: it arms a tokio timer for every request on a
//! kept-alive connection, 0.6-0.8 µs of CPU per request measured by wrk; one sweep task per
//! listener ([`expire_idle`]) closes the connections idle too long instead.
//!
//! # Invariants
//!
//! - A connection with no request in progress for longer than `header_read_timeout` (waiting
//!   for its first request's headers, for the rest of a half-sent head, or idle between
//!   kept-alive requests) is closed. A request is in progress from its head until the last
//!   byte of its response body is written, so a long streaming response is never cut.
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

/// The shortest period of the idle-connection sweep (for very short header-read timeouts).
const EXPIRY_MIN_PERIOD: Duration = Duration::from_millis(10);

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
    /// Requests in progress: from the call of the service until their response body is
    /// written (or dropped).
    active: AtomicUsize,
    /// When the connection opened or its last response ended, in ms since the listener
    /// started.
    last_ms: AtomicU64,
    /// Tells the connection to close once its response in progress (if any) is written.
    close: Notify,
    /// Tells the connection to close at once: idle past `header_read_timeout`.
    expire: Notify,
    /// Cancelled when the shutdown grace is over (cloned once per connection, so a request
    /// that waits clones it from here without touching the listener).
    grace_over: CancellationToken,
}

impl Activity {
    /// When the connection last had a request in progress (its opening or its last response's
    /// end, ms since the listener started); `None` while one is.
    fn idle_since(&self) -> Option<u64> {
        // Acquire pairs with `Done`'s Release: seeing no request in progress, this sees the
        // time its last one ended.
        (self.active.load(Ordering::Acquire) == 0).then(|| self.last_ms.load(Ordering::Relaxed))
    }
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
            .filter_map(|(id, activity)| Some((activity.idle_since()?, *id, activity)))
            .min_by_key(|(since, id, _)| (*since, *id));
        match idle {
            Some((_, _, activity)) => {
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
    let expiry = tokio::spawn(expire_idle(
        Arc::clone(&registry),
        limits.header_read_timeout,
        started,
    ));
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
            expire: Notify::new(),
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
            // No hyper header-read timer: it arms a timer for every request on a kept-alive
            // connection (0.6-0.8 µs of CPU per request by wrk, docs/BENCHMARKS.md);
            // `expire_idle` does the same job with one task for every connection.
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(None);
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
                    // Idle past the header-read timeout: nothing in progress to finish.
                    () = activity.expire.notified() => break,
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
    expiry.abort();
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
        TrackedFuture {
            inner: self.inner.call(request),
            grace_over: None,
            done: Some(Done {
                activity: Arc::clone(&self.activity),
                started: self.started,
            }),
        }
    }
}

/// Marks the request done when its response body has been written (the body holds it), or
/// when it is dropped unanswered.
struct Done {
    activity: Arc<Activity>,
    started: Instant,
}

impl Drop for Done {
    fn drop(&mut self) {
        // The time first: a sweep that sees no request in progress sees this one's end.
        self.activity
            .last_ms
            .store(elapsed_ms(self.started), Ordering::Relaxed);
        self.activity.active.fetch_sub(1, Ordering::Release);
    }
}

/// A response body that keeps its request in progress until it is written or dropped.
struct TrackedBody {
    inner: Body,
    _done: Option<Done>,
}

impl hyper::body::Body for TrackedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// `response` with its body holding `done`.
fn tracked(response: Response, done: Option<Done>) -> Response {
    response.map(|inner| Body::new(TrackedBody { inner, _done: done }))
}

/// Closes the connections idle past `timeout`: checked every quarter of it, so one is closed
/// between `timeout` and 1.25 × `timeout` after its last response (or its opening).
async fn expire_idle(registry: Arc<Registry>, timeout: Duration, started: Instant) {
    let timeout_ms = u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX);
    let mut ticks = tokio::time::interval((timeout / 4).max(EXPIRY_MIN_PERIOD));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let now_ms = elapsed_ms(started);
        for activity in registry.lock().values() {
            let expired = activity
                .idle_since()
                .is_some_and(|since| now_ms.saturating_sub(since) >= timeout_ms);
            if expired {
                activity.expire.notify_one();
            }
        }
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
        // Handed to the response body when the answer is ready.
        done: Option<Done>,
    }
}

impl<F> Future for TrackedFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        if let Poll::Ready(Ok(response)) = this.inner.poll(cx) {
            return Poll::Ready(Ok(tracked(response, this.done.take())));
        }
        if this.grace_over.is_none() {
            let Some(done) = this.done.as_ref() else {
                return Poll::Pending;
            };
            let grace_over = done.activity.grace_over.clone().cancelled_owned();
            this.grace_over.set(Some(grace_over));
        }
        match this.grace_over.as_pin_mut().map(|grace| grace.poll(cx)) {
            Some(Poll::Ready(())) => {
                let response = axum::response::IntoResponse::into_response(ApiError::ShuttingDown);
                Poll::Ready(Ok(tracked(response, this.done.take())))
            }
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
            expire: Notify::new(),
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_response_streaming_past_the_header_read_timeout_is_not_cut_while_idle_ones_are() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Eight chunks 100 ms apart: the response takes four times the header-read timeout.
        let app = axum::Router::new().route(
            "/stream",
            axum::routing::get(|| async {
                let chunks = futures_util::stream::unfold(0_u8, |sent| async move {
                    if sent == 8 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    Some((Ok::<_, std::io::Error>(vec![b'x'; 1000]), sent + 1))
                });
                Body::from_stream(chunks)
            }),
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let stopping = CancellationToken::new();
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_millis(200),
            max_connections: 16,
        };
        let server = tokio::spawn(serve(
            listener,
            app,
            limits,
            None,
            stopping.clone(),
            CancellationToken::new(),
        ));
        let mut idle = tokio::net::TcpStream::connect(address).await.unwrap();
        let mut streaming = tokio::net::TcpStream::connect(address).await.unwrap();
        streaming
            .write_all(b"GET /stream HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(Duration::from_secs(20), streaming.read_to_end(&mut answer))
            .await
            .expect("the stream ends")
            .unwrap();
        let text = String::from_utf8_lossy(&answer);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert_eq!(text.matches('x').count(), 8000, "the body was cut short");
        // Meanwhile the connection that never sent anything was closed.
        let mut byte = [0_u8; 1];
        let closed = tokio::time::timeout(Duration::from_secs(20), idle.read(&mut byte))
            .await
            .expect("closed, not left open");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
        stopping.cancel();
        server.await.unwrap();
    }
}
