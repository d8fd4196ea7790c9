//! A Redis for the test suites' redis variants (feature `test-redis`, for tests only).
//!
//! `REDIS_TEST_URL` when it is set; otherwise one `redis-server` started on a free loopback
//! port the first time a test asks, shared by every test of the process, saving nothing, and
//! stopped when the test process exits, however it exits: it runs under a `sh` that holds the
//! read end of a pipe whose write end only this process has, and stops the server when the
//! pipe closes (a static is never dropped, so no destructor could do it).
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

/// The test Redis's URL, if there is one (see the module docs).
pub fn url() -> Option<String> {
    let url = REDIS
        .get_or_init(|| {
            let shared = match std::env::var("REDIS_TEST_URL") {
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
                    b"SKIPPED redis variants: no redis-server installed and REDIS_TEST_URL not set\n",
                );
            }
            shared
        })
        .url
        .clone();
    assert!(
        url.is_some() || std::env::var("REQUIRE_E2E_TOOLS").as_deref() != Ok("1"),
        "no Redis to test the redis backend against (install redis-server, or set REDIS_TEST_URL), and REQUIRE_E2E_TOOLS=1 requires one"
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

fn start() -> Option<Shared> {
    let server = redis_server()?;
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .ok()?
        .port();
    let dir = std::env::temp_dir().join(format!("turnstile-test-redis-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    // `read` returns when the pipe closes (this process exited): then the server is stopped
    // and its directory removed.
    let script = r#"server=$1; port=$2; dir=$3
"$server" --port "$port" --bind 127.0.0.1 --save '' --appendonly no --dir "$dir" </dev/null >/dev/null 2>&1 &
pid=$!
read -r _
kill "$pid" 2>/dev/null
wait "$pid" 2>/dev/null
rm -rf "$dir""#;
    let mut child = Command::new("sh")
        .args(["-c", script, "test-redis"])
        .arg(&server)
        .arg(port.to_string())
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let lifeline = child.stdin.take()?;
    let address = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let started = Instant::now();
    while TcpStream::connect_timeout(&address, Duration::from_millis(100)).is_err() {
        if started.elapsed() > START_TIMEOUT {
            // Closing the pipe stops whatever did start.
            drop(lifeline);
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(Shared {
        url: Some(format!("redis://{address}")),
        _lifeline: Some(lifeline),
    })
}
