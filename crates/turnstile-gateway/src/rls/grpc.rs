//! The gRPC transport on `rls.listen`: `envoy.service.ratelimit.v3.RateLimitService` (the
//! messages and service trait from `envoy-types`, over tonic) and `grpc.health.v1.Health`,
//! which reports SERVING while the backend can decide.

use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::HeaderValue;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::rate_limit::Unit as ProtoUnit;
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_response::{
    Code, DescriptorStatus, RateLimit,
};
use envoy_types::pb::envoy::service::ratelimit::v3::rate_limit_service_server::{
    RateLimitService, RateLimitServiceServer,
};
use envoy_types::pb::envoy::service::ratelimit::v3::{RateLimitRequest, RateLimitResponse};
use envoy_types::pb::google::protobuf::Duration as ProtoDuration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tonic_health::ServingStatus;
use turnstile_rules::Unit;

use crate::api::rls::GRPC_SERVICE;
use crate::metrics::{RlsCode, Transport};
use crate::rls::{Answer, Descriptors, RlsError, should_rate_limit};
use crate::state::AppState;

type EntryPairs<'e> =
    std::iter::Map<std::slice::Iter<'e, Entry>, fn(&'e Entry) -> (&'e str, &'e str)>;

fn pair(entry: &Entry) -> (&str, &str) {
    (&entry.key, &entry.value)
}

impl Descriptors for RateLimitRequest {
    type Entries<'e> = EntryPairs<'e>;

    fn domain(&self) -> &str {
        &self.domain
    }

    fn len(&self) -> usize {
        self.descriptors.len()
    }

    fn entries(&self, descriptor: usize) -> Self::Entries<'_> {
        let entries: &[Entry] = self
            .descriptors
            .get(descriptor)
            .map_or(&[], |descriptor| &descriptor.entries);
        entries.iter().map(pair as fn(_) -> _)
    }

    fn descriptor_hits(&self, descriptor: usize) -> Option<u64> {
        Some(self.descriptors.get(descriptor)?.hits_addend?.value)
    }

    fn has_limit_override(&self, descriptor: usize) -> bool {
        self.descriptors
            .get(descriptor)
            .is_some_and(|descriptor| descriptor.limit.is_some())
    }

    fn has_negative_hits(&self, descriptor: usize) -> bool {
        self.descriptors
            .get(descriptor)
            .is_some_and(|descriptor| descriptor.is_negative_hits)
    }

    fn hits_addend(&self) -> u64 {
        u64::from(self.hits_addend)
    }
}

/// The `RateLimitService` implementation.
pub(crate) struct RlsService {
    state: Arc<AppState>,
}

#[tonic::async_trait]
impl RateLimitService for RlsService {
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let started = Instant::now();
        let request = request.into_inner();
        let result = should_rate_limit(&self.state, &request).await;
        let code = match &result {
            Ok(answer) if answer.over_limit => RlsCode::OverLimit,
            Ok(_) => RlsCode::Ok,
            Err(RlsError::Invalid { .. }) => RlsCode::InvalidArgument,
            Err(RlsError::Unavailable(_)) => RlsCode::Unavailable,
        };
        self.state
            .metrics
            .record_rls(Transport::Grpc, code, started.elapsed());
        match result {
            Ok(answer) => Ok(tonic::Response::new(response_proto(answer))),
            Err(error @ RlsError::Invalid { .. }) => {
                Err(tonic::Status::invalid_argument(error.to_string()))
            }
            Err(error @ RlsError::Unavailable(_)) => {
                Err(tonic::Status::unavailable(error.to_string()))
            }
        }
    }
}

fn proto_unit(unit: Unit) -> ProtoUnit {
    match unit {
        Unit::Second => ProtoUnit::Second,
        Unit::Minute => ProtoUnit::Minute,
        Unit::Hour => ProtoUnit::Hour,
        Unit::Day => ProtoUnit::Day,
        Unit::Week => ProtoUnit::Week,
        Unit::Month => ProtoUnit::Month,
        Unit::Year => ProtoUnit::Year,
    }
}

fn proto_duration(duration: Duration) -> ProtoDuration {
    ProtoDuration {
        seconds: i64::try_from(duration.as_secs()).unwrap_or(i64::MAX),
        // Below 10^9, so it fits.
        nanos: i32::try_from(duration.subsec_nanos()).unwrap_or(0),
    }
}

fn proto_code(over_limit: bool) -> i32 {
    if over_limit {
        Code::OverLimit as i32
    } else {
        Code::Ok as i32
    }
}

/// The proto of an [`Answer`].
fn response_proto(answer: Answer) -> RateLimitResponse {
    RateLimitResponse {
        overall_code: proto_code(answer.over_limit),
        statuses: answer
            .statuses
            .into_iter()
            .map(|status| DescriptorStatus {
                code: proto_code(status.over_limit),
                current_limit: status
                    .limit
                    .map(|(requests_per_unit, unit, name)| RateLimit {
                        name,
                        requests_per_unit,
                        unit: proto_unit(unit) as i32,
                    }),
                limit_remaining: status.remaining,
                duration_until_reset: status.reset_after.map(proto_duration),
                quota: None,
            })
            .collect(),
        response_headers_to_add: answer
            .headers
            .iter()
            .filter_map(|(name, value)| {
                Some(HeaderValue {
                    key: name.as_str().to_owned(),
                    value: value.to_str().ok()?.to_owned(),
                    ..HeaderValue::default()
                })
            })
            .collect(),
        ..RateLimitResponse::default()
    }
}

/// How often the health service re-reads the backend's readiness.
const HEALTH_POLL: Duration = Duration::from_millis(500);

/// How often an HTTP/2 ping checks a quiet gRPC connection is still there.
const GRPC_KEEPALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long the ping's answer may take before the connection is closed.
const GRPC_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves the rate limit and health services on `listener` until `stopping` is cancelled.
pub(crate) async fn serve(
    listener: TcpListener,
    state: Arc<AppState>,
    limits: crate::listener::ConnectionLimits,
    stopping: CancellationToken,
) -> Result<(), tonic::transport::Error> {
    let (reporter, health) = tonic_health::server::health_reporter();
    let watch = {
        let state = Arc::clone(&state);
        let stopping = stopping.clone();
        async move {
            let mut last = None;
            loop {
                let status = if state.backend().is_ready() {
                    ServingStatus::Serving
                } else {
                    ServingStatus::NotServing
                };
                if last != Some(status) {
                    reporter.set_service_status("", status).await;
                    reporter.set_service_status(GRPC_SERVICE, status).await;
                    last = Some(status);
                }
                tokio::select! {
                    () = stopping.cancelled() => break,
                    () = tokio::time::sleep(HEALTH_POLL) => {}
                }
            }
        }
    };
    tokio::spawn(watch);
    // Small answers, one per call: sent at once, not held back by Nagle's algorithm.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let incoming = super::incoming::Bounded::new(
        incoming,
        limits.max_connections,
        limits.header_read_timeout,
        Arc::clone(&state.metrics),
    );
    tonic::transport::Server::builder()
        // As the HTTP routes are: no call outlives `request_timeout` (answered DEADLINE_EXCEEDED).
        .timeout(state.request_timeout)
        // Idle connections are Envoy's normal; dead ones (a peer gone without a FIN) are found
        // by HTTP/2 pings and closed.
        .http2_keepalive_interval(Some(GRPC_KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(GRPC_KEEPALIVE_TIMEOUT))
        .add_service(health)
        .add_service(RateLimitServiceServer::new(RlsService { state }))
        .serve_with_incoming_shutdown(incoming, stopping.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use tonic::server::NamedService;

    use super::*;

    #[test]
    fn the_advertised_service_name_is_the_generated_servers() {
        assert_eq!(
            <RateLimitServiceServer<RlsService> as NamedService>::NAME,
            GRPC_SERVICE
        );
    }
}
