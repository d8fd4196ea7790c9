//! Slow and stalling clients cannot take the limiter down: a JSON body that stalls holds no
//! place among `max_concurrent_requests` and is cut off at `body_read_timeout` (408), while
//! other clients' checks keep being answered.

// Test code: a panic is how a failure is reported. The lints guard the request path.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::task::Poll;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{Request, StatusCode};
use common::{TestGateway, small_config};
use turnstile_gateway::Config;

/// A `POST /v1/check` whose body sends `{"key":` and then nothing, ever; `started` hears when
/// the gateway begins reading it.
fn stalled_check(path: &str) -> (Request<Body>, tokio::sync::oneshot::Receiver<()>) {
    let (started, heard) = tokio::sync::oneshot::channel();
    let mut started = Some(started);
    let mut sent = false;
    let body = futures_util::stream::poll_fn(move |_| {
        if let Some(started) = started.take() {
            let _ = started.send(());
        }
        if sent {
            return Poll::Pending;
        }
        sent = true;
        Poll::Ready(Some(Ok::<_, std::io::Error>(Bytes::from_static(
            b"{\"key\":",
        ))))
    });
    let request = Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from_stream(body))
        .unwrap();
    (request, heard)
}

#[tokio::test(start_paused = true)]
async fn stalled_bodies_hold_no_slot_and_are_cut_off_at_the_body_read_timeout() {
    let gateway = std::sync::Arc::new(TestGateway::new(Config {
        max_concurrent_requests: 2,
        body_read_timeout: Duration::from_secs(2),
        ..small_config()
    }));
    // Twice as many stalled bodies as there are places, on both body-reading routes.
    let mut stalled = Vec::new();
    for path in ["/v1/check", "/v1/ratelimit", "/v1/check", "/v1/ratelimit"] {
        let (request, started) = stalled_check(path);
        let gateway = std::sync::Arc::clone(&gateway);
        stalled.push(tokio::spawn(async move { gateway.send(request).await }));
        started.await.unwrap();
    }
    assert_eq!(
        gateway.state.requests_in_flight(),
        0,
        "a body being read holds no place"
    );
    // Everyone else is still answered: /v1/check, forward-auth, the gateway route.
    let check = gateway.check(serde_json::json!({"key": "alice"})).await;
    assert_eq!(check.status, StatusCode::OK, "{}", check.text);
    assert_eq!(check.json["allowed"], true);
    let auth = gateway
        .send(
            Request::get("/v1/forward-auth")
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(auth.status, StatusCode::OK);
    // The stalled ones get their 408 when the body read timeout passes (virtual time).
    for task in stalled {
        let answer = task.await.unwrap();
        let message = answer.assert_error(StatusCode::REQUEST_TIMEOUT, "body_read_timeout");
        assert!(message.contains("2000ms"), "{message}");
    }
    assert_eq!(gateway.state.requests_in_flight(), 0);
    gateway.state.backend().shutdown().await;
}

// ---- On real sockets: the header-read timeout and the connection cap. ----

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use turnstile_gateway::testing::{RunningGateway, on_loopback, spawn};

/// The longest any test here waits for the gateway to act: a bound on a hang, not a timing.
const PATIENCE: Duration = Duration::from_secs(20);

/// Whether the gateway closes `stream` (EOF or reset) within [`PATIENCE`], whatever it sends
/// first.
async fn closed_by_gateway(stream: &mut TcpStream) -> bool {
    let mut buffer = [0_u8; 1024];
    let read = async {
        loop {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(PATIENCE, read).await.is_ok()
}

fn gateway(config: Config) -> RunningGateway {
    spawn(on_loopback(config)).expect("the gateway starts")
}

async fn wait_for_open_connections(gateway: &RunningGateway, open: i64) {
    let deadline = std::time::Instant::now() + PATIENCE;
    while gateway.state().metrics().open_connections() != open {
        assert!(
            std::time::Instant::now() < deadline,
            "never {open} open connections (now {})",
            gateway.state().metrics().open_connections()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn get_healthz(address: SocketAddr) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut answer = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_sent_headers_and_idle_keep_alive_are_closed_after_the_header_read_timeout() {
    let gateway = gateway(Config {
        header_read_timeout: Duration::from_millis(300),
        ..small_config()
    });
    // Slowloris: headers begun, never finished.
    let mut slowloris = TcpStream::connect(gateway.address).await.unwrap();
    slowloris
        .write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\nx-slow: 1\r\n")
        .await
        .unwrap();
    // Idle keep-alive: one request answered, then nothing.
    let mut idle = TcpStream::connect(gateway.address).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: t\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0_u8; 16];
    idle.read_exact(&mut first).await.unwrap();
    assert!(first.starts_with(b"HTTP/1.1 200"));
    assert!(
        closed_by_gateway(&mut slowloris).await,
        "the half-sent request was never closed"
    );
    assert!(
        closed_by_gateway(&mut idle).await,
        "the idle connection was never closed"
    );
    wait_for_open_connections(&gateway, 0).await;
    gateway.stop().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_max_connections_the_longest_idle_connection_makes_room() {
    let gateway = gateway(Config {
        max_connections: 3,
        header_read_timeout: Duration::from_secs(60),
        body_read_timeout: Duration::from_secs(60),
        ..small_config()
    });
    // Three idle connections, the first the longest idle.
    let mut idle = Vec::new();
    for open in 1..=3 {
        idle.push(TcpStream::connect(gateway.address).await.unwrap());
        wait_for_open_connections(&gateway, open).await;
    }
    // A new client is served: the longest idle connection is closed for it.
    assert!(
        get_healthz(gateway.address)
            .await
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        closed_by_gateway(&mut idle[0]).await,
        "the longest idle was not closed"
    );
    let metrics = gateway.state().metrics();
    assert_eq!(metrics.connections_shed_total("closed_idle"), 1);
    drop(idle);
    wait_for_open_connections(&gateway, 0).await;

    gateway.stop().unwrap();
}

/// A connection to the gRPC listener that sent the HTTP/2 preface and got the server's first
/// frame (a SETTINGS frame: it is being served); `None` if it was closed instead.
async fn grpc_connection_served(address: SocketAddr) -> Option<TcpStream> {
    let mut stream = TcpStream::connect(address).await.ok()?;
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .ok()?;
    let mut header = [0_u8; 9];
    tokio::time::timeout(PATIENCE, stream.read_exact(&mut header))
        .await
        .ok()?
        .ok()?;
    assert_eq!(header[3], 0x4, "a SETTINGS frame first: {header:?}");
    Some(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_admin_and_grpc_listeners_close_silent_connections_and_cap_them() {
    let gateway = gateway(Config {
        header_read_timeout: Duration::from_millis(300),
        max_connections: 2,
        ..small_config()
    });
    let admin = gateway.admin.unwrap();
    let rls = gateway.rls.unwrap();
    // Half-sent headers on the admin API, and a gRPC connection that never sends its preface.
    let mut admin_slowloris = TcpStream::connect(admin).await.unwrap();
    admin_slowloris
        .write_all(b"GET /admin/supervision HTTP/1.1\r\nhost: t\r\n")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(rls).await.unwrap();
    assert!(
        closed_by_gateway(&mut admin_slowloris).await,
        "the admin API kept a half-sent request open"
    );
    assert!(
        closed_by_gateway(&mut silent).await,
        "the gRPC listener kept a silent connection open"
    );
    // Two connections that sent something stay; a third is refused at once, and counted.
    let mut talking = Vec::new();
    for _ in 0..2 {
        talking.push(
            grpc_connection_served(rls)
                .await
                .expect("served under the cap"),
        );
    }
    let mut third = TcpStream::connect(rls).await.unwrap();
    assert!(
        closed_by_gateway(&mut third).await,
        "a third connection was kept"
    );
    assert_eq!(gateway.state().metrics().rls_connections_refused_total(), 1);
    // Once one goes, a new client is served again.
    drop(talking.pop());
    let deadline = std::time::Instant::now() + PATIENCE;
    while grpc_connection_served(rls).await.is_none() {
        assert!(
            std::time::Instant::now() < deadline,
            "the freed place was never reused"
        );
    }
    gateway.stop().unwrap();
}

#[test]
fn under_a_low_open_file_limit_many_idle_connections_do_not_lock_new_clients_out() {
    // The binary under `prlimit --nofile=128`: the cap fits under the limit (128 - 64 reserved),
    // so 200 idle connections cannot use every descriptor, and a new client is served.
    let Ok(prlimit) = which("prlimit") else {
        panic!("prlimit (util-linux) is needed for this test");
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = std::process::Command::new(prlimit)
        .args(["--nofile=128:128", "--"])
        .arg(env!("CARGO_BIN_EXE_turnstile"))
        .args(["--listen", &address.to_string()])
        .env("TURNSTILE_HEADER_READ_TIMEOUT", "60s")
        // The log goes to stdout.
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Killed even when an assertion below fails.
    let mut child = turnstile_gateway::testing::KillOnDrop(child);
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let deadline = std::time::Instant::now() + PATIENCE;
        while TcpStream::connect(address).await.is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway never listened"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let mut idle = Vec::new();
        for _ in 0..200 {
            idle.push(TcpStream::connect(address).await.unwrap());
        }
        assert!(get_healthz(address).await.starts_with("HTTP/1.1 200"));
        drop(idle);
    });
    let _ = child.kill();
    let mut log = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut log).unwrap();
    assert!(log.contains("capping connections lower"), "{log}");
}

fn which(program: &str) -> Result<std::path::PathBuf, ()> {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|dir| std::path::Path::new(dir).join(program))
        .find(|path| path.is_file())
        .ok_or(())
}
