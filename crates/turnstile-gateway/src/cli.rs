//! The `turnstile` binary's command line: [`Cli`], parsed by [`Cli::parse_with_defaults`].
//!
//! Every configuration flag is named as its configuration key (`--call-timeout` is
//! `call_timeout`), serializes into the top layer of [`Config::load`], and shows in `--help`
//! the default [`Config::default`] gives it: the help text never spells a default itself.
//! A test holds the flags, the README's configuration table and `Config` to each other.

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};
use serde::Serialize;
use turnstile_backend::BackendKind;

use crate::config::Config;

/// Turnstile: an HTTP rate limiter with switchable backends (actor, sharded, concurrent, redis).
///
/// Every flag overrides the same setting from the environment (`TURNSTILE_*`) and the config
/// file; see the README's configuration reference for all settings.
#[derive(Debug, Parser, Serialize)]
#[command(name = "turnstile", version, about)]
pub struct Cli {
    /// TOML configuration file.
    #[arg(long, env = "TURNSTILE_CONFIG")]
    #[serde(skip)]
    pub config: Option<PathBuf>,

    /// Address to listen on (`ip:port`, or `host:port`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,

    /// Which backend owns the rate-limit state.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backend: Option<BackendKind>,

    /// The Redis the `redis` backend keeps its state in.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis_url: Option<String>,

    /// Number of actors for the sharded backend.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<usize>,

    /// Each actor's mailbox capacity.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mailbox_capacity: Option<usize>,

    /// How long a check waits for an actor's reply, e.g. 5s.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_timeout: Option<String>,

    /// The most keys held at once.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_keys: Option<usize>,

    /// Check-pool workers in front of the backend; 0 disables the pool.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pool_size: Option<usize>,

    /// Enable the admin listener (fault injection, supervision state) on this address.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,

    /// Forward admitted requests on the gateway route to this URL (`http://host:port`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,

    /// Envoy's rate limit service.
    #[command(flatten)]
    pub rls: RlsFlags,

    /// Instead of serving, ask the gateway configured here whether it is alive (`GET /healthz`
    /// on its listen address) and exit 0 if so: the container HEALTHCHECK, with no curl in
    /// the image.
    #[arg(long, conflicts_with = "readiness_check")]
    #[serde(skip)]
    pub healthcheck: bool,

    /// As `--healthcheck`, but asks whether it is ready to decide (`GET /readyz`: its backend
    /// is serving; for redis, Redis is reachable): an exec readiness probe.
    #[arg(long)]
    #[serde(skip)]
    pub readiness_check: bool,
}

/// The `rls.*` flags: each flag's id is its dotted configuration key.
#[derive(Debug, clap::Args, Serialize)]
pub struct RlsFlags {
    /// Serve Envoy's rate limit service (gRPC) on this address.
    #[arg(id = "rls.listen", long = "rls-listen")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,

    /// Directory of envoyproxy/ratelimit YAML rule files (watched, reloaded on change).
    #[arg(id = "rls.config_dir", long = "rls-config")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_dir: Option<PathBuf>,
}

/// How long `--healthcheck` and `--readiness-check` wait for the answer: well under the
/// Dockerfile's `HEALTHCHECK --timeout` (a test holds the two apart), so a slow gateway is
/// reported by the probe, with its reason, rather than killed by the container runtime.
pub const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// The flags that are not configuration keys (they steer the binary itself).
pub const NON_CONFIG_FLAGS: [&str; 3] = ["config", "healthcheck", "readiness_check"];

/// Flags not spelled as their key with `_` and `.` as `-`: `(key, flag)`.
pub const FLAG_SPELLINGS: [(&str, &str); 1] = [("rls.config_dir", "rls-config")];

/// The long flag of configuration key `key` (a dotted path).
pub fn flag_for(key: &str) -> String {
    FLAG_SPELLINGS
        .iter()
        .find(|(spelled, _)| *spelled == key)
        .map_or_else(
            || key.replace(['_', '.'], "-"),
            |(_, flag)| (*flag).to_owned(),
        )
}

/// The value at dotted path `key` of a serialized configuration.
pub fn value_at<'a>(value: &'a serde_json::Value, key: &str) -> Option<&'a serde_json::Value> {
    key.split('.')
        .try_fold(value, |value, part| value.get(part))
}

impl Cli {
    /// The command, with each configuration flag's help ending in the default
    /// [`Config::default`] gives its key.
    pub fn command_with_defaults() -> clap::Command {
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        Self::command().mut_args(|arg| {
            let id = arg.get_id().as_str();
            if NON_CONFIG_FLAGS.contains(&id) {
                return arg;
            }
            let Some(default) = value_at(&defaults, id).and_then(render_default) else {
                return arg;
            };
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [default: {default}]"))
        })
    }

    /// Parses the process's arguments (exiting with clap's usage message on an error).
    pub fn parse_with_defaults() -> Self {
        let matches = Self::command_with_defaults().get_matches();
        Self::from_arg_matches(&matches).unwrap_or_else(|error| error.exit())
    }
}

/// A default as a person would type it: `5s`, `16`, `127.0.0.1:8080`; `None` for an unset one.
pub fn render_default(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::Null => None,
        serde_json::Value::String(text) => Some(text.clone()),
        other => Some(other.to_string()),
    }
}
