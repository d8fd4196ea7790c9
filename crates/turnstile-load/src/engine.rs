//! Runs a scenario against a target: N connections, open or closed loop, faults on a timer.
//!
//! Open loop follows wrk2: connection `c` of `N` owns every N-th slot of the arrival
//! schedule, sends each request at its slot (or at once if it is already late), and records
//! latency from the *scheduled* time, so a stalled server shows up in the percentiles instead
//! of silently slowing the generator down (coordinated omission).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hdrhistogram::Histogram;
use rand::SeedableRng;
use rand::rngs::SmallRng;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::client::{Connection, Outcome, RlsConnection};
use crate::faults;
use crate::result::{Latency, Outcomes, RunResult};
use crate::scenario::{Mode, Route, Scenario};
use crate::timeline::{self, GatewayPoll, IntervalRecorder, Span, TimelineHandle};
use crate::traffic::{Built, RequestFactory};

/// Where to send load.
#[derive(Debug, Clone)]
pub struct Target {
    /// As given.
    pub url: String,
    /// Resolved address.
    pub address: SocketAddr,
    /// `Host` header value.
    pub host: String,
}

/// A target URL that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// Not `http://host:port`.
    #[error("target `{0}` must look like http://host:port (https is not supported)")]
    Malformed(String),
    /// DNS failed.
    #[error("cannot resolve `{0}`")]
    Unresolvable(String),
}

impl Target {
    /// Parses and resolves `http://host:port[/]`.
    pub async fn parse(url: &str) -> Result<Self, TargetError> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| TargetError::Malformed(url.to_owned()))?;
        let host = rest.trim_end_matches('/');
        if host.is_empty() || host.contains('/') {
            return Err(TargetError::Malformed(url.to_owned()));
        }
        let with_port = if host
            .rsplit_once(':')
            .is_some_and(|(_, port)| port.parse::<u16>().is_ok())
        {
            host.to_owned()
        } else {
            format!("{host}:80")
        };
        let address = tokio::net::lookup_host(&with_port)
            .await
            .ok()
            .and_then(|mut addresses| addresses.next())
            .ok_or_else(|| TargetError::Unresolvable(url.to_owned()))?;
        Ok(Self {
            url: url.trim_end_matches('/').to_owned(),
            address,
            host: host.to_owned(),
        })
    }
}

/// Options that are not part of the scenario.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// A name for what is under load (e.g. the backend).
    pub label: String,
    /// The admin API, for the scenario's faults.
    pub admin: Option<Target>,
    /// Bearer token for the admin API, when the gateway requires one.
    pub admin_token: Option<String>,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Where the run's timeline goes as it is taken (the live view holds the other end);
    /// `None`: a timeline of its own, returned in the result.
    pub timeline: Option<TimelineHandle>,
    /// Ends the run early (a signal): no request is sent once it is cancelled, those in
    /// flight finish, and the result covers the time measured until then.
    pub stop: Option<CancellationToken>,
}

/// Counts of one connection, merged at the end.
struct ConnectionStats {
    histogram: Histogram<u64>,
    outcomes: Outcomes,
    sent_in_window: u64,
}

/// 1 µs to 1 h at 3 significant digits. The bounds are constants (checked by a unit test), so
/// construction cannot fail at run time.
#[allow(clippy::expect_used)]
pub(crate) fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("constant histogram bounds are valid")
}

/// Runs `scenario` against `target`.
pub async fn run(
    scenario: &Scenario,
    target: &Target,
    options: &RunOptions,
) -> anyhow::Result<RunResult> {
    run_spread(scenario, std::slice::from_ref(target), options).await
}

/// Runs `scenario` against several targets (replicas of one service): connection `i` goes to
/// target `i mod n`, so the load is spread evenly; the results are merged.
pub async fn run_spread(
    scenario: &Scenario,
    targets: &[Target],
    options: &RunOptions,
) -> anyhow::Result<RunResult> {
    scenario.validate()?;
    if targets.is_empty() {
        anyhow::bail!("no target given");
    }
    let factories = targets
        .iter()
        .map(|t| RequestFactory::new(&scenario.traffic, &t.host, scenario.keep_alive).map(Arc::new))
        .collect::<Result<Vec<_>, _>>()?;
    let start = Instant::now();
    let measure_from = start + scenario.warmup;
    let end = measure_from + scenario.measured_duration();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = options.stop.clone().unwrap_or_default();

    let progress = options.progress.then(|| progress_bar(scenario));
    let ticker = progress.clone().map(|bar| {
        let sent = Arc::clone(&sent);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let elapsed = Instant::now().saturating_duration_since(start);
                bar.set_position(elapsed.as_millis() as u64);
                bar.set_message(format!("{} sent", sent.load(Ordering::Relaxed)));
            }
        })
    });
    let timeline = options.timeline.clone().unwrap_or_default();
    timeline.begin(start, scenario.warmup);
    let faults = tokio::spawn(faults::inject_scheduled(
        scenario.clone(),
        options.admin.clone(),
        options.admin_token.clone(),
        timeline.clone(),
        (measure_from, end),
        stop.clone(),
    ));
    let recorders: Vec<Arc<IntervalRecorder>> = (0..scenario.connections)
        .map(|_| Arc::new(IntervalRecorder::new()))
        .collect();
    let sampler = tokio::spawn(timeline::sample(
        recorders.clone(),
        timeline.clone(),
        options.admin.clone().map(|admin| GatewayPoll {
            admin,
            admin_token: options.admin_token.clone(),
        }),
        scenario.clone(),
        Span {
            start,
            measure_from,
            end,
        },
        stop.clone(),
    ));

    let connections: Vec<_> = (0..scenario.connections)
        .map(|index| {
            let scenario = scenario.clone();
            let factory = Arc::clone(&factories[index % targets.len()]);
            let sent = Arc::clone(&sent);
            let address = targets[index % targets.len()].address;
            let window = Window {
                start,
                measure_from,
                end,
                stop: stop.clone(),
            };
            let recorder = Arc::clone(&recorders[index]);
            tokio::spawn(async move {
                let connection = ConnectionSpec {
                    index,
                    address,
                    factory: &factory,
                    recorder: &recorder,
                };
                drive_connection(connection, &scenario, window, &sent).await
            })
        })
        .collect();
    let mut histogram = new_histogram();
    let mut outcomes = Outcomes::default();
    let mut sent_in_window = 0;
    for connection in connections {
        let stats = connection.await?;
        let _ = histogram.add(&stats.histogram);
        outcomes.merge(&stats.outcomes);
        sent_in_window += stats.sent_in_window;
    }
    // Interrupted: the measured time ends when the last connection stopped sending.
    let interrupted = stop.is_cancelled();
    let measured_until = if interrupted {
        Instant::now().min(end)
    } else {
        end
    };
    let (faults_injected, fault_errors) = faults.await.unwrap_or((0, 0));
    let _ = sampler.await;
    if let Some(ticker) = ticker {
        ticker.abort();
    }
    if let Some(bar) = progress {
        bar.finish_and_clear();
    }
    let seconds = measured_until
        .saturating_duration_since(measure_from)
        .as_secs_f64();
    // Stopped before measuring began: no rate to give.
    let per_second = |count: u64| {
        if seconds > 0.0 {
            count as f64 / seconds
        } else {
            0.0
        }
    };
    Ok(RunResult {
        scenario: scenario.name.clone(),
        label: options.label.clone(),
        target: targets
            .iter()
            .map(|t| t.url.as_str())
            .collect::<Vec<_>>()
            .join(","),
        mode: scenario.mode,
        connections: scenario.connections,
        duration_seconds: seconds,
        target_rate: (scenario.mode == Mode::Open).then(|| scenario.mean_target_rate()),
        sent_rate: per_second(sent_in_window),
        throughput: per_second(outcomes.answered()),
        requests: outcomes.total(),
        latency_ms: Latency::from_histogram(&histogram),
        outcomes,
        faults_injected,
        fault_errors,
        interrupted,
        timeline: timeline.snapshot(),
        histogram: Some(histogram),
    })
}

fn progress_bar(scenario: &Scenario) -> indicatif::ProgressBar {
    let total = (scenario.warmup + scenario.measured_duration()).as_millis() as u64;
    let bar = indicatif::ProgressBar::new(total);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{spinner} [{bar:40}] {elapsed}/{duration} {msg}")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar
}

/// A run's timeline: when sending starts, when measuring starts (after the warm-up), when
/// it all ends.
#[derive(Clone)]
struct Window {
    start: Instant,
    measure_from: Instant,
    end: Instant,
    /// Cancelled to end the run early.
    stop: CancellationToken,
}

/// One of the run's connections: which (its index seeds its random keys and spreads its first
/// slot), to where, with what requests.
/// The connection of the scenario's transport.
enum AnyConnection {
    Http(Connection),
    Rls(RlsConnection),
}

impl AnyConnection {
    fn new(route: Route, address: SocketAddr) -> Self {
        match route {
            Route::Rls => Self::Rls(RlsConnection::new(address)),
            Route::Check | Route::Gateway => Self::Http(Connection::new(address)),
        }
    }

    fn reset(&mut self) {
        match self {
            Self::Http(connection) => connection.reset(),
            Self::Rls(connection) => connection.reset(),
        }
    }

    async fn send(&mut self, request: Built) -> Outcome {
        match (self, request) {
            (Self::Http(connection), Built::Http(request)) => connection.send(request).await,
            (Self::Rls(connection), Built::Rls(request)) => connection.send(request).await,
            // Both come from one scenario's route, so they always agree.
            _ => Outcome::Error(hyper::StatusCode::INTERNAL_SERVER_ERROR),
        }
    }
}

struct ConnectionSpec<'a> {
    index: usize,
    address: SocketAddr,
    factory: &'a RequestFactory,
    /// This connection's counts for the current second of the timeline.
    recorder: &'a IntervalRecorder,
}

async fn drive_connection(
    spec: ConnectionSpec<'_>,
    scenario: &Scenario,
    window: Window,
    sent: &AtomicU64,
) -> ConnectionStats {
    let ConnectionSpec {
        index,
        address,
        factory,
        recorder,
    } = spec;
    let Window {
        start,
        measure_from,
        end,
        stop,
    } = window;
    let mut rng = SmallRng::seed_from_u64(0x7475_726e ^ index as u64);
    let mut connection = AnyConnection::new(scenario.traffic.route, address);
    let mut stats = ConnectionStats {
        histogram: new_histogram(),
        outcomes: Outcomes::default(),
        sent_in_window: 0,
    };
    let connections = scenario.connections as f64;
    // This connection's first slot: spread evenly across the first interval.
    let mut next = start
        + slot_interval(scenario, Duration::ZERO, connections).mul_f64(index as f64 / connections);
    loop {
        let scheduled = match scenario.mode {
            Mode::Open => {
                // Stop at the deadline even when behind schedule: slots this connection never
                // got to are not sent, which shows as a sent rate below the target (wrk2's
                // rule). Sending the backlog late would stretch the run and flatter the rate.
                if next >= end || Instant::now() >= end || stop.is_cancelled() {
                    break;
                }
                tokio::select! {
                    () = tokio::time::sleep_until(next) => {}
                    () = stop.cancelled() => break,
                }
                next
            }
            Mode::Closed => {
                let now = Instant::now();
                if now >= end || stop.is_cancelled() {
                    break;
                }
                now
            }
        };
        let request = factory.build_any(&mut rng);
        let sent_at = Instant::now();
        sent.fetch_add(1, Ordering::Relaxed);
        recorder.sent();
        let outcome = match tokio::time::timeout(scenario.timeout, connection.send(request)).await {
            Ok(outcome) => Some(outcome),
            Err(_) => {
                // The answer may still arrive on this connection: start a fresh one.
                connection.reset();
                None
            }
        };
        if !scenario.keep_alive {
            connection.reset();
        }
        let finished = Instant::now();
        let micros = u64::try_from(finished.saturating_duration_since(scheduled).as_micros())
            .unwrap_or(u64::MAX);
        recorder.finished(outcome.as_ref(), micros);
        // Counted if *sent* in the measured window; latency still runs from the scheduled
        // time, so a backlog carried over from the warm-up shows in full.
        if sent_at >= measure_from {
            stats.sent_in_window += 1;
            let _ = stats.histogram.record(micros.max(1));
            stats.outcomes.count(outcome.as_ref());
        }
        if scenario.mode == Mode::Open {
            let elapsed = scheduled.saturating_duration_since(measure_from);
            next = scheduled + slot_interval(scenario, elapsed, connections);
        }
    }
    stats
}

/// Time between this connection's slots at `elapsed` into the run.
fn slot_interval(scenario: &Scenario, elapsed: Duration, connections: f64) -> Duration {
    let rate = scenario.rate_at(elapsed);
    if rate <= 0.0 {
        // A stage at zero rate: look again shortly.
        return Duration::from_millis(10);
    }
    Duration::from_secs_f64(connections / rate)
}

#[cfg(test)]
mod tests {
    #[test]
    fn histogram_bounds_are_valid() {
        assert_eq!(super::new_histogram().high(), 3_600_000_000);
    }
}
