//! `perf script -F ip,sym` output of the gateway (`loadtest/profile-gateway.sh`), summarised.
//!
//! The input is one stack per sample, a frame per line (`<ip> <symbol>+0x<offset>`, innermost
//! first), samples separated by blank lines. The summary gives the share of all samples spent
//! under each stage of a request (a sample counts for a stage when any frame of its stack
//! matches the stage's pattern; stages nest, so shares within a group overlap; the allocator
//! counts only samples whose own frame is in it), then the functions with the most samples of
//! their own.

use std::collections::HashMap;
use std::fmt::Write;

use regex::Regex;

use super::{TableError, percent};

/// A stage of a request, and the frames that are in it.
struct Stage {
    /// Indented by two spaces per level of nesting (shown as `&nbsp;`s).
    name: &'static str,
    pattern: &'static str,
    /// Only the sample's own (innermost) frame is matched, not its callers.
    own_frame_only: bool,
}

const fn stage(name: &'static str, pattern: &'static str) -> Stage {
    Stage {
        name,
        pattern,
        own_frame_only: false,
    }
}

const STAGES: [Stage; 14] = [
    stage(
        "kernel: socket writes (including loopback delivery to the client)",
        r"__GI___writev|\bdo_writev\b",
    ),
    stage("kernel: socket reads", r"__libc_recv|__sys_recvfrom"),
    stage(
        "kernel: epoll and idle (runtime parking)",
        r"park_internal|epoll_wait",
    ),
    stage("hyper: parse the request head", r"Http1Transaction>::parse"),
    stage(
        "hyper: encode the response head",
        r"Http1Transaction>::encode",
    ),
    stage(
        "the service: edge, router, handler",
        r"TowerToHyperServiceFuture<.*>::poll|EdgeFuture",
    ),
    stage(
        "  handler: limit_client (the gateway route)",
        r"routes::limit_client",
    ),
    stage(
        "    backend check",
        r"ConcurrentBackend as .*Backend>::check|ConcurrentTable::check",
    ),
    stage("    client IP and key", r"ClientIpResolver"),
    stage("    rate-limit headers", r"headers::insert"),
    stage(
        "    metrics (histograms, counters)",
        r"Metrics>?::record|prometheus::",
    ),
    stage(
        "    the response (status, body, JSON)",
        r"IntoResponse>::into_response|serde_json::",
    ),
    stage(
        "  drop request parts",
        r"drop_in_place<http::request::Parts>",
    ),
    Stage {
        name: "allocator (malloc and free, anywhere)",
        pattern: r"^(malloc|_int_malloc|_int_free|cfree|__GI___libc_(malloc|free)|tcache_get|unlink_chunk|malloc_consolidate)",
        own_frame_only: true,
    },
];

/// How many of the hottest functions are listed.
const HOTTEST: usize = 20;
/// Function names are cut to this many characters (monomorphised names run to thousands).
const NAME_CHARS: usize = 120;

/// The summary of `perf script -F ip,sym` output (read as UTF-8, invalid bytes replaced).
pub fn summary(perf_script: &[u8]) -> Result<String, TableError> {
    let text = String::from_utf8_lossy(perf_script);
    let samples = stacks(&text)?;
    // Shares of nothing are 0, not a division by zero.
    let total = samples.len().max(1) as f64;
    let mut out = format!(
        "{} samples of the gateway under closed-loop load.\n\n",
        samples.len()
    );
    out.push_str("| stage | share of samples |\n|---|---|\n");
    for stage in &STAGES {
        let regex = Regex::new(stage.pattern).map_err(|source| TableError::Pattern {
            pattern: stage.pattern,
            source: Box::new(source),
        })?;
        let hits = samples
            .iter()
            .filter(|frames| {
                if stage.own_frame_only {
                    frames.first().is_some_and(|own| regex.is_match(own))
                } else {
                    frames.iter().any(|frame| regex.is_match(frame))
                }
            })
            .count();
        let indent = stage.name.len() - stage.name.trim_start_matches(' ').len();
        let _ = writeln!(
            out,
            "| {}{} | {} |",
            "&nbsp;".repeat(indent),
            &stage.name[indent..],
            percent(hits as f64 / total, 1)
        );
    }
    out.push_str("\nHottest functions (own samples):\n\n| own share | function |\n|---|---|\n");
    for (function, count) in hottest(&samples) {
        let _ = writeln!(
            out,
            "| {} | `{function}` |",
            percent(count as f64 / total, 1)
        );
    }
    Ok(out)
}

/// The samples, each its frames' symbols (innermost first) without their `+0x…` offsets; a
/// frame with no symbol is `?`.
fn stacks(text: &str) -> Result<Vec<Vec<String>>, TableError> {
    const OFFSET: &str = r"\+0x[0-9a-f]+$";
    let offset = Regex::new(OFFSET).map_err(|source| TableError::Pattern {
        pattern: OFFSET,
        source: Box::new(source),
    })?;
    let mut samples = Vec::new();
    let mut current = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() {
            if !current.is_empty() {
                samples.push(std::mem::take(&mut current));
            }
            continue;
        }
        let symbol = line
            .split_once(char::is_whitespace)
            .map_or("?", |(_ip, symbol)| symbol.trim_start());
        current.push(offset.replace(symbol, "").into_owned());
    }
    if !current.is_empty() {
        samples.push(current);
    }
    Ok(samples)
}

/// The most frequent own frames, most samples first (ties in the order first seen).
fn hottest(samples: &[Vec<String>]) -> Vec<(String, usize)> {
    let mut counts: Vec<(String, usize)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for own in samples.iter().filter_map(|frames| frames.first()) {
        let name: String = own.chars().take(NAME_CHARS).collect();
        match index.get(&name) {
            Some(&at) => {
                if let Some((_, count)) = counts.get_mut(at) {
                    *count += 1;
                }
            }
            None => {
                index.insert(name.clone(), counts.len());
                counts.push((name, 1));
            }
        }
    }
    // Stable: equal counts keep the order in which they were first seen.
    counts.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
    counts.truncate(HOTTEST);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Nine samples as `perf script -F ip,sym` prints them: a frame per line, innermost first.
    const STACKS: &str = "
\t    7f3a10c0 __GI___writev+0x1c
\t    55d100aa <hyper::proto::h1::role::Server as hyper::proto::h1::Http1Transaction>::encode+0x2f
\t    55d100ff <hyper_util::service::TowerToHyperServiceFuture<S,R> as core::future::future::Future>::poll+0x8

\t    55d10123 turnstile_backend::table::ConcurrentTable::check+0x33
\t    55d10200 turnstile_gateway::routes::limit_client::{{closure}}+0x11
\t    55d10300 <turnstile_gateway::edge::EdgeFuture<F> as core::future::future::Future>::poll+0x8

\t    7f3a2000 malloc+0x12
\t    55d10400 turnstile_gateway::headers::insert+0x9
\t    55d10200 turnstile_gateway::routes::limit_client::{{closure}}+0x11


\t    7f3a3000 epoll_wait+0x4
\t    55d10500 tokio::runtime::scheduler::multi_thread::worker::Context::park_internal+0x77
\t    7f3a4000

\t    7f3a10c0 __GI___writev+0x1c
\t    55d10600 serde_json::ser::to_vec+0x9
\t    55d10700 alloc::raw_vec::finish_grow+0x10

\t    55d10800 turnstile_gateway::client_ip::ClientIpResolver::resolve+0x21
\t    55d10900 malloc+0x1

\t    55d10a00
\t    55d10500 tokio::runtime::park_internal+0x77

\t    55d10b00 <turnstile_gateway::edge::Edge<axum::routing::Router> as tower_service::Service<http::request::Request<hyper::body::incoming::Incoming>>>::call::{{closure}}+0x5

\t    55d10b00 <turnstile_gateway::edge::Edge<axum::routing::Router> as tower_service::Service<http::request::Request<hyper::body::incoming::Incoming>>>::call+0x9
\t    55d10200 turnstile_gateway::routes::limit_client::{{closure}}+0x11
";

    const STAGE_HEADER: &str = "| stage | share of samples |\n|---|---|\n";
    const HOTTEST_HEADER: &str =
        "\nHottest functions (own samples):\n\n| own share | function |\n|---|---|\n";

    #[test]
    fn samples_count_for_every_stage_any_frame_is_in_and_own_frames_rank_the_functions() {
        let expected = String::from("9 samples of the gateway under closed-loop load.\n\n")
            + STAGE_HEADER
            + "| kernel: socket writes (including loopback delivery to the client) | 22.2% |\n\
               | kernel: socket reads | 0.0% |\n\
               | kernel: epoll and idle (runtime parking) | 22.2% |\n\
               | hyper: parse the request head | 0.0% |\n\
               | hyper: encode the response head | 11.1% |\n\
               | the service: edge, router, handler | 22.2% |\n\
               | &nbsp;&nbsp;handler: limit_client (the gateway route) | 33.3% |\n\
               | &nbsp;&nbsp;&nbsp;&nbsp;backend check | 11.1% |\n\
               | &nbsp;&nbsp;&nbsp;&nbsp;client IP and key | 11.1% |\n\
               | &nbsp;&nbsp;&nbsp;&nbsp;rate-limit headers | 11.1% |\n\
               | &nbsp;&nbsp;&nbsp;&nbsp;metrics (histograms, counters) | 0.0% |\n\
               | &nbsp;&nbsp;&nbsp;&nbsp;the response (status, body, JSON) | 11.1% |\n\
               | &nbsp;&nbsp;drop request parts | 0.0% |\n\
               | allocator (malloc and free, anywhere) | 11.1% |\n"
            + HOTTEST_HEADER
            // The two `Edge … ::call` frames are one function once cut to 120 characters; ties
            // keep the order first seen; a frame with no symbol is `?`.
            + "| 22.2% | `__GI___writev` |\n\
               | 22.2% | `<turnstile_gateway::edge::Edge<axum::routing::Router> as tower_service::Service<http::request::Request<hyper::body::inco` |\n\
               | 11.1% | `turnstile_backend::table::ConcurrentTable::check` |\n\
               | 11.1% | `malloc` |\n\
               | 11.1% | `epoll_wait` |\n\
               | 11.1% | `turnstile_gateway::client_ip::ClientIpResolver::resolve` |\n\
               | 11.1% | `?` |\n";
        assert_eq!(summary(STACKS.as_bytes()).unwrap(), expected);
    }

    #[test]
    fn no_samples_is_zero_shares_and_invalid_utf8_is_replaced() {
        let text = summary(b"").unwrap();
        assert!(text.starts_with("0 samples of the gateway under closed-loop load.\n\n"));
        assert!(text.contains("| allocator (malloc and free, anywhere) | 0.0% |\n"));
        assert!(text.ends_with(HOTTEST_HEADER));

        let text = summary(b"55d1 caf\xff+0x10\n").unwrap();
        assert!(text.ends_with("| 100.0% | `caf\u{fffd}` |\n"), "{text}");
    }

    #[test]
    fn at_most_twenty_functions_are_listed() {
        let stacks: String = (0..25).map(|n| format!("1 f{n}+0x1\n\n")).collect();
        let text = summary(stacks.as_bytes()).unwrap();
        assert_eq!(text.matches("| 4.0% | `f").count(), HOTTEST);
        assert!(text.contains("`f19`") && !text.contains("`f20`"));
    }
}
