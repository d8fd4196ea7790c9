//! The named policies, resolved at start-up (and at each reload of the TOML file) with
//! everything the request path needs.
//!
//! # Invariants
//!
//! - A policy keeps its id (its keyspace in the backends) across reloads for as long as its
//!   name stays; a new name gets an id never used before in this process, so a policy added
//!   by a reload never inherits a removed one's state.

use std::collections::HashMap;
use std::sync::Arc;

use turnstile_core::Policy;

use crate::config::{Config, ConfigError, FailureMode};
use crate::error::ApiError;
use crate::headers::PolicyHeaders;
use crate::metrics::{Metrics, PolicyCounters};
use crate::request_rules::{KeySource, RouteTable};

/// A policy with its name, failure mode, headers and counters.
pub(crate) struct NamedPolicy {
    pub(crate) name: String,
    pub(crate) policy: Policy,
    pub(crate) failure_mode: FailureMode,
    pub(crate) headers: PolicyHeaders,
    /// The `message` of a denial on the client-limited routes, written once.
    pub(crate) denied_message: String,
    pub(crate) counters: PolicyCounters,
}

/// Every configured policy, by name.
pub(crate) struct PolicySet {
    policies: Vec<NamedPolicy>,
    by_name: HashMap<String, usize>,
    /// The next id never given to a policy.
    next_id: u16,
    /// The gateway route's request rules (`[[routes]]`, or `gateway.policy` for every path).
    gateway: Arc<RouteTable>,
    /// Forward-auth's request rules: the gateway's very table when `[[routes]]` are
    /// configured (built once), else `forward_auth.policy` for every path.
    forward_auth: Arc<RouteTable>,
}

impl PolicySet {
    /// The policies of `config`; those also in `previous` keep their ids.
    pub(crate) fn new(
        config: &Config,
        metrics: &Metrics,
        previous: Option<&PolicySet>,
    ) -> Result<Self, ConfigError> {
        let mut policies = Vec::with_capacity(config.policies.len());
        let mut by_name = HashMap::with_capacity(config.policies.len());
        let mut next_id = previous.map_or(0, |previous| previous.next_id);
        for (name, policy_config) in &config.policies {
            let kept = previous
                .and_then(|previous| previous.get(name))
                .map(|named| named.policy.id());
            let id = match kept {
                Some(id) => id,
                None if next_id < Policy::RULES_KEYSPACE => {
                    next_id += 1;
                    next_id - 1
                }
                None => {
                    return Err(ConfigError::Invalid {
                        field: "policies".into(),
                        problem: "at most 65535 policies (counting every one added by a reload since start-up)".into(),
                    });
                }
            };
            let policy = config.policy(name, policy_config, id)?;
            by_name.insert(name.clone(), policies.len());
            policies.push(NamedPolicy {
                name: name.clone(),
                headers: PolicyHeaders::new(name, policy.limit(), policy.period()),
                denied_message: format!("rate limit exceeded for policy `{name}`"),
                counters: metrics.policy_counters(name),
                failure_mode: policy_config.failure_mode,
                policy,
            });
        }
        // Validation guarantees both names exist; resolving them here keeps it that way.
        let resolve = |field: &str, name: &str| {
            by_name
                .get(name)
                .copied()
                .ok_or_else(|| ConfigError::Invalid {
                    field: field.into(),
                    problem: format!("unknown policy `{name}`"),
                })
        };
        let gateway_policy = resolve("gateway.policy", &config.gateway.policy)?;
        let forward_auth_policy = resolve("forward_auth.policy", &config.forward_auth.policy)?;
        // Built with the policies, and swapped with them: a rule's policy index always points
        // into the set it was built with.
        let (gateway, forward_auth) = if config.routes.is_empty() {
            let forward_auth_key = match &config.forward_auth.key_header {
                Some(name) => KeySource::Header(
                    axum::http::HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                        .map_err(|_| ConfigError::Invalid {
                            field: "forward_auth.key_header".into(),
                            problem: format!("`{name}` is not a valid HTTP header name"),
                        })?,
                ),
                None => KeySource::ClientIp,
            };
            (
                Arc::new(RouteTable::single(
                    "gateway",
                    gateway_policy,
                    KeySource::ClientIp,
                    metrics,
                )),
                Arc::new(RouteTable::single(
                    "forward-auth",
                    forward_auth_policy,
                    forward_auth_key,
                    metrics,
                )),
            )
        } else {
            let known = config
                .policies
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ");
            let table = Arc::new(RouteTable::new(
                &config.routes,
                |name| by_name.get(name).copied(),
                &known,
                metrics,
            )?);
            (Arc::clone(&table), table)
        };
        Ok(Self {
            policies,
            by_name,
            next_id,
            gateway,
            forward_auth,
        })
    }

    /// The gateway route's request rules.
    pub(crate) fn gateway(&self) -> &RouteTable {
        &self.gateway
    }

    /// Forward-auth's request rules.
    pub(crate) fn forward_auth(&self) -> &RouteTable {
        &self.forward_auth
    }

    /// The policy at `index` (as a [`RouteTable`] of this set names it).
    pub(crate) fn at(&self, index: usize) -> Option<&NamedPolicy> {
        self.policies.get(index)
    }

    /// Policy names by id (ids no policy holds now are empty), for the redis backend's keys.
    pub(crate) fn names_by_id(&self) -> Vec<String> {
        let mut names = vec![String::new(); usize::from(self.next_id)];
        for named in &self.policies {
            names[usize::from(named.policy.id())] = named.name.clone();
        }
        names
    }

    pub(crate) fn get(&self, name: &str) -> Option<&NamedPolicy> {
        self.index_of(name).map(|index| &self.policies[index])
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Every policy, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &NamedPolicy> {
        self.policies.iter()
    }

    /// The policy a request names (`default` when it names none), or the API error saying
    /// which policies exist.
    pub(crate) fn resolve(&self, name: Option<&str>) -> Result<&NamedPolicy, ApiError> {
        let name = name.unwrap_or("default");
        self.get(name).ok_or_else(|| ApiError::UnknownPolicy {
            name: name.to_owned(),
            known: self.names(),
        })
    }

    /// The names, for error messages.
    pub(crate) fn names(&self) -> String {
        let mut names: Vec<_> = self.policies.iter().map(|p| p.name.as_str()).collect();
        names.sort_unstable();
        names.join(", ")
    }
}
