//! [`AppState`]: what every handler shares, and the run-time backend switch.
//!
//! # Invariants
//!
//! - A check holds its own `Arc` of the backend it started on, so a switch never cuts a check
//!   in half; the old backend drains what it has queued, then stops.
//! - Everything the request path reads per request (policies, header names, the client-IP
//!   resolver, the rules) is resolved here once, at start-up, and the policies and rules again
//!   at each reload, built whole and swapped: a request holds the set it started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use axum::http::StatusCode;
use turnstile_backend::{Backend, BackendConfig, BackendKind, BuildContext, BuildError};
use turnstile_core::Clock;

use crate::client_ip::ClientIpResolver;
use crate::config::{self, Config, Secret};
use crate::error::StartError;
use crate::metrics::Metrics;
use crate::policies::PolicySet;
use crate::proxy::Proxy;
use crate::rls::{ActiveRules, RulesError};

/// Where a configuration came from: the file and the command line's overrides (the
/// environment is read again at each reload, as at start-up).
#[derive(Debug, Clone)]
pub struct ConfigSource {
    /// The TOML file, if any.
    pub file: Option<PathBuf>,
    /// The command line's settings, serialized.
    pub overrides: serde_json::Value,
}

/// Why the TOML file's policies could not be reloaded; the old ones stay in force.
#[derive(Debug, thiserror::Error)]
pub enum PolicyReloadError {
    /// The file, environment or overrides no longer make a valid configuration.
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    /// A policy the active backend cannot hold.
    #[error(transparent)]
    Backend(#[from] BuildError),
}

/// The proxy `config` asks for, if any.
fn build_proxy(config: &Config) -> Result<Option<Arc<Proxy>>, config::ConfigError> {
    config
        .upstream
        .as_deref()
        .map(|upstream| {
            Proxy::new(upstream, &config.proxy)
                .map(Arc::new)
                .map_err(|problem| config::ConfigError::Invalid {
                    field: "upstream".into(),
                    problem,
                })
        })
        .transpose()
}

/// Everything the handlers share.
pub struct AppState {
    /// The active backend. Swapped whole by the admin API's backend switch; each check holds
    /// its own `Arc` to the backend it started on, so a switch never cuts a check in half.
    backend: ArcSwap<Arc<dyn Backend>>,
    /// What the active backend was built from, to build its replacement on a switch.
    backend_config: BackendConfig,
    /// Clock, faults and observer, shared by every backend this gateway builds.
    context: BuildContext,
    /// Serialises backend switches.
    switching: tokio::sync::Mutex<()>,
    /// The named policies in force. Swapped whole by a reload of the TOML file; each request
    /// holds the set it started with.
    policies: ArcSwap<PolicySet>,
    /// The configuration the gateway started with (a reload changes its policies only).
    running: Config,
    /// Where the configuration was read from, to reload its policies (the binary sets it;
    /// gateways built from values have none).
    config_source: std::sync::OnceLock<ConfigSource>,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) client_ip: ClientIpResolver,
    /// Where the gateway route forwards admitted requests (`upstream`); none: it answers
    /// itself. Swapped whole by a reload.
    proxy: ArcSwapOption<Proxy>,
    pub(crate) forward_auth_deny_status: StatusCode,
    pub(crate) legacy_ratelimit_headers: bool,
    pub(crate) body_limit_bytes: usize,
    pub(crate) body_read_timeout: Duration,
    pub(crate) max_concurrent_requests: usize,
    /// Rate-limited requests in flight now, against `max_concurrent_requests` (see
    /// [`Edge`](crate::Edge)).
    pub(crate) in_flight: AtomicUsize,
    pub(crate) request_timeout: Duration,
    pub(crate) admin_token: Option<Secret>,
    /// The rate limit service's rules in force. Swapped whole by a reload; each call holds
    /// the set it started with.
    rules: ArcSwap<ActiveRules>,
    /// Where the rules are loaded from (`rls.config_dir`).
    rules_dir: Option<PathBuf>,
    /// Serialises reloads, so two never race to swap.
    reloading: std::sync::Mutex<()>,
    /// `rls.shadow_mode`: every rule decides and counts, and answers OK.
    pub(crate) rls_shadow_mode: bool,
}

impl AppState {
    /// Builds the backend and everything the handlers need; time comes from `clock`.
    ///
    /// Must be called inside a tokio runtime (backends spawn their tasks).
    pub fn new(config: &Config, clock: Arc<dyn Clock>) -> Result<Arc<Self>, StartError> {
        config.validate()?;
        let metrics = Arc::new(Metrics::new(config.backend, config.shards)?);
        let policies = PolicySet::new(config, &metrics, None)?;
        let context = BuildContext {
            clock,
            faults: Arc::default(),
            observer: Arc::clone(&metrics) as Arc<dyn turnstile_backend::BackendObserver>,
        };
        let rules = ActiveRules::load(config.rls.config_dir.as_deref(), config.backend, &metrics)?;
        metrics.set_rules_loaded(rules.set.rules().len());
        let backend_config = config.backend_config();
        backend_config
            .redis
            .policy_names
            .set(policies.names_by_id());
        let backend = turnstile_backend::build(&backend_config, &context)?;
        let proxy = build_proxy(config)?;
        Ok(Arc::new(Self {
            backend: ArcSwap::from_pointee(backend),
            backend_config,
            context,
            switching: tokio::sync::Mutex::new(()),
            policies: ArcSwap::from_pointee(policies),
            running: config.clone(),
            config_source: std::sync::OnceLock::new(),
            metrics,
            client_ip: ClientIpResolver::new(
                config.trusted_proxies.clone(),
                config.ipv6_prefix_len,
            ),
            proxy: ArcSwapOption::new(proxy),
            forward_auth_deny_status: StatusCode::from_u16(config.forward_auth.deny_status)
                .unwrap_or(StatusCode::TOO_MANY_REQUESTS),
            legacy_ratelimit_headers: config.legacy_ratelimit_headers,
            body_limit_bytes: config.body_limit_bytes,
            body_read_timeout: config.body_read_timeout,
            max_concurrent_requests: config.max_concurrent_requests,
            in_flight: AtomicUsize::new(0),
            request_timeout: config.request_timeout,
            admin_token: config.admin_token.clone(),
            rules: ArcSwap::from_pointee(rules),
            rules_dir: config.rls.config_dir.clone(),
            reloading: std::sync::Mutex::new(()),
            rls_shadow_mode: config.rls.shadow_mode,
        }))
    }

    /// The backend serving checks now.
    pub fn backend(&self) -> Arc<dyn Backend> {
        Arc::clone(&self.backend.load())
    }

    /// The kind of the backend serving checks now (no `Arc` taken).
    pub fn backend_kind(&self) -> BackendKind {
        self.backend.load().kind()
    }

    /// Rate-limited requests in flight now (what `max_concurrent_requests` bounds).
    pub fn requests_in_flight(&self) -> usize {
        self.in_flight.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The gateway's metrics (tests read the same counters `/metrics` exports).
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The fault injector shared by every backend of this gateway.
    pub fn faults(&self) -> &turnstile_backend::Faults {
        &self.context.faults
    }

    /// The named policies in force now.
    pub(crate) fn policies(&self) -> Arc<PolicySet> {
        self.policies.load_full()
    }

    /// Remembers where the configuration came from, so its policies can be reloaded (and the
    /// file watched); set once, by the binary.
    pub fn set_config_source(&self, source: ConfigSource) {
        let _ = self.config_source.set(source);
    }

    /// The configuration file, if the gateway was started from one.
    pub fn config_file(&self) -> Option<&Path> {
        self.config_source.get()?.file.as_deref()
    }

    /// Reloads the policies, the request rules (`routes`) and the upstream (`upstream`,
    /// `proxy`) from the configuration's sources (the TOML file, `TURNSTILE_*`, the command
    /// line). On success new requests use the new ones at once (requests in flight finish on
    /// the old); a policy that keeps its name keeps its state (its id). Other
    /// settings need a restart: those that changed are named in a warning and keep their
    /// running values. On failure nothing changes. Either way the result is logged and counted
    /// in `turnstile_config_reloads_total`. Without a source (a gateway built from values),
    /// there is nothing to reload.
    pub fn reload_policies(&self) -> Result<(), PolicyReloadError> {
        let Some(source) = self.config_source.get() else {
            return Ok(());
        };
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = self.load_policies(source);
        self.metrics.record_reload(result.is_ok());
        match result {
            Ok(count) => {
                tracing::info!(policies = count, "policies reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "policy reload failed: the previous policies stay in force");
                Err(error)
            }
        }
    }

    fn load_policies(&self, source: &ConfigSource) -> Result<usize, PolicyReloadError> {
        let loaded = Config::load(source.file.as_deref(), &source.overrides)?;
        let restart_needed = self.running.changed_settings(&loaded);
        if !restart_needed.is_empty() {
            tracing::warn!(
                settings = %restart_needed.join(", "),
                "these settings changed but take effect only after a restart; their running values stay"
            );
        }
        // The new policies, rules and upstream under every other running setting (the
        // gateway route's and forward-auth's policy names must still exist).
        let merged = Config {
            policies: loaded.policies,
            routes: loaded.routes,
            upstream: loaded.upstream,
            proxy: loaded.proxy,
            ..self.running.clone()
        };
        merged.validate()?;
        let previous = self.policies.load();
        let policies = PolicySet::new(&merged, &self.metrics, Some(&previous))?;
        if self.backend_kind() == BackendKind::Redis {
            for named in policies.iter() {
                turnstile_backend::validate_redis_policy(&named.policy)?;
            }
        }
        // The pool of upstream connections is kept unless the upstream or its settings change.
        let proxy = match self.proxy.load_full() {
            Some(running) if running.serves(merged.upstream.as_deref(), &merged.proxy) => {
                Some(running)
            }
            _ => build_proxy(&merged)?,
        };
        let count = merged.policies.len();
        self.backend_config
            .redis
            .policy_names
            .set(policies.names_by_id());
        self.policies.store(Arc::new(policies));
        self.proxy.store(proxy);
        Ok(count)
    }

    /// The proxy to `upstream` in force now, if one is set.
    pub(crate) fn proxy(&self) -> Option<Arc<Proxy>> {
        self.proxy.load_full()
    }

    /// The rate limit service's rules in force now.
    pub(crate) fn rules(&self) -> Arc<ActiveRules> {
        self.rules.load_full()
    }

    /// The directory the rules are loaded from, if any.
    pub fn rules_dir(&self) -> Option<&Path> {
        self.rules_dir.as_deref()
    }

    /// Reloads the rule files. On success new calls see the whole new set at once (calls in
    /// flight finish on the old) and rules whose limit is unchanged keep their state (their
    /// keys are unchanged); on failure the old rules stay in force. Either way the result is
    /// logged and counted in `turnstile_config_reloads_total`.
    pub fn reload_rules(&self) -> Result<(), RulesError> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let result = ActiveRules::load(self.rules_dir(), self.backend_kind(), &self.metrics);
        self.metrics.record_reload(result.is_ok());
        match result {
            Ok(rules) => {
                self.metrics.set_rules_loaded(rules.set.rules().len());
                self.rules.store(Arc::new(rules));
                tracing::info!("rules reloaded");
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "rule reload failed: the previous rules stay in force");
                Err(error)
            }
        }
    }

    /// Replaces the active backend with a new one of `kind` (same configuration otherwise).
    /// New checks go to the new backend at once; the old one drains what it has queued, then
    /// stops. Its keys' state does not carry over. When the new backend cannot be built from
    /// this configuration (a policy the redis script cannot hold exactly, say), nothing
    /// changes and the error says why.
    pub async fn switch_backend(&self, kind: BackendKind) -> Result<(), BuildError> {
        let _one_at_a_time = self.switching.lock().await;
        let config = BackendConfig {
            kind,
            ..self.backend_config.clone()
        };
        if kind == BackendKind::Redis {
            for named in self.policies.load().iter() {
                turnstile_backend::validate_redis_policy(&named.policy)?;
            }
            for rule in self.rules.load().set.rules() {
                if let turnstile_rules::Limit::Limited { policy, .. } = &rule.limit {
                    turnstile_backend::validate_redis_policy(policy)?;
                }
            }
        }
        let replacement = turnstile_backend::build(&config, &self.context)?;
        let previous = self.backend.swap(Arc::new(replacement));
        self.metrics.set_active(kind);
        tracing::warn!(from = %previous.kind(), to = %kind, "backend switched; the old one drains");
        tokio::spawn(async move { previous.shutdown().await });
        Ok(())
    }
}
