//! The gateway route as a reverse proxy in front of a real application: Python's
//! `http.server` (`python/upstream.py`), a port that refuses, and a slow path. Bodies of 0 B,
//! 1 KiB and 50 MiB stream both ways (Content-Length and chunked) while the gateway's memory
//! stays flat; headers are forwarded and hop-by-hop ones removed; 502, 504, 413 and 501 are
//! JSON and counted; a denied request never reaches the application (its access log says so);
//! rules and the upstream reload from the TOML file under load with no failed request; a bad
//! rule is exit 2 at start-up and a kept configuration on reload.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use turnstile_e2e::{
    Process, external_tool, free_port, gateway_binary, http_client, scratch_dir, start_gateway,
    wait_for_metric, wait_until, workspace_root,
};

const MIB: usize = 1024 * 1024;

/// The application: `python/upstream.py` on a port of its own.
struct Upstream {
    process: Process,
    /// The interpreter it runs on (also the test's hasher).
    python: PathBuf,
    port: u16,
    access_log: PathBuf,
}

impl Upstream {
    async fn start(dir: &Path, name: &str) -> Option<Self> {
        let python = external_tool("python3", "python3")?;
        let port = free_port();
        let access_log = dir.join(format!("{name}-access.log"));
        let script = workspace_root().join("crates/turnstile-e2e/python/upstream.py");
        let process = Process::start(
            name,
            &python.clone(),
            &[
                script.to_str().unwrap(),
                &port.to_string(),
                access_log.to_str().unwrap(),
                name,
            ],
            dir.join(format!("{name}.log")),
        );
        let mut upstream = Self {
            process,
            python,
            port,
            access_log,
        };
        wait_until("the upstream to listen", Duration::from_secs(30), || {
            upstream.process.assert_running();
            let connected = std::net::TcpStream::connect(("127.0.0.1", port)).is_ok();
            async move { connected.then_some(()) }
        })
        .await;
        Some(upstream)
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The requests it answered: `METHOD PATH BODY_BYTES`.
    fn requests(&self) -> Vec<String> {
        std::fs::read_to_string(&self.access_log)
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

/// A port nothing listens on (bound, then closed).
fn refusing_port() -> u16 {
    free_port()
}

/// The largest resident set the process has had, in bytes (`VmHWM`).
fn peak_rss(pid: u32) -> usize {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .expect("VmHWM in /proc/<pid>/status");
    kib * 1024
}

/// The SHA-256 of `len` bytes of `x`, as the upstream reports what it received: computed by the
/// same Python, so no hashing crate is needed for one test.
fn sha256_of_x(python: &Path, len: usize) -> String {
    let out = std::process::Command::new(python)
        .args([
            "-c",
            &format!("import hashlib; print(hashlib.sha256(b'x' * {len}).hexdigest())"),
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// A gateway process on `config` (written to a file, so it can be reloaded), ready.
async fn gateway_process(dir: &Path, config: &str) -> (Process, String, PathBuf) {
    let http = format!("127.0.0.1:{}", free_port());
    let file = dir.join("turnstile.toml");
    std::fs::write(&file, format!("listen = \"{http}\"\n{config}")).unwrap();
    let mut process = Process::start(
        "turnstile",
        &gateway_binary(),
        &["--config", file.to_str().unwrap()],
        dir.join("turnstile.log"),
    );
    process.await_ready(&http).await;
    (process, http, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_python3),
    ignore = "needs python3 for the upstream application"
)]
async fn bodies_stream_both_ways_with_flat_memory() {
    let dir = scratch_dir();
    let Some(upstream) = Upstream::start(dir.path(), "app").await else {
        return;
    };
    let config = format!(
        "upstream = \"{}\"\n[policies.default]\nlimit = 1000\nperiod = \"1s\"\n",
        upstream.url()
    );
    let (gateway, http, _) = gateway_process(dir.path(), &config).await;
    let client = http_client();
    let post = |body: reqwest::Body| {
        client
            .post(format!("http://{http}/upload"))
            .body(body)
            .send()
    };
    // Warm up, then measure the peak from here on.
    for size in [0, 1024] {
        let answer: Value = post(vec![b'x'; size].into())
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(answer["body_bytes"], size);
        assert_eq!(answer["sha256"], sha256_of_x(&upstream.python, size));
        assert_eq!(answer["method"], "POST");
    }
    let before = peak_rss(gateway.id());

    let big = 50 * MIB;
    let answer: Value = post(vec![b'x'; big].into())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["body_bytes"], big);
    assert_eq!(answer["headers"]["content-length"][0], big.to_string());
    let expected = sha256_of_x(&upstream.python, big);
    assert_eq!(answer["sha256"], expected);
    // Chunked: a stream of 64 KiB pieces with no length.
    let pieces = futures_util::stream::iter(
        (0..big / (64 * 1024)).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 64 * 1024])),
    );
    let answer: Value = post(reqwest::Body::wrap_stream(pieces))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["body_bytes"], big);
    assert_eq!(answer["sha256"], expected);
    assert_eq!(answer["headers"]["transfer-encoding"][0], "chunked");
    // Downloads, with and without a length.
    for path in ["big", "chunked"] {
        let mut response = client
            .get(format!("http://{http}/{path}/{big}"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let mut received = 0;
        while let Some(chunk) = response.chunk().await.unwrap() {
            assert!(chunk.iter().all(|byte| *byte == b'x'));
            received += chunk.len();
        }
        assert_eq!(received, big, "{path}");
    }
    let grown = peak_rss(gateway.id()).saturating_sub(before);
    eprintln!("peak RSS grew by {} KiB", grown / 1024);
    // One body held whole would be 50 MiB; streaming keeps each connection to its buffers
    // (hyper's read and write buffers, the allocator's free lists): a few MiB here.
    assert!(
        grown < 32 * MIB,
        "the gateway's peak memory grew by {} MiB while 4 × 50 MiB went through: something buffered a body",
        grown / MIB
    );
    assert_eq!(upstream.requests().len(), 6, "{:?}", upstream.requests());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_python3),
    ignore = "needs python3 for the upstream application"
)]
async fn headers_are_forwarded_and_hop_by_hop_ones_removed() {
    let dir = scratch_dir();
    let Some(upstream) = Upstream::start(dir.path(), "app").await else {
        return;
    };
    let gateway = start_gateway(&format!("upstream = \"{}\"", upstream.url()));
    let response = http_client()
        .get(format!("{}/echo?q=1", gateway.url()))
        .header("host", "app.example")
        .header("connection", "x-client-hop")
        .header("x-client-hop", "1")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic eDp5")
        .header("x-forwarded-for", "198.51.100.7")
        .header("x-forwarded-proto", "https")
        .header("x-end-to-end", "yes")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let headers = response.headers();
    assert_eq!(headers["x-upstream"], "app");
    assert_eq!(headers["x-end-to-end"], "kept");
    assert!(headers.get("x-upstream-hop").is_none(), "{headers:?}");
    assert_eq!(headers["ratelimit-policy"], r#""default";q=100;w=1"#);
    assert!(headers.get("ratelimit").is_some());
    let echo: Value = response.json().await.unwrap();
    let seen = &echo["headers"];
    assert_eq!(echo["path"], "/echo?q=1");
    assert_eq!(seen["host"][0], "app.example");
    assert_eq!(seen["x-forwarded-host"][0], "app.example");
    assert_eq!(seen["x-forwarded-for"][0], "198.51.100.7, 127.0.0.1");
    // The peer is no trusted proxy: its claim of https is replaced.
    assert_eq!(seen["x-forwarded-proto"][0], "http");
    assert_eq!(seen["x-end-to-end"][0], "yes");
    for hop in ["x-client-hop", "keep-alive", "te", "proxy-authorization"] {
        assert!(
            seen.get(hop).is_none(),
            "{hop} reached the upstream: {seen}"
        );
    }
    drop(gateway);

    // preserve_host = false: the upstream's own authority; RateLimit headers off.
    let gateway = start_gateway(&format!(
        "upstream = \"{}\"\n[proxy]\npreserve_host = false\nratelimit_headers = false",
        upstream.url()
    ));
    let response = http_client()
        .get(format!("{}/echo", gateway.url()))
        .header("host", "app.example")
        .send()
        .await
        .unwrap();
    assert!(response.headers().get("ratelimit").is_none());
    let echo: Value = response.json().await.unwrap();
    assert_eq!(
        echo["headers"]["host"][0],
        format!("127.0.0.1:{}", upstream.port)
    );
    assert_eq!(echo["headers"]["x-forwarded-host"][0], "app.example");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_python3),
    ignore = "needs python3 for the upstream application"
)]
async fn upstream_failures_are_json_errors_counted_by_reason() {
    let dir = scratch_dir();
    let Some(upstream) = Upstream::start(dir.path(), "app").await else {
        return;
    };
    let client = http_client();
    let error_of = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        (status, body["error"].as_str().unwrap().to_owned())
    };

    // Refused: 502.
    let refused = start_gateway(&format!(
        "upstream = \"http://127.0.0.1:{}\"",
        refusing_port()
    ));
    let response = client
        .get(format!("{}/x", refused.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (502, "upstream_unavailable".into())
    );
    let metrics = refused.state().metrics();
    assert_eq!(metrics.upstream_errors_total("gateway", "connect"), 1);
    drop(refused);

    // No headers in time: 504; the slow path answers after 3 s, the timeout is 500 ms.
    let slow = start_gateway(&format!(
        "upstream = \"{}\"\n[proxy]\nresponse_header_timeout = \"500ms\"\nmax_body_bytes = 1024",
        upstream.url()
    ));
    let response = client
        .get(format!("{}/slow", slow.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (504, "upstream_timeout".into()));
    let metrics = slow.state().metrics();
    assert_eq!(metrics.upstream_errors_total("gateway", "timeout"), 1);

    // Over max_body_bytes: declared, refused before the upstream hears of it; streamed, cut
    // off at the limit.
    let response = client
        .post(format!("{}/upload", slow.url()))
        .body(vec![b'x'; 2048])
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (413, "body_too_large".into()));
    let pieces =
        futures_util::stream::iter((0..4).map(|_| Ok::<_, std::io::Error>(vec![b'x'; 1024])));
    let response = client
        .post(format!("{}/upload", slow.url()))
        .body(reqwest::Body::wrap_stream(pieces))
        .send()
        .await
        .unwrap();
    assert_eq!(error_of(response).await, (413, "body_too_large".into()));
    assert_eq!(
        metrics.upstream_errors_total("gateway", "body_too_large"),
        1
    );
    // A body within the limit goes through.
    let response = client
        .post(format!("{}/upload", slow.url()))
        .body(vec![b'x'; 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    // An upgrade is refused before anything is decided or sent.
    let response = client
        .get(format!("{}/socket", slow.url()))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .send()
        .await
        .unwrap();
    assert_eq!(
        error_of(response).await,
        (501, "upgrade_not_supported".into())
    );
    // Decided: the slow request, the streamed body cut off, the one within the limit; the
    // declared oversize body and the upgrade were refused before any check.
    assert_eq!(metrics.route_decisions_total("gateway", "allowed"), 3);
    let seen: Vec<String> = upstream.requests();
    assert!(
        seen.iter().all(|line| !line.contains("/socket")),
        "{seen:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_python3),
    ignore = "needs python3 for the upstream application"
)]
async fn a_denied_request_never_reaches_the_upstream() {
    let dir = scratch_dir();
    let Some(upstream) = Upstream::start(dir.path(), "app").await else {
        return;
    };
    let gateway = start_gateway(&format!(
        r#"
        upstream = "{}"
        [policies.two]
        limit = 2
        period = "1m"
        [[routes]]
        name = "limited"
        match = {{ path_prefix = "/limited/" }}
        limits = [ {{ policy = "two", key = "client_ip" }} ]
        "#,
        upstream.url()
    ));
    let client = http_client();
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = client
            .get(format!("{}/limited/page", gateway.url()))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            assert!(response.headers().get("x-upstream").is_none());
            assert_eq!(response.headers()["retry-after"], "30");
        }
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 429, 429, 429]);
    assert_eq!(
        upstream.requests(),
        ["GET /limited/page 0", "GET /limited/page 0"]
    );
    // Paths no rule matches are admitted unlimited.
    let response = client
        .get(format!("{}/free", gateway.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(upstream.requests().len(), 3);
    // Counted under the rule that forwarded each: the unmatched one under `rule=""`.
    let metrics = gateway.state().metrics();
    assert_eq!(metrics.upstream_responses_total("limited"), 2);
    assert_eq!(metrics.upstream_responses_total(""), 1);
}

const RELOADED_RULES: &str = r#"
[policies.plenty]
limit = 100000
period = "1s"
[policies.one]
limit = 1
period = "1h"
[[routes]]
name = "added"
match = { path_prefix = "/added" }
limits = [ { policy = "one", key = "client_ip" } ]
[[routes]]
name = "all"
match = { path_prefix = "/" }
limits = [ { policy = "plenty", key = "client_ip" } ]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(has_python3),
    ignore = "needs python3 for the upstream application"
)]
async fn rules_and_upstream_reload_under_load_with_no_failed_request() {
    let dir = scratch_dir();
    let Some(first) = Upstream::start(dir.path(), "first").await else {
        return;
    };
    let Some(second) = Upstream::start(dir.path(), "second").await else {
        return;
    };
    let initial = format!(
        "upstream = \"{}\"\n[policies.plenty]\nlimit = 100000\nperiod = \"1s\"\n[gateway]\npolicy = \"plenty\"\n",
        first.url()
    );
    let (mut gateway, http, file) = gateway_process(dir.path(), &initial).await;

    // Load: two clients in a loop, every answer recorded.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = (0..2)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            let url = format!("http://{http}/load");
            tokio::spawn(async move {
                let client = http_client();
                let (mut answered, mut failures) = (0_u64, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    match client.get(&url).send().await {
                        Ok(response) if response.status() == 200 => answered += 1,
                        Ok(response) => failures.push(format!("status {}", response.status())),
                        Err(error) => failures.push(error.to_string()),
                    }
                }
                (answered, failures)
            })
        })
        .collect::<Vec<_>>();

    let reloads_ok = r#"turnstile_config_reloads_total{result="ok"}"#;
    tokio::time::sleep(Duration::from_millis(300)).await;
    std::fs::write(
        &file,
        format!(
            "listen = \"{http}\"\nupstream = \"{}\"\n{RELOADED_RULES}",
            second.url()
        ),
    )
    .unwrap();
    wait_for_metric("the reload to be counted", &http, reloads_ok, 1.0).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for task in load {
        let (answered, failures) = task.await.unwrap();
        assert!(answered > 0);
        assert!(
            failures.is_empty(),
            "failed during the reload: {failures:?}"
        );
    }
    let client = http_client();
    let response = client.get(format!("http://{http}/x")).send().await.unwrap();
    assert_eq!(response.headers()["x-upstream"], "second");
    let statuses: Vec<u16> = futures_util::future::join_all(
        (0..2).map(|_| client.get(format!("http://{http}/added")).send()),
    )
    .await
    .into_iter()
    .map(|response| response.unwrap().status().as_u16())
    .collect();
    let mut sorted = statuses.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, [200, 429], "the added rule is in force");
    assert!(
        second
            .requests()
            .iter()
            .any(|line| line.starts_with("GET /load"))
    );

    // A bad rule on reload: counted, logged naming it, and the running rules stay.
    std::fs::write(
        &file,
        format!(
            "listen = \"{http}\"\nupstream = \"{}\"\n{RELOADED_RULES}\n[[routes]]\nmatch = {{ path_prefix = \"/\" }}\nlimits = [ {{ policy = \"missing\", key = \"client_ip\" }} ]\n",
            second.url()
        ),
    )
    .unwrap();
    let reloads_error = r#"turnstile_config_reloads_total{result="error"}"#;
    wait_for_metric("the bad reload to be counted", &http, reloads_error, 1.0).await;
    assert!(
        gateway.log().contains("routes[2].limits[0].policy"),
        "{}",
        gateway.log()
    );
    let response = client
        .get(format!("http://{http}/added"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 429, "the running rules stayed in force");
    gateway.assert_running();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_rule_or_upstream_is_exit_2_naming_it() {
    let dir = scratch_dir();
    for (config, named) in [
        (
            "[[routes]]\nmatch = { path_prefix = \"/\" }\nlimits = [ { policy = \"nope\", key = \"client_ip\" } ]\n",
            "routes[0].limits[0].policy",
        ),
        (
            "[[routes]]\nmatch = { path_prefix = \"api\" }\nlimits = []\n",
            "routes[0].match.path_prefix",
        ),
        (
            "[[routes]]\nmatch = { path_prefix = \"/\" }\nlimits = [ { policy = \"default\", key = \"cookie:x\" } ]\n",
            "routes[0].limits[0].key",
        ),
        ("upstream = \"ftp://127.0.0.1:21\"\n", "upstream"),
    ] {
        let file = dir.path().join("bad.toml");
        std::fs::write(
            &file,
            format!("listen = \"127.0.0.1:{}\"\n{config}", free_port()),
        )
        .unwrap();
        let mut process = Process::start(
            "turnstile",
            &gateway_binary(),
            &["--config", file.to_str().unwrap()],
            dir.path().join("bad.log"),
        );
        assert_eq!(process.wait_exit(), Some(2), "{}", process.log());
        assert!(process.log().contains(named), "{named}: {}", process.log());
    }
}
