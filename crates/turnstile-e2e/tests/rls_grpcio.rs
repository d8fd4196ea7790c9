//! Envoy's rate limit service as Envoy's own ecosystem calls it: Python's `grpcio` with
//! `xds-protos` (the grpc project's generated Envoy types, not Turnstile's) drives the
//! `turnstile` binary on the redis backend, with envoyproxy/ratelimit-style rule files: two
//! domains, nested descriptors, a shared wildcard, a blocking rule, an unlimited rule, shadow
//! mode, two descriptors in one call, bad input, a reload adding a domain while load runs (no
//! failed call), a bad reload that keeps the old rules, `SIGHUP`, and a Redis outage answered
//! `UNAVAILABLE` within the command timeout.
//!
//! The Python side (`python/rls_driver.py`) is a thin client reading commands on stdin; every
//! assertion is here. `.ci/run` installs its packages (`python/requirements.txt`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};
use turnstile_e2e::{
    GRPC_MODULES, Process, RedisServer, free_port, gateway_binary, http_client, metric,
    python_with, scratch_dir, wait_for_metric, wait_until, workspace_root,
};

const EDGE: &str = r#"
domain: edge
descriptors:
  - key: remote_address
    rate_limit: { unit: hour, requests_per_unit: 5, name: per-ip }
  - key: generic_key
    value: blocked
    rate_limit: { unit: second, requests_per_unit: 0 }
  - key: generic_key
    value: internal
    rate_limit: { unlimited: true }
  - key: generic_key
    value: load
    rate_limit: { unit: second, requests_per_unit: 1000000 }
  - key: path
    value: /files/*
    share_threshold: true
    rate_limit: { unit: hour, requests_per_unit: 2 }
  - key: tenant
    descriptors:
      - key: plan
        value: free
        rate_limit: { unit: hour, requests_per_unit: 2, name: free-plan }
  - key: shadowed
    shadow_mode: true
    rate_limit: { unit: hour, requests_per_unit: 1 }
"#;

const PARTNERS: &str = r#"
domain: partners
descriptors:
  - key: api_key
    value: acme
    rate_limit: { unit: day, requests_per_unit: 3 }
  - key: api_key
    rate_limit: { unit: day, requests_per_unit: 1 }
"#;

const ADDED: &str = r#"
domain: added
descriptors:
  - key: k
    rate_limit: { unit: hour, requests_per_unit: 4, name: added-rule }
"#;

/// The Python client, one JSON command and answer per line.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    fn start(python: &std::path::Path, rls: &str) -> Self {
        let script = workspace_root().join("crates/turnstile-e2e/python/rls_driver.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(rls)
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut driver = Self {
            child,
            stdin,
            stdout,
        };
        assert_eq!(driver.read()["ready"], true);
        driver
    }

    fn read(&mut self) -> Value {
        let mut line = String::new();
        tokio::task::block_in_place(|| self.stdout.read_line(&mut line)).unwrap();
        assert!(!line.is_empty(), "the Python driver exited");
        serde_json::from_str(&line).unwrap()
    }

    fn send(&mut self, command: Value) -> Value {
        writeln!(self.stdin, "{command}").unwrap();
        self.stdin.flush().unwrap();
        self.read()
    }

    fn call(&mut self, domain: &str, descriptors: Value) -> Value {
        self.send(json!({"op": "call", "domain": domain, "descriptors": descriptors}))
    }

    fn one(&mut self, domain: &str, entries: &[(&str, &str)]) -> Value {
        let entries: Vec<Value> = entries.iter().map(|(k, v)| json!([k, v])).collect();
        self.call(domain, json!([entries]))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[track_caller]
fn assert_code(answer: &Value, code: &str, remaining: u64) {
    assert_eq!(answer["code"], code, "{answer}");
    assert_eq!(answer["statuses"][0]["remaining"], remaining, "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_redis_server, has_grpcio)),
    ignore = "needs redis-server (Debian package redis-server) and the grpcio virtualenv .ci/run makes (target/e2e-venv, or E2E_PYTHON)"
)]
async fn grpcio_drives_the_rate_limit_service_on_the_redis_backend() {
    let python = python_with(&GRPC_MODULES).expect("the gRPC client's Python, found at build time");
    let dir = scratch_dir();
    let Some(mut redis) = RedisServer::start(dir.path()).await else {
        return;
    };
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).unwrap();
    std::fs::write(rules.join("edge.yaml"), EDGE).unwrap();
    std::fs::write(rules.join("partners.yaml"), PARTNERS).unwrap();

    let http = format!("127.0.0.1:{}", free_port());
    let rls = format!("127.0.0.1:{}", free_port());
    let mut turnstile = Process::start(
        "turnstile",
        &gateway_binary(),
        &[
            "--backend",
            "redis",
            "--redis-url",
            &redis.url(),
            "--listen",
            &http,
            "--rls-listen",
            &rls,
            "--rls-config",
            rules.to_str().unwrap(),
        ],
        dir.path().join("turnstile.log"),
    );
    turnstile.await_ready(&http).await;
    let mut driver = Driver::start(&python, &rls);

    // Counts and remaining, exactly, through the first window; then over the limit.
    for remaining in (0..5).rev() {
        let answer = driver.one("edge", &[("remote_address", "10.0.0.1")]);
        assert_code(&answer, "OK", remaining);
        assert_eq!(
            answer["statuses"][0]["limit"],
            json!({"requests_per_unit": 5, "unit": "HOUR", "name": "per-ip"})
        );
    }
    let over = driver.one("edge", &[("remote_address", "10.0.0.1")]);
    assert_code(&over, "OVER_LIMIT", 0);
    assert_eq!(over["statuses"][0]["code"], "OVER_LIMIT");
    // GCRA: 5 per hour is one every 12 minutes.
    assert_eq!(over["headers"]["retry-after"], "720", "{over}");
    assert!(over["headers"]["ratelimit-policy"].is_string(), "{over}");
    assert_code(
        &driver.one("edge", &[("remote_address", "10.0.0.2")]),
        "OK",
        4,
    );

    // Nested descriptors, at the request's depth only.
    assert_code(
        &driver.one("edge", &[("tenant", "t1"), ("plan", "free")]),
        "OK",
        1,
    );
    assert_code(
        &driver.one("edge", &[("tenant", "t1"), ("plan", "free")]),
        "OK",
        0,
    );
    assert_code(
        &driver.one("edge", &[("tenant", "t1"), ("plan", "free")]),
        "OVER_LIMIT",
        0,
    );
    let shallow = driver.one("edge", &[("tenant", "t1")]);
    assert_eq!(shallow["code"], "OK");
    assert!(shallow["statuses"][0]["limit"].is_null(), "{shallow}");

    // A shared wildcard: every path under /files/ counts against one limit.
    assert_code(&driver.one("edge", &[("path", "/files/a")]), "OK", 1);
    assert_code(&driver.one("edge", &[("path", "/files/b")]), "OK", 0);
    assert_code(
        &driver.one("edge", &[("path", "/files/c")]),
        "OVER_LIMIT",
        0,
    );

    // Blocking and unlimited rules; shadow mode.
    let blocked = driver.one("edge", &[("generic_key", "blocked")]);
    assert_eq!(blocked["code"], "OVER_LIMIT");
    assert_eq!(blocked["statuses"][0]["limit"]["requests_per_unit"], 0);
    let unlimited = driver.one("edge", &[("generic_key", "internal")]);
    assert_eq!(unlimited["code"], "OK");
    assert!(unlimited["statuses"][0]["limit"].is_null());
    assert_code(&driver.one("edge", &[("shadowed", "s")]), "OK", 0);
    assert_eq!(driver.one("edge", &[("shadowed", "s")])["code"], "OK");

    // Two descriptors: over if either is, and the OK one is consumed.
    let both = driver.call(
        "edge",
        json!([
            [["remote_address", "10.0.0.3"]],
            [["generic_key", "blocked"]]
        ]),
    );
    assert_eq!(both["code"], "OVER_LIMIT");
    assert_eq!(both["statuses"][0]["code"], "OK");
    assert_eq!(both["statuses"][1]["code"], "OVER_LIMIT");
    assert_code(
        &driver.one("edge", &[("remote_address", "10.0.0.3")]),
        "OK",
        3,
    );

    // The second domain: its own rules and counters.
    assert_code(&driver.one("partners", &[("api_key", "acme")]), "OK", 2);
    assert_code(&driver.one("partners", &[("api_key", "other")]), "OK", 0);
    assert_code(
        &driver.one("partners", &[("api_key", "other")]),
        "OVER_LIMIT",
        0,
    );

    // Bad input: INVALID_ARGUMENT naming the field.
    let bad = driver.one("", &[("remote_address", "10.0.0.1")]);
    assert_eq!(bad["error"], "INVALID_ARGUMENT", "{bad}");
    assert!(bad["message"].as_str().unwrap().contains("domain"), "{bad}");
    let bad = driver.call("edge", json!([]));
    assert_eq!(bad["error"], "INVALID_ARGUMENT", "{bad}");

    // A reload that adds a domain while load runs: no call fails.
    let reloads_ok = r#"turnstile_config_reloads_total{result="ok"}"#;
    let before = metric(&http, reloads_ok).await;
    let answer = driver.send(json!({
        "op": "load_start", "domain": "edge", "threads": 2,
        "descriptors": [[["generic_key", "load"]]],
    }));
    assert_eq!(answer["started"], true);
    std::fs::write(rules.join("added.yaml"), ADDED).unwrap();
    let mut probe = Driver::start(&python, &rls);
    wait_until(
        "the added domain to be loaded",
        Duration::from_secs(30),
        || {
            let answer = probe.one("added", &[("k", "probe")]);
            async move { (!answer["statuses"][0]["limit"].is_null()).then_some(()) }
        },
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let load = driver.send(json!({"op": "load_stop"}));
    assert!(load["calls"].as_u64().unwrap() > 0, "{load}");
    assert_eq!(load["failures"], json!([]), "{load}");
    assert!(metric(&http, reloads_ok).await > before);
    assert_code(&driver.one("added", &[("k", "v")]), "OK", 3);
    // Unchanged rules kept their counters through the reload.
    assert_code(
        &driver.one("edge", &[("remote_address", "10.0.0.2")]),
        "OK",
        3,
    );

    // A bad file: counted, logged with file and line, and the old rules stay in force.
    let reloads_error = r#"turnstile_config_reloads_total{result="error"}"#;
    std::fs::write(
        rules.join("broken.yaml"),
        "domain: broken\ndescriptors:\n  - key: a\n    rate_limit:\n      unit: hour\n      request_per_unit: 1\n",
    )
    .unwrap();
    wait_for_metric("the bad reload to be counted", &http, reloads_error, 1.0).await;
    assert!(
        turnstile.log().contains("broken.yaml:6"),
        "{}",
        turnstile.log()
    );
    assert_code(&driver.one("added", &[("k", "v")]), "OK", 2);
    let ready = http_client()
        .get(format!("http://{http}/readyz"))
        .send()
        .await
        .unwrap();
    assert!(ready.status().is_success());

    // SIGHUP reloads too (the broken file gone, it succeeds).
    std::fs::remove_file(rules.join("broken.yaml")).unwrap();
    wait_for_metric("the reload after removing the file", &http, reloads_ok, 2.0).await;
    let before = metric(&http, reloads_ok).await;
    assert!(turnstile.signal("-HUP"));
    // Counters are whole numbers: one more than before.
    wait_for_metric("the SIGHUP reload", &http, reloads_ok, before + 1.0).await;

    // Redis goes away: UNAVAILABLE (Envoy's failure_mode_deny decides), within the timeout.
    redis.stop();
    let outage = driver.one("edge", &[("remote_address", "10.0.0.9")]);
    assert_eq!(outage["error"], "UNAVAILABLE", "{outage}");
    assert!(outage["elapsed"].as_f64().unwrap() < 3.0, "{outage}");
    redis.restart().await;
    wait_until(
        "decisions after Redis is back",
        Duration::from_secs(30),
        || {
            let answer = driver.one("edge", &[("remote_address", "10.0.0.10")]);
            async move { (answer["code"] == "OK").then_some(()) }
        },
    )
    .await;

    drop(probe);
    drop(driver);
    turnstile.assert_running();
    turnstile.kill();
    assert!(!turnstile.group_alive(), "turnstile left processes behind");
    redis.stop();
}
