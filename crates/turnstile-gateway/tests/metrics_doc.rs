//! Every metric the gateway exports is documented in docs/METRICS.md, with its type and its
//! labels. The gateway is exercised first (decisions, drops, a crash and restart, a fault, a
//! pool) so that every metric family has series to export.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use common::{TestGateway, get, json_post};
use serde_json::json;
use turnstile_backend::BackendKind;
use turnstile_gateway::Config;

/// `name → (type, labels)` from the documentation table.
fn documented() -> BTreeMap<String, (String, BTreeSet<String>)> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/METRICS.md");
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|line| line.starts_with("| `turnstile_"))
        .map(|line| {
            let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
            let labels = cells[2]
                .split(',')
                .map(|label| label.trim().trim_matches('`').to_owned())
                .filter(|label| !label.is_empty())
                .collect();
            (
                cells[0].trim_matches('`').to_owned(),
                (cells[1].to_owned(), labels),
            )
        })
        .collect()
}

/// `name → (type, labels)` from the exposition text.
fn exported(text: &str) -> BTreeMap<String, (String, BTreeSet<String>)> {
    let mut families: BTreeMap<String, (String, BTreeSet<String>)> = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            families.insert(name.to_owned(), (kind.to_owned(), BTreeSet::new()));
        } else if !line.starts_with('#') && !line.is_empty() {
            let (series, _) = line.rsplit_once(' ').unwrap();
            let (name, labels) = series.split_once('{').unwrap_or((series, ""));
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| {
                    name.strip_suffix(suffix)
                        .filter(|base| families.contains_key(*base))
                })
                .unwrap_or(name);
            let entry = families.get_mut(family).unwrap();
            for pair in labels
                .trim_end_matches('}')
                .split(',')
                .filter(|p| !p.is_empty())
            {
                let label = pair.split_once('=').unwrap().0;
                if label != "le" {
                    entry.1.insert(label.to_owned());
                }
            }
        }
    }
    families
}

#[tokio::test(start_paused = true)]
async fn every_exported_metric_is_documented_with_its_type_and_labels() {
    let gw = TestGateway::new(Config {
        backend: BackendKind::Sharded,
        shards: 2,
        pool_size: 2,
        max_keys: 1,
        ..common::small_config()
    });
    tokio::time::sleep(Duration::from_millis(1)).await;
    for key in ["a", "a", "a", "a", "a", "a", "b"] {
        gw.check(json!({ "key": key })).await;
    }
    gw.admin(json_post("/admin/crash/shard/1", "")).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let text = gw.send(get("/metrics")).await.text;

    let documented = documented();
    let exported = exported(&text);
    assert!(
        exported.len() >= 12,
        "exercise more of the gateway: {:?}",
        exported.keys()
    );
    for (name, (kind, labels)) in &exported {
        let Some((documented_kind, documented_labels)) = documented.get(name) else {
            panic!("{name} is exported but not documented in docs/METRICS.md");
        };
        assert_eq!(kind, documented_kind, "{name}: type");
        assert_eq!(labels, documented_labels, "{name}: labels");
    }
}

/// The value of the sample `series` (name and labels exactly as exported), or 0 if absent.
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |value| value.trim().parse().unwrap())
}

#[tokio::test(start_paused = true)]
async fn http_requests_are_timed_by_route_template_and_status_class() {
    let gw = TestGateway::new(common::small_config());
    gw.check(json!({ "key": "a" })).await;
    gw.check(json!({ "key": "a" })).await;
    gw.check(json!({ "key": "" })).await;
    gw.send(get("/healthz")).await;
    gw.send(get("/readyz")).await;
    gw.send(get("/metrics")).await;
    gw.send(get("/v1/forward-auth")).await;
    // A known path asked with the wrong method is still that route.
    gw.send(get("/v1/check")).await;
    // Near misses of a route's path are client-chosen paths like any other.
    gw.send(get("/v1/check/")).await;
    gw.send(get("/healthz?verbose=1")).await;
    // Client-chosen paths land on the fallback (the demo gateway route), never as a label.
    gw.send(get("/some/client/chosen/path?x=1")).await;
    gw.send(get("/another")).await;
    let text = gw.send(get("/metrics")).await.text;
    let count = |route: &str, class: &str| {
        sample(
            &text,
            &format!(
                "turnstile_http_request_duration_seconds_count{{route=\"{route}\",status_class=\"{class}\"}}"
            ),
        )
    };
    assert_eq!(count("/v1/check", "2xx"), 2.0);
    assert_eq!(count("/v1/check", "4xx"), 2.0);
    assert_eq!(count("/healthz", "2xx"), 2.0);
    assert_eq!(count("/readyz", "2xx"), 1.0);
    assert_eq!(count("/metrics", "2xx"), 1.0);
    assert_eq!(count("/v1/forward-auth", "2xx"), 1.0);
    assert_eq!(count("fallback", "2xx"), 3.0);
    assert!(
        !text.contains("/some/client"),
        "a raw path leaked into a label"
    );
}

#[tokio::test(start_paused = true)]
async fn keys_swept_out_of_a_full_table_are_counted_as_evicted() {
    for backend in [
        BackendKind::Actor,
        BackendKind::Sharded,
        BackendKind::Concurrent,
    ] {
        let gw = TestGateway::new(Config {
            backend,
            shards: 1,
            max_keys: 2,
            ..common::small_config()
        });
        gw.check(json!({ "key": "a" })).await;
        gw.check(json!({ "key": "b" })).await;
        assert_eq!(gw.state.metrics().keys_evicted_total(backend), 0);
        // Both keys' states expire within a period; a new key against the full table forces a
        // sweep, which removes them both.
        gw.clock.advance(Duration::from_secs(5));
        let third = gw.check(json!({ "key": "c" })).await;
        assert_eq!(third.json["allowed"], true, "{backend}: {}", third.text);
        assert_eq!(
            gw.state.metrics().keys_evicted_total(backend),
            2,
            "{backend}"
        );
        let text = gw.send(get("/metrics")).await.text;
        assert_eq!(
            sample(
                &text,
                &format!("turnstile_keys_evicted_total{{backend=\"{backend}\"}}")
            ),
            2.0
        );
    }
}
