//! One HTTP/1.1 keep-alive connection, and what an answer means.
//!
//! Built on hyper's connection-level client rather than a pooled client: one task owns one
//! connection and sends one request at a time on it, which is exactly the load model, and
//! costs the least per request (the generator must not be the bottleneck).

use std::net::SocketAddr;

use bytes::Bytes;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::Code;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_client::RateLimitServiceClient;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint};
use turnstile_gateway::api::rls::unavailable_reason;
use turnstile_gateway::api::{DROPPED_HEADER, markers};

/// What one request came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Admitted by the limiter.
    Allowed,
    /// Denied by the limiter (a decision).
    Limited,
    /// The gateway dropped the check and said why (fail-open admits and fail-closed 503s).
    Dropped(String),
    /// Any other answer: `4xx`/`5xx` by status.
    Error(StatusCode),
    /// The connection failed (refused, reset, closed mid-request).
    ConnectionError,
}

/// A connection to the target, re-established after any failure.
pub struct Connection {
    address: SocketAddr,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection to `address`, opened on first use.
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            sender: None,
        }
    }

    /// Forgets the current connection (after a timeout its answer may still arrive on it).
    pub fn reset(&mut self) {
        self.sender = None;
    }

    /// The live connection, opening one if needed; `None` if the target cannot be reached.
    async fn sender(&mut self) -> Option<&mut SendRequest<Full<Bytes>>> {
        if self.sender.as_ref().is_none_or(|sender| sender.is_closed()) {
            self.sender = None;
            let stream = TcpStream::connect(self.address).await.ok()?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = http1::handshake(TokioIo::new(stream)).await.ok()?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut()
    }

    /// Sends `request` and gives the status and body as they are (for the admin API, whose
    /// answers are read, not classified); `None` if the target could not be reached or the
    /// connection failed mid-answer.
    pub async fn fetch(&mut self, request: Request<Full<Bytes>>) -> Option<(StatusCode, Bytes)> {
        let sender = self.sender().await?;
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>((status, body))
        };
        match answer.await {
            Ok(answer) => Some(answer),
            Err(_) => {
                self.sender = None;
                None
            }
        }
    }

    /// Sends `request` and reads the whole answer.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Outcome {
        let Some(sender) = self.sender().await else {
            return Outcome::ConnectionError;
        };
        let answer = async {
            sender.ready().await?;
            let response = sender.send_request(request).await?;
            let status = response.status();
            let dropped_header = response
                .headers()
                .get(&DROPPED_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let body = response.into_body().collect().await?.to_bytes();
            Ok::<_, hyper::Error>(classify(status, dropped_header, &body))
        };
        match answer.await {
            Ok(outcome) => outcome,
            Err(_) => {
                self.sender = None;
                Outcome::ConnectionError
            }
        }
    }
}

/// A gRPC connection to the rate limit service (one HTTP/2 connection, one call at a time on
/// it, like [`Connection`]), re-established after any failure.
pub struct RlsConnection {
    address: SocketAddr,
    client: Option<RateLimitServiceClient<Channel>>,
}

impl RlsConnection {
    /// A connection to `address`, opened on first use.
    pub fn new(address: SocketAddr) -> Self {
        Self {
            address,
            client: None,
        }
    }

    /// Forgets the current connection.
    pub fn reset(&mut self) {
        self.client = None;
    }

    /// Calls `ShouldRateLimit`: OK is allowed, OVER_LIMIT limited, `UNAVAILABLE` a drop.
    pub async fn send(&mut self, request: RateLimitRequest) -> Outcome {
        if self.client.is_none() {
            let Ok(endpoint) = Endpoint::from_shared(format!("http://{}", self.address)) else {
                return Outcome::ConnectionError;
            };
            match endpoint.tcp_nodelay(true).connect().await {
                Ok(channel) => self.client = Some(RateLimitServiceClient::new(channel)),
                Err(_) => return Outcome::ConnectionError,
            }
        }
        let Some(client) = self.client.as_mut() else {
            return Outcome::ConnectionError;
        };
        match client.should_rate_limit(request).await {
            Ok(response) if response.get_ref().overall_code == Code::OverLimit as i32 => {
                Outcome::Limited
            }
            Ok(_) => Outcome::Allowed,
            Err(status) => match status.code() {
                tonic::Code::Unavailable if unavailable_reason(status.message()).is_some() => {
                    Outcome::Dropped(
                        unavailable_reason(status.message())
                            .unwrap_or_default()
                            .to_owned(),
                    )
                }
                tonic::Code::InvalidArgument => Outcome::Error(StatusCode::BAD_REQUEST),
                tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                    self.client = None;
                    Outcome::ConnectionError
                }
                _ => Outcome::Error(StatusCode::INTERNAL_SERVER_ERROR),
            },
        }
    }
}

/// Reads the gateway's answer: `/v1/check` JSON, or the demo route's status and headers.
pub fn classify(status: StatusCode, dropped_header: Option<String>, body: &[u8]) -> Outcome {
    if let Some(reason) = dropped_header {
        return Outcome::Dropped(reason);
    }
    match status {
        StatusCode::OK => {
            if let Some(reason) = json_string_field(body, markers::DROPPED_PREFIX) {
                Outcome::Dropped(reason)
            } else if contains(body, markers::DENIED) {
                Outcome::Limited
            } else {
                Outcome::Allowed
            }
        }
        StatusCode::TOO_MANY_REQUESTS | StatusCode::FORBIDDEN => Outcome::Limited,
        StatusCode::SERVICE_UNAVAILABLE => match json_string_field(body, markers::ERROR_PREFIX) {
            Some(reason) => Outcome::Dropped(reason),
            None => Outcome::Error(status),
        },
        other => Outcome::Error(other),
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

/// The string after `prefix` up to the next quote: enough for the gateway's own flat JSON,
/// and far cheaper per answer than parsing it.
fn json_string_field(body: &[u8], prefix: &[u8]) -> Option<String> {
    let start = body.windows(prefix.len()).position(|w| w == prefix)? + prefix.len();
    let end = body[start..].iter().position(|b| *b == b'"')? + start;
    Some(String::from_utf8_lossy(&body[start..end]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified_by_route_and_failure_mode() {
        let ok = StatusCode::OK;
        assert_eq!(
            classify(ok, None, br#"{"allowed":true,"limit":1}"#),
            Outcome::Allowed
        );
        assert_eq!(
            classify(ok, None, br#"{"allowed":false,"limit":1}"#),
            Outcome::Limited
        );
        assert_eq!(
            classify(ok, None, br#"{"allowed":true,"dropped":"crashed"}"#),
            Outcome::Dropped("crashed".into())
        );
        assert_eq!(classify(ok, None, b"ok\n"), Outcome::Allowed);
        assert_eq!(
            classify(ok, Some("timeout".into()), b""),
            Outcome::Dropped("timeout".into())
        );
        assert_eq!(
            classify(StatusCode::TOO_MANY_REQUESTS, None, b"{}"),
            Outcome::Limited
        );
        assert_eq!(
            classify(
                StatusCode::SERVICE_UNAVAILABLE,
                None,
                br#"{"error":"shed","message":"x"}"#
            ),
            Outcome::Dropped("shed".into())
        );
        assert_eq!(
            classify(
                StatusCode::UNPROCESSABLE_ENTITY,
                None,
                br#"{"error":"key_too_long"}"#
            ),
            Outcome::Error(StatusCode::UNPROCESSABLE_ENTITY)
        );
    }
}
