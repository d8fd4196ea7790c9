//! The configuration is written down in four places: `Config` (the truth), the `turnstile`
//! flags, the README's configuration table and `deploy/turnstile.example.toml`. These tests
//! fail when a setting is added to one and not the others, or a default or a flag drifts.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use turnstile_backend::{SimulatedWork, WorkKind};
use turnstile_gateway::Config;
use turnstile_gateway::cli::{Cli, NON_CONFIG_FLAGS, flag_for, render_default, value_at};

fn workspace_file(path: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path);
    std::fs::read_to_string(&path).unwrap_or_else(|error| panic!("{}: {error}", path.display()))
}

/// Every leaf key of a JSON object as a dotted path; the keys under `policies` are folded
/// into `policies.<name>`.
fn leaves(value: &Value, prefix: &str, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (key, child) in map {
                let key = if prefix == "policies" { "<name>" } else { key };
                let path = if prefix.is_empty() {
                    key.to_owned()
                } else {
                    format!("{prefix}.{key}")
                };
                leaves(child, &path, out);
            }
        }
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

/// Every setting of `Config`, with its default. Optional tables are filled in (with their
/// defaults left `null`) so their own keys count too.
fn config_keys() -> BTreeMap<String, Value> {
    let mut value = serde_json::to_value(Config::default()).unwrap();
    let work = SimulatedWork {
        kind: WorkKind::Sleep,
        duration: Duration::from_millis(1),
    };
    value["simulated_work"] = serde_json::to_value(work).unwrap();
    let mut keys = BTreeMap::new();
    leaves(&value, "", &mut keys);
    for key in keys
        .keys()
        .filter(|key| key.starts_with("simulated_work."))
        .cloned()
        .collect::<Vec<_>>()
    {
        keys.insert(key, Value::Null);
    }
    keys
}

/// One row of the README's configuration table: its keys (`a.b` / `.c` expanded), the
/// defaults it quotes in backticks, and the flag it names.
struct Row {
    keys: Vec<String>,
    defaults: Vec<String>,
    flag: Option<String>,
}

fn backticked(cell: &str) -> Vec<String> {
    cell.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

fn readme_rows() -> Vec<Row> {
    let readme = workspace_file("README.md");
    let table = readme
        .split("## Configuration reference")
        .nth(1)
        .expect("a configuration reference section");
    table
        .lines()
        .skip_while(|line| !line.starts_with("| key |"))
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (key_cell, default_cell, flag_cell) = (cells[1], cells[2], cells[3]);
            let mut keys = Vec::new();
            for key in backticked(key_cell) {
                let key = match key.strip_prefix('.') {
                    Some(suffix) => {
                        let first: &String = keys.first().expect("`.x` follows a full key");
                        let parent = first.rsplit_once('.').expect("a dotted key").0;
                        format!("{parent}.{suffix}")
                    }
                    None => key,
                };
                keys.push(key);
            }
            Row {
                keys,
                defaults: backticked(default_cell),
                flag: backticked(flag_cell).into_iter().next(),
            }
        })
        .collect()
}

#[test]
fn the_readme_table_lists_every_setting_once_with_its_default() {
    let config = config_keys();
    let rows = readme_rows();
    let documented: Vec<&String> = rows.iter().flat_map(|row| &row.keys).collect();
    let unique: BTreeSet<&String> = documented.iter().copied().collect();
    assert_eq!(unique.len(), documented.len(), "a key is documented twice");
    let config_names: BTreeSet<&String> = config.keys().collect();
    assert_eq!(
        unique, config_names,
        "README configuration table (left) vs Config (right)"
    );
    for row in &rows {
        // A row quoting one default per key states each; rows saying `off`, `none` or
        // naming another key (burst defaults to `limit`) quote no value to compare.
        let values: Vec<Option<String>> = row
            .keys
            .iter()
            .map(|key| render_default(&config[key]))
            .collect();
        // Policies have no default but the built-in ones (documented in their own sentence).
        let per_policy = row.keys.iter().any(|key| key.starts_with("policies."));
        if !per_policy && row.defaults.len() == row.keys.len() && values.iter().all(Option::is_some)
        {
            let values: Vec<String> = values.into_iter().map(Option::unwrap).collect();
            assert_eq!(row.defaults, values, "README default of {:?}", row.keys);
        }
    }
}

#[test]
fn every_flag_is_a_setting_and_the_readme_names_each_one() {
    let command = Cli::command_with_defaults();
    let defaults = serde_json::to_value(Config::default()).unwrap();
    let flags: BTreeMap<String, String> = command
        .get_arguments()
        .filter_map(|arg| Some((arg.get_id().to_string(), arg.get_long()?.to_owned())))
        .filter(|(id, _)| {
            !NON_CONFIG_FLAGS.contains(&id.as_str()) && id != "help" && id != "version"
        })
        .collect();
    for (id, long) in &flags {
        assert!(
            value_at(&defaults, id).is_some(),
            "--{long} is not a configuration key"
        );
        assert_eq!(*long, flag_for(id), "--{long} is named after `{id}`");
        // Its help ends in the default `Config` gives, when it has one.
        let arg = command
            .get_arguments()
            .find(|arg| arg.get_id() == id.as_str())
            .unwrap();
        let help = arg.get_help().unwrap().to_string();
        if let Some(default) = value_at(&defaults, id).and_then(render_default) {
            assert!(
                help.ends_with(&format!("[default: {default}]")),
                "--{long}: {help}"
            );
        }
    }
    let documented: BTreeMap<String, String> = readme_rows()
        .into_iter()
        .filter_map(|row| {
            Some((
                row.keys[0].clone(),
                row.flag?.trim_start_matches("--").to_owned(),
            ))
        })
        .collect();
    assert_eq!(
        documented, flags,
        "README flag column (left) vs the turnstile binary's flags (right)"
    );
}

#[test]
fn the_example_file_shows_every_setting() {
    // Settings that are off by default appear commented out: `# key = value`, `# [table]`.
    let example = workspace_file("deploy/turnstile.example.toml");
    let uncommented: String = example
        .lines()
        .map(|line| {
            let body = line.strip_prefix("# ").unwrap_or(line);
            let is_setting = body.starts_with('[')
                || body.split_once(" = ").is_some_and(|(key, _)| {
                    key.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                });
            if line.starts_with("# ") && is_setting {
                body
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    let parsed: toml::Value = toml::from_str(&uncommented).expect("the example is TOML");
    let mut shown = BTreeMap::new();
    leaves(&serde_json::to_value(parsed).unwrap(), "", &mut shown);
    let shown: BTreeSet<String> = shown.into_keys().collect();
    let config: BTreeSet<String> = config_keys().into_keys().collect();
    assert_eq!(
        shown, config,
        "deploy/turnstile.example.toml (left) vs Config (right)"
    );
}
