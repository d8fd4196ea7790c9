//! The one multiplexed connection every check of a replica shares, to a single Redis or to a
//! Redis Cluster, and the probe that keeps readiness current.
//!
//! Why multiplexed rather than pooled: a pool gives each in-flight check a connection of its
//! own, so every check is one round trip and one read and one write for Redis. A multiplexed
//! connection writes the commands of concurrent checks back to back and reads their answers
//! in order, so N checks in flight cost Redis one read of N commands (pipelining), with no
//! batching window to wait for. Both modes come from redis-rs itself: the standalone mode's
//! `ConnectionManager` (a multiplexed connection that reconnects on its own), and the cluster
//! mode's `cluster_async::ClusterConnection`, which keeps one multiplexed connection per node,
//! routes each command by its key's slot, follows `MOVED`/`ASK` and refreshes the topology.
//! (deadpool-redis's cluster pool would put a pool of those, each already multiplexed, around
//! the same client: nothing to gain.)
//!
//! Connecting is lazy in both modes: a Redis that is down when the gateway starts makes the
//! backend not ready, never unbuildable, and nothing needs restarting when it comes up.

use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{MultipleNodeRoutingInfo, ResponsePolicy, RoutingInfo};
use redis::{Cmd, RedisFuture, RedisResult, Value};
use tokio::sync::OnceCell;

use super::{RedisConfig, RedisMode};
use crate::BuildError;

/// A shared connection, cheap to clone (every clone is a handle on the same connection).
#[derive(Clone)]
pub(crate) enum Connection {
    Standalone(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Standalone(connection) => connection.req_packed_command(cmd),
            Self::Cluster(connection) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Standalone(connection) => connection.req_packed_commands(pipeline, offset, count),
            Self::Cluster(connection) => connection.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Standalone(connection) => connection.get_db(),
            Self::Cluster(connection) => connection.get_db(),
        }
    }
}

/// Makes the connection on first use and hands out handles on it.
pub(crate) struct Connector {
    /// Set once a connection exists; a failed cluster connect leaves it empty, and the next
    /// caller tries again.
    connection: OnceCell<Connection>,
    /// The cluster client, kept to retry the initial connection; `None` in standalone mode,
    /// whose manager is made at once, unconnected.
    cluster: Option<ClusterClient>,
}

impl Connector {
    /// Validates the URL(s) and prepares the client; connects nothing yet.
    pub(crate) fn new(config: &RedisConfig) -> Result<Self, BuildError> {
        let unusable = |problem: String| BuildError::Redis {
            field: "redis_url",
            problem,
        };
        match config.mode {
            RedisMode::Standalone => {
                let client = redis::Client::open(config.url.expose())
                    .map_err(|error| unusable(error.to_string()))?;
                let manager_config = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(config.connect_timeout))
                    // Every check is bounded by `command_timeout` around the whole call; a
                    // second timer per command inside the connection would only cost time.
                    .set_response_timeout(None)
                    // One retry, so a Redis that refuses connections fails the waiting checks
                    // fast (a `backend_error`), and the next check starts a new attempt.
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(200))
                    // The channel between callers and the connection's task; `max_in_flight`
                    // bounds the callers, so this never has to hold more than they send.
                    .set_pipeline_buffer_size(config.max_in_flight.max(1));
                let manager = ConnectionManager::new_lazy_with_config(client, manager_config)
                    .map_err(|error| unusable(error.to_string()))?;
                Ok(Self {
                    connection: OnceCell::new_with(Some(Connection::Standalone(manager))),
                    cluster: None,
                })
            }
            RedisMode::Cluster => {
                let client = ClusterClient::builder(config.url.seeds())
                    .connection_timeout(config.connect_timeout)
                    // Per attempt on one node; the whole call (retries and redirections
                    // included) is bounded by `command_timeout` around it.
                    .response_timeout(config.command_timeout)
                    .overall_response_timeout(None)
                    .build()
                    .map_err(|error| unusable(error.to_string()))?;
                Ok(Self {
                    connection: OnceCell::new(),
                    cluster: Some(client),
                })
            }
        }
    }

    pub(crate) fn mode(&self) -> RedisMode {
        if self.cluster.is_some() {
            RedisMode::Cluster
        } else {
            RedisMode::Standalone
        }
    }

    /// A handle on the connection, connecting first if there is none yet (cluster mode only:
    /// the standalone manager exists from the start and connects by itself).
    pub(crate) async fn get(&self) -> RedisResult<Connection> {
        if let Some(connection) = self.connection.get() {
            return Ok(connection.clone());
        }
        self.connection
            .get_or_try_init(|| async {
                let client = self.cluster.as_ref().ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no connection"))
                })?;
                Ok(Connection::Cluster(client.get_async_connection().await?))
            })
            .await
            .cloned()
    }

    /// Whether Redis is serving, and how many keys it holds (`None` when that could not be
    /// read this time).
    ///
    /// Standalone: `PING` and `DBSIZE`. Cluster: `CLUSTER INFO` from the first node that
    /// answers must say `cluster_state:ok`, and the key count is `DBSIZE` summed over the
    /// primaries. A primary that is down (or failing over) does not make the cluster unready:
    /// checks on its slots are dropped per the failure mode, one by one, while every other
    /// slot keeps being decided, and marking every replica unready would take those away too.
    pub(crate) async fn probe(&self) -> Result<Option<usize>, String> {
        let mut connection = self.get().await.map_err(|error| error.to_string())?;
        match &mut connection {
            Connection::Standalone(_) => {
                let (_, keys): (String, usize) = redis::pipe()
                    .cmd("PING")
                    .cmd("DBSIZE")
                    .query_async(&mut connection)
                    .await
                    .map_err(|error| error.to_string())?;
                Ok(Some(keys))
            }
            Connection::Cluster(cluster) => {
                let info = cluster
                    .route_command(
                        redis::cmd("CLUSTER").arg("INFO").clone(),
                        RoutingInfo::MultiNode((
                            MultipleNodeRoutingInfo::AllNodes,
                            Some(ResponsePolicy::OneSucceeded),
                        )),
                    )
                    .await
                    .map_err(|error| error.to_string())?;
                let info: String =
                    redis::from_redis_value(info).map_err(|error| error.to_string())?;
                if !info.lines().any(|line| line.trim() == "cluster_state:ok") {
                    return Err("the cluster's state is not ok (CLUSTER INFO)".into());
                }
                let keys = redis::cmd("DBSIZE")
                    .query_async::<usize>(cluster)
                    .await
                    .ok();
                Ok(keys)
            }
        }
    }
}
