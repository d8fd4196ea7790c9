//! The descriptor walk: a request's entries against the rule tree, and the backend key of a
//! match.

use std::collections::HashMap;
use std::fmt::Write;

use arrayvec::ArrayString;
use turnstile_core::MAX_KEY_LEN;
use xxhash_rust::xxh3::Xxh3;

use crate::rule::Rule;

/// Every loaded rule, by domain. Immutable once built: a reload builds a new one and swaps it.
#[derive(Debug, Default)]
pub struct RuleSet {
    pub(crate) domains: HashMap<String, Level>,
    pub(crate) rules: Vec<Rule>,
}

/// The descriptors of one level of the tree, by key.
#[derive(Debug, Default)]
pub(crate) struct Level {
    pub(crate) keys: HashMap<String, KeyNodes>,
}

/// The descriptors of one level that share a key.
#[derive(Debug, Default)]
pub(crate) struct KeyNodes {
    /// `key` + exact `value`.
    pub(crate) exact: HashMap<String, Node>,
    /// `key` + a `value` with a `*`, in file order (the first that matches wins).
    pub(crate) wildcards: Vec<Wildcard>,
    /// `key` alone: each distinct value counted apart.
    pub(crate) any: Option<Node>,
}

#[derive(Debug)]
pub(crate) struct Wildcard {
    pub(crate) pattern: String,
    /// `share_threshold`: every matching value shares the pattern's counter.
    pub(crate) shared: bool,
    pub(crate) node: Node,
}

#[derive(Debug, Default)]
pub(crate) struct Node {
    /// Index into [`RuleSet::rules`].
    pub(crate) rule: Option<usize>,
    pub(crate) children: Level,
}

/// A descriptor that matched a rule.
#[derive(Debug)]
pub struct Match<'a> {
    /// The rule at the request's depth.
    pub rule: &'a Rule,
    /// Where its state lives in the backend (under
    /// [`Policy::RULES_KEYSPACE`](turnstile_core::Policy::RULES_KEYSPACE)).
    pub key: RuleKey,
}

/// A backend key built on the stack: the rule's limit signature, then the domain and every
/// entry, each length-prefixed (`<len>:<text>`) so no two descriptors compose the same key
/// whatever their bytes. Longer than [`MAX_KEY_LEN`], it is the signature and a 128-bit hash
/// of the whole instead (a collision needs about 2^64 distinct long descriptors).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleKey(ArrayString<MAX_KEY_LEN>);

impl RuleKey {
    /// The key, never empty, at most [`MAX_KEY_LEN`] bytes.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Builds a [`RuleKey`] part by part (each length-prefixed), hashing everything as it goes in
/// case it overflows: the one way a backend key is composed, for descriptors and for the
/// gateway's request rules alike.
#[derive(Default)]
pub struct KeyBuilder {
    text: ArrayString<MAX_KEY_LEN>,
    overflowed: bool,
    hash: Xxh3,
}

impl KeyBuilder {
    /// An empty key.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends one part.
    pub fn part(&mut self, part: &str) {
        self.hash.update(&(part.len() as u64).to_le_bytes());
        self.hash.update(part.as_bytes());
        if !self.overflowed {
            self.overflowed = write!(self.text, "{}:{part}", part.len()).is_err();
        }
    }

    /// The key: `tag` (at most 48 bytes), then the parts, or `tag#<hash>` when that would
    /// exceed [`MAX_KEY_LEN`].
    pub fn finish(self, tag: &str) -> RuleKey {
        let mut key = ArrayString::new();
        // The tag is at most 48 bytes, the text at most MAX_KEY_LEN - 48 (checked below), the
        // hash 33: each branch fits.
        if !self.overflowed && tag.len() + self.text.len() <= MAX_KEY_LEN {
            let _ = key.try_push_str(tag);
            let _ = key.try_push_str(&self.text);
        } else {
            let _ = write!(key, "{tag}#{:032x}", self.hash.digest128());
        }
        RuleKey(key)
    }
}

impl RuleSet {
    /// The rule a descriptor matches in `domain`, and its key; `None` for an unknown domain, an
    /// empty descriptor, or no rule at the descriptor's depth.
    ///
    /// At each level the entry's key + exact value wins, then the first wildcard value that
    /// matches, then the key alone; the walk stops where the tree does. A rule applies only at
    /// the last entry (envoyproxy/ratelimit: "the request depth must match the config depth").
    pub fn find<'a, 'r>(
        &self,
        domain: &str,
        entries: impl ExactSizeIterator<Item = (&'r str, &'r str)>,
    ) -> Option<Match<'_>> {
        let mut level = self.domains.get(domain)?;
        let depth = entries.len();
        let mut key = KeyBuilder::new();
        key.part(domain);
        for (position, (entry_key, entry_value)) in entries.enumerate() {
            let nodes = level.keys.get(entry_key)?;
            let (node, counted_value) = if let Some(node) = nodes.exact.get(entry_value) {
                (node, entry_value)
            } else if let Some(wildcard) = nodes
                .wildcards
                .iter()
                .find(|wildcard| wildcard_matches(&wildcard.pattern, entry_value))
            {
                let counted = if wildcard.shared {
                    wildcard.pattern.as_str()
                } else {
                    entry_value
                };
                (&wildcard.node, counted)
            } else {
                (nodes.any.as_ref()?, entry_value)
            };
            key.part(entry_key);
            key.part(counted_value);
            if position + 1 == depth {
                let rule = &self.rules[node.rule?];
                return Some(Match {
                    key: key.finish(&rule.state_tag),
                    rule,
                });
            }
            level = &node.children;
        }
        None
    }

    /// Every rule, in load order ([`Rule::index`] is the position).
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// The domains loaded, in no particular order.
    pub fn domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// Whether `domain` is loaded.
    pub fn has_domain(&self, domain: &str) -> bool {
        self.domains.contains_key(domain)
    }
}

/// Whether `text` matches `pattern`, where each `*` stands for any run of characters (the
/// common case, a trailing `*`, is a prefix test). Hand-written: a glob crate compiles a
/// pattern for paths, with `?`, `[...]` and `/` semantics envoyproxy/ratelimit does not have.
pub(crate) fn wildcard_matches(pattern: &str, text: &str) -> bool {
    let Some((head, last)) = pattern.rsplit_once('*') else {
        return pattern == text;
    };
    let (first, middle) = head.split_once('*').unwrap_or((head, ""));
    if text.len() < first.len() + last.len() || !text.starts_with(first) || !text.ends_with(last) {
        return false;
    }
    // Between the fixed ends, each middle part leftmost-first: if any placement fits, that one does.
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in middle.split('*').filter(|part| !part.is_empty()) {
        match rest.find(part) {
            Some(at) => rest = &rest[at + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_match_like_globs_of_stars_only() {
        assert!(wildcard_matches("files/*", "files/a.txt"));
        assert!(wildcard_matches("files/*", "files/"));
        assert!(!wildcard_matches("files/*", "file"));
        assert!(wildcard_matches("/api*v1", "/api/users/v1"));
        assert!(wildcard_matches("/api*v1", "/apiv1"));
        assert!(!wildcard_matches("/api*v1", "/api/v2"));
        assert!(wildcard_matches("svc*ep*rpc", "svc-a-ep-b-rpc"));
        assert!(!wildcard_matches("svc*ep*rpc", "svc-a-rpc"));
        // The suffix may not reuse what a middle part consumed.
        assert!(!wildcard_matches("a*ab", "ab"));
        assert!(wildcard_matches("*", ""));
        assert!(wildcard_matches("exact", "exact"));
        assert!(!wildcard_matches("exact", "exactly"));
    }

    #[test]
    fn long_keys_are_hashed_within_the_limit_and_stay_distinct() {
        let build = |value: &str| {
            let mut key = KeyBuilder::new();
            key.part("domain");
            key.part("key");
            key.part(value);
            key.finish("10/SECOND1/10|")
        };
        let short = build("v");
        assert_eq!(short.as_str(), "10/SECOND1/10|6:domain3:key1:v");
        let long_a = build(&"a".repeat(400));
        let long_b = build(&format!("{}b", "a".repeat(399)));
        assert!(long_a.as_str().len() <= MAX_KEY_LEN);
        assert!(long_a.as_str().starts_with("10/SECOND1/10|#"));
        assert_ne!(long_a, long_b);
        // Length prefixes keep `("ab", "c")` and `("a", "bc")` apart.
        let mut one = KeyBuilder::new();
        one.part("ab");
        one.part("c");
        let mut two = KeyBuilder::new();
        two.part("a");
        two.part("bc");
        assert_ne!(one.finish(""), two.finish(""));
    }
}
