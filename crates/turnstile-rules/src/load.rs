//! Rule files → a validated [`RuleSet`].
//!
//! The checks are envoyproxy/ratelimit's (its `test/config/*.yaml` cases of bad files: empty
//! domain, duplicate domain, empty or duplicate descriptor key, unknown unit, `unlimited` with
//! a `unit`, an empty `replaces` entry or one naming its own limit, a zero `unit_multiplier`,
//! unknown fields) plus Turnstile's own (a `burst` of zero or with `unlimited`, a rate GCRA
//! cannot represent).

use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use arrayvec::ArrayString;
use turnstile_core::Policy;

use crate::file::{FileDescriptor, FileRateLimit, FileRoot};
use crate::matcher::{Level, Node, RuleSet, Wildcard};
use crate::rule::{Limit, Rule, Unit};

/// A rule set and what the load has to say about it.
#[derive(Debug)]
pub struct Loaded {
    /// The rules.
    pub rules: RuleSet,
    /// Fields accepted and ignored (one message per kind of field, not per descriptor).
    pub warnings: Vec<String>,
    /// The files read, in load order.
    pub files: Vec<PathBuf>,
}

/// Why rule files could not be loaded. The old rules stay in force on a reload.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The directory (or a file in it) could not be read.
    #[error("{path}: {source}")]
    Io {
        /// What could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file is not a valid rule file.
    #[error("{file}{}: {}{problem}", line.map(|line| format!(":{line}")).unwrap_or_default(), if yaml_path.is_empty() { String::new() } else { format!("{yaml_path}: ") })]
    Invalid {
        /// The file.
        file: PathBuf,
        /// Where in it, as a YAML path (`descriptors[0].rate_limit.unit`); empty for the root.
        yaml_path: String,
        /// The line, when the YAML parser knows it.
        line: Option<usize>,
        /// What is wrong.
        problem: String,
    },
}

/// Loads every `*.yaml` / `*.yml` file of `dir`, in name order, following symlinks and skipping
/// hidden entries (so a Kubernetes ConfigMap mount, whose files are symlinks into a `..data`
/// directory swapped atomically, loads each file once).
pub fn load_dir(dir: &Path) -> Result<Loaded, LoadError> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| LoadError::Io { path, source }
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let path = entry.map_err(io(dir))?.path();
        let hidden = path
            .file_name()
            .and_then(|name| name.to_str())
            .is_none_or(|name| name.starts_with('.'));
        let yaml = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| matches!(extension, "yaml" | "yml"));
        // `metadata` follows symlinks: a ConfigMap's entries are links to files.
        if !hidden && yaml && std::fs::metadata(&path).is_ok_and(|meta| meta.is_file()) {
            paths.push(path);
        }
    }
    paths.sort();
    let mut files = Vec::with_capacity(paths.len());
    for path in paths {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        files.push((path, text));
    }
    parse_files(&files)
}

/// Loads rule files given as `(name, contents)`, in order.
pub fn parse_files(files: &[(PathBuf, String)]) -> Result<Loaded, LoadError> {
    let mut loader = Loader {
        rules: RuleSet::default(),
        ignored: Vec::new(),
        domain_files: HashMap::new(),
    };
    for (file, text) in files {
        loader.file(file, text)?;
    }
    let warnings = loader
        .ignored
        .iter()
        .map(|field| {
            format!(
                "`{field}` is accepted and ignored: Turnstile never labels a metric with a descriptor value"
            )
        })
        .collect();
    Ok(Loaded {
        rules: loader.rules,
        warnings,
        files: files.iter().map(|(file, _)| file.clone()).collect(),
    })
}

struct Loader {
    rules: RuleSet,
    ignored: Vec<&'static str>,
    /// Which file each domain came from, for the duplicate-domain error.
    domain_files: HashMap<String, PathBuf>,
}

impl Loader {
    fn file(&mut self, file: &Path, text: &str) -> Result<(), LoadError> {
        let invalid = |yaml_path: String, problem: String| LoadError::Invalid {
            file: file.to_owned(),
            line: crate::locate::line_of(text, &yaml_path),
            yaml_path,
            problem,
        };
        let deserializer = serde_yaml_ng::Deserializer::from_str(text);
        let root: FileRoot = serde_path_to_error::deserialize(deserializer).map_err(|error| {
            let yaml_path = error.path().to_string();
            let yaml_path = if yaml_path == "." {
                String::new()
            } else {
                yaml_path
            };
            let inner = error.into_inner();
            let location = inner.location();
            // The parser's message repeats its own (shorter) path and the position, both said
            // once in the error's own fields.
            let mut problem = inner.to_string();
            if let Some(location) = &location {
                let suffix = format!(" at line {} column {}", location.line(), location.column());
                if let Some(stripped) = problem.strip_suffix(&suffix) {
                    problem = stripped.to_owned();
                }
            }
            if let Some((path, rest)) = problem.split_once(": ")
                && yaml_path.starts_with(path)
            {
                problem = rest.to_owned();
            }
            LoadError::Invalid {
                file: file.to_owned(),
                yaml_path,
                line: location.map(|location| location.line()),
                problem,
            }
        })?;
        if root.domain.is_empty() {
            return Err(invalid(
                "domain".into(),
                "a rule file needs a domain".into(),
            ));
        }
        if let Some(other) = self.domain_files.get(&root.domain) {
            return Err(invalid(
                "domain".into(),
                format!(
                    "duplicate domain `{}`: already loaded from {}",
                    root.domain,
                    other.display()
                ),
            ));
        }
        self.domain_files
            .insert(root.domain.clone(), file.to_owned());
        let mut level = Level::default();
        let domain = root.domain.clone();
        self.level(
            &mut level,
            &domain,
            &domain,
            "descriptors",
            &root.descriptors,
        )
        .map_err(|(yaml_path, problem)| invalid(yaml_path, problem))?;
        self.rules.domains.insert(domain, level);
        Ok(())
    }

    /// Loads one level of descriptors; errors are `(yaml path, problem)`.
    fn level(
        &mut self,
        level: &mut Level,
        domain: &str,
        parent_label: &str,
        yaml_path: &str,
        descriptors: &[FileDescriptor],
    ) -> Result<(), (String, String)> {
        for (position, descriptor) in descriptors.iter().enumerate() {
            let here = format!("{yaml_path}[{position}]");
            if descriptor.key.is_empty() {
                return Err((format!("{here}.key"), "a descriptor needs a key".into()));
            }
            for (set, field) in [
                (descriptor.detailed_metric, "detailed_metric"),
                (descriptor.value_to_metric, "value_to_metric"),
            ] {
                if set && !self.ignored.contains(&field) {
                    self.ignored.push(field);
                }
            }
            // envoyproxy/ratelimit's composite key: `key` or `key_value`.
            let composite = if descriptor.value.is_empty() {
                descriptor.key.clone()
            } else {
                format!("{}_{}", descriptor.key, descriptor.value)
            };
            let label = format!("{parent_label}.{composite}");
            let rule = match &descriptor.rate_limit {
                None => None,
                Some(rate_limit) => Some(self.rule(domain, &label, descriptor, rate_limit, &here)?),
            };
            let mut node = Node {
                rule,
                children: Level::default(),
            };
            self.level(
                &mut node.children,
                domain,
                &label,
                &format!("{here}.descriptors"),
                &descriptor.descriptors,
            )?;
            let nodes = level.keys.entry(descriptor.key.clone()).or_default();
            let duplicate = if descriptor.value.is_empty() {
                nodes.any.replace(node).is_some()
            } else if descriptor.value.contains('*') {
                let duplicate = nodes
                    .wildcards
                    .iter()
                    .any(|wildcard| wildcard.pattern == descriptor.value);
                nodes.wildcards.push(Wildcard {
                    pattern: descriptor.value.clone(),
                    shared: descriptor.share_threshold,
                    node,
                });
                duplicate
            } else {
                nodes.exact.insert(descriptor.value.clone(), node).is_some()
            };
            if duplicate {
                return Err((
                    here,
                    format!("duplicate descriptor composite key `{label}`"),
                ));
            }
        }
        Ok(())
    }

    fn rule(
        &mut self,
        domain: &str,
        label: &str,
        descriptor: &FileDescriptor,
        rate_limit: &FileRateLimit,
        here: &str,
    ) -> Result<usize, (String, String)> {
        let at = |field: &str| format!("{here}.rate_limit.{field}");
        let unit = Unit::parse(&rate_limit.unit);
        let limit = if rate_limit.unlimited {
            if !rate_limit.unit.is_empty() {
                return Err((
                    at("unit"),
                    "should not specify rate limit unit when unlimited".into(),
                ));
            }
            if rate_limit.burst.is_some() {
                return Err((at("burst"), "an unlimited rule has no burst".into()));
            }
            Limit::Unlimited
        } else {
            let unit = unit.ok_or_else(|| {
                (
                    at("unit"),
                    format!(
                        "invalid rate limit unit `{}` (one of second, minute, hour, day, week, month, year)",
                        rate_limit.unit
                    ),
                )
            })?;
            let multiplier = rate_limit.unit_multiplier.unwrap_or(1);
            if multiplier == 0 {
                return Err((at("unit_multiplier"), "must be at least 1".into()));
            }
            if rate_limit.requests_per_unit == 0 {
                if rate_limit.burst.is_some() {
                    return Err((
                        at("burst"),
                        "a blocking rule (requests_per_unit: 0) has no burst".into(),
                    ));
                }
                Limit::Blocked { unit }
            } else {
                let burst = rate_limit.burst.unwrap_or(rate_limit.requests_per_unit);
                let period = unit.duration() * multiplier;
                let policy = Policy::new(
                    Policy::RULES_KEYSPACE,
                    rate_limit.requests_per_unit,
                    period,
                    burst,
                )
                .map_err(|error| {
                    (
                        at(if burst == 0 {
                            "burst"
                        } else {
                            "requests_per_unit"
                        }),
                        error.to_string(),
                    )
                })?;
                Limit::Limited {
                    requests_per_unit: rate_limit.requests_per_unit,
                    unit,
                    policy,
                }
            }
        };
        for (position, replaced) in rate_limit.replaces.iter().enumerate() {
            let field = format!("{}[{position}].name", at("replaces"));
            if replaced.name.is_empty() {
                return Err((field, "should not have an empty replaces entry".into()));
            }
            if replaced.name == rate_limit.name {
                return Err((
                    field,
                    "replaces should not contain name of same descriptor".into(),
                ));
            }
        }
        let mut state_tag = ArrayString::new();
        match &limit {
            Limit::Limited {
                requests_per_unit,
                unit,
                policy,
            } => {
                let multiplier = rate_limit.unit_multiplier.unwrap_or(1);
                let _ = write!(
                    state_tag,
                    "{requests_per_unit}/{}{multiplier}/{}|",
                    unit.proto_name(),
                    policy.burst()
                );
            }
            // Never stored: these rules do not reach a backend.
            Limit::Unlimited | Limit::Blocked { .. } => {}
        }
        let index = self.rules.rules.len();
        self.rules.rules.push(Rule {
            index,
            domain: domain.to_owned(),
            label: label.to_owned(),
            name: rate_limit.name.clone(),
            limit,
            shadow_mode: descriptor.shadow_mode,
            replaces: rate_limit
                .replaces
                .iter()
                .map(|replaced| replaced.name.clone())
                .collect(),
            state_tag,
        });
        Ok(index)
    }
}
