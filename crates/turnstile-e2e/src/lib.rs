//! End-to-end tests against the real tools our users run beside Turnstile (Prometheus, Redis,
//! nginx, the `turnstile` binary itself), and the helpers that find and start them.
//!
//! # Layout
//!
//! - [`dashboards`]: reads `dashboards/*.json` and lists every PromQL expression in them.
//! - [`browser`]: headless Chromium through chromedriver (WebDriver), for the pages.
//! - [`proxies`]: the rules and the shipped-file rewiring the proxy tests share.
//! - this file: [`external_tool`] finds a tool or decides whether its absence fails the test;
//!   [`Process`] runs one on loopback and kills it when dropped; [`free_port`] and
//!   [`wait_until`] for start-up; [`workspace_root`] for the shipped files under test.
//! - `tests/prometheus.rs`: every dashboard query evaluated by a real Prometheus scraping a
//!   gateway under load with injected faults; `promtool` on the shipped configuration.
//! - `tests/dashboards.rs`: the dashboards' structure and the metrics they name (no tools).
//! - `tests/redis.rs`: three gateway processes on one Redis hold one global limit; a Redis
//!   killed and restarted under load, or stopped; the local deny cache and pipelining seen
//!   from Redis's own counters ([`RedisServer`], [`redis_command_calls`], gateways from
//!   [`start_gateway`]).
//! - `tests/redis_cluster.rs`: the same over a Redis Cluster of 3 primaries and 3 replicas
//!   ([`RedisCluster`]), and a primary killed under load and failed over. Both share
//!   `tests/common` (a check over HTTP, readiness, the hot-key exactness run).
//! - `tests/nginx.rs`: the shipped `auth_request` configuration in a real nginx.
//! - `tests/caddy.rs`: the shipped `forward_auth` Caddyfile in a real Caddy.
//! - `tests/traefik.rs`: the shipped ForwardAuth configuration in a real Traefik.
//! - `tests/live_view.rs`: `turnstile-load compare --live` in headless Chromium: a crash
//!   injected from the page, and a gateway that dies mid-run.
//! - `tests/deploy_tools.rs`: hadolint, `docker-compose config` and `kubernetes-validate
//!   --strict` on the deployment files (the PyPI tools from the virtualenv's `bin/`, which
//!   [`external_tool`] searches too).
//! - `tests/deploy.rs`: compose, Prometheus, Grafana, Dockerfile and Kubernetes files agree
//!   with the code and each other (no tools).
//!
//! # Invariants
//!
//! - Everything started here listens on 127.0.0.1 only and dies with the test (kill on drop).
//! - A missing tool fails the test (and `build.rs`, the build) when `REQUIRE_E2E_TOOLS=1`, as
//!   `.ci/run` sets after installing the tools; otherwise `build.rs` leaves its `has_<tool>`
//!   cfg unset and the test is *ignored*, so the summary a person reads counts it as not run. A developer
//!   without Prometheus can still run `cargo test --workspace`; CI cannot skip. (Not a
//!   `TURNSTILE_*` name: the gateway reads every such variable as configuration.)
//! - This is test support: failures panic with a message saying what was expected, which is
//!   how a test reports them.

// Test support: a panic is how a failure is reported to the test harness.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod browser;
pub mod dashboards;
pub mod proxies;

use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::process::CommandExt;
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
        // The PyPI tools `.ci/run` installs into the virtualenv (python/requirements.txt).
        .chain(std::iter::once(
            workspace_root().join(PYTHON_VENV).join("bin"),
        ))
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
    free_port_below(u16::MAX)
}

/// The highest port a Redis Cluster node may listen on: its cluster bus is its port + 10,000.
pub const MAX_CLUSTER_PORT: u16 = 55_535;

/// A free loopback port no higher than `max` (drawn again until one is: the ephemeral range
/// reaches past [`MAX_CLUSTER_PORT`]).
pub fn free_port_below(max: u16) -> u16 {
    loop {
        let port = ephemeral_port();
        if port <= max {
            return port;
        }
    }
}

fn ephemeral_port() -> u16 {
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
        Self::start_with_env(name, program, args, &[], log)
    }

    /// As [`Process::start`], with `env` added to the environment (a tool's state directories
    /// pointed into the test's scratch directory, say).
    pub fn start_with_env(
        name: &str,
        program: &Path,
        args: &[&str],
        env: &[(&str, &Path)],
        log: PathBuf,
    ) -> Self {
        let out = std::fs::File::create(&log).expect("create the tool's log file");
        let err = out.try_clone().expect("clone the log handle");
        // Its own process group, so that stopping it stops what it forked too (nginx's
        // workers outlive a killed master otherwise).
        let child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .process_group(0)
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

    /// Stops the process and everything in its process group at once (SIGKILL), as a crash
    /// would, and waits (at most 5 s) until none of them is left.
    pub fn kill(&mut self) {
        let _ = signal_group(self.child.id(), "-KILL");
        let _ = self.child.kill();
        let _ = self.child.wait();
        let deadline = Instant::now() + Duration::from_secs(5);
        while self.group_alive() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Sends `signal` (as `kill` spells it: `-HUP`) to the process itself.
    pub fn signal(&self, signal: &str) -> bool {
        Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Waits (at most 30 s) for the process to exit by itself, and gives its exit code.
    pub fn wait_exit(&mut self) -> Option<i32> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not exit:\n{}", self.name, self.log());
    }

    /// Waits (at most 30 s) until the gateway this process runs answers `GET /readyz` on
    /// `address` with a success; panics with its log if it exits or never does.
    pub async fn await_ready(&mut self, address: &str) {
        let client = http_client();
        for _ in 0..300 {
            // A gateway that exited says why (its log) rather than timing out.
            self.assert_running();
            let answer = client.get(format!("http://{address}/readyz")).send().await;
            if answer.is_ok_and(|answer| answer.status().is_success()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} never became ready:\n{}", self.name, self.log());
    }

    /// Whether any process of its group is still running.
    pub fn group_alive(&self) -> bool {
        signal_group(self.child.id(), "-0")
    }
}

/// `kill SIGNAL -- -PGID` (a process group is signalled through the `kill` program: the
/// workspace forbids the `unsafe` a direct `kill(2)` would need); whether it reached any.
fn signal_group(group: u32, signal: &str) -> bool {
    Command::new("kill")
        .args([signal, "--", &format!("-{group}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success())
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

mod python;
pub use python::{GRPC_MODULES, PYTHON_VENV};

/// A Python interpreter that can import `modules` (`grpc`, `envoy.service.ratelimit.v3`):
/// `$E2E_PYTHON` (not a `TURNSTILE_*` name: the gateway reads those as its settings), else the
/// virtualenv [`PYTHON_VENV`] `.ci/run` makes. `None` when neither has them and
/// [`REQUIRE_TOOLS`] is not set (the reason is printed); panics when they are required.
pub fn python_with(modules: &[&str]) -> Option<PathBuf> {
    let candidate = python::python_candidate(&workspace_root());
    if python::python_imports(&candidate, modules) {
        return Some(candidate);
    }
    let advice = format!(
        "{} cannot import {} (crates/turnstile-e2e/python/requirements.txt; `.ci/run` installs it into {PYTHON_VENV})",
        candidate.display(),
        modules.join(", ")
    );
    assert!(
        std::env::var(REQUIRE_TOOLS).as_deref() != Ok("1"),
        "{advice}, and {REQUIRE_TOOLS}=1 requires it"
    );
    eprintln!("SKIPPED: {advice}; set {REQUIRE_TOOLS}=1 to make this a failure");
    None
}

/// A scratch directory removed when dropped.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("turnstile-e2e-")
        .tempdir()
        .expect("create a scratch directory")
}

/// What `GET /metrics` of the gateway at `address` (`host:port`) exports now.
pub async fn metrics_text(address: impl std::fmt::Display) -> String {
    http_client()
        .get(format!("http://{address}/metrics"))
        .send()
        .await
        .expect("the gateway answers /metrics")
        .text()
        .await
        .expect("a metrics body")
}

/// The value of one exported sample, `series` written as exported (name and labels), of the
/// gateway at `address`; 0 when it is not exported (yet).
pub async fn metric(address: impl std::fmt::Display, series: &str) -> f64 {
    metrics_text(address)
        .await
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Waits (polling, at most 30 s) until the sample `series` of the gateway at `address` is at
/// least `at_least`; panics naming `what` if it never is.
pub async fn wait_for_metric(what: &str, address: &str, series: &str, at_least: f64) {
    wait_until(what, Duration::from_secs(30), || async {
        (metric(address, series).await >= at_least).then_some(())
    })
    .await;
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

/// A `redis-server` on a loopback port, with no persistence, killed when dropped.
pub struct RedisServer {
    binary: PathBuf,
    dir: PathBuf,
    /// Its port (kept across [`RedisServer::restart`]).
    pub port: u16,
    /// Added to the command line (cluster mode's settings).
    extra_args: Vec<String>,
    process: Option<Process>,
}

impl RedisServer {
    /// Starts one in `dir`; `None` when redis-server is missing and not required.
    pub async fn start(dir: &Path) -> Option<Self> {
        Self::start_with(dir, &[]).await
    }

    /// Starts one in `dir` with `extra_args` on its command line.
    pub async fn start_with(dir: &Path, extra_args: &[&str]) -> Option<Self> {
        let binary = external_tool("redis-server", "redis-server")?;
        let port = if extra_args.contains(&"--cluster-enabled") {
            free_port_below(MAX_CLUSTER_PORT)
        } else {
            free_port()
        };
        let dir = dir.join(format!("redis-{port}"));
        std::fs::create_dir_all(&dir).expect("create the server's directory");
        let mut server = Self {
            binary,
            dir,
            port,
            extra_args: extra_args.iter().map(|arg| (*arg).to_owned()).collect(),
            process: None,
        };
        server.restart().await;
        Some(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills it at once (SIGKILL: no shutdown, as a crash or a network cut looks).
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.kill();
        }
    }

    /// Sends `signal` (`-STOP`, `-CONT`) to the server; whether it was delivered.
    pub fn signal(&self, signal: &str) -> bool {
        self.process
            .as_ref()
            .is_some_and(|process| process.signal(signal))
    }

    /// `redis-cli -p <port> args...`, its output (panics if it fails).
    pub fn cli(&self, args: &[&str]) -> String {
        redis_cli(self.port, args)
    }

    /// Starts it (again) on the same port, empty, and waits until it answers `PING`.
    pub async fn restart(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let dir = self.dir.to_str().expect("a UTF-8 scratch path");
        let mut args = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            dir,
        ];
        args.extend(self.extra_args.iter().map(String::as_str));
        let process = Process::start(
            "redis-server",
            &self.binary,
            &args,
            self.dir.join("redis.log"),
        );
        self.process = Some(process);
        let address = (Ipv4Addr::LOCALHOST, self.port);
        wait_until(
            "redis-server to answer PING",
            Duration::from_secs(30),
            || async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
                stream.write_all(b"PING\r\n").await.ok()?;
                let mut reply = [0_u8; 7];
                stream.read_exact(&mut reply).await.ok()?;
                (&reply == b"+PONG\r\n").then_some(())
            },
        )
        .await;
    }
}

/// `redis-cli -h 127.0.0.1 -p <port> args...`, its standard output (panics if it fails).
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    let cli = external_tool("redis-cli", "redis-tools").expect("redis-cli is installed");
    let output = Command::new(cli)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .expect("redis-cli runs");
    assert!(output.status.success(), "redis-cli {args:?}: {output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A field of `INFO` (`cmdstat_evalsha`, `total_reads_processed`), as redis-cli prints it.
pub fn redis_info_field(port: u16, section: &str, field: &str) -> Option<String> {
    redis_cli(port, &["INFO", section])
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{field}:")))
        .map(|value| value.trim().to_owned())
}

/// How many times `command` ran on the Redis at `port` (`INFO commandstats`; 0 before its
/// first call).
pub fn redis_command_calls(port: u16, command: &str) -> u64 {
    redis_info_field(port, "commandstats", &format!("cmdstat_{command}"))
        .and_then(|stats| {
            stats
                .split(',')
                .find_map(|part| part.strip_prefix("calls="))
                .and_then(|calls| calls.parse().ok())
        })
        .unwrap_or(0)
}

/// A Redis Cluster of `redis-server`s on loopback ports (cluster mode, a short
/// `cluster-node-timeout` so failovers take seconds, `cluster-require-full-coverage no` so a
/// failing primary's slots fail alone), joined by `redis-cli --cluster create`. Killed when
/// dropped, like its servers.
pub struct RedisCluster {
    /// Every node, primaries and replicas alike.
    pub nodes: Vec<RedisServer>,
    /// How many primaries serve the slots.
    primaries: usize,
}

/// A cluster node's view of one node (`CLUSTER NODES`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterNode {
    /// Its port.
    pub port: u16,
    /// Whether it is a primary now (and not failed).
    pub primary: bool,
    /// The slot ranges it serves (primaries).
    pub slots: Vec<(u16, u16)>,
}

impl RedisCluster {
    /// The node timeout: a primary silent this long is failed over.
    pub const NODE_TIMEOUT_MS: u32 = 1000;

    /// Starts `primaries` primaries with `replicas` replicas each in `dir`, and waits until
    /// every node says `cluster_state:ok`. `None` when redis-server is missing and not
    /// required.
    pub async fn start(dir: &Path, primaries: usize, replicas: usize) -> Option<Self> {
        let node_timeout = Self::NODE_TIMEOUT_MS.to_string();
        let args = [
            "--cluster-enabled",
            "yes",
            "--cluster-config-file",
            "nodes.conf",
            "--cluster-node-timeout",
            &node_timeout,
            "--cluster-require-full-coverage",
            "no",
            // A replica syncs at once (the default waits 5 s for more replicas), and the
            // cluster is not handed to a test before it has: a replica that never synced
            // refuses to fail over (cluster-replica-validity-factor).
            "--repl-diskless-sync-delay",
            "0",
        ];
        let mut nodes = Vec::new();
        for _ in 0..primaries * (1 + replicas) {
            nodes.push(RedisServer::start_with(dir, &args).await?);
        }
        let mut create = vec!["--cluster".to_owned(), "create".to_owned()];
        create.extend(nodes.iter().map(|node| format!("127.0.0.1:{}", node.port)));
        create.extend([
            "--cluster-replicas".to_owned(),
            replicas.to_string(),
            "--cluster-yes".to_owned(),
        ]);
        let create: Vec<&str> = create.iter().map(String::as_str).collect();
        redis_cli(nodes[0].port, &create);
        let cluster = Self { nodes, primaries };
        cluster.until_ok(Duration::from_secs(60)).await;
        wait_until(
            "every replica to have synced with its primary",
            Duration::from_secs(60),
            || async {
                cluster
                    .nodes
                    .iter()
                    .all(|node| {
                        let replication = node.cli(&["INFO", "replication"]);
                        replication.contains("role:master")
                            || replication.contains("master_link_status:up")
                    })
                    .then_some(())
            },
        )
        .await;
        Some(cluster)
    }

    /// Waits until every running node says `cluster_state:ok` and agrees on which primaries
    /// serve the slots (as many as at the start: after a failover, the promoted replica).
    pub async fn until_ok(&self, limit: Duration) {
        wait_until("the cluster to be ok on every node", limit, || async {
            let views: Vec<Vec<ClusterNode>> = self
                .nodes
                .iter()
                .filter(|node| node.process.is_some())
                .map(|node| {
                    let ok = node
                        .cli(&["CLUSTER", "INFO"])
                        .lines()
                        .any(|line| line.trim() == "cluster_state:ok");
                    ok.then(|| self.primaries_seen_by(node.port))
                })
                .collect::<Option<_>>()?;
            let first = views.first()?;
            (first.len() == self.primaries && views.iter().all(|view| view == first)).then_some(())
        })
        .await;
    }

    /// The comma-separated seed list (`redis_url` in cluster mode).
    pub fn seeds(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The primaries (serving slots), as the first running node sees them.
    pub fn primaries(&self) -> Vec<ClusterNode> {
        let node = self
            .nodes
            .iter()
            .find(|node| node.process.is_some())
            .expect("a running node");
        self.primaries_seen_by(node.port)
    }

    fn primaries_seen_by(&self, port: u16) -> Vec<ClusterNode> {
        let mut primaries: Vec<ClusterNode> = redis_cli(port, &["CLUSTER", "NODES"])
            .lines()
            .filter_map(|line| {
                // <id> <ip:port@cport> <flags> <primary> <ping> <pong> <epoch> <link> <slot>...
                let fields: Vec<&str> = line.split_whitespace().collect();
                let port = fields
                    .get(1)?
                    .split('@')
                    .next()?
                    .rsplit(':')
                    .next()?
                    .parse()
                    .ok()?;
                let flags = fields.get(2)?;
                let primary = flags.contains("master") && !flags.contains("fail");
                let slots = fields
                    .iter()
                    .skip(8)
                    .filter_map(|range| {
                        let (start, end) = range.split_once('-').unwrap_or((range, range));
                        Some((start.parse().ok()?, end.parse().ok()?))
                    })
                    .collect::<Vec<_>>();
                (primary && !slots.is_empty()).then_some(ClusterNode {
                    port,
                    primary,
                    slots,
                })
            })
            .collect();
        primaries.sort_by_key(|node| node.port);
        primaries
    }

    /// The node on `port`.
    pub fn node_mut(&mut self, port: u16) -> &mut RedisServer {
        self.nodes
            .iter_mut()
            .find(|node| node.port == port)
            .expect("a node of this cluster")
    }

    /// The slot of `key` (`CLUSTER KEYSLOT`).
    pub fn slot(&self, key: &str) -> u16 {
        let node = self.primaries()[0].port;
        redis_cli(node, &["CLUSTER", "KEYSLOT", key])
            .trim()
            .parse()
            .expect("a slot number")
    }

    /// The primary serving `key` now.
    pub fn primary_of(&self, key: &str) -> u16 {
        let slot = self.slot(key);
        self.primaries()
            .into_iter()
            .find(|node| {
                node.slots
                    .iter()
                    .any(|(start, end)| (*start..=*end).contains(&slot))
            })
            .map(|node| node.port)
            .expect("every slot is served")
    }
}

/// The `turnstile` binary built next to this test (`cargo test --workspace` builds it).
pub fn gateway_binary() -> PathBuf {
    built_binary("turnstile")
}

/// The `turnstile-load` binary built next to this test (`cargo test --workspace` builds it).
pub fn load_binary() -> PathBuf {
    built_binary("turnstile-load")
}

/// A workspace binary in this test's target directory.
fn built_binary(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|dir| dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX)))
        .expect("the test sits in target/<profile>/deps");
    assert!(
        binary.is_file(),
        "{} is missing: run `cargo build --bin {name}` (cargo test --workspace builds it)",
        binary.display()
    );
    binary
}

/// A gateway configured by `config_toml` (plus `listen = 127.0.0.1:0`), started in-process
/// through the gateway's own harness; stopped when dropped. No `TURNSTILE_*` variable of the
/// test process applies to it.
pub fn start_gateway(config_toml: &str) -> turnstile_gateway::testing::RunningGateway {
    let config = turnstile_gateway::Config::from_toml(
        &["listen = \"127.0.0.1:0\"", config_toml],
        &std::collections::BTreeMap::<String, String>::new(),
    )
    .expect("a valid gateway configuration");
    turnstile_gateway::testing::spawn(config).expect("the gateway starts")
}
