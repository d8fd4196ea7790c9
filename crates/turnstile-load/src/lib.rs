//! `turnstile-load`: the load generator that ships with Turnstile, and the comparison report.
//!
//! It measures what users will see: it drives the gateway over real HTTP/1.1 keep-alive
//! connections on loopback and reads the gateway's own answers to count allowed, limited and
//! dropped (by reason) requests, keeping timeouts, connection errors and other statuses
//! apart, so nothing is dropped silently.
//!
//! # Layout
//!
//! - [`scenario`]: scenario files (rate or stages, connections, traffic shape, faults, sweep).
//! - [`traffic`]: request construction (check or gateway route; uniform, zipf or hot keys).
//! - [`client`]: one keep-alive connection and answer classification.
//! - [`engine`]: the open-loop (coordinated-omission-correct) and closed-loop runner.
//! - [`timeline`]: the run second by second (rates, latency, outcomes, the gateway's mailbox
//!   depth and restarts), with faults and restarts marked.
//! - [`faults`]: fault injection through a gateway's admin API.
//! - [`live`]: `--live`, the page that shows the timelines while the run goes on.
//! - [`result`]: counts, percentiles, the table, JSON, and the `.hgrm` distribution.
//! - [`compare`]: every backend under one scenario, and the shard/work sweep.
//! - [`report`]: Markdown and HTML (inline SVG) reports.
//! - [`tables`]: `turnstile-load report …`, the benchmark scripts' Markdown tables.
//! - [`trivial`]: `serve-trivial`, the bare and mirrored baselines the benchmarks compare to.
//!
//! # Invariants
//!
//! - Every request sent during the measured window is counted in exactly one outcome.
//! - Open-loop latency is measured from the scheduled send time, never from the actual one.
//! - Load goes only to the target given (loopback in everything we ship), and every run is
//!   bounded by its duration.

pub mod client;
pub mod compare;
pub mod engine;
pub mod faults;
pub mod live;
pub mod report;
pub mod result;
pub mod scenario;
pub mod tables;
pub mod timeline;
pub mod traffic;
pub mod trivial;
