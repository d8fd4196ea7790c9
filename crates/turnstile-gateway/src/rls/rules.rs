//! [`ActiveRules`]: a loaded [`RuleSet`] with what the request path needs per rule, built once
//! per load so a call only indexes.

use std::collections::HashMap;
use std::path::Path;

use axum::http::HeaderMap;
use prometheus::IntCounter;
use turnstile_backend::BackendKind;
use turnstile_core::Decision;
use turnstile_rules::{Limit, LoadError, Rule, RuleSet};

use crate::headers::PolicyHeaders;
use crate::metrics::{Metrics, RuleCounters};

/// Why rules could not be (re)loaded; a reload keeps the rules in force.
#[derive(Debug, thiserror::Error)]
pub enum RulesError {
    /// A file could not be read or is not a valid rule file.
    #[error("rule files: {0}")]
    Load(#[from] LoadError),
    /// A rule the `redis` backend cannot hold exactly.
    #[error("rule `{label}`: {problem}")]
    Backend {
        /// The rule's label (`domain.key_value...`).
        label: String,
        /// Why.
        problem: String,
    },
}

/// The rules in force, swapped whole on a reload.
pub(crate) struct ActiveRules {
    pub(crate) set: RuleSet,
    /// By [`Rule::index`].
    per_rule: Vec<PerRule>,
    /// `no_rule` decisions by loaded domain.
    unmatched: HashMap<String, IntCounter>,
    /// `no_rule` decisions of domains not loaded (labelled `domain=""`: a request's domain
    /// is never a label).
    unmatched_unknown: IntCounter,
}

struct PerRule {
    /// The RateLimit headers of a limited or blocking rule.
    headers: Option<PolicyHeaders>,
    counters: RuleCounters,
}

impl ActiveRules {
    /// The rules in `dir` (none when `None`), checked against the backend `kind` serving them.
    pub(crate) fn load(
        dir: Option<&Path>,
        kind: BackendKind,
        metrics: &Metrics,
    ) -> Result<Self, RulesError> {
        let Some(dir) = dir else {
            return Ok(Self::new(RuleSet::default(), metrics));
        };
        let loaded = turnstile_rules::load_dir(dir)?;
        for warning in &loaded.warnings {
            tracing::warn!(dir = %dir.display(), "{warning}");
        }
        let rules = Self::new(loaded.rules, metrics);
        rules.check_backend(kind)?;
        tracing::info!(
            dir = %dir.display(),
            files = loaded.files.len(),
            rules = rules.set.rules().len(),
            "rate limit rules loaded"
        );
        Ok(rules)
    }

    fn new(set: RuleSet, metrics: &Metrics) -> Self {
        let per_rule = set
            .rules()
            .iter()
            .map(|rule| PerRule {
                headers: match &rule.limit {
                    Limit::Unlimited => None,
                    Limit::Blocked { unit } => {
                        Some(PolicyHeaders::new(header_name(rule), 0, unit.duration()))
                    }
                    Limit::Limited { policy, .. } => Some(PolicyHeaders::new(
                        header_name(rule),
                        policy.limit(),
                        policy.period(),
                    )),
                },
                counters: metrics.rule_counters(&rule.domain, &rule.label),
            })
            .collect();
        let unmatched = set
            .domains()
            .map(|domain| (domain.to_owned(), metrics.unmatched_counter(domain)))
            .collect();
        Self {
            per_rule,
            unmatched,
            unmatched_unknown: metrics.unmatched_counter(""),
            set,
        }
    }

    /// Whether every rule can be decided by a backend of `kind` (redis holds tolerances
    /// below 2^53 ns only).
    pub(crate) fn check_backend(&self, kind: BackendKind) -> Result<(), RulesError> {
        if kind != BackendKind::Redis {
            return Ok(());
        }
        for rule in self.set.rules() {
            if let Limit::Limited { policy, .. } = &rule.limit {
                turnstile_backend::validate_redis_policy(policy).map_err(|error| {
                    RulesError::Backend {
                        label: rule.label.clone(),
                        problem: error.to_string(),
                    }
                })?;
            }
        }
        Ok(())
    }

    pub(crate) fn counters(&self, rule: &Rule) -> &RuleCounters {
        &self.per_rule[rule.index].counters
    }

    pub(crate) fn count_unmatched(&self, domain: &str) {
        self.unmatched
            .get(domain)
            .unwrap_or(&self.unmatched_unknown)
            .inc();
    }

    /// `Retry-After` and the RateLimit headers of rule `index` for `decision`.
    pub(crate) fn insert_headers(
        &self,
        index: usize,
        headers: &mut HeaderMap,
        decision: &Decision,
        legacy: bool,
    ) {
        if let Some(policy_headers) = self
            .per_rule
            .get(index)
            .and_then(|rule| rule.headers.as_ref())
        {
            policy_headers.insert(headers, decision, legacy);
        }
    }
}

/// The name a rule's RateLimit headers carry: its `name`, else its label.
fn header_name(rule: &Rule) -> &str {
    if rule.name.is_empty() {
        &rule.label
    } else {
        &rule.name
    }
}
