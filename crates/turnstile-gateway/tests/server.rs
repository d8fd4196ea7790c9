//! The gateway on a real socket: `testing::spawn` on a random loopback port, graceful shutdown that
//! lets in-flight requests finish, and the binary refusing a bad configuration.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;
use std::time::Duration;

use turnstile_backend::{BackendKind, SimulatedWork, WorkKind};
use turnstile_gateway::Config;
use turnstile_gateway::testing::{self, RunningGateway};

/// A gateway on loopback ports, through the crate's one harness.
fn spawn_app(config: Config) -> RunningGateway {
    testing::spawn(Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..config
    })
    .expect("starts")
}

/// Polls (real time, generously) until `done` holds.
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..1000 {
        if done() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    panic!("timed out waiting for {what}");
}

/// Stops the gateway and waits for it, off the async worker.
async fn stop(app: RunningGateway) {
    tokio::task::spawn_blocking(move || app.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn serves_over_tcp_and_identifies_the_peer() {
    let app = spawn_app(Config::default());
    let client = reqwest::Client::new();
    let response = client
        .post(format!("http://{}/v1/check", app.address))
        .json(&serde_json::json!({"key": "tcp"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["allowed"], true);
    // The gateway route works through real connect info (the peer is 127.0.0.1).
    let response = client
        .get(format!("http://{}/hello", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("ratelimit"));
    stop(app).await;
}

/// A gateway on the single actor taking `work` per check, with one check in flight (its
/// answer still to come) when it is told to stop.
async fn stopping_with_a_check_in_flight(
    work: Duration,
    shutdown_grace: Duration,
) -> (
    RunningGateway,
    tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>,
) {
    let mut app = spawn_app(Config {
        backend: BackendKind::Actor,
        simulated_work: Some(SimulatedWork {
            kind: WorkKind::Sleep,
            duration: work,
        }),
        shutdown_grace,
        ..Config::default()
    });
    let url = format!("http://{}/v1/check", app.address);
    let in_flight = tokio::spawn(async move {
        reqwest::Client::new()
            .post(url)
            .json(&serde_json::json!({"key": "slow"}))
            .send()
            .await
    });
    // Once the request is in flight (the actor's work keeps it there), shut down.
    let state = std::sync::Arc::clone(app.state());
    until("the request to be in flight", || {
        state.requests_in_flight() == 1
    })
    .await;
    app.begin_stop();
    (app, in_flight)
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_then_stops_accepting() {
    // 1.5 s of work, well within the default 10 s grace. (Real time, but nothing here asserts
    // a duration.)
    let (app, in_flight) =
        stopping_with_a_check_in_flight(Duration::from_millis(1500), Duration::from_secs(10)).await;
    let url = format!("http://{}/v1/check", app.address);
    let response = in_flight
        .await
        .unwrap()
        .expect("in-flight request completes");
    assert_eq!(response.status(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["allowed"], true, "decided, not dropped: {body}");
    tokio::task::spawn_blocking(move || app.wait())
        .await
        .unwrap()
        .unwrap();
    let refused = reqwest::Client::new()
        .post(&url)
        .json(&serde_json::json!({"key": "x"}))
        .send()
        .await;
    assert!(refused.is_err(), "the listener is closed after shutdown");
}

#[tokio::test]
async fn a_request_still_running_when_the_grace_ends_is_answered_503() {
    // 3 s of work: far beyond the 200 ms grace (and the backend, stopped after the grace,
    // finishes it before the gateway is gone). The answer's content is the point.
    let (app, in_flight) =
        stopping_with_a_check_in_flight(Duration::from_secs(3), Duration::from_millis(200)).await;
    let response = in_flight.await.unwrap().expect("answered, not cut off");
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"], "shutting_down", "{body}");
    tokio::task::spawn_blocking(move || app.wait())
        .await
        .unwrap()
        .unwrap();
}

/// Runs the binary as `configure` sets it up (no `TURNSTILE_CONFIG` inherited), asserts it
/// refused to start with exit 2, and gives its stderr.
fn refused_start(configure: impl FnOnce(&mut Command) -> &mut Command) -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_turnstile"));
    command.env_remove("TURNSTILE_CONFIG");
    let output = configure(&mut command).output().expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    stderr
}

#[test]
fn the_binary_exits_with_a_message_naming_the_bad_field() {
    let stderr = refused_start(|command| command.env("TURNSTILE_SHARDS", "lots")).to_lowercase();
    assert!(
        stderr.contains("shards") && stderr.contains("lots"),
        "{stderr}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["--backend", "genserver"])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("genserver") && stderr.contains("actor"),
        "{stderr}"
    );

    let stderr = refused_start(|command| command.args(["--config", "/nonexistent/turnstile.toml"]));
    assert!(stderr.contains("does not exist"), "{stderr}");

    // An address in use is a setting to fix: exit 2, naming which listener.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let address = taken.local_addr().expect("its address").to_string();
    let free = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
    let free_address = free.local_addr().expect("its address").to_string();
    drop(free);
    let stderr = refused_start(|command| {
        command.args(["--listen", &free_address, "--rls-listen", &address])
    });
    assert!(
        stderr.contains("`rls.listen`") && stderr.contains(&address),
        "{stderr}"
    );
}

#[test]
fn a_bad_rule_file_stops_start_up_with_exit_2_naming_file_line_and_path() {
    let dir = tempfile::tempdir().expect("a scratch directory");
    std::fs::write(
        dir.path().join("edge.yaml"),
        "domain: edge\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: minute\n      request_per_unit: 5\n",
    )
    .expect("write the rule file");
    let stderr = refused_start(|command| {
        command
            .args(["--listen", "127.0.0.1:0", "--rls-config"])
            .arg(dir.path())
    });
    assert!(
        stderr.contains("edge.yaml:6: descriptors[0].rate_limit.request_per_unit: unknown field"),
        "{stderr}"
    );
}

#[cfg(unix)]
#[test]
fn the_binary_drains_and_exits_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let mut child = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["--listen", "127.0.0.1:0", "--backend", "sharded"])
        .env("TURNSTILE_LOG", "info")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    // The listening line is logged after the signal handlers' runtime is up.
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("turnstile listening"));
    assert!(
        listening.is_some(),
        "the gateway never logged that it was listening"
    );
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().expect("exits");
    assert!(exit.success(), "exit status {exit:?}; log: {rest:?}");
    assert!(
        rest.iter().any(|line| line.contains("draining")),
        "{rest:?}"
    );
    assert!(rest.iter().any(|line| line.contains("stopped")), "{rest:?}");
}

#[test]
fn a_log_filter_that_would_log_nothing_falls_back_to_info_and_says_so() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    for filter in ["verbose", "info,[", "debug=nope"] {
        let child = Command::new(env!("CARGO_BIN_EXE_turnstile"))
            .args(["--listen", "127.0.0.1:0"])
            .env("TURNSTILE_LOG", filter)
            .stdout(Stdio::piped())
            .spawn()
            .expect("starts");
        let mut child = turnstile_gateway::testing::KillOnDrop(child);
        let lines: Vec<String> = BufReader::new(child.stdout.take().expect("stdout"))
            .lines()
            .map_while(Result::ok)
            .take_while(|line| !line.contains("turnstile listening"))
            .collect();
        assert!(
            lines
                .iter()
                .any(|line| line.contains("TURNSTILE_LOG") && line.contains("`info` instead")),
            "{filter}: {lines:?}"
        );
    }
}

#[cfg(unix)]
#[test]
fn a_second_sigterm_during_the_drain_exits_at_once() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;

    let child = Command::new(env!("CARGO_BIN_EXE_turnstile"))
        .args(["--listen", "127.0.0.1:0"])
        .env("TURNSTILE_LOG", "info")
        .env("TURNSTILE_SHUTDOWN_GRACE", "120s")
        .env("TURNSTILE_BODY_READ_TIMEOUT", "120s")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starts");
    // Killed even when an assertion below fails.
    let mut child = turnstile_gateway::testing::KillOnDrop(child);
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let listening = lines
        .by_ref()
        .map_while(Result::ok)
        .find(|line| line.contains("turnstile listening"))
        .expect("the gateway logs that it listens");
    let address = listening
        .split("address=")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("the address in the listening line")
        .to_owned();
    // A request that will not finish within the grace: its body never arrives.
    let mut stalled = std::net::TcpStream::connect(&address).unwrap();
    stalled
        .write_all(b"POST /v1/check HTTP/1.1\r\nhost: t\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{")
        .unwrap();
    let term = || {
        let status = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill runs");
        assert!(status.success());
    };
    // Wait for the request to be under way (a check answered on another connection orders it).
    let _ = std::net::TcpStream::connect(&address)
        .and_then(|mut other| {
            other.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")?;
            std::io::Read::read_to_end(&mut other, &mut Vec::new())
        })
        .unwrap();
    term();
    assert!(
        lines
            .by_ref()
            .map_while(Result::ok)
            .any(|line| line.contains("draining")),
        "the first signal starts the drain"
    );
    term();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let exit = loop {
        if let Some(exit) = child.try_wait().expect("waits") {
            break exit;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the second signal did not end the 120 s drain"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(exit.code(), Some(1), "{exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(
        rest.iter()
            .any(|line| line.contains("second shutdown signal")),
        "{rest:?}"
    );
    drop(stalled);
}

#[tokio::test]
async fn the_admin_listener_injects_faults_on_a_running_gateway() {
    let app = spawn_app(Config {
        backend: BackendKind::Sharded,
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::default()
    });
    let admin = app.admin.expect("admin listener enabled");
    let client = reqwest::Client::new();
    let crashed = client
        .post(format!("http://{admin}/admin/crash/shard/2"))
        .send()
        .await
        .unwrap();
    assert_eq!(crashed.status(), 200);
    // The restart happens within the jittered backoff (≤ 15 ms); poll the public metrics.
    let restarted = r#"turnstile_actor_restarts_total{backend="sharded",child="2"} 1"#;
    let mut seen = false;
    for _ in 0..100 {
        let metrics = reqwest::get(format!("http://{}/metrics", app.address))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if metrics.contains(restarted)
            && metrics.contains(r#"turnstile_faults_injected_total{kind="crash"} 1"#)
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(seen, "the crash and restart never showed in /metrics");
    let status: serde_json::Value = client
        .get(format!("http://{admin}/admin/supervision"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(status["children"][2]["restarts"], 1);
    // The admin API is not on the public listener.
    let public = client
        .get(format!("http://{}/admin/supervision", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(
        public.status(),
        200,
        "answered by the demo gateway route, not the admin API"
    );
    assert_eq!(public.text().await.unwrap(), "ok\n");
    stop(app).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_probe_flags_report_liveness_and_readiness_through_the_exit_status() {
    // A redis backend whose Redis is unreachable: alive, but not ready.
    let app = spawn_app(Config {
        backend: BackendKind::Redis,
        redis_url: "redis://127.0.0.1:1".into(),
        ..Config::default()
    });
    let probe = |flag: &'static str, listen: String| {
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_turnstile"))
                .args([flag, "--listen", &listen])
                .output()
                .expect("runs")
        })
    };
    let port = app.address.port();
    let alive = probe("--healthcheck", format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    assert!(alive.status.success(), "{alive:?}");
    // A wildcard listen address is probed through loopback, as in a container.
    let wildcard = probe("--healthcheck", format!("0.0.0.0:{port}"))
        .await
        .unwrap();
    assert!(wildcard.status.success(), "{wildcard:?}");
    let not_ready = probe("--readiness-check", format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    assert!(!not_ready.status.success());
    assert!(
        String::from_utf8_lossy(&not_ready.stderr).contains(" 503"),
        "{not_ready:?}"
    );
    stop(app).await;
    // Nothing listens there any more.
    let down = probe("--healthcheck", format!("127.0.0.1:{port}"))
        .await
        .unwrap();
    assert!(!down.status.success());
    assert!(
        String::from_utf8_lossy(&down.stderr).contains("/healthz probe failed"),
        "{down:?}"
    );
}

/// The binary, started from `args`, its log collected as it runs.
#[cfg(unix)]
struct LoggedBinary {
    child: std::process::Child,
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

#[cfg(unix)]
impl LoggedBinary {
    fn start(args: &[&std::ffi::OsStr]) -> Self {
        use std::io::{BufRead, BufReader};
        let mut child = Command::new(env!("CARGO_BIN_EXE_turnstile"))
            .args(args)
            .env("TURNSTILE_LOG", "info")
            .env_remove("TURNSTILE_CONFIG")
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("starts");
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let sink = std::sync::Arc::clone(&log);
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Self { child, log }
    }

    fn logged(&self, needle: &str) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|line| line.contains(needle))
    }

    /// The address of the `turnstile listening` line.
    async fn address(&self) -> String {
        until("the gateway to listen", || {
            self.logged("turnstile listening")
        })
        .await;
        let log = self.log.lock().unwrap();
        let line = log
            .iter()
            .find(|line| line.contains("turnstile listening"))
            .unwrap();
        line.split("address=")
            .nth(1)
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .to_owned()
    }
}

#[cfg(unix)]
impl Drop for LoggedBinary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(unix)]
#[tokio::test]
async fn the_toml_files_policies_reload_on_change_and_sighup_and_keep_unchanged_state() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("turnstile.toml");
    let policies = |login_limit: u32, extra: &str| {
        format!(
            "listen = \"127.0.0.1:0\"\n[policies.default]\nlimit = 5\nperiod = \"1h\"\n[policies.login]\nlimit = {login_limit}\nperiod = \"1h\"\n{extra}"
        )
    };
    std::fs::write(&file, policies(3, "")).unwrap();
    let gateway = LoggedBinary::start(&["--config".as_ref(), file.as_os_str()]);
    let address = gateway.address().await;
    let client = reqwest::Client::new();
    let check = |policy: &'static str| {
        let request = client
            .post(format!("http://{address}/v1/check"))
            .json(&serde_json::json!({"key": "k", "policy": policy}))
            .send();
        async move {
            let response = request.await.unwrap();
            let status = response.status();
            let body: serde_json::Value = response.json().await.unwrap();
            (status, body)
        }
    };
    assert_eq!(check("default").await.1["remaining"], 4);
    assert_eq!(check("login").await.1["remaining"], 2);

    // A new policy, login's limit changed, default unchanged, and a setting that needs a
    // restart changed: the policies apply, default keeps its state, the log names `shards`.
    std::fs::write(
        &file,
        policies(10, "[policies.search]\nlimit = 7\nperiod = \"1h\"\n")
            .replace("listen", "shards = 3\nlisten"),
    )
    .unwrap();
    let mut added = false;
    for _ in 0..400 {
        let (status, body) = check("search").await;
        if status == 200 {
            assert_eq!(body["remaining"], 6);
            added = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(added, "the added policy never became usable");
    assert_eq!(
        check("default").await.1["remaining"],
        3,
        "default kept its state"
    );
    assert_eq!(check("login").await.1["limit"], 10);
    assert!(gateway.logged("take effect only after a restart"));
    assert!(gateway.logged("shards"));

    // A broken file: the old policies stay in force.
    std::fs::write(&file, "[policies.default\nlimit = ").unwrap();
    until("the failed reload to be logged", || {
        gateway.logged("policy reload failed")
    })
    .await;
    assert_eq!(check("search").await.0, 200);

    // SIGHUP reloads too: with search removed from the file, it is gone.
    std::fs::write(&file, policies(10, "")).unwrap();
    let reloads = || {
        gateway
            .log
            .lock()
            .unwrap()
            .iter()
            .filter(|line| line.contains("policies reloaded"))
            .count()
    };
    until("the reload after the fix", || reloads() >= 2).await;
    let before = reloads();
    let status = Command::new("kill")
        .args(["-HUP", &gateway.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    until("the SIGHUP reload", || reloads() > before).await;
    let (status, body) = check("search").await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "unknown_policy");
}
