//! The named policies, resolved at start-up with everything the request path needs.

use std::collections::HashMap;

use turnstile_core::Policy;

use crate::config::{Config, ConfigError, FailureMode};
use crate::error::ApiError;
use crate::headers::PolicyHeaders;
use crate::metrics::{Metrics, PolicyCounters};

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
}

impl PolicySet {
    pub(crate) fn new(config: &Config, metrics: &Metrics) -> Result<Self, ConfigError> {
        let mut policies = Vec::with_capacity(config.policies.len());
        let mut by_name = HashMap::with_capacity(config.policies.len());
        for (id, (name, policy_config)) in config.policies.iter().enumerate() {
            let id = u16::try_from(id)
                .ok()
                .filter(|id| *id < Policy::RULES_KEYSPACE)
                .ok_or_else(|| ConfigError::Invalid {
                    field: "policies".into(),
                    problem: "at most 65535 policies".into(),
                })?;
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
        Ok(Self { policies, by_name })
    }

    pub(crate) fn get(&self, name: &str) -> Option<&NamedPolicy> {
        self.index_of(name).map(|index| &self.policies[index])
    }

    /// The position of `name`, resolved once at start-up by routes that always use the same
    /// policy, so the request path indexes instead of hashing a name.
    pub(crate) fn index_of(&self, name: &str) -> Option<usize> {
        self.by_name.get(name).copied()
    }

    /// Every policy, in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &NamedPolicy> {
        self.policies.iter()
    }

    /// The policy at a position from [`PolicySet::index_of`].
    pub(crate) fn at(&self, index: usize) -> &NamedPolicy {
        &self.policies[index]
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
