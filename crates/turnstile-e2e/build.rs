//! Which of the tools the end-to-end tests start this machine has, as `cfg(has_<tool>)`: a
//! test whose tool is missing is marked *ignored* (`#[cfg_attr(not(has_nginx), ignore = ...)]`),
//! so `cargo test` counts and names it in the summary a person reads, instead of reporting a
//! test that never ran as passed. With `REQUIRE_E2E_TOOLS=1` (`.ci/run`) a missing tool fails
//! the build instead.
//!
//! The search is the one `turnstile_e2e::external_tool` makes at run time (`PATH`, then the
//! sbin directories); it reruns when `PATH` changes or a package lands in those directories.

const TOOLS: [(&str, &str); 6] = [
    ("nginx", "nginx"),
    ("prometheus", "prometheus"),
    ("promtool", "prometheus"),
    ("redis-server", "redis-server"),
    ("redis-cli", "redis-tools"),
    ("python3", "python3"),
];

const EXTRA_DIRS: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

fn main() {
    println!("cargo::rerun-if-env-changed=PATH");
    println!("cargo::rerun-if-env-changed=REQUIRE_E2E_TOOLS");
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<std::path::PathBuf> = std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(std::path::PathBuf::from))
        .collect();
    for dir in dirs.iter().filter(|dir| dir.is_dir()) {
        println!("cargo::rerun-if-changed={}", dir.display());
    }
    let required = std::env::var("REQUIRE_E2E_TOOLS").as_deref() == Ok("1");
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
