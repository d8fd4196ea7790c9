//! A Redis for the test suites' redis variants (feature `test-redis`, for tests only).
//!
//! `REDIS_TEST_URL` when it is set; otherwise one `redis-server` started on a free loopback
//! port the first time a test asks, shared by every test of the process, saving nothing, and
//! stopped when the test process exits, however it exits: it runs under a `sh` that holds the
//! read end of a pipe whose write end only this process has, and stops the server when the
//! pipe closes (a static is never dropped, so no destructor could do it).
//!
//! [`cluster_url`] is the same for a Redis Cluster of three primaries (no replicas: the
//! conformance suite is about decisions, not failover), started with `redis-cli --cluster
//! create`, or `REDIS_CLUSTER_TEST_URL`.
//!
//! `None` when neither is available (said once per process on stderr), and the caller tests
//! the other backends; with `REQUIRE_E2E_TOOLS=1` (`.ci/run`) that is a panic instead.

use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// Where a Debian-style machine may keep `redis-server` beyond `PATH`.
const EXTRA_DIRS: [&str; 3] = ["/usr/bin", "/usr/local/bin", "/usr/sbin"];

/// How long a started server gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(10);

struct Shared {
    url: Option<String>,
    /// Kept open for the life of the process: closing it stops the server.
    _lifeline: Option<ChildStdin>,
}

static REDIS: OnceLock<Shared> = OnceLock::new();
static CLUSTER: OnceLock<Shared> = OnceLock::new();

/// The test Redis's URL, if there is one (see the module docs).
pub fn url() -> Option<String> {
    shared(&REDIS, "REDIS_TEST_URL", "redis variants", || {
        start(SERVER_SCRIPT, 1)
    })
}

/// The test Redis Cluster's seed URLs (comma-separated), if there is one (see the module docs).
pub fn cluster_url() -> Option<String> {
    shared(
        &CLUSTER,
        "REDIS_CLUSTER_TEST_URL",
        "redis cluster variants",
        || start(CLUSTER_SCRIPT, CLUSTER_PRIMARIES),
    )
}

fn shared(
    cell: &OnceLock<Shared>,
    variable: &str,
    what: &str,
    start: impl FnOnce() -> Option<Shared>,
) -> Option<String> {
    let url = cell
        .get_or_init(|| {
            let shared = match std::env::var(variable) {
                Ok(url) => Shared {
                    url: Some(url),
                    _lifeline: None,
                },
                Err(_) => start().unwrap_or(Shared {
                    url: None,
                    _lifeline: None,
                }),
            };
            if shared.url.is_none() {
                // Written to stderr directly: libtest captures `eprintln!` of passing tests,
                // and this notice is for the person reading the run.
                let _ = std::io::Write::write_all(
                    &mut std::io::stderr().lock(),
                    format!("SKIPPED {what}: no redis-server installed (or it did not start) and {variable} not set\n").as_bytes(),
                );
            }
            shared
        })
        .url
        .clone();
    assert!(
        url.is_some() || std::env::var("REQUIRE_E2E_TOOLS").as_deref() != Ok("1"),
        "no Redis for the {what} (install redis-server, or set {variable}), and REQUIRE_E2E_TOOLS=1 requires one"
    );
    url
}

fn redis_server() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(EXTRA_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join("redis-server"))
        .find(|candidate| candidate.is_file())
}

/// Primaries of the test cluster.
const CLUSTER_PRIMARIES: usize = 3;

/// Starts one server on `$port`, then waits for the pipe to close (this process exited), then
/// stops it and removes its directory.
const SERVER_SCRIPT: &str = r#"server=$1; dir=$2; port=$3
"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" </dev/null >/dev/null 2>&1 &
pid=$!
read -r _
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir""#;

/// The same for one cluster node per port, joined by `redis-cli --cluster create` (each node
/// in its own directory, where it keeps its `nodes.conf`).
const CLUSTER_SCRIPT: &str = r#"server=$1; dir=$2; shift 2
pids=""; nodes=""
for port in "$@"; do
  mkdir -p "$dir/$port"
  "$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir/$port" \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    </dev/null >/dev/null 2>&1 &
  pids="$pids $!"; nodes="$nodes 127.0.0.1:$port"
done
for port in "$@"; do
  until redis-cli -p "$port" PING >/dev/null 2>&1; do sleep 0.05; done
done
# shellcheck disable=SC2086
redis-cli --cluster create $nodes --cluster-yes >/dev/null 2>&1
read -r _
kill $pids 2>/dev/null
wait 2>/dev/null
rm -rf "$dir""#;

fn start(script: &str, servers: usize) -> Option<Shared> {
    let server = redis_server()?;
    let ports = free_ports(servers)?;
    let dir = std::env::temp_dir().join(format!(
        "turnstile-test-redis-{}-{}",
        std::process::id(),
        ports[0]
    ));
    std::fs::create_dir_all(&dir).ok()?;
    let mut child = Command::new("sh")
        .args(["-c", script, "test-redis"])
        .arg(&server)
        .arg(&dir)
        .args(ports.iter().map(u16::to_string))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let lifeline = child.stdin.take()?;
    let started = Instant::now();
    let urls: Vec<String> = ports
        .iter()
        .map(|port| format!("redis://127.0.0.1:{port}"))
        .collect();
    let ready = || {
        if servers == 1 {
            let address = SocketAddr::from((Ipv4Addr::LOCALHOST, ports[0]));
            TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_ok()
        } else {
            ports.iter().all(|port| cluster_ok(*port))
        }
    };
    while !ready() {
        if started.elapsed() > START_TIMEOUT {
            // Closing the pipe stops whatever did start.
            drop(lifeline);
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Some(Shared {
        url: Some(urls.join(",")),
        _lifeline: Some(lifeline),
    })
}

/// The highest port a Redis Cluster node may listen on: its cluster bus is its port + 10,000.
const MAX_CLUSTER_PORT: u16 = 55_535;

/// `n` distinct free loopback ports, each at most [`MAX_CLUSTER_PORT`] (the ephemeral range
/// reaches past it: a port above is drawn again).
fn free_ports(n: usize) -> Option<Vec<u16>> {
    // Held together while choosing, so no two are the same.
    let mut listeners = Vec::new();
    for _ in 0..n * 100 {
        if listeners.len() == n {
            break;
        }
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).ok()?;
        if listener.local_addr().ok()?.port() <= MAX_CLUSTER_PORT {
            listeners.push(listener);
        }
    }
    (listeners.len() == n).then_some(())?;
    listeners
        .iter()
        .map(|listener| listener.local_addr().ok().map(|address| address.port()))
        .collect()
}

/// Whether the node on `port` says `cluster_state:ok` (through a plain RESP exchange, so this
/// needs no client library).
fn cluster_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let Ok(mut stream) = TcpStream::connect_timeout(&address, Duration::from_millis(100)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"CLUSTER INFO\r\n").is_err() {
        return false;
    }
    let mut reply = vec![0_u8; 4096];
    let Ok(read) = stream.read(&mut reply) else {
        return false;
    };
    String::from_utf8_lossy(&reply[..read]).contains("cluster_state:ok")
}
