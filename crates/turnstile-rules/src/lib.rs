//! Descriptor rules: envoyproxy/ratelimit's configuration format, loaded, validated, and
//! matched against a request's descriptors to a GCRA [`Policy`](turnstile_core::Policy) and a
//! backend key.
//!
//! A rule file is envoyproxy/ratelimit's YAML, accepted unchanged: a `domain` and a tree of
//! `descriptors`, each a `key`, an optional `value` (a `*` in it is a wildcard) and an optional
//! `rate_limit`. A request descriptor is a list of `(key, value)` entries; walking the tree one
//! entry per level, the most specific node wins at each level (key + exact value, then the first
//! wildcard value that matches, then the key alone), and a rule applies only if it sits at the
//! request's depth, as envoyproxy/ratelimit decides.
//!
//! # Layout
//!
//! - `file`: the YAML wire types (`deny_unknown_fields`: a misspelled field is an error).
//! - `load`: [`load_dir`] and [`parse_files`]: files → a validated [`RuleSet`], or a
//!   [`LoadError`] naming the file, the YAML path (and line, when the parser knows it).
//! - `locate`: the line of a YAML path, for problems found after parsing.
//! - `rule`: [`Rule`], [`Limit`], [`Unit`]: what a matched descriptor is limited by.
//! - `matcher`: [`RuleSet::find`], the descriptor walk, and [`RuleKey`], the backend key.
//!
//! # Invariants
//!
//! - Matching never allocates: the walk borrows the request, and the key is built on the stack
//!   (hashed when it would exceed [`turnstile_core::MAX_KEY_LEN`]).
//! - Two rules never share state: a key names the domain, every entry of the descriptor, and
//!   the rule's limit, so two domains, two rules, or one rule before and after its limit changed
//!   on a reload count separately, while an unchanged rule keeps its state across a reload.
//! - Every policy is in the keyspace [`turnstile_core::Policy::RULES_KEYSPACE`], apart from every
//!   named policy.
//! - A rule's [`Rule::label`] comes from the configuration only (never a request's value), so
//!   it can be a metric label.

mod file;
mod load;
mod locate;
mod matcher;
mod rule;

pub use load::{LoadError, Loaded, load_dir, parse_files};
pub use matcher::{KeyBuilder, Match, RuleKey, RuleSet};
pub use rule::{Limit, Rule, Unit};
