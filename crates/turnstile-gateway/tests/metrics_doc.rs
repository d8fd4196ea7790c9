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
