//! The gRPC listener's connections, bounded as the HTTP listeners' are: at most a cap open at
//! once (a new one beyond it is refused and counted), and a connection that sends nothing
//! within `header_read_timeout` of being accepted is closed.
//!
//! # Why by hand
//!
//! tonic serves any stream of connections but bounds neither their number nor how long one
//! may sit silent before the HTTP/2 preface (hyper's HTTP/2 server has no header-read timer,
//! and keep-alive pings start only after the handshake), so a few thousand silent sockets
//! would use up the descriptors Envoy's connections need. Connections already talking are
//! left alone: Envoy keeps its gRPC connections open and idle between calls, by design, and
//! tonic's HTTP/2 keep-alive finds the dead ones.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tonic::transport::server::{Connected, TcpConnectInfo, TcpIncoming};

use crate::metrics::Metrics;

/// The accepted connections of a [`TcpIncoming`], each counted while open.
pub(crate) struct Bounded {
    incoming: TcpIncoming,
    open: Arc<AtomicUsize>,
    cap: usize,
    first_byte_timeout: Duration,
    metrics: Arc<Metrics>,
}

impl Bounded {
    pub(crate) fn new(
        incoming: TcpIncoming,
        cap: usize,
        first_byte_timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            incoming,
            open: Arc::new(AtomicUsize::new(0)),
            cap,
            first_byte_timeout,
            metrics,
        }
    }
}

impl Stream for Bounded {
    type Item = io::Result<Counted>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        loop {
            let Some(accepted) = ready!(Pin::new(&mut self.incoming).poll_next(cx)) else {
                return Poll::Ready(None);
            };
            let stream = match accepted {
                Ok(stream) => stream,
                Err(error) => return Poll::Ready(Some(Err(error))),
            };
            if self.open.load(Ordering::Relaxed) >= self.cap {
                self.metrics.record_grpc_connection_refused();
                tracing::warn!("rate limit service at its connection cap: connection refused");
                drop(stream);
                continue;
            }
            self.open.fetch_add(1, Ordering::Relaxed);
            return Poll::Ready(Some(Ok(Counted {
                stream,
                open: Arc::clone(&self.open),
                silent_until: Some(Box::pin(tokio::time::sleep(self.first_byte_timeout))),
            })));
        }
    }
}

/// One accepted connection: counted until dropped, closed if silent for too long at first.
pub(crate) struct Counted {
    stream: TcpStream,
    open: Arc<AtomicUsize>,
    /// Until the first byte arrives: the deadline for it.
    silent_until: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Connected for Counted {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.stream.connect_info()
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.silent_until = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
            Poll::Pending => {
                let silent_too_long = this
                    .silent_until
                    .as_mut()
                    .is_some_and(|deadline| deadline.as_mut().poll(cx).is_ready());
                if silent_too_long {
                    Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "nothing sent after connecting",
                    )))
                } else {
                    Poll::Pending
                }
            }
        }
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}
