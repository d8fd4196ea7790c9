//! `turnstile-load compare --live` watched in headless Chromium: two `turnstile` gateway
//! processes (actor, concurrent) under load side by side; "crash actor" clicked on the page;
//! then the concurrent gateway killed mid-run.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use turnstile_e2e::browser::Browser;
use turnstile_e2e::{
    Process, external_tool, free_port, gateway_binary, http_client, load_binary, scratch_dir,
    wait_until, workspace_root,
};

/// A gateway process of `backend` whose checks take 5 ms inside the state owner, so the
/// single actor (at most ~200 checks/s) has a mailbox to lose; with an admin listener.
async fn gateway(dir: &Path, backend: &str) -> (Process, String, String) {
    let (http, admin) = (
        format!("127.0.0.1:{}", free_port()),
        format!("127.0.0.1:{}", free_port()),
    );
    let file = dir.join(format!("{backend}.toml"));
    std::fs::write(
        &file,
        format!(
            "listen = \"{http}\"\nadmin_listen = \"{admin}\"\nbackend = \"{backend}\"\n\
             trusted_proxies = [\"127.0.0.1/32\"]\n\
             simulated_work = {{ kind = \"sleep\", duration = \"5ms\" }}\n"
        ),
    )
    .unwrap();
    let mut process = Process::start(
        backend,
        &gateway_binary(),
        &["--config", file.to_str().unwrap()],
        dir.join(format!("{backend}.log")),
    );
    process.await_ready(&http).await;
    (process, format!("http://{http}"), format!("http://{admin}"))
}

async fn state(live: &str) -> Value {
    http_client()
        .get(format!("{live}/api/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Waits until `script` (run in the page) returns `true`.
async fn until_page(browser: &Browser, what: &str, script: &str) {
    wait_until(what, Duration::from_secs(60), || async {
        (browser.execute(script).await == Value::Bool(true)).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_chromium, has_chromedriver)),
    ignore = "needs chromium and chromedriver (Debian packages chromium, chromium-driver; .ci/run installs them)"
)]
async fn the_live_view_shows_a_crash_and_a_gateway_that_dies() {
    let (Some(chromium), Some(chromedriver)) = (
        external_tool("chromium", "chromium"),
        external_tool("chromedriver", "chromium-driver"),
    ) else {
        return;
    };
    let dir = scratch_dir();
    let (mut actor, actor_url, actor_admin) = gateway(dir.path(), "actor").await;
    let (mut concurrent, concurrent_url, concurrent_admin) =
        gateway(dir.path(), "concurrent").await;
    let scenario = dir.path().join("live.toml");
    std::fs::write(
        &scenario,
        "name = \"live\"\ndescription = \"250/s on the gateway route, 5 ms per check\"\n\
         mode = \"open\"\nrate = 250\nconnections = 32\nduration = \"120s\"\nwarmup = \"1s\"\n\
         timeout = \"2s\"\n[traffic]\nroute = \"gateway\"\n\
         keys = { distribution = \"uniform\", count = 500 }\n",
    )
    .unwrap();
    let live_port = free_port();
    let live = format!("http://127.0.0.1:{live_port}");
    let mut load = Process::start(
        "turnstile-load",
        &load_binary(),
        &[
            "compare",
            "--scenario",
            scenario.to_str().unwrap(),
            "--url",
            &format!("actor={actor_url},admin={actor_admin}"),
            "--url",
            &format!("concurrent={concurrent_url},admin={concurrent_admin}"),
            "--no-sweep",
            "--quiet",
            "--out",
            dir.path().join("report").to_str().unwrap(),
            "--live",
            "--live-listen",
            &format!("127.0.0.1:{live_port}"),
        ],
        dir.path().join("turnstile-load.log"),
    );
    wait_until(
        "the live view serves both backends",
        Duration::from_secs(60),
        || {
            let live = live.clone();
            async move {
                let answer = http_client()
                    .get(format!("{live}/api/state"))
                    .send()
                    .await
                    .ok()?;
                let state: Value = answer.json().await.ok()?;
                let backends = state["backends"].as_array()?;
                (backends.len() == 2
                    && backends.iter().all(|b| {
                        b["timeline"]["samples"]
                            .as_array()
                            .is_some_and(|s| s.len() >= 2 && !s[1]["gateway"].is_null())
                    }))
                .then_some(())
            }
        },
    )
    .await;

    let browser = Browser::start(&chromedriver, &chromium, dir.path()).await;
    browser.goto(&format!("{live}/")).await;
    until_page(
        &browser,
        "both columns have charts with data",
        r#"return ["actor", "concurrent"].every((label) => {
             const column = document.querySelector(`[data-backend="${label}"]`);
             return column !== null && column.querySelector(".chart.rate path.line") !== null
               && column.querySelector(".chart.mailbox") !== null;
           });"#,
    )
    .await;
    assert_eq!(
        browser
            .execute(r#"return document.querySelector('[data-backend="concurrent"] button[data-action="crash_actor"]').disabled;"#)
            .await,
        Value::Bool(true),
        "the concurrent map has no actor to crash"
    );
    browser
        .click(r#"[data-backend="actor"] button[data-action="crash_actor"]"#)
        .await;
    until_page(
        &browser,
        "the actor's column shows the restart and the crashed checks",
        r#"const column = document.querySelector('[data-backend="actor"]');
           const crashed = column.querySelector('[data-drop="crashed"] .count');
           return column.querySelector('.chart.rate .marker.restart') !== null
             && column.querySelector('.chart.rate .marker.fault') !== null
             && crashed !== null && Number(crashed.textContent) > 0;"#,
    )
    .await;
    let concurrent_crashed = browser
        .execute(r#"return document.querySelector('[data-backend="concurrent"] [data-drop="crashed"]') === null
             && document.querySelector('[data-backend="concurrent"] .marker.restart') === null;"#)
        .await;
    assert_eq!(
        concurrent_crashed,
        Value::Bool(true),
        "nothing crashed in the concurrent backend"
    );
    let artefacts = workspace_root().join("target/live-view");
    browser.screenshot(&artefacts.join("crash-actor.png")).await;

    // What the page showed is what the JSON says.
    let snapshot = state(&live).await;
    let actor_timeline = &snapshot["backends"][0]["timeline"];
    assert!(
        actor_timeline["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "live_fault" && e["label"] == "crash_actor" && e["ok"] == true),
        "{actor_timeline}"
    );

    // The concurrent gateway dies mid-run: its series stops and its column says why; the
    // actor's goes on.
    concurrent.kill();
    until_page(
        &browser,
        "the concurrent column says its gateway stopped answering",
        r#"const ended = document.querySelector('[data-backend="concurrent"] .ended');
           return !ended.hidden && ended.textContent.includes("stopped answering");"#,
    )
    .await;
    let stopped_at = state(&live).await["backends"][1]["timeline"]["samples"]
        .as_array()
        .unwrap()
        .len();
    let actor_samples = |state: &Value| {
        state["backends"][0]["timeline"]["samples"]
            .as_array()
            .unwrap()
            .len()
    };
    let actor_before = actor_samples(&state(&live).await);
    wait_until(
        "the actor's series goes on",
        Duration::from_secs(30),
        || {
            let live = live.clone();
            async move { (actor_samples(&state(&live).await) > actor_before + 1).then_some(()) }
        },
    )
    .await;
    let after = state(&live).await;
    assert_eq!(
        after["backends"][1]["timeline"]["samples"]
            .as_array()
            .unwrap()
            .len(),
        stopped_at,
        "no sample is added once the gateway is gone"
    );
    assert!(after["backends"][0]["timeline"]["ended"].is_null());
    browser
        .screenshot(&artefacts.join("gateway-died.png"))
        .await;
    assert_eq!(
        browser
            .execute("return document.getElementById('connection').hidden;")
            .await,
        Value::Bool(true),
        "the page still reaches the live server"
    );

    let left = browser.stop().await;
    assert!(left.is_empty(), "browser processes left running: {left:?}");
    load.assert_running();
    load.kill();
    actor.kill();
    assert!(!load.group_alive() && !actor.group_alive() && !concurrent.group_alive());
}
