//! The load generator against real servers on loopback: a complete comparison run, coordinated
//! omission made visible, and rate accuracy. These use real time, so every bound is generous;
//! nothing asserts how fast this machine is.

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use tokio::sync::Mutex;
use tokio::time::Instant;
use turnstile_backend::BackendKind;
use turnstile_load::compare::{CompareOptions, Targets, compare};
use turnstile_load::engine::{RunOptions, Target, run};
use turnstile_load::scenario::{KeyDistribution, Mode, Route, Scenario, Sweep, SweepWork, Traffic};
use turnstile_load::timeline::{EventKind, Timeline};

/// Samples in strictly increasing time, events in order.
fn assert_monotonic(timeline: &Timeline) {
    assert!(
        timeline.samples.windows(2).all(|w| w[0].t < w[1].t),
        "{:?}",
        timeline.samples.iter().map(|s| s.t).collect::<Vec<_>>()
    );
    assert!(timeline.events.windows(2).all(|w| w[0].t_ms <= w[1].t_ms));
}

fn scenario(text: &str) -> Scenario {
    let scenario: Scenario = toml::from_str(text).unwrap();
    scenario.validate().unwrap();
    scenario
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_comparison_produces_complete_results_and_reports() {
    let mut scenario = scenario(
        r#"
        name = "smoke"
        description = "A short smoke run."
        rate = 200
        connections = 4
        duration = "1s"
        warmup = "200ms"
        timeout = "2s"
        [traffic]
        route = "gateway"
        keys = { distribution = "zipf", count = 100, exponent = 1.2 }
        [[faults]]
        at = "300ms"
        action = { kind = "poison", key = "10.0.0.0" }
        [gateway]
        shards = 4
        "#,
    );
    scenario.sweep = Some(Sweep {
        duration: Duration::from_millis(300),
        connections: 8,
        shards: vec![4],
        work: vec![SweepWork {
            kind: turnstile_backend::WorkKind::Sleep,
            duration: Duration::ZERO,
        }],
    });
    let comparison = compare(
        &scenario,
        Targets::Local(BackendKind::IN_PROCESS.to_vec()),
        CompareOptions::default(),
    )
    .await
    .unwrap();

    assert_eq!(comparison.runs.len(), 3);
    for run in &comparison.runs {
        assert!(
            run.requests > 50,
            "{}: {} requests",
            run.label,
            run.requests
        );
        assert_eq!(
            run.outcomes.total(),
            run.requests,
            "every request has one outcome"
        );
        assert!(run.outcomes.allowed > 0);
        assert!(run.latency_ms.p50 > 0.0 && run.latency_ms.max >= run.latency_ms.p99);
        assert_eq!(
            run.faults_injected, 1,
            "{}: the poison reached the admin API",
            run.label
        );
        assert_eq!(run.target_rate, Some(200.0));
    }
    // The poisoned client's next check crashed its state owner: the gateway said so.
    assert!(
        comparison.runs.iter().any(|run| run
            .outcomes
            .dropped
            .get("crashed")
            .is_some_and(|n| *n >= 1))
    );
    assert_eq!(
        comparison.sweep.len(),
        3,
        "actor, sharded×4, concurrent at one work level"
    );
    for run in &comparison.runs {
        let timeline = &run.timeline;
        assert_monotonic(timeline);
        assert!(
            timeline.samples.len() >= 2,
            "{}: a sample per second of the 1.2 s run",
            run.label
        );
        assert!(
            timeline.samples.iter().all(|s| s.gateway.is_some()),
            "{}: every second has the gateway's own figures",
            run.label
        );
        let counted: u64 = timeline.samples.iter().map(|s| s.outcomes.total()).sum();
        assert!(
            counted >= run.requests,
            "{}: the timeline counts warm-up and measured requests ({counted} < {})",
            run.label,
            run.requests
        );
        let poison = timeline
            .events
            .iter()
            .find(|e| e.kind == EventKind::ScenarioFault)
            .unwrap();
        assert!(poison.ok && poison.label == "poison 10.0.0.0", "{poison:?}");
        // Marked 300 ms into the measured run, which starts after the 200 ms warm-up.
        assert!(poison.t() >= 0.5, "{poison:?}");
    }

    let directory = tempfile::tempdir().unwrap();
    let markdown = turnstile_load::report::write(&comparison, directory.path(), "test").unwrap();
    for backend in ["actor", "sharded", "concurrent"] {
        assert!(markdown.contains(&format!("| {backend} |")), "{markdown}");
        let hgrm =
            std::fs::read_to_string(directory.path().join(format!("{backend}.hgrm"))).unwrap();
        assert!(
            hgrm.contains("Percentile") && hgrm.contains("#[Max"),
            "{hgrm}"
        );
        // The last distribution line's cumulative count is every recorded request.
        let run = comparison.runs.iter().find(|r| r.label == backend).unwrap();
        let last = hgrm
            .lines()
            .rfind(|l| !l.starts_with('#') && !l.trim().is_empty())
            .unwrap();
        let total: u64 = last.split_whitespace().nth(2).unwrap().parse().unwrap();
        assert_eq!(total, run.requests, "{last}");
    }
    let html = std::fs::read_to_string(directory.path().join("report.html")).unwrap();
    assert_eq!(
        html.matches("<svg").count(),
        8,
        "latency, throughput, dropped, 4 time series, sweep"
    );
    for file in [
        "latency.svg",
        "throughput.svg",
        "dropped.svg",
        "timeline-answered.svg",
        "timeline-p99.svg",
        "timeline-mailbox.svg",
        "timeline-dropped.svg",
        "sweep.svg",
    ] {
        assert!(
            markdown.contains(&format!("]({file})")),
            "report.md shows {file}"
        );
        let svg = std::fs::read_to_string(directory.path().join(file)).unwrap();
        assert!(svg.starts_with("<svg"), "{file}");
    }
    // The dropped chart names its reasons in the legend.
    let dropped = std::fs::read_to_string(directory.path().join("dropped.svg")).unwrap();
    assert!(dropped.contains("crashed"), "{dropped}");
    assert!(
        markdown.contains("### actor, second by second"),
        "{markdown}"
    );
    assert!(!html.contains("<script"), "no scripts in the report");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(directory.path().join("results.json")).unwrap(),
    )
    .unwrap();
    let first = &json["runs"][0];
    for field in [
        "throughput",
        "sent_rate",
        "target_rate",
        "requests",
        "outcomes",
        "latency_ms",
    ] {
        assert!(!first[field].is_null(), "results.json lacks {field}");
    }
    for field in ["p50", "p90", "p99", "p999", "max"] {
        assert!(first["latency_ms"][field].as_f64().unwrap() > 0.0);
    }
}

/// A server that answers at once, except during one stall that it is told to start.
async fn stalling_server() -> (String, Arc<Mutex<Option<Instant>>>) {
    let stall_until: Arc<Mutex<Option<Instant>>> = Arc::default();
    let shared = Arc::clone(&stall_until);
    let app = Router::new().route(
        "/v1/check",
        post(move || {
            let stall_until = Arc::clone(&shared);
            async move {
                let until = *stall_until.lock().await;
                if let Some(until) = until {
                    tokio::time::sleep_until(until).await;
                }
                r#"{"allowed":true}"#
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{address}"), stall_until)
}

async fn run_with_stall(mode: Mode) -> turnstile_load::result::RunResult {
    const STALL: Duration = Duration::from_millis(500);
    let (url, stall_until) = stalling_server().await;
    let scenario = Scenario {
        name: "stall".into(),
        description: String::new(),
        mode,
        rate: 200.0,
        connections: 1,
        duration: Duration::from_secs(3),
        warmup: Duration::ZERO,
        keep_alive: true,
        timeout: Duration::from_secs(5),
        stages: Vec::new(),
        traffic: Traffic {
            route: Route::Check,
            keys: KeyDistribution::Hot,
            ..Traffic::default()
        },
        faults: Vec::new(),
        sweep: None,
        gateway: toml::Table::new(),
    };
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(1)).await;
        *stall_until.lock().await = Some(Instant::now() + STALL);
    });
    let target = Target::parse(&url).await.unwrap();
    run(&scenario, &target, &RunOptions::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_percentiles_show_a_stall_that_closed_loop_hides() {
    let open = run_with_stall(Mode::Open).await;
    // ~100 of ~600 requests were scheduled during the 500 ms stall; measured from their
    // scheduled times they waited between 0 and 500 ms, so the top 1 % waited over 400 ms.
    assert!(open.latency_ms.max >= 450.0, "max {}", open.latency_ms.max);
    assert!(open.latency_ms.p99 >= 400.0, "p99 {}", open.latency_ms.p99);
    assert!(open.latency_ms.p90 >= 100.0, "p90 {}", open.latency_ms.p90);

    // The same stall in closed loop is one slow request among thousands: the tail hides it.
    let closed = run_with_stall(Mode::Closed).await;
    assert!(
        closed.latency_ms.max >= 450.0,
        "max {}",
        closed.latency_ms.max
    );
    assert!(
        closed.latency_ms.p99 < 50.0,
        "p99 {}",
        closed.latency_ms.p99
    );
    assert!(
        closed.requests > 2 * open.requests,
        "closed loop sends as fast as answers come"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_loop_sends_the_target_rate() {
    let app = Router::new().route("/", get(|| async { "ok" }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let scenario = scenario(
        r#"
        name = "accuracy"
        rate = 250
        connections = 8
        duration = "2s"
        warmup = "200ms"
        [traffic]
        route = "gateway"
        "#,
    );
    let target = Target::parse(&format!("http://{address}")).await.unwrap();
    let result = run(&scenario, &target, &RunOptions::default())
        .await
        .unwrap();
    // Stated tolerance: within 10 % of rate × duration (500 requests).
    assert!(
        (450..=550).contains(&result.requests),
        "sent {}",
        result.requests
    );
    assert!(
        (result.sent_rate - 250.0).abs() <= 25.0,
        "sent rate {}",
        result.sent_rate
    );
    assert_eq!(result.target_rate, Some(250.0));
    assert_eq!(result.outcomes.allowed, result.requests);
    assert!(result.table().contains("target 250/s"));
}

#[tokio::test]
async fn an_unreachable_target_counts_connection_errors_instead_of_failing() {
    // Port 9 (discard) on loopback: nothing listens in the test environment.
    let scenario = scenario(
        "name = \"down\"\nrate = 50\nconnections = 2\nduration = \"300ms\"\nwarmup = \"0s\"",
    );
    let target = Target::parse("http://127.0.0.1:9").await.unwrap();
    let result = run(&scenario, &target, &RunOptions::default())
        .await
        .unwrap();
    assert!(result.requests > 0);
    assert_eq!(result.outcomes.connection_errors, result.requests);
    assert_eq!(result.throughput, 0.0);
    // `run` labels a run by its URL: the summary names the target once.
    let labelled = RunOptions {
        label: "http://127.0.0.1:9".into(),
        ..RunOptions::default()
    };
    let result = run(&scenario, &target, &labelled).await.unwrap();
    let heading = result.table().lines().next().unwrap_or_default().to_owned();
    assert_eq!(heading, "scenario down against http://127.0.0.1:9");
}

#[test]
fn every_shipped_scenario_loads() {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../loadtest");
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(&directory).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "toml") {
            let scenario =
                Scenario::load(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            loaded.push(scenario.name);
        }
    }
    loaded.sort();
    assert_eq!(
        loaded,
        [
            "burst",
            "compare",
            "faults",
            "hotkey",
            "max-rate",
            "ramp",
            "redis-check",
            "redis-denied",
            "rls",
            "scaling",
            "steady"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_spreads_across_targets_and_can_skip_keep_alive() {
    let mut urls = Vec::new();
    let hits: Vec<Arc<std::sync::atomic::AtomicU64>> = (0..2).map(|_| Arc::default()).collect();
    for counter in &hits {
        let counter = Arc::clone(counter);
        let app = Router::new().route(
            "/",
            get(move || {
                counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                async { "ok" }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        urls.push(format!("http://{}", listener.local_addr().unwrap()));
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let scenario = scenario(
        "name = \"spread\"\nrate = 200\nconnections = 4\nduration = \"500ms\"\nwarmup = \"0s\"\nkeep_alive = false\n[traffic]\nroute = \"gateway\"",
    );
    let targets = [
        Target::parse(&urls[0]).await.unwrap(),
        Target::parse(&urls[1]).await.unwrap(),
    ];
    let result = turnstile_load::engine::run_spread(&scenario, &targets, &RunOptions::default())
        .await
        .unwrap();
    let (first, second) = (
        hits[0].load(std::sync::atomic::Ordering::Relaxed),
        hits[1].load(std::sync::atomic::Ordering::Relaxed),
    );
    assert!(first > 20 && second > 20, "{first} / {second}");
    assert_eq!(result.outcomes.allowed, result.requests);
    assert_eq!(result.outcomes.connection_errors, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_carry_the_admin_token_when_the_gateway_requires_one() {
    let settings: toml::Table = toml::from_str("admin_token = \"s3cret-token\"").unwrap();
    let gateway =
        turnstile_load::compare::start_gateway(BackendKind::Actor, &settings, &toml::Table::new())
            .unwrap();
    let scenario = scenario(
        "name = \"token\"\nrate = 50\nconnections = 1\nduration = \"600ms\"\nwarmup = \"0s\"\n[[faults]]\nat = \"100ms\"\naction = { kind = \"crash_actor\" }",
    );
    let target = Target::parse(&gateway.url()).await.unwrap();
    let admin = Target::parse(&gateway.admin_url().unwrap()).await.unwrap();
    let mut options = RunOptions {
        admin: Some(admin),
        ..RunOptions::default()
    };
    let refused = run(&scenario, &target, &options).await.unwrap();
    assert_eq!((refused.faults_injected, refused.fault_errors), (0, 1));
    options.admin_token = Some("s3cret-token".into());
    let accepted = run(&scenario, &target, &options).await.unwrap();
    assert_eq!((accepted.faults_injected, accepted.fault_errors), (1, 0));
    tokio::task::spawn_blocking(move || gateway.stop())
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compare_drives_the_rate_limit_service_over_grpc_with_many_descriptors() {
    let rules = concat!(env!("CARGO_MANIFEST_DIR"), "/../../loadtest/rls");
    let scenario = scenario(&format!(
        r#"
        name = "rls"
        mode = "closed"
        connections = 4
        duration = "600ms"
        warmup = "100ms"
        timeout = "2s"
        [traffic]
        route = "rls"
        keys = {{ distribution = "uniform", count = 50 }}
        rls = {{ domain = "loadtest", descriptors = 3 }}
        [gateway.rls]
        config_dir = "{rules}"
        "#
    ));
    let comparison = compare(
        &scenario,
        Targets::Local(vec![BackendKind::Sharded]),
        CompareOptions::default(),
    )
    .await
    .unwrap();
    let run = &comparison.runs[0];
    assert!(run.requests > 20, "{} calls", run.requests);
    assert_eq!(run.outcomes.allowed, run.requests, "{:?}", run.outcomes);
    // A domain without rules: every call still answers (OK, no limit), none fails.
    let mut unknown = scenario.clone();
    unknown.traffic.rls.domain = "nowhere".into();
    let comparison = compare(
        &unknown,
        Targets::Local(vec![BackendKind::Concurrent]),
        CompareOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(
        comparison.runs[0].outcomes.allowed,
        comparison.runs[0].requests
    );
    // The rules are reached: a cost over the rule's burst is over the limit, every call.
    let mut over = scenario.clone();
    over.traffic.costs = vec![turnstile_load::scenario::Weighted {
        value: 2_000_000,
        weight: 1,
    }];
    let comparison = compare(
        &over,
        Targets::Local(vec![BackendKind::Concurrent]),
        CompareOptions::default(),
    )
    .await
    .unwrap();
    assert!(comparison.runs[0].requests > 0);
    assert_eq!(
        comparison.runs[0].outcomes.limited,
        comparison.runs[0].requests
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_does_not_trust_the_generator_is_warned_about() {
    // 2,000 client addresses in X-Forwarded-For for 1 s: at the few thousand requests this
    // reaches, no one of them nears the default policy's burst of 50, unless the gateway
    // ignores the header and counts everything against 127.0.0.1 (then ~150 pass).
    let scenario = scenario(
        "name = \"spread-clients\"\nmode = \"closed\"\nconnections = 4\nduration = \"1s\"\nwarmup = \"0s\"\n[traffic]\nroute = \"gateway\"\nkeys = { distribution = \"uniform\", count = 2000 }",
    );
    let mut warnings = Vec::new();
    for trusted in [false, true] {
        let config = turnstile_gateway::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            trusted_proxies: if trusted {
                vec!["127.0.0.1/32".parse().unwrap()]
            } else {
                Vec::new()
            },
            ..turnstile_gateway::Config::default()
        };
        let gateway = turnstile_gateway::testing::spawn(config).unwrap();
        let target = Target::parse(&format!("http://{}", gateway.address))
            .await
            .unwrap();
        let result = run(&scenario, &target, &RunOptions::default())
            .await
            .unwrap();
        warnings.push(result.setup_warnings(&scenario.traffic));
        tokio::task::spawn_blocking(move || gateway.stop())
            .await
            .unwrap()
            .unwrap();
    }
    assert_eq!(warnings[0].len(), 1, "{warnings:?}");
    assert!(
        warnings[0][0].contains("TURNSTILE_TRUSTED_PROXIES"),
        "{warnings:?}"
    );
    assert!(warnings[1].is_empty(), "{warnings:?}");
}

/// One request to the live view's router; the status and the body as JSON (or as text in a
/// JSON string when it is not JSON) and the content type.
async fn live_call(
    app: &axum::Router,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, serde_json::Value, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let request = axum::http::Request::builder()
        .method(method)
        .uri(path)
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body.to_owned()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    (status, json, content_type)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_view_serves_its_page_and_state_and_refuses_bad_calls() {
    use turnstile_load::live::{self, Hub};
    let scenario = scenario(
        r#"
        name = "live"
        description = "Side by side."
        rate = 100
        connections = 4
        duration = "4s"
        warmup = "500ms"
        timeout = "2s"
        [traffic]
        route = "gateway"
        keys = { distribution = "uniform", count = 100 }
        "#,
    );
    let (hub, mut requests) = Hub::new(&scenario);
    let app = live::app(Arc::clone(&hub));
    let run = {
        let (hub, scenario) = (Arc::clone(&hub), scenario.clone());
        tokio::spawn(async move {
            compare(
                &scenario,
                Targets::Local(vec![BackendKind::Actor, BackendKind::Concurrent]),
                CompareOptions {
                    live: Some(hub),
                    ..CompareOptions::default()
                },
            )
            .await
        })
    };

    // The page and its files, with their content types; nothing fetched from elsewhere.
    for (path, content_type) in [
        ("/", "text/html; charset=utf-8"),
        ("/live.js", "text/javascript; charset=utf-8"),
        ("/live.css", "text/css; charset=utf-8"),
    ] {
        let (status, body, served_as) = live_call(&app, "GET", path, "").await;
        assert_eq!((status, served_as.as_str()), (200, content_type), "{path}");
        let text = body.as_str().unwrap();
        for remote in ["src=\"http", "href=\"http", "fetch(\"http", "@import"] {
            assert!(
                !text.contains(remote),
                "{path} loads something remote: {remote}"
            );
        }
    }

    // Both backends run at once: wait until each has two seconds of samples.
    let state = loop {
        let (status, state, content_type) = live_call(&app, "GET", "/api/state", "").await;
        assert_eq!((status, content_type.as_str()), (200, "application/json"));
        let ready = state["backends"].as_array().is_some_and(|backends| {
            backends.len() == 2
                && backends
                    .iter()
                    .all(|b| b["timeline"]["samples"].as_array().unwrap().len() >= 2)
        });
        if ready {
            break state;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(state["status"], "running");
    assert_eq!(state["run"], 1);
    assert_eq!(state["scenario"]["name"], "live");
    let labels: Vec<&str> = state["backends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["label"].as_str().unwrap())
        .collect();
    assert_eq!(labels, ["actor", "concurrent"], "one series per backend");
    for backend in state["backends"].as_array().unwrap() {
        assert_eq!(backend["admin"], true);
        let timeline: Timeline = serde_json::from_value(backend["timeline"].clone()).unwrap();
        assert_monotonic(&timeline);
        assert_eq!(timeline.warmup_seconds, 0.5);
        let sample = &timeline.samples[1];
        assert_eq!(
            sample.offered,
            Some(100.0),
            "open loop: the schedule's rate"
        );
        assert!(
            sample.answered > 0.0 && sample.p99_ms.is_some(),
            "{sample:?}"
        );
        let gateway = sample.gateway.as_ref().unwrap();
        assert_eq!(
            gateway.backend.to_string(),
            backend["label"].as_str().unwrap()
        );
    }

    // `since` gives only the later samples (the page polls that way); the rest is whole.
    let first_t = state["backends"][0]["timeline"]["samples"][0]["t"]
        .as_f64()
        .unwrap();
    let (status, later, _) =
        live_call(&app, "GET", &format!("/api/state?since={first_t}"), "").await;
    assert_eq!(status, 200);
    assert_eq!(later["since"], first_t);
    let samples = later["backends"][0]["timeline"]["samples"]
        .as_array()
        .unwrap();
    assert!(samples.iter().all(|s| s["t"].as_f64().unwrap() > first_t));
    for query in ["since=-1", "since=soon", "sinse=1"] {
        let (status, answer, _) = live_call(&app, "GET", &format!("/api/state?{query}"), "").await;
        assert_eq!(
            (status, answer["error"].as_str()),
            (400, Some("invalid_query")),
            "{query}"
        );
    }

    // Refusals: each a 4xx naming the problem, and none changes the state.
    let events_now = |state: &serde_json::Value| {
        state["backends"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["timeline"]["events"].as_array().unwrap().len())
            .sum::<usize>()
    };
    let before = events_now(&live_call(&app, "GET", "/api/state", "").await.1);
    for (body, status, code, says) in [
        (
            r#"{"backend":"redis","action":{"kind":"crash_actor"}}"#,
            400,
            "unknown_backend",
            "no backend `redis` in this run (there are: actor, concurrent)",
        ),
        (
            r#"{"backend":"actor","action":{"kind":"explode"}}"#,
            400,
            "invalid_body",
            "unknown variant `explode`",
        ),
        (r#"{"backend":"actor""#, 400, "invalid_body", "EOF"),
        (
            r#"{"backend":"actor","action":{"kind":"crash_actor"},"extra":1}"#,
            400,
            "invalid_body",
            "unknown field `extra`",
        ),
    ] {
        let (got, answer, _) = live_call(&app, "POST", "/api/inject", body).await;
        assert_eq!(got, status, "{body}: {answer}");
        assert_eq!(answer["error"], code, "{body}: {answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(says),
            "{body}: {answer}"
        );
    }
    let (got, answer, _) = live_call(&app, "POST", "/api/runs", "").await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (409, Some("run_in_progress"))
    );
    let (got, answer, _) = live_call(&app, "GET", "/nowhere", "").await;
    assert_eq!((got, answer["error"].as_str()), (404, Some("not_found")));
    let (got, answer, _) = live_call(&app, "GET", "/api/inject", "").await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (405, Some("method_not_allowed"))
    );
    assert_eq!(
        events_now(&live_call(&app, "GET", "/api/state", "").await.1),
        before,
        "no refused request marked anything"
    );

    // The gateway's own refusal is relayed, and marked as refused on that backend only.
    let (got, answer, _) = live_call(
        &app,
        "POST",
        "/api/inject",
        r#"{"backend":"concurrent","action":{"kind":"crash_actor"}}"#,
    )
    .await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (409, Some("injection_refused")),
        "{answer}"
    );
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .contains("no actor number 0"),
        "{answer}"
    );

    // Switching a backend through the view: the gateway's next figures name the new one.
    let (got, event, _) = live_call(
        &app,
        "POST",
        "/api/inject",
        r#"{"backend":"concurrent","action":{"kind":"switch_backend","backend":"sharded"}}"#,
    )
    .await;
    assert_eq!(got, 200, "{event}");
    assert_eq!(event["label"], "switch_backend sharded");
    loop {
        let (_, state, _) = live_call(&app, "GET", "/api/state", "").await;
        let samples = state["backends"][1]["timeline"]["samples"]
            .as_array()
            .unwrap();
        if samples.last().unwrap()["gateway"]["backend"] == "sharded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // A crash through the view: accepted, marked on the actor's timeline.
    let (got, event, _) = live_call(
        &app,
        "POST",
        "/api/inject",
        r#"{"backend":"actor","action":{"kind":"crash_actor"}}"#,
    )
    .await;
    assert_eq!(got, 200, "{event}");
    assert_eq!(
        (event["kind"].as_str(), event["ok"].as_bool()),
        (Some("live_fault"), Some(true))
    );

    let comparison = run.await.unwrap().unwrap();
    assert!(comparison.side_by_side);
    let actor = &comparison.runs[0].timeline;
    assert!(
        actor
            .events
            .iter()
            .any(|e| e.kind == EventKind::LiveFault && e.ok),
        "{:?}",
        actor.events
    );
    assert!(
        actor.events.iter().any(|e| e.kind == EventKind::Restart),
        "the restart after the crash is marked: {:?}",
        actor.events
    );
    let concurrent = &comparison.runs[1].timeline;
    let accepted: Vec<&str> = concurrent
        .events
        .iter()
        .filter(|e| e.ok)
        .map(|e| e.label.as_str())
        .collect();
    assert_eq!(
        accepted,
        ["switch_backend sharded"],
        "{:?}",
        concurrent.events
    );

    // Finished: faults are refused (the gateways are gone); one more run may start, once.
    hub.finish(Ok("report written".into()));
    let (got, answer, _) = live_call(
        &app,
        "POST",
        "/api/inject",
        r#"{"backend":"actor","action":{"kind":"crash_actor"}}"#,
    )
    .await;
    assert_eq!((got, answer["error"].as_str()), (409, Some("not_running")));
    let (got, answer, _) = live_call(&app, "POST", "/api/runs", "").await;
    assert_eq!((got, answer["run"].as_u64()), (202, Some(2)));
    assert!(
        requests.try_recv().is_ok(),
        "the command is asked for a run"
    );
    let (got, answer, _) = live_call(&app, "POST", "/api/runs", "").await;
    assert_eq!(
        (got, answer["error"].as_str()),
        (409, Some("run_in_progress"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_to_the_live_view_are_closed_and_do_not_keep_others_out() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use turnstile_load::live::{self, Hub, MAX_CONNECTIONS};
    let scenario = scenario("name = \"idle\"");
    let (hub, _requests) = Hub::new(&scenario);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(live::serve(listener, hub, Duration::from_millis(300)));
    // More silent connections than the server takes at once, and one that stops mid-head.
    let mut idle = Vec::new();
    for _ in 0..MAX_CONNECTIONS + 8 {
        idle.push(tokio::net::TcpStream::connect(address).await.unwrap());
    }
    let mut half = tokio::net::TcpStream::connect(address).await.unwrap();
    half.write_all(b"GET /api/state HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    // Every one of them is closed by the server (read gives end of file), none answered.
    for stream in idle.iter_mut().chain(std::iter::once(&mut half)) {
        let mut buffer = [0u8; 64];
        let read = tokio::time::timeout(Duration::from_secs(30), stream.read(&mut buffer))
            .await
            .expect("the server closes an idle connection");
        assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    }
    // And the page can still reach its state.
    let mut client = tokio::net::TcpStream::connect(address).await.unwrap();
    client
        .write_all(b"GET /api/state HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    client.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_run_and_what_was_measured_is_written() {
    // A bare route that counts what reaches it.
    let hits = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&hits);
    let app = Router::new().route(
        "/v1/check",
        post(move || {
            counted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            async { r#"{"allowed":true,"limit":1,"remaining":1,"reset_after_ms":1,"retry_after_ms":null}"# }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let directory = tempfile::tempdir().unwrap();
    let json = directory.path().join("result.json");
    let scenario = directory.path().join("long.toml");
    std::fs::write(
        &scenario,
        "name = \"long\"\nrate = 200\nconnections = 4\nduration = \"1h\"\nwarmup = \"0s\"\n",
    )
    .unwrap();
    let load = std::process::Command::new(env!("CARGO_BIN_EXE_turnstile-load"))
        .args(["run", "--quiet", "--scenario"])
        .arg(&scenario)
        .args(["--target", &format!("http://{address}"), "--json"])
        .arg(&json)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Load is flowing: then ask it to stop, as `docker stop` would.
    while hits.load(std::sync::atomic::Ordering::Relaxed) < 100 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let signalled = std::process::Command::new("kill")
        .args(["-TERM", &load.id().to_string()])
        .status()
        .unwrap();
    assert!(signalled.success());
    let exit = tokio::task::spawn_blocking(move || load.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&exit.stderr);
    assert_eq!(exit.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("interrupted by a signal"), "{stderr}");
    let result: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(result["interrupted"], true);
    let seconds = result["duration_seconds"].as_f64().unwrap();
    assert!(seconds > 0.0 && seconds < 3600.0, "{seconds}");
    let requests = result["requests"].as_u64().unwrap();
    assert!(requests >= 100, "{requests}");
    assert_eq!(
        result["outcomes"]["allowed"].as_u64(),
        Some(requests),
        "{result}"
    );
    server.abort();
}
