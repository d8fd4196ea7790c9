//! The reverse proxy: admitted requests on the gateway route forwarded to `upstream`, bodies
//! streamed both ways.
//!
//! # Layout
//!
//! - this module: [`Proxy`], the pooled keep-alive client (hyper-util's) and [`Proxy::forward`].
//! - `headers`: what changes between the client's request and the upstream's (hop-by-hop
//!   headers removed both ways, `X-Forwarded-*` set, `Host` kept or replaced).
//!
//! # Invariants
//!
//! - Bodies are never buffered whole: the request body goes to the upstream as it arrives,
//!   and the response body to the client as the upstream sends it, so memory per request is
//!   bounded by the connections' buffers, whatever the body's size.
//! - A request gets no upstream response only for a reason in [`UpstreamError`], each a JSON
//!   error (502, 504, 413) and counted by rule and reason.
//! - Protocol upgrades (WebSocket) are refused (501), never half-forwarded: the upstream never
//!   sees an upgrade it could accept while the client's connection cannot follow.

mod headers;

use std::time::Duration;

use axum::body::Body;
use axum::http::request::Parts;
use axum::http::uri::{Authority, Scheme};
use axum::http::{Request, Response, Uri, Version, header};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::ProxySettings;
use crate::error::ApiError;
use crate::metrics::UpstreamError;

pub(crate) use headers::Forwarded;

/// Where and how admitted requests are forwarded.
pub(crate) struct Proxy {
    /// What it was built from, so a reload that changes neither keeps its pool.
    built_from: (String, ProxySettings),
    /// Pooled keep-alive connections to the upstream.
    client: Client<HttpConnector, Body>,
    scheme: Scheme,
    authority: Authority,
    preserve_host: bool,
    max_body_bytes: Option<u64>,
    response_header_timeout: Duration,
    /// Add the decision's RateLimit headers to the upstream's responses.
    pub(crate) ratelimit_headers: bool,
}

/// Parses `upstream`: an `http://host:port` URL without path, query or credentials.
pub(crate) fn parse_upstream(upstream: &str) -> Result<(Scheme, Authority), String> {
    let uri: Uri = upstream
        .parse()
        .map_err(|error| format!("`{upstream}` is not a URL: {error}"))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "`{upstream}`: https upstreams are not supported (Turnstile speaks plain HTTP to the application: put it beside the application, or TLS in a sidecar)"
            ));
        }
        Some(other) => {
            return Err(format!(
                "`{upstream}`: the scheme `{other}` is not http; write `http://host:port`"
            ));
        }
        None => {
            return Err(format!(
                "`{upstream}` has no scheme; write `http://host:port`"
            ));
        }
    }
    let authority = uri
        .authority()
        .cloned()
        .ok_or_else(|| format!("`{upstream}` has no host; write `http://host:port`"))?;
    if authority.as_str().contains('@') {
        return Err(format!("`{upstream}` must not carry credentials"));
    }
    if uri.path_and_query().is_some_and(|pq| pq.as_str() != "/") {
        return Err(format!(
            "`{upstream}` has a path or query: requests keep their own path; write `http://host:port`"
        ));
    }
    Ok((Scheme::HTTP, authority))
}

impl Proxy {
    /// A proxy to `upstream` (validated by the configuration already; checked again here).
    pub(crate) fn new(upstream: &str, settings: &ProxySettings) -> Result<Self, String> {
        let (scheme, authority) = parse_upstream(upstream)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(settings.connect_timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_max_idle_per_host(settings.max_idle_connections)
            .pool_idle_timeout(Duration::from_secs(90))
            .build(connector);
        Ok(Self {
            built_from: (upstream.to_owned(), settings.clone()),
            client,
            scheme,
            authority,
            preserve_host: settings.preserve_host,
            max_body_bytes: settings.max_body_bytes,
            response_header_timeout: settings.response_header_timeout,
            ratelimit_headers: settings.ratelimit_headers,
        })
    }

    /// Whether this proxy is what `upstream` and `settings` describe.
    pub(crate) fn serves(&self, upstream: Option<&str>, settings: &ProxySettings) -> bool {
        upstream == Some(self.built_from.0.as_str()) && *settings == self.built_from.1
    }

    /// Refuses what this proxy cannot forward, before anything is decided or sent: an
    /// upgrade, or a body declared over `proxy.max_body_bytes`.
    pub(crate) fn admissible(&self, request: &Parts) -> Result<(), ApiError> {
        if let Some(protocol) = headers::upgrade_asked(&request.headers) {
            return Err(ApiError::UpgradeNotSupported { protocol });
        }
        if let Some(limit) = self.max_body_bytes {
            let declared = request
                .headers
                .get(header::CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit) {
                return Err(ApiError::ProxyBodyTooLarge { limit });
            }
        }
        Ok(())
    }

    /// Forwards `request` and `body` to the upstream; the response's body streams from it.
    pub(crate) async fn forward(
        &self,
        mut request: Parts,
        body: Body,
        forwarded: &Forwarded,
    ) -> Result<Response<Body>, (UpstreamError, ApiError)> {
        let path_and_query = request
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| axum::http::uri::PathAndQuery::from_static("/"));
        let uri = Uri::builder()
            .scheme(self.scheme.clone())
            .authority(self.authority.clone())
            .path_and_query(path_and_query)
            .build()
            .map_err(|_| (UpstreamError::Protocol, ApiError::Internal))?;
        let client_host = headers::client_host(&request);
        headers::to_upstream(&mut request.headers, forwarded, client_host.as_ref());
        if self.preserve_host
            && let Some(host) = client_host
        {
            request.headers.insert(header::HOST, host);
        } else {
            // The client derives it from the URI: the upstream's own authority.
            request.headers.remove(header::HOST);
        }
        request.uri = uri;
        // The upstream is spoken to in HTTP/1.1, whatever the client spoke.
        request.version = Version::HTTP_11;
        let body = match self.max_body_bytes {
            Some(limit) => Body::new(http_body_util::Limited::new(
                body,
                usize::try_from(limit).unwrap_or(usize::MAX),
            )),
            None => body,
        };
        let sent = self.client.request(Request::from_parts(request, body));
        let mut response = match tokio::time::timeout(self.response_header_timeout, sent).await {
            Ok(Ok(response)) => response,
            Ok(Err(error)) => return Err(self.classify(&error)),
            Err(_) => {
                return Err((
                    UpstreamError::Timeout,
                    ApiError::UpstreamTimeout {
                        timeout: self.response_header_timeout,
                    },
                ));
            }
        };
        headers::from_upstream(response.headers_mut());
        Ok(response.map(Body::new))
    }

    fn classify(&self, error: &hyper_util::client::legacy::Error) -> (UpstreamError, ApiError) {
        if error.is_connect() {
            tracing::debug!(%error, "upstream connect failed");
            return (
                UpstreamError::Connect,
                ApiError::UpstreamUnavailable { reason: "connect" },
            );
        }
        let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
        while let Some(cause) = source {
            if cause.is::<http_body_util::LengthLimitError>() {
                return (
                    UpstreamError::BodyTooLarge,
                    ApiError::ProxyBodyTooLarge {
                        limit: self.max_body_bytes.unwrap_or(u64::MAX),
                    },
                );
            }
            source = cause.source();
        }
        tracing::debug!(%error, "upstream exchange failed");
        (
            UpstreamError::Protocol,
            ApiError::UpstreamUnavailable { reason: "protocol" },
        )
    }
}
