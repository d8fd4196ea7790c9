//! End-to-end tests against the real tools our users run beside Turnstile, and the helpers
//! that find and start those tools.
//!
//! # Layout
//!
//! - [`dashboards`]: reads `dashboards/*.json` and lists every PromQL expression in them.
//! - this file: [`external_tool`] finds a tool or decides whether its absence fails the test;
//!   [`Process`] runs one on loopback and kills it when dropped; [`free_port`] and
//!   [`wait_until`] for start-up; [`workspace_root`] for the shipped files under test.
//! - `tests/prometheus.rs`: every dashboard query evaluated by a real Prometheus scraping a
//!   gateway under load with injected faults; `promtool` on the shipped configuration.
//! - `tests/dashboards.rs`: the dashboards' structure and the metrics they name (no tools).
//!
//! # Invariants
//!
//! - Everything started here listens on 127.0.0.1 only and dies with the test (kill on drop).
//! - A missing tool fails the test when `REQUIRE_E2E_TOOLS=1`, as `.ci/run` sets after
//!   installing the tools; otherwise the test says loudly that it did not run. A developer
//!   without Prometheus can still run `cargo test --workspace`; CI cannot skip. (Not a
//!   `TURNSTILE_*` name: the gateway reads every such variable as configuration.)
//! - This is test support: failures panic with a message saying what was expected, which is
//!   how a test reports them.

// Test support: a panic is how a failure is reported to the test harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod dashboards;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian puts daemons that are not on a normal user's `PATH`.
const EXTRA_DIRS: [&str; 2] = ["/usr/sbin", "/usr/local/sbin"];

/// The environment variable that turns a missing tool into a failure.
pub const REQUIRE_TOOLS: &str = "REQUIRE_E2E_TOOLS";

/// The path of `name`, searched on `PATH` then in the sbin directories.
///
/// `None` means the test should not run: the tool is missing and
/// [`REQUIRE_TOOLS`] is not set (the reason is printed). Panics when the tool is missing
/// and required.
pub fn external_tool(name: &str, debian_package: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file());
    if found.is_none() {
        let advice = format!(
            "`{name}` is not installed (Debian package `{debian_package}`; `.ci/run` installs it)"
        );
        assert!(
            std::env::var(REQUIRE_TOOLS).as_deref() != Ok("1"),
            "{advice}, and {REQUIRE_TOOLS}=1 requires it"
        );
        eprintln!("SKIPPED: {advice}; set {REQUIRE_TOOLS}=1 to make this a failure");
    }
    found
}

/// The workspace's root directory (where `dashboards/` and `deploy/` live).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("crates/<name> sits two levels below the workspace root")
        .to_path_buf()
}

/// A loopback port free at the time of asking (the tool binds it a moment later; a clash is
/// possible but rare, and shows up as a start-up failure with the tool's own log).
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("bind an ephemeral loopback port")
        .port()
}

/// A child process that is killed (and reaped) when dropped, with its output in a log file so
/// a failing test can show why the tool misbehaved.
pub struct Process {
    name: String,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, output to `log`.
    pub fn start(name: &str, program: &Path, args: &[&str], log: PathBuf) -> Self {
        let out = std::fs::File::create(&log).expect("create the tool's log file");
        let err = out.try_clone().expect("clone the log handle");
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|error| panic!("cannot start {name} ({}): {error}", program.display()));
        Self {
            name: name.to_owned(),
            child,
            log,
        }
    }

    /// The tool's output so far (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Panics, showing the log, if the process has exited.
    pub fn assert_running(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited ({status}):\n{}", self.name, self.log());
        }
    }

    /// Stops the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Polls `probe` every 100 ms until it returns `Some`, for at most `limit`; panics with
/// `what` if it never does. Generous limits only: this waits for tools to start or for data
/// to arrive, and never asserts on how long that took.
pub async fn wait_until<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A scratch directory removed when dropped.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("turnstile-e2e-")
        .tempdir()
        .expect("create a scratch directory")
}

/// An HTTP client for talking to tools on loopback.
pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("build an HTTP client")
}

/// Parses a JSON body, panicking with the body when it is not JSON.
pub fn parse_json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}
