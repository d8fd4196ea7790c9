//! Configuration, layered: built-in defaults < TOML file (`--config`) < environment
//! (`TURNSTILE_*`, nested keys joined by `__`) < command-line flags.
//!
//! Extraction is done by figment and serde, so a wrong type or an unknown variant is reported
//! with the offending key, where it came from, and the valid values. [`Config::validate`] then
//! checks what serde cannot (a limit of zero, a policy name that does not exist), naming the
//! field the same way.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use turnstile_backend::{
    BackendConfig, BackendKind, FullPolicy, MailboxConfig, PoolConfig, RedisClock, RedisConfig,
    RedisMode, RedisUrl, RestartType, SimulatedWork, Strategy, SupervisorConfig,
};
use turnstile_core::Policy;

/// The admin token the docker-compose demo uses by default (`docker-compose.yml` is checked
/// against it). Refused beyond loopback unless `admin_allow_demo_token` is set.
pub const DEMO_ADMIN_TOKEN: &str = "turnstile-demo";

/// Everything the gateway is configured with. See the README's configuration reference (a
/// test holds it, the CLI and `deploy/turnstile.example.toml` to these fields). `Debug` hides
/// the admin token and any password in the Redis URL, so the whole value can be logged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP API listens on: `ip:port`, or `host:port` resolved at load
    /// (`localhost:8080`).
    #[serde(with = "listen_address")]
    pub listen: SocketAddr,
    /// Which backend owns the rate-limit state.
    pub backend: BackendKind,
    /// Number of actors for the sharded backend.
    pub shards: usize,
    /// Each actor's mailbox capacity.
    pub mailbox_capacity: usize,
    /// What a caller does when an actor's mailbox is full.
    pub mailbox_when_full: FullPolicy,
    /// DEMONSTRATION ONLY: give actors unbounded mailboxes (see the README).
    pub mailbox_unbounded: bool,
    /// How long a check waits for an actor's reply (`GenServer.call`'s timeout).
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
    /// The most keys held at once, across all policies.
    pub max_keys: usize,
    /// How often expired keys are swept.
    #[serde(with = "humantime_serde")]
    pub sweep_interval: Duration,
    /// Optional work done inside the state owner on every check, to make serialization visible.
    pub simulated_work: Option<SimulatedWork>,
    /// How long in-flight requests may take to finish after a shutdown signal.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
    /// Largest request body accepted, in bytes.
    pub body_limit_bytes: usize,
    /// Longest a JSON API body may take to arrive (then 408). Bodies are read before a
    /// request takes one of `max_concurrent_requests`, so a stalled body holds none.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Also send the older `RateLimit-Limit`, `RateLimit-Remaining`, `RateLimit-Reset` headers.
    pub legacy_ratelimit_headers: bool,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers are believed. Default: nobody.
    pub trusted_proxies: Vec<IpNet>,
    /// IPv6 clients are limited per prefix of this length (a /64 is one subscriber's).
    pub ipv6_prefix_len: u8,
    /// Check-pool workers between the gateway and the backend (0: no pool).
    pub pool_size: usize,
    /// How long a check waits for a free pool worker (`pool_timeout` after); 0 sheds at once.
    #[serde(with = "humantime_serde")]
    pub pool_wait_timeout: Duration,
    /// How crashed actors and pool workers are restarted, and when the backend gives up.
    pub supervision: Supervision,
    /// Requests in flight at most on the rate-limited routes; beyond, they are shed (503,
    /// counted as `shed`). 0: no limit.
    pub max_concurrent_requests: usize,
    /// Longest a connection waits for a request's headers, the first or the next one on a
    /// kept-alive connection, before it is closed (slowloris, idle keep-alive).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Connections open at most on the main listener (fewer if the open-file limit is lower);
    /// beyond it the one idle longest is closed to make room, or the new one if none is idle.
    pub max_connections: usize,
    /// Longest a request on a rate-limited route may take (503, counted as `timeout`).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// The admin listener (fault injection, supervision state, backend switch). Off unless set.
    #[serde(with = "listen_address::optional")]
    pub admin_listen: Option<SocketAddr>,
    /// Bearer token the admin API requires; mandatory when `admin_listen` is not loopback.
    pub admin_token: Option<Secret>,
    /// Accept the documented demo token ([`DEMO_ADMIN_TOKEN`]) on an admin listener beyond
    /// loopback: for the docker-compose demo only, since anyone can read that token.
    pub admin_allow_demo_token: bool,
    /// The demo gateway route (every path not otherwise routed).
    pub gateway: GatewayRoute,
    /// The `/v1/forward-auth` endpoint for proxies' external-auth hooks.
    pub forward_auth: ForwardAuth,
    /// Named policies.
    pub policies: BTreeMap<String, PolicyConfig>,
    /// The Redis the `redis` backend keeps its state in (`TURNSTILE_REDIS_URL`); with
    /// `redis.mode = "cluster"`, a comma-separated list of the cluster's seed nodes.
    pub redis_url: RedisUrl,
    /// The `redis` backend's mode, bounds, timeouts, key prefix and local deny cache.
    pub redis: RedisSettings,
    /// Envoy's rate limit service (gRPC) and its envoyproxy/ratelimit rule files.
    pub rls: RlsSettings,
    /// Where admitted requests on the gateway route are forwarded (`http://host:port`).
    /// Unset: the gateway route answers `200 ok` itself (the demo).
    pub upstream: Option<String>,
    /// How requests are forwarded to `upstream`.
    pub proxy: ProxySettings,
    /// Request rules for the gateway route and `/v1/forward-auth`, in order, first match
    /// wins. None: every request is limited by `gateway.policy` (forward-auth:
    /// `forward_auth.policy`) per client.
    pub routes: Vec<RouteConfig>,
}

/// The reverse proxy's settings (used when `upstream` is set).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// Largest request body forwarded, in bytes (413 beyond). Unset: no limit (bodies stream
    /// through; `body_limit_bytes` is for the JSON API only).
    pub max_body_bytes: Option<u64>,
    /// Forward the client's `Host`; `false` sends the upstream's own authority instead.
    pub preserve_host: bool,
    /// Longest wait to open a connection to the upstream (then 502).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for the upstream's response headers once the request is sent (then 504);
    /// less than `request_timeout`.
    #[serde(with = "humantime_serde")]
    pub response_header_timeout: Duration,
    /// Idle keep-alive connections to the upstream kept open at most.
    pub max_idle_connections: usize,
    /// Add the RateLimit headers of the decision to the upstream's responses.
    pub ratelimit_headers: bool,
}

/// One `[[routes]]` rule: the requests it matches and the limits each must pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Its name in metrics and logs; default `routes[N]` (its position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Which requests it applies to.
    #[serde(rename = "match")]
    pub matches: RouteMatch,
    /// Checked in order; each must admit the request. Empty: matched requests are not limited.
    pub limits: Vec<LimitConfig>,
    /// Decide and count, but never deny.
    #[serde(default)]
    pub shadow: bool,
}

/// What a request must be to match a rule: every field given must hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteMatch {
    /// The (normalized) path starts with this; it starts with `/`.
    pub path_prefix: String,
    /// One of these methods (any method when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// This request header is present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<String>,
}

/// One limit of a rule: a policy, applied per value of a key source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitConfig {
    /// A policy in `policies`.
    pub policy: String,
    /// What identifies the caller: `client_ip`, `header:<name>`, `path`, `method`, `global`.
    pub key: String,
    /// When the key's source is absent from a request (a header missing).
    #[serde(default)]
    pub on_missing: OnMissing,
}

/// What a limit does when its key's source is absent from a request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnMissing {
    /// Refuse the request: 400 naming the header.
    #[default]
    Deny,
    /// Do not apply this limit to the request.
    Skip,
    /// Count the request under one key shared by every request without the source.
    Global,
}

/// Envoy's rate limit service: where it listens, and the rules it decides by.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RlsSettings {
    /// The gRPC listener (`envoy.service.ratelimit.v3.RateLimitService`, `grpc.health.v1`).
    /// Off unless set; `POST /v1/ratelimit` on the main listener answers either way.
    #[serde(with = "listen_address::optional")]
    pub listen: Option<SocketAddr>,
    /// A directory of envoyproxy/ratelimit YAML rule files, one domain each; watched, and
    /// reloaded on change and on `SIGHUP`. Unset: no rules (every descriptor is OK).
    pub config_dir: Option<PathBuf>,
    /// Decide and count every descriptor, but answer OK (as each rule's `shadow_mode` does).
    pub shadow_mode: bool,
}

/// Listen addresses as people write them: `127.0.0.1:8080`, `[::1]:8080`, or a host name
/// with a port (`localhost:8080`), resolved when the configuration is loaded (the first
/// address the resolver gives). Written back as the address.
mod listen_address {
    use std::net::{SocketAddr, ToSocketAddrs};

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub(super) fn serialize<S: Serializer>(
        address: &SocketAddr,
        serializer: S,
    ) -> Result<S::Ok, S::Error> {
        address.serialize(serializer)
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<SocketAddr, D::Error> {
        let text = String::deserialize(deserializer)?;
        resolve(&text).map_err(serde::de::Error::custom)
    }

    fn resolve(text: &str) -> Result<SocketAddr, String> {
        if let Ok(address) = text.parse() {
            return Ok(address);
        }
        let problem = |why: String| {
            format!(
                "`{text}` is neither an `ip:port` address nor a `host:port` that resolves ({why})"
            )
        };
        text.to_socket_addrs()
            .map_err(|error| problem(error.to_string()))?
            .next()
            .ok_or_else(|| problem("no address".into()))
    }

    pub(super) mod optional {
        use std::net::SocketAddr;

        use serde::{Deserialize, Deserializer, Serialize, Serializer};

        pub(in super::super) fn serialize<S: Serializer>(
            address: &Option<SocketAddr>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            address.serialize(serializer)
        }

        pub(in super::super) fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<SocketAddr>, D::Error> {
            Option::<String>::deserialize(deserializer)?
                .map(|text| super::resolve(&text).map_err(serde::de::Error::custom))
                .transpose()
        }
    }
}

/// A value that must not be logged: `Debug` shows `"<redacted>"`; [`Secret::expose`] is the
/// one way to read it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Secret {
    fn from(secret: &str) -> Self {
        Self(secret.to_owned())
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"<redacted>\"")
    }
}

/// The `redis` backend's settings other than its URL.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisSettings {
    /// `standalone` (one Redis) or `cluster` (a Redis Cluster; `redis_url` lists seed nodes).
    pub mode: RedisMode,
    /// Prepended to every Redis key Turnstile writes.
    pub key_prefix: String,
    /// Checks waiting on Redis at once (all pipelined over one multiplexed connection).
    pub max_in_flight: usize,
    /// Longest wait to open a connection.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Longest wait for an in-flight slot (then a `timeout` drop).
    #[serde(with = "humantime_serde")]
    pub wait_timeout: Duration,
    /// Longest wait for one check's answer (then a `timeout` drop).
    #[serde(with = "humantime_serde")]
    pub command_timeout: Duration,
    /// Where the script's "now" comes from: `server` (Redis `TIME`, one clock for every
    /// replica) or `injected` (the gateway's clock: for tests on a manual clock).
    pub clock: RedisClock,
    /// Answer a denied key's further checks locally, without Redis, until its retry instant
    /// (exact: they cannot be admitted anywhere sooner); holds at most `max_keys` keys.
    pub local_deny_cache: bool,
}

/// Supervision of actors and pool workers (OTP's restart intensity and strategies).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Supervision {
    /// `one_for_one` restarts the child that died; `one_for_all` restarts every child.
    pub strategy: Strategy,
    /// `permanent` (always restart), `transient` (only after a crash), `temporary` (never).
    pub restart: RestartType,
    /// Restarts tolerated within `window`; one more fails the backend (Elixir: 3 in 5 s).
    pub max_restarts: u32,
    /// The restart-intensity window.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// First restart delay; doubles per restart within the window, jittered ×[0.5, 1.5).
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Largest restart delay.
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// How long a failed backend refuses checks (`unavailable`) before it is re-armed.
    #[serde(with = "humantime_serde")]
    pub cool_off: Duration,
}

/// The demo gateway route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRoute {
    /// The policy applied per client IP.
    pub policy: String,
}

/// The forward-auth endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardAuth {
    /// The policy applied.
    pub policy: String,
    /// Limit by this request header's value instead of the client IP (e.g. `x-api-key`).
    pub key_header: Option<String>,
    /// Status answered when denied: 429 by default; nginx's `auth_request` needs 403.
    pub deny_status: u16,
}

/// One named policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Requests admitted per period.
    pub limit: u32,
    /// The period (`1s`, `1m`, `500ms`).
    #[serde(with = "humantime_serde")]
    pub period: Duration,
    /// Requests admitted at once from idle; defaults to `limit`.
    pub burst: Option<u32>,
    /// What to answer when the backend drops a check under this policy.
    #[serde(default)]
    pub failure_mode: FailureMode,
}

/// What the gateway answers when a check is dropped (crash, full mailbox, timeout, …).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FailureMode {
    /// Admit the request, and count the drop: an outage of the limiter does not become an
    /// outage of the service behind it.
    #[default]
    Open,
    /// Refuse the request with 503 and a JSON error naming the reason.
    Closed,
}

impl From<&SupervisorConfig> for Supervision {
    fn from(config: &SupervisorConfig) -> Self {
        Self {
            strategy: config.strategy,
            restart: config.restart,
            max_restarts: config.max_restarts,
            window: config.window,
            backoff: config.backoff_base,
            backoff_max: config.backoff_max,
            cool_off: config.cool_off,
        }
    }
}

impl Default for Config {
    /// The gateway's own defaults, and the backend, supervisor and redis crates' defaults for
    /// what those own: each default is written once, where its meaning lives.
    fn default() -> Self {
        let backend = BackendConfig::default();
        let redis = &backend.redis;
        let (mailbox_capacity, mailbox_when_full) = match backend.mailbox {
            MailboxConfig::Bounded {
                capacity,
                when_full,
            } => (capacity, when_full),
            MailboxConfig::Unbounded => {
                (BackendConfig::DEFAULT_MAILBOX_CAPACITY, FullPolicy::Reject)
            }
        };
        let policy = |limit, period, burst| PolicyConfig {
            limit,
            period,
            burst: Some(burst),
            failure_mode: FailureMode::Open,
        };
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            backend: backend.kind,
            shards: backend.shards,
            mailbox_capacity,
            mailbox_when_full,
            mailbox_unbounded: matches!(backend.mailbox, MailboxConfig::Unbounded),
            call_timeout: backend.call_timeout,
            max_keys: backend.max_keys,
            sweep_interval: backend.sweep_interval,
            simulated_work: backend.simulated_work,
            shutdown_grace: Duration::from_secs(10),
            body_limit_bytes: 4096,
            body_read_timeout: Duration::from_secs(2),
            legacy_ratelimit_headers: false,
            trusted_proxies: Vec::new(),
            ipv6_prefix_len: 64,
            pool_size: backend.pool.map_or(0, |pool| pool.size),
            pool_wait_timeout: backend
                .pool
                .map_or(PoolConfig::DEFAULT_WAIT_TIMEOUT, |pool| pool.wait_timeout),
            supervision: Supervision::from(&backend.supervisor),
            max_concurrent_requests: 4096,
            request_timeout: Duration::from_secs(30),
            header_read_timeout: Duration::from_secs(10),
            max_connections: 10_000,
            admin_listen: None,
            admin_token: None,
            admin_allow_demo_token: false,
            gateway: GatewayRoute {
                policy: "default".into(),
            },
            forward_auth: ForwardAuth {
                policy: "default".into(),
                key_header: None,
                deny_status: 429,
            },
            policies: BTreeMap::from([
                ("default".into(), policy(100, Duration::from_secs(1), 50)),
                ("login".into(), policy(5, Duration::from_secs(60), 5)),
            ]),
            rls: RlsSettings {
                listen: None,
                config_dir: None,
                shadow_mode: false,
            },
            upstream: None,
            proxy: ProxySettings {
                max_body_bytes: None,
                preserve_host: true,
                connect_timeout: Duration::from_secs(5),
                response_header_timeout: Duration::from_secs(15),
                max_idle_connections: 256,
                ratelimit_headers: true,
            },
            routes: Vec::new(),
            redis_url: redis.url.clone(),
            redis: RedisSettings {
                mode: redis.mode,
                key_prefix: redis.key_prefix.clone(),
                max_in_flight: redis.max_in_flight,
                connect_timeout: redis.connect_timeout,
                wait_timeout: redis.wait_timeout,
                command_timeout: redis.command_timeout,
                clock: redis.clock,
                local_deny_cache: redis.local_deny_cache,
            },
        }
    }
}

/// A configuration that cannot be used, with the field it is about.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file named by `--config` does not exist.
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    /// Extraction failed (bad type, unknown key, unknown variant): each error names the
    /// setting as its source spells it (`shards` in a file, `TURNSTILE_SHARDS` in the
    /// environment) and the file it came from.
    #[error("invalid configuration: {}", describe_extract_error(.0))]
    Extract(#[from] Box<figment::Error>),
    /// A value has the right type but is not acceptable.
    #[error("invalid configuration: `{field}`: {problem}")]
    Invalid {
        /// The field, as a dotted path (`policies.login.limit`).
        field: String,
        /// What is wrong and what would be valid.
        problem: String,
    },
}

/// figment's own rendering says `for key "default.shards"` (its profile, which reads like the
/// `default` policy) and nests backticks in lists of expected names; this one names the
/// setting as the user wrote it and lists plainly.
fn describe_extract_error(errors: &figment::Error) -> String {
    use figment::error::Kind;
    let describe = |error: figment::Error| {
        let from_env = error
            .metadata
            .as_ref()
            .is_some_and(|metadata| metadata.name.contains("environment variable"));
        // An unknown field's path ends with the field itself: name where it was found.
        let path = match &error.kind {
            Kind::UnknownField(..) => error
                .path
                .split_last()
                .map_or(&[][..], |(_, parent)| parent),
            _ => &error.path[..],
        };
        let setting = match (path.is_empty(), from_env) {
            (true, _) => None,
            (false, true) => Some(format!(
                "TURNSTILE_{}",
                path.join("__").to_ascii_uppercase()
            )),
            (false, false) => Some(path.join(".")),
        };
        let file = error
            .metadata
            .as_ref()
            .and_then(|metadata| match &metadata.source {
                Some(figment::Source::File(path)) => Some(path.display().to_string()),
                _ => None,
            });
        let problem = match &error.kind {
            Kind::UnknownField(found, expected) => {
                format!(
                    "unknown setting `{found}` (known here: {})",
                    expected.join(", ")
                )
            }
            Kind::UnknownVariant(found, expected) => {
                format!(
                    "unknown value `{found}` (expected one of: {})",
                    expected.join(", ")
                )
            }
            Kind::MissingField(field) => format!("missing `{field}`"),
            other => other.to_string(),
        };
        match (setting, file) {
            (Some(setting), Some(file)) => format!("`{setting}` in {file}: {problem}"),
            (Some(setting), None) => format!("`{setting}`: {problem}"),
            (None, Some(file)) => format!("{file}: {problem}"),
            (None, None) => problem,
        }
    };
    errors
        .clone()
        .into_iter()
        .map(describe)
        .collect::<Vec<_>>()
        .join("; ")
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

impl Config {
    /// The most actors the sharded backend may run.
    pub const MAX_SHARDS: usize = 4096;
    /// The most check-pool workers.
    pub const MAX_POOL_SIZE: usize = 4096;

    /// Loads the layered configuration: defaults, then `file` (if given), then `TURNSTILE_*`
    /// environment variables, then `overrides` (the command line), and validates it.
    pub fn load(file: Option<&Path>, overrides: &impl Serialize) -> Result<Self, ConfigError> {
        let mut figment = Self::base_figment();
        if let Some(file) = file {
            if !file.is_file() {
                return Err(ConfigError::MissingFile(file.to_owned()));
            }
            figment = figment.merge(Toml::file_exact(file));
        }
        let figment = figment.merge(
            Env::prefixed("TURNSTILE_")
                .split("__")
                // Read by the binary itself, not configuration keys.
                .ignore(&["config", "log"]),
        );
        Self::finish(figment.merge(Serialized::defaults(overrides)))
    }

    /// The configuration from TOML texts (later ones win), then `overrides`, validated: no
    /// file and no environment, for gateways started in-process (tests, `turnstile-load
    /// compare`), whatever `TURNSTILE_*` variables the process has.
    pub fn from_toml(layers: &[&str], overrides: &impl Serialize) -> Result<Self, ConfigError> {
        let figment = layers.iter().fold(Self::base_figment(), |figment, layer| {
            figment.merge(Toml::string(layer))
        });
        Self::finish(figment.merge(Serialized::defaults(overrides)))
    }

    /// The bottom layer: the defaults without the built-in policies. Built-in policies are
    /// not merged field by field with the user's: a user who writes
    /// `[policies.default] limit = 3` means a policy of 3 (burst 3), not the built-in one's
    /// burst of 50 with a new limit. So the layers are extracted without built-in policies,
    /// and [`Config::finish`] adds back whole the built-in ones the user did not mention.
    fn base_figment() -> Figment {
        Figment::from(Serialized::defaults(Self {
            policies: BTreeMap::new(),
            ..Self::default()
        }))
    }

    fn finish(figment: Figment) -> Result<Self, ConfigError> {
        let mut config: Config = figment.extract().map_err(Box::new)?;
        for (name, policy) in Self::default().policies {
            config.policies.entry(name).or_insert(policy);
        }
        config.validate()?;
        Ok(config)
    }

    /// The settings other than those a reload applies (`policies`, `routes`, `upstream`,
    /// `proxy`) whose values differ in `other`, as dotted keys: what a reload cannot apply
    /// without a restart.
    pub fn changed_settings(&self, other: &Config) -> Vec<String> {
        fn leaves(
            value: &serde_json::Value,
            prefix: &str,
            out: &mut Vec<(String, serde_json::Value)>,
        ) {
            match value {
                serde_json::Value::Object(map) => {
                    for (key, value) in map {
                        let key = if prefix.is_empty() {
                            key.clone()
                        } else {
                            format!("{prefix}.{key}")
                        };
                        leaves(value, &key, out);
                    }
                }
                other => out.push((prefix.to_owned(), other.clone())),
            }
        }
        let flatten = |config: &Config| {
            let mut out = Vec::new();
            let value = serde_json::to_value(Config {
                policies: BTreeMap::new(),
                routes: Vec::new(),
                upstream: None,
                proxy: Config::default().proxy,
                ..config.clone()
            })
            .unwrap_or_default();
            leaves(&value, "", &mut out);
            out
        };
        let (mine, theirs) = (flatten(self), flatten(other));
        let mut changed: Vec<String> = mine
            .iter()
            .filter(|leaf| !theirs.contains(leaf))
            .chain(theirs.iter().filter(|leaf| !mine.contains(leaf)))
            .map(|(key, _)| key.clone())
            .collect();
        changed.sort_unstable();
        changed.dedup();
        changed
    }

    /// Checks what types alone cannot.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.policies.is_empty() {
            return Err(invalid("policies", "at least one policy must be defined"));
        }
        // Ids `0..RULES_KEYSPACE` are the named policies'; the last id is the rules'.
        if self.policies.len() > usize::from(Policy::RULES_KEYSPACE) {
            return Err(invalid("policies", "at most 65535 policies"));
        }
        for (name, policy) in &self.policies {
            let built = self.policy(name, policy, 0)?;
            if self.backend == BackendKind::Redis {
                turnstile_backend::validate_redis_policy(&built)
                    .map_err(|error| invalid(format!("policies.{name}"), error.to_string()))?;
            }
        }
        let known = || self.policies.keys().cloned().collect::<Vec<_>>().join(", ");
        for (field, name) in [
            ("gateway.policy", &self.gateway.policy),
            ("forward_auth.policy", &self.forward_auth.policy),
        ] {
            if !self.policies.contains_key(name) {
                return Err(invalid(
                    field,
                    format!("unknown policy `{name}`; defined policies: {}", known()),
                ));
            }
        }
        if !(400..=599).contains(&self.forward_auth.deny_status) {
            return Err(invalid(
                "forward_auth.deny_status",
                format!(
                    "{} is not an error status; use 400-599 (429 by default, 403 for nginx auth_request)",
                    self.forward_auth.deny_status
                ),
            ));
        }
        if let Some(header) = &self.forward_auth.key_header
            && axum::http::HeaderName::from_bytes(header.as_bytes()).is_err()
        {
            return Err(invalid(
                "forward_auth.key_header",
                format!("`{header}` is not a valid HTTP header name"),
            ));
        }
        if self.ipv6_prefix_len == 0 || self.ipv6_prefix_len > 128 {
            return Err(invalid("ipv6_prefix_len", "must be between 1 and 128"));
        }
        // Both are allocated up front (actors and their tables; pool workers): a typo of a few
        // zeros must be a clear error, not an allocation failure or minutes of start-up.
        for (field, value, max) in [
            ("shards", self.shards, Self::MAX_SHARDS),
            ("pool_size", self.pool_size, Self::MAX_POOL_SIZE),
        ] {
            if value > max {
                return Err(invalid(
                    field,
                    format!("{value} is over the maximum of {max}"),
                ));
            }
        }
        if self.header_read_timeout.is_zero() {
            return Err(invalid("header_read_timeout", "must be greater than zero"));
        }
        if self.max_connections == 0 {
            return Err(invalid("max_connections", "must be at least 1"));
        }
        if self.body_read_timeout.is_zero() {
            return Err(invalid("body_read_timeout", "must be greater than zero"));
        }
        if self.request_timeout.is_zero() {
            return Err(invalid("request_timeout", "must be greater than zero"));
        }
        if self.supervision.cool_off.is_zero() {
            return Err(invalid("supervision.cool_off", "must be greater than zero"));
        }
        if let Some(token) = &self.admin_token
            && token.expose().trim().is_empty()
        {
            return Err(invalid("admin_token", "must not be empty when set"));
        }
        if let Some(admin) = self.admin_listen {
            if !admin.ip().is_loopback() && self.admin_token.is_none() {
                return Err(invalid(
                    "admin_listen",
                    format!(
                        "{admin} is not a loopback address: the admin API can crash the service, so set `admin_token` too"
                    ),
                ));
            }
            if !admin.ip().is_loopback()
                && !self.admin_allow_demo_token
                && self
                    .admin_token
                    .as_ref()
                    .is_some_and(|token| token.expose() == DEMO_ADMIN_TOKEN)
            {
                return Err(invalid(
                    "admin_token",
                    format!(
                        "is the documented demo token `{DEMO_ADMIN_TOKEN}`, which anyone can read, on {admin}, which is not loopback: set a token of your own (or `admin_allow_demo_token = true` for a demo)"
                    ),
                ));
            }
            if admin == self.listen && admin.port() != 0 {
                return Err(invalid("admin_listen", "must differ from `listen`"));
            }
        }
        if let Some(upstream) = &self.upstream {
            crate::proxy::parse_upstream(upstream)
                .map_err(|problem| invalid("upstream", problem))?;
        }
        if self.proxy.connect_timeout.is_zero() {
            return Err(invalid(
                "proxy.connect_timeout",
                "must be greater than zero",
            ));
        }
        if self.proxy.response_header_timeout.is_zero()
            || (self.upstream.is_some()
                && self.proxy.response_header_timeout >= self.request_timeout)
        {
            return Err(invalid(
                "proxy.response_header_timeout",
                format!(
                    "must be greater than zero and less than `request_timeout` ({}), which would cut the request off first",
                    humantime_serde::re::humantime::format_duration(self.request_timeout)
                ),
            ));
        }
        if self.proxy.max_body_bytes == Some(0) {
            return Err(invalid(
                "proxy.max_body_bytes",
                "must be greater than zero when set",
            ));
        }
        if self.body_limit_bytes < 64 {
            return Err(invalid("body_limit_bytes", "must be at least 64"));
        }
        if let Some(work) = &self.simulated_work
            && work.duration > Duration::from_secs(60)
        {
            return Err(invalid("simulated_work.duration", "must be at most 60s"));
        }
        self.backend_config()
            .validate_for_gateway()
            .map_err(|(field, problem)| invalid(field, problem))
    }

    /// Builds policy number `id` from its configuration, naming the field on error.
    pub(crate) fn policy(
        &self,
        name: &str,
        policy: &PolicyConfig,
        id: u16,
    ) -> Result<turnstile_core::Policy, ConfigError> {
        if name.is_empty()
            || !name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        {
            return Err(invalid(
                format!("policies.{name}"),
                "policy names use only letters, digits, `_` and `-`",
            ));
        }
        let burst = policy.burst.unwrap_or(policy.limit);
        turnstile_core::Policy::new(id, policy.limit, policy.period, burst)
            .map_err(|error| invalid(format!("policies.{name}"), error.to_string()))
    }

    /// The backend part of the configuration.
    pub fn backend_config(&self) -> BackendConfig {
        let mailbox = if self.mailbox_unbounded {
            MailboxConfig::Unbounded
        } else {
            MailboxConfig::Bounded {
                capacity: self.mailbox_capacity,
                when_full: self.mailbox_when_full,
            }
        };
        BackendConfig {
            kind: self.backend,
            shards: self.shards,
            mailbox,
            call_timeout: self.call_timeout,
            max_keys: self.max_keys,
            sweep_interval: self.sweep_interval,
            simulated_work: self.simulated_work,
            supervisor: SupervisorConfig {
                strategy: self.supervision.strategy,
                restart: self.supervision.restart,
                max_restarts: self.supervision.max_restarts,
                window: self.supervision.window,
                backoff_base: self.supervision.backoff,
                backoff_max: self.supervision.backoff_max,
                cool_off: self.supervision.cool_off,
                jitter_seed: None,
            },
            pool: (self.pool_size > 0).then_some(PoolConfig {
                size: self.pool_size,
                wait_timeout: self.pool_wait_timeout,
            }),
            redis: RedisConfig {
                url: self.redis_url.clone(),
                mode: self.redis.mode,
                key_prefix: self.redis.key_prefix.clone(),
                max_in_flight: self.redis.max_in_flight,
                connect_timeout: self.redis.connect_timeout,
                wait_timeout: self.redis.wait_timeout,
                command_timeout: self.redis.command_timeout,
                clock: self.redis.clock,
                local_deny_cache: self.redis.local_deny_cache,
                // Named by the gateway's `PolicySet`, which owns the ids (and renames on a
                // reload).
                policy_names: Default::default(),
            },
        }
    }
}

/// Maps the backend's own validation onto configuration field names.
trait ValidateForGateway {
    fn validate_for_gateway(&self) -> Result<(), (&'static str, String)>;
}

impl ValidateForGateway for BackendConfig {
    fn validate_for_gateway(&self) -> Result<(), (&'static str, String)> {
        use turnstile_backend::BuildError;
        self.validate().map_err(|error| {
            let field = match &error {
                BuildError::ZeroShards => "shards",
                BuildError::ZeroMaxKeys => "max_keys",
                BuildError::ZeroMailbox => "mailbox_capacity",
                BuildError::ZeroDuration("restart_window") => "supervision.window",
                BuildError::ZeroDuration(field) => field,
                BuildError::ZeroPool => "pool_size",
                BuildError::ZeroRestarts => "supervision.max_restarts",
                BuildError::Pool(_) => "pool_size",
                BuildError::Redis { field, .. } => field,
            };
            (field, error.problem())
        })
    }
}
