//! `serve-trivial`: the baselines the benchmarks measure the gateway against.
//!
//! - A bare axum route (`GET /` → 200 `ok`): what an HTTP server costs with no limiter.
//! - With `--mirror <url>`, a route that answers every request with the bytes one answer of
//!   `<url>` had (status, headers but `date` and `content-length`, body), captured once at
//!   start: pointed at a gateway's denied route, it is the physical limit of that route, the
//!   same response written with no decision behind it.

use std::net::SocketAddr;

use anyhow::{Context, bail};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};

/// The most requests sent to `--mirror`'s URL while looking for an answer of the wanted status.
const MAX_CAPTURE_ATTEMPTS: usize = 100;

/// One answer, replayed to every request.
#[derive(Debug, Clone)]
pub struct Captured {
    status: StatusCode,
    headers: HeaderMap,
    body: Bytes,
}

impl IntoResponse for Captured {
    fn into_response(self) -> Response {
        (self.status, self.headers, self.body).into_response()
    }
}

/// Sends `GET url` on one connection until the answer's status is `wanted` (a limiter
/// denies once its burst is spent), and keeps that answer.
pub async fn capture(url: &str, wanted: StatusCode) -> anyhow::Result<Captured> {
    let uri: hyper::Uri = url.parse().with_context(|| format!("--mirror {url}"))?;
    let authority = uri
        .authority()
        .with_context(|| format!("--mirror {url}: no host:port"))?
        .clone();
    let address: SocketAddr = tokio::net::lookup_host(authority.as_str())
        .await?
        .next()
        .with_context(|| format!("--mirror {url}: {authority} does not resolve"))?;
    let stream = TcpStream::connect(address)
        .await
        .with_context(|| format!("--mirror {url}: cannot connect"))?;
    let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
    let connection = tokio::spawn(connection);
    let mut seen = Vec::new();
    for _ in 0..MAX_CAPTURE_ATTEMPTS {
        let request = Request::get(uri.path_and_query().map_or("/", |p| p.as_str()))
            .header(header::HOST, authority.as_str())
            .body(Empty::<Bytes>::new())?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let (mut parts, body) = response.into_parts();
        let body = body.collect().await?.to_bytes();
        if status == wanted {
            connection.abort();
            // Written afresh by the server for every response.
            parts.headers.remove(header::DATE);
            parts.headers.remove(header::CONTENT_LENGTH);
            return Ok(Captured {
                status,
                headers: parts.headers,
                body,
            });
        }
        seen.push(status);
    }
    connection.abort();
    bail!("--mirror {url}: no {wanted} answer in {MAX_CAPTURE_ATTEMPTS} requests (saw {seen:?})")
}

/// Serves the bare route, or `mirror`'s answer, on `listener` until the process ends.
pub async fn serve(listener: TcpListener, mirror: Option<Captured>) -> std::io::Result<()> {
    let app = match mirror {
        Some(captured) => {
            axum::Router::new().fallback(move || std::future::ready(captured.clone()))
        }
        None => axum::Router::new().route("/", axum::routing::get(|| async { "ok" })),
    };
    axum::serve(listener, app).await
}
