//! The redis backend in cluster mode against a real Redis Cluster of three primaries and three
//! replicas from Debian's `redis-server`, joined by `redis-cli --cluster create`
//! ([`RedisCluster`]): three gateway replicas over it admit exactly the global limit, for one
//! hot key and for a thousand keys spread over every primary; and a primary SIGKILLed under
//! load costs only its own slots' checks, each answered per the failure mode within the
//! timeout, until its replica is promoted and they are decided again, with no Turnstile
//! restart. (The conformance suite's `redis cluster` variant replays the differential traces
//! through a cluster too.)

// Test code: a panic is how a failure is reported.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use turnstile_e2e::{RedisCluster, http_client, redis_cli, scratch_dir, start_gateway};
use turnstile_gateway::testing::RunningGateway;
use turnstile_load::engine::{self, RunOptions, Target};
use turnstile_load::scenario::Scenario;

mod common;
use common::{assert_a_hot_key_admits_exactly, check_key, targets, until_ready};

/// A gateway in cluster mode over `seeds`: `scarce` (50 per hour), `pair` (2 per hour: nothing
/// refills during a test) and `default` (1000/s, fails open).
fn cluster_gateway(seeds: &str, timeout: &str) -> RunningGateway {
    start_gateway(&format!(
        r#"
backend = "redis"
redis_url = "{seeds}"
max_concurrent_requests = 0

[redis]
mode = "cluster"
command_timeout = "{timeout}"
wait_timeout = "{timeout}"
connect_timeout = "{timeout}"

[policies.default]
limit = 1000
period = "1s"

[policies.scarce]
limit = 50
period = "1h"

[policies.pair]
limit = 2
period = "1h"
"#
    ))
}

/// `POST /v1/check`: (status, body, how long the answer took).
async fn timed_check(
    client: &reqwest::Client,
    gateway: &RunningGateway,
    key: &str,
    policy: &str,
) -> (u16, serde_json::Value, Duration) {
    let started = Instant::now();
    let (status, body) = check_key(client, gateway, key, policy).await;
    (status, body, started.elapsed())
}

const READY_WITHIN: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_redis_server, has_redis_cli)),
    ignore = "needs redis-server and redis-cli (Debian package redis-server; .ci/run installs it)"
)]
async fn three_replicas_over_a_cluster_admit_exactly_the_global_limit_on_every_primary() {
    let dir = scratch_dir();
    let Some(cluster) = RedisCluster::start(dir.path(), 3, 1).await else {
        return;
    };
    let gateways: Vec<RunningGateway> = (0..3)
        .map(|_| cluster_gateway(&cluster.seeds(), "10s"))
        .collect();
    let client = http_client();
    for gateway in &gateways {
        until_ready(
            &client,
            gateway,
            "the gateway to reach the cluster",
            READY_WITHIN,
        )
        .await;
    }

    // One hot key through all three replicas, 48 closed-loop connections.
    assert_a_hot_key_admits_exactly(&targets(&gateways).await, "scarce", 50).await;

    // A thousand keys, each checked four times at once, one check through each replica and
    // a fourth through the first: exactly two admitted per key.
    const KEYS: usize = 1000;
    let checks = (0..KEYS).flat_map(|key| (0..4).map(move |nth| (key, nth)));
    let answers: Vec<(usize, bool)> = futures_util::stream::iter(checks)
        .map(|(key, nth)| {
            let client = client.clone();
            let gateway = &gateways[nth % gateways.len()];
            async move {
                let (status, body, _) =
                    timed_check(&client, gateway, &format!("k{key}"), "pair").await;
                assert_eq!(status, 200, "{body}");
                assert!(body.get("dropped").is_none(), "{body}");
                (key, body["allowed"] == true)
            }
        })
        .buffer_unordered(48)
        .collect()
        .await;
    let mut admitted = vec![0_u32; KEYS];
    for (key, allowed) in answers {
        admitted[key] += u32::from(allowed);
    }
    assert!(
        admitted.iter().all(|&count| count == 2),
        "not two per key: {:?}",
        admitted
            .iter()
            .enumerate()
            .filter(|(_, count)| **count != 2)
            .take(10)
            .collect::<Vec<_>>()
    );

    // The keys landed on every primary, and nowhere else: 1,001 keys in all.
    let primaries = cluster.primaries();
    assert_eq!(primaries.len(), 3, "{primaries:?}");
    let keys_per_primary: BTreeMap<u16, usize> = primaries
        .iter()
        .map(|node| {
            let keys = redis_cli(node.port, &["DBSIZE"]).trim().parse().unwrap();
            (node.port, keys)
        })
        .collect();
    println!("keys per primary: {keys_per_primary:?}");
    assert!(
        keys_per_primary.values().all(|&keys| keys > 200),
        "{keys_per_primary:?}"
    );
    assert_eq!(keys_per_primary.values().sum::<usize>(), KEYS + 1);
}

/// What one probe of a key saw.
struct Probe {
    at: Duration,
    took: Duration,
    /// `None`: decided; `Some(reason)`: dropped and admitted (the policy fails open).
    dropped: Option<String>,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(all(has_redis_server, has_redis_cli)),
    ignore = "needs redis-server and redis-cli (Debian package redis-server; .ci/run installs it)"
)]
async fn a_primary_killed_under_load_costs_only_its_slots_until_its_replica_is_promoted() {
    const COMMAND_TIMEOUT: Duration = Duration::from_millis(500);
    let dir = scratch_dir();
    let Some(mut cluster) = RedisCluster::start(dir.path(), 3, 1).await else {
        return;
    };
    let gateway = cluster_gateway(&cluster.seeds(), "500ms");
    let client = http_client();
    until_ready(
        &client,
        &gateway,
        "the gateway to reach the cluster",
        READY_WITHIN,
    )
    .await;

    // A key served by the primary about to die, and one served by another primary.
    let victim = cluster.primaries()[0].port;
    let key_on = |wanted: bool| {
        (0..)
            .map(|n| format!("probe-{n}"))
            .find(|key| {
                (cluster.primary_of(&format!("turnstile:default:{key}")) == victim) == wanted
            })
            .unwrap()
    };
    let (doomed, survivor) = (key_on(true), key_on(false));

    // Background load over 200 keys (every primary) for the whole test, open loop.
    let scenario: Scenario = toml::from_str(
        r#"
name = "failover"
mode = "open"
rate = 200
connections = 16
duration = "12s"
warmup = "0s"
timeout = "3s"
[traffic]
keys = { distribution = "uniform", count = 200 }
policies = [{ value = "default" }]
"#,
    )
    .unwrap();
    let target = Target::parse(&gateway.url()).await.unwrap();
    let load = tokio::spawn(async move {
        engine::run(&scenario, &target, &RunOptions::default())
            .await
            .unwrap()
    });

    // Probe both keys every 20 ms; the primary dies after a second.
    let started = Instant::now();
    let mut doomed_probes = Vec::new();
    let mut survivor_probes = Vec::new();
    let mut killed_at = None;
    let mut recovered_at = None;
    while recovered_at.is_none_or(|at: Duration| started.elapsed() < at + Duration::from_secs(1)) {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the doomed key's checks were never decided again"
        );
        if killed_at.is_none() && started.elapsed() > Duration::from_secs(1) {
            cluster.node_mut(victim).stop();
            killed_at = Some(started.elapsed());
        }
        let (on_doomed, on_survivor) = tokio::join!(
            timed_check(&client, &gateway, &doomed, "default"),
            timed_check(&client, &gateway, &survivor, "default"),
        );
        for ((status, body, took), probes) in [
            (on_doomed, &mut doomed_probes),
            (on_survivor, &mut survivor_probes),
        ] {
            assert_eq!(status, 200, "{body}");
            let dropped = body.get("dropped").and_then(|reason| reason.as_str());
            probes.push(Probe {
                at: started.elapsed(),
                took,
                dropped: dropped.map(str::to_owned),
            });
        }
        if killed_at.is_some()
            && recovered_at.is_none()
            && doomed_probes.len() > 10
            && doomed_probes
                .last()
                .is_some_and(|probe| probe.dropped.is_none())
            && doomed_probes.iter().any(|probe| probe.dropped.is_some())
        {
            recovered_at = Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let killed_at = killed_at.unwrap();
    let result = load.await.unwrap();

    // The window in which the doomed key's checks were dropped, and why.
    let drops: Vec<&Probe> = doomed_probes
        .iter()
        .filter(|probe| probe.dropped.is_some())
        .collect();
    let mut reasons = BTreeMap::<&str, usize>::new();
    for probe in &drops {
        *reasons
            .entry(probe.dropped.as_deref().unwrap())
            .or_default() += 1;
    }
    let (first, last) = (drops.first().unwrap().at, drops.last().unwrap().at);
    println!(
        "primary :{victim} killed at {killed_at:?}: its slots' checks dropped from +{:?} to +{:?} ({:?} window, {} of {} probes: {reasons:?}); the other primaries' checks: {} probes, {} dropped",
        first - killed_at,
        last - killed_at,
        last - first,
        drops.len(),
        doomed_probes.len(),
        survivor_probes.len(),
        survivor_probes
            .iter()
            .filter(|probe| probe.dropped.is_some())
            .count(),
    );
    // Answered per the failure mode (open: admitted, with the reason) within the timeout.
    for probe in &doomed_probes {
        assert!(
            matches!(
                probe.dropped.as_deref(),
                None | Some("backend_error" | "timeout")
            ),
            "{:?}",
            probe.dropped
        );
        assert!(
            probe.took < COMMAND_TIMEOUT + Duration::from_secs(1),
            "{:?} at {:?}",
            probe.took,
            probe.at
        );
    }
    // The other slots are decided throughout.
    for probe in &survivor_probes {
        assert_eq!(
            probe.dropped, None,
            "a surviving primary's key at {:?}",
            probe.at
        );
    }
    // The background load: every request answered (decided, or dropped with a reason).
    let outcomes = &result.outcomes;
    assert_eq!(outcomes.timeouts, 0, "{outcomes:?}");
    assert_eq!(outcomes.connection_errors, 0, "{outcomes:?}");
    assert!(outcomes.errors.is_empty(), "{outcomes:?}");
    let counted: u64 = outcomes.allowed + outcomes.limited + outcomes.dropped.values().sum::<u64>();
    assert_eq!(counted, result.requests, "{outcomes:?}");

    // The replica was promoted: the cluster is whole again on the surviving nodes, and the
    // gateway (never restarted) is ready.
    cluster.until_ok(Duration::from_secs(30)).await;
    assert!(
        cluster.primaries().iter().all(|node| node.port != victim),
        "the killed primary still serves"
    );
    until_ready(
        &client,
        &gateway,
        "the gateway to reach the cluster",
        READY_WITHIN,
    )
    .await;
}
