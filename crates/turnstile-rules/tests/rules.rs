//! envoyproxy/ratelimit configurations: what loads, what matches, and every bad file refused
//! with the file, the YAML path and the problem.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::time::Duration;

use turnstile_core::Policy;
use turnstile_rules::{Limit, LoadError, RuleSet, Unit, load_dir, parse_files};

fn load(files: &[(&str, &str)]) -> Result<turnstile_rules::Loaded, LoadError> {
    let files: Vec<(PathBuf, String)> = files
        .iter()
        .map(|(name, text)| (PathBuf::from(name), (*text).to_owned()))
        .collect();
    parse_files(&files)
}

fn rules(text: &str) -> RuleSet {
    match load(&[("rules.yaml", text)]) {
        Ok(loaded) => loaded.rules,
        Err(error) => panic!("should load: {error}"),
    }
}

fn error(text: &str) -> String {
    match load(&[("bad.yaml", text)]) {
        Ok(_) => panic!("should be refused:\n{text}"),
        Err(error) => error.to_string(),
    }
}

/// The label of the rule `entries` match in `domain`, and its key.
fn find(rules: &RuleSet, domain: &str, entries: &[(&str, &str)]) -> Option<(String, String)> {
    rules
        .find(domain, entries.iter().copied())
        .map(|found| (found.rule.label.clone(), found.key.as_str().to_owned()))
}

fn label(rules: &RuleSet, domain: &str, entries: &[(&str, &str)]) -> Option<String> {
    find(rules, domain, entries).map(|(label, _)| label)
}

/// envoyproxy/ratelimit's README example, nested, with defaults and specific values.
const BASIC: &str = r#"
domain: mongo_cps
descriptors:
  - key: database
    value: users
    rate_limit:
      unit: second
      requests_per_unit: 500
  - key: database
    value: default
    rate_limit:
      unit: second
      requests_per_unit: 500
  - key: remote_address
    rate_limit:
      unit: minute
      requests_per_unit: 10
  - key: message_type
    value: marketing
    descriptors:
      - key: to_number
        rate_limit:
          unit: day
          requests_per_unit: 5
  - key: to_number
    value: "2061111111"
    rate_limit:
      name: special
      unit: hour
      requests_per_unit: 100
      unit_multiplier: 2
      burst: 7
"#;

#[test]
fn the_most_specific_rule_at_the_request_depth_wins() {
    let rules = rules(BASIC);
    assert_eq!(
        label(&rules, "mongo_cps", &[("database", "users")]).as_deref(),
        Some("mongo_cps.database_users")
    );
    // A key with values configured but not this one, and no key-only rule: no limit.
    assert_eq!(label(&rules, "mongo_cps", &[("database", "other")]), None);
    // Key-only: each distinct value is its own counter.
    let (rule_a, key_a) = find(&rules, "mongo_cps", &[("remote_address", "10.0.0.1")]).unwrap();
    let (rule_b, key_b) = find(&rules, "mongo_cps", &[("remote_address", "10.0.0.2")]).unwrap();
    assert_eq!(rule_a, "mongo_cps.remote_address");
    assert_eq!(rule_a, rule_b);
    assert_ne!(key_a, key_b);
    // Nested: the rule is at depth 2, so depth 1 matches nothing, depth 2 matches, depth 3
    // (deeper than the tree) matches nothing.
    assert_eq!(
        label(&rules, "mongo_cps", &[("message_type", "marketing")]),
        None
    );
    assert_eq!(
        label(
            &rules,
            "mongo_cps",
            &[("message_type", "marketing"), ("to_number", "2061111111")]
        )
        .as_deref(),
        Some("mongo_cps.message_type_marketing.to_number")
    );
    assert_eq!(
        label(
            &rules,
            "mongo_cps",
            &[
                ("message_type", "marketing"),
                ("to_number", "1"),
                ("extra", "x")
            ]
        ),
        None
    );
    // A scalar value written as a YAML number is a string, as in envoyproxy/ratelimit.
    let found = rules
        .find("mongo_cps", [("to_number", "2061111111")].into_iter())
        .unwrap();
    assert_eq!(found.rule.name, "special");
    match &found.rule.limit {
        Limit::Limited {
            requests_per_unit,
            unit,
            policy,
        } => {
            assert_eq!((*requests_per_unit, *unit), (100, Unit::Hour));
            assert_eq!(policy.period(), Duration::from_secs(2 * 3600));
            assert_eq!(policy.burst(), 7);
            assert_eq!(policy.id(), Policy::RULES_KEYSPACE);
        }
        other => panic!("expected a limit, got {other:?}"),
    }
    // Unknown domain, empty descriptor: nothing.
    assert_eq!(label(&rules, "other", &[("database", "users")]), None);
    assert_eq!(label(&rules, "mongo_cps", &[]), None);
}

#[test]
fn burst_defaults_to_requests_per_unit() {
    let rules = rules(BASIC);
    let found = rules
        .find("mongo_cps", [("remote_address", "a")].into_iter())
        .unwrap();
    match &found.rule.limit {
        Limit::Limited { policy, .. } => {
            assert_eq!((policy.limit(), policy.burst()), (10, 10));
            assert_eq!(policy.period(), Duration::from_secs(60));
        }
        other => panic!("expected a limit, got {other:?}"),
    }
}

const WILDCARDS: &str = r#"
domain: files
descriptors:
  - key: path
    value: /exact
    rate_limit: { unit: minute, requests_per_unit: 1 }
  - key: path
    value: /shared/*
    share_threshold: true
    rate_limit: { unit: minute, requests_per_unit: 2 }
  - key: path
    value: /apart/*
    rate_limit: { unit: minute, requests_per_unit: 3 }
  - key: path
    value: /ex*
    rate_limit: { unit: minute, requests_per_unit: 4 }
  - key: path
    rate_limit: { unit: minute, requests_per_unit: 5 }
"#;

#[test]
fn wildcards_sit_between_exact_values_and_the_bare_key() {
    let rules = rules(WILDCARDS);
    let find = |value| find(&rules, "files", &[("path", value)]).unwrap();
    assert_eq!(find("/exact").0, "files.path_/exact");
    assert_eq!(find("/exactly").0, "files.path_/ex*");
    assert_eq!(find("/other").0, "files.path");
    // share_threshold: one counter for every value under the prefix.
    assert_eq!(find("/shared/a").0, "files.path_/shared/*");
    assert_eq!(find("/shared/a").1, find("/shared/b").1);
    // Without it, one counter per value.
    assert_eq!(find("/apart/a").0, "files.path_/apart/*");
    assert_ne!(find("/apart/a").1, find("/apart/b").1);
}

#[test]
fn keys_keep_domains_and_rules_apart_and_follow_the_limit() {
    let one = rules(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 5 }\n",
    );
    let other_domain = rules(
        "domain: b\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 5 }\n",
    );
    let changed = rules(
        "domain: a\ndescriptors:\n  - key: k\n    rate_limit: { unit: second, requests_per_unit: 6 }\n",
    );
    let same = rules(
        "domain: a\ndescriptors:\n  - key: k\n    shadow_mode: true\n    rate_limit: { unit: second, requests_per_unit: 5 }\n",
    );
    let key = |rules: &RuleSet, domain| find(rules, domain, &[("k", "v")]).unwrap().1;
    assert_ne!(key(&one, "a"), key(&other_domain, "b"));
    assert_ne!(
        key(&one, "a"),
        key(&changed, "a"),
        "a changed limit starts afresh"
    );
    assert_eq!(
        key(&one, "a"),
        key(&same, "a"),
        "an unchanged limit keeps its state"
    );
}

#[test]
fn unlimited_and_blocking_rules_load() {
    let rules = rules(
        r#"
domain: d
descriptors:
  - key: internal
    rate_limit: { unlimited: true }
  - key: banned
    rate_limit: { unit: second, requests_per_unit: 0 }
"#,
    );
    let limit = |key| {
        rules
            .find("d", [(key, "x")].into_iter())
            .unwrap()
            .rule
            .limit
            .clone()
    };
    assert_eq!(limit("internal"), Limit::Unlimited);
    assert_eq!(limit("banned"), Limit::Blocked { unit: Unit::Second });
}

#[test]
fn ignored_fields_warn_once() {
    let loaded = load(&[(
        "m.yaml",
        r#"
domain: d
descriptors:
  - key: a
    detailed_metric: true
    rate_limit: { unit: second, requests_per_unit: 1 }
  - key: b
    detailed_metric: true
    value_to_metric: true
    rate_limit: { unit: second, requests_per_unit: 1 }
"#,
    )])
    .unwrap();
    assert_eq!(loaded.warnings.len(), 2, "{:?}", loaded.warnings);
    assert!(loaded.warnings[0].contains("detailed_metric"));
    assert!(loaded.warnings[1].contains("value_to_metric"));
}

#[test]
fn bad_files_are_refused_with_file_line_path_and_problem() {
    let cases: &[(&str, &str)] = &[
        // envoyproxy/ratelimit's test/config cases.
        (
            "descriptors:\n  - key: a\n",
            "bad.yaml: domain: a rule file needs a domain",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 1 }\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 2 }\n",
            "bad.yaml:5: descriptors[1]: duplicate descriptor composite key `d.a`",
        ),
        (
            "domain: d\ndescriptors:\n  - value: v\n",
            "bad.yaml:3: descriptors[0].key: a descriptor needs a key",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: fortnight, requests_per_unit: 1 }\n",
            "bad.yaml:4: descriptors[0].rate_limit.unit: invalid rate limit unit `fortnight`",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { requests_per_unit: 1 }\n",
            "descriptors[0].rate_limit.unit: invalid rate limit unit ``",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unlimited: true, unit: day }\n",
            "descriptors[0].rate_limit.unit: should not specify rate limit unit when unlimited",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { name: me, unit: day, requests_per_unit: 1, replaces: [{ name: me }] }\n",
            "descriptors[0].rate_limit.replaces[0].name: replaces should not contain name of same descriptor",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { name: me, unit: day, requests_per_unit: 1, replaces: [{ name: '' }] }\n",
            "descriptors[0].rate_limit.replaces[0].name: should not have an empty replaces entry",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: day, requests_per_unit: 1, unit_multiplier: 0 }\n",
            "descriptors[0].rate_limit.unit_multiplier: must be at least 1",
        ),
        // A misspelled field: an error, with the line.
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: day\n      request_per_unit: 1\n",
            "bad.yaml:6: descriptors[0].rate_limit.request_per_unit: unknown field `request_per_unit`, expected one of `requests_per_unit`",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    ratelimit: {}\n",
            "bad.yaml:4: descriptors[0].ratelimit: unknown field `ratelimit`",
        ),
        // A list of something other than maps.
        (
            "domain: d\ndescriptors:\n  - a\n  - b\n",
            "bad.yaml:3: descriptors[0]: invalid type",
        ),
        // Not YAML at all.
        ("domain: [\n", "bad.yaml:"),
        // Turnstile's own: a rate GCRA cannot represent, a zero burst, burst with unlimited.
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 2000000000 }\n",
            "descriptors[0].rate_limit.requests_per_unit:",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 5, burst: 0 }\n",
            "descriptors[0].rate_limit.burst:",
        ),
        (
            "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unlimited: true, burst: 3 }\n",
            "descriptors[0].rate_limit.burst: an unlimited rule has no burst",
        ),
        // Nested paths are named in full.
        (
            "domain: d\ndescriptors:\n  - key: a\n    descriptors:\n      - key: b\n        rate_limit: { unit: week, requests_per_unit: 1 }\n      - key: b\n",
            "bad.yaml:7: descriptors[0].descriptors[1]: duplicate descriptor composite key `d.a.b`",
        ),
    ];
    for (text, expected) in cases {
        let message = error(text);
        assert!(
            message.contains(expected),
            "for\n{text}\nexpected `{expected}` in `{message}`"
        );
    }
}

#[test]
fn a_domain_in_two_files_is_refused_naming_both() {
    let file = "domain: d\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 1 }\n";
    let message = load(&[("one.yaml", file), ("two.yaml", file)])
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("two.yaml:1: domain: duplicate domain `d`: already loaded from one.yaml"),
        "{message}"
    );
}

#[test]
fn a_directory_loads_yaml_files_through_symlinks_and_skips_hidden_ones() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("..2026_12_01");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("one.yaml"),
        "domain: one\ndescriptors:\n  - key: a\n    rate_limit: { unit: second, requests_per_unit: 1 }\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("notes.txt"), "not a rule file").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not: [valid").unwrap();
    // The ConfigMap layout: `..data` → the timestamped directory, `one.yaml` → `..data/one.yaml`.
    std::os::unix::fs::symlink(&data, dir.path().join("..data")).unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("..data/one.yaml"),
        dir.path().join("one.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("two.yml"),
        "domain: two\ndescriptors:\n  - key: b\n    rate_limit: { unlimited: true }\n",
    )
    .unwrap();
    let loaded = load_dir(dir.path()).unwrap();
    let mut domains: Vec<_> = loaded.rules.domains().collect();
    domains.sort_unstable();
    assert_eq!(domains, ["one", "two"]);
    assert_eq!(loaded.files.len(), 2);
    assert!(matches!(
        load_dir(&dir.path().join("missing")),
        Err(LoadError::Io { .. })
    ));
}
