//! Turns a scenario's traffic description into requests.

use bytes::Bytes;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::RateLimitDescriptor;
use envoy_types::pb::envoy::extensions::common::ratelimit::v3::rate_limit_descriptor::Entry;
use envoy_types::pb::envoy::service::ratelimit::v3::RateLimitRequest;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{CONTENT_TYPE, HOST, HeaderValue};
use rand::Rng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand::rngs::SmallRng;
use rand_distr::Zipf;
use turnstile_gateway::api::{CheckRequest, Route as GatewayRoute};

use crate::scenario::{KeyDistribution, RlsTraffic, Route, Traffic};

/// One request of either transport.
pub enum Built {
    /// An HTTP/1.1 request.
    Http(Request<Full<Bytes>>),
    /// A `ShouldRateLimit` call.
    Rls(RateLimitRequest),
}

/// Builds the requests of one scenario. Shared by every connection; each brings its own RNG.
pub struct RequestFactory {
    route: Route,
    host: HeaderValue,
    keep_alive: bool,
    keys: Keys,
    policies: Vec<String>,
    policy_index: WeightedIndex<u32>,
    costs: Vec<u32>,
    cost_index: WeightedIndex<u32>,
    rls: RlsTraffic,
}

enum Keys {
    Uniform(u64),
    Zipf(Zipf<f64>),
    Hot,
}

/// The traffic description cannot be sampled.
#[derive(Debug, thiserror::Error)]
#[error("invalid traffic: {0}")]
pub struct TrafficError(String);

impl RequestFactory {
    /// Prepares the samplers for `traffic`, addressing requests to `host`; without keep-alive
    /// every request asks the server to close the connection.
    pub fn new(traffic: &Traffic, host: &str, keep_alive: bool) -> Result<Self, TrafficError> {
        let keys = match traffic.keys {
            KeyDistribution::Uniform { count } => Keys::Uniform(count.max(1)),
            KeyDistribution::Zipf { count, exponent } => Keys::Zipf(
                Zipf::new(count.max(1) as f64, exponent)
                    .map_err(|e| TrafficError(e.to_string()))?,
            ),
            KeyDistribution::Hot => Keys::Hot,
        };
        let weights = |weights: Vec<u32>| {
            WeightedIndex::new(weights).map_err(|e| TrafficError(e.to_string()))
        };
        Ok(Self {
            route: traffic.route,
            host: HeaderValue::from_str(host).map_err(|e| TrafficError(e.to_string()))?,
            keep_alive,
            keys,
            policies: traffic.policies.iter().map(|p| p.value.clone()).collect(),
            policy_index: weights(traffic.policies.iter().map(|p| p.weight).collect())?,
            costs: traffic.costs.iter().map(|c| c.value).collect(),
            cost_index: weights(traffic.costs.iter().map(|c| c.weight).collect())?,
            rls: traffic.rls.clone(),
        })
    }

    fn rank(&self, rng: &mut SmallRng) -> u64 {
        match &self.keys {
            Keys::Uniform(count) => rng.random_range(0..*count),
            // Zipf samples ranks from 1; rank 1 is the hottest key.
            Keys::Zipf(zipf) => zipf.sample(rng) as u64 - 1,
            Keys::Hot => 0,
        }
    }

    /// The next request, of the scenario's route.
    pub fn build_any(&self, rng: &mut SmallRng) -> Built {
        match self.route {
            Route::Rls => Built::Rls(self.build_rls(rng)),
            Route::Check | Route::Gateway => Built::Http(self.build(rng)),
        }
    }

    /// The next `ShouldRateLimit` call (see [`RlsTraffic`]).
    pub fn build_rls(&self, rng: &mut SmallRng) -> RateLimitRequest {
        let key = format!("key-{}", self.rank(rng));
        RateLimitRequest {
            domain: self.rls.domain.clone(),
            descriptors: (0..self.rls.descriptors)
                .map(|part| RateLimitDescriptor {
                    entries: vec![
                        Entry {
                            key: "key".into(),
                            value: key.clone(),
                        },
                        Entry {
                            key: "part".into(),
                            value: part.to_string(),
                        },
                    ],
                    ..RateLimitDescriptor::default()
                })
                .collect(),
            hits_addend: self.costs[self.cost_index.sample(rng)],
        }
    }

    /// The next HTTP request (the `rls` route has none: it is `check`'s).
    pub fn build(&self, rng: &mut SmallRng) -> Request<Full<Bytes>> {
        let rank = self.rank(rng);
        let request = match self.route {
            Route::Check | Route::Rls => {
                let policy = &self.policies[self.policy_index.sample(rng)];
                let cost = self.costs[self.cost_index.sample(rng)];
                let key = format!("key-{rank}");
                let body = serde_json::to_vec(&CheckRequest {
                    key: key.as_str().into(),
                    policy: Some(policy.as_str().into()),
                    cost: Some(cost),
                })
                .unwrap_or_default();
                Request::post(GatewayRoute::Check.path().unwrap_or_default())
                    .header(CONTENT_TYPE, "application/json")
                    .body(Full::new(Bytes::from(body)))
            }
            Route::Gateway => {
                // Rank r becomes a distinct client address in 10.0.0.0/8.
                let ip = format!(
                    "10.{}.{}.{}",
                    (rank >> 16) & 255,
                    (rank >> 8) & 255,
                    rank & 255
                );
                Request::get("/")
                    .header("x-forwarded-for", ip)
                    .body(Full::new(Bytes::new()))
            }
        };
        let mut request = request.unwrap_or_else(|_| Request::new(Full::new(Bytes::new())));
        request.headers_mut().insert(HOST, self.host.clone());
        if !self.keep_alive {
            request
                .headers_mut()
                .insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
        }
        request
    }
}
