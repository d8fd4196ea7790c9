//! The rate-limit algorithm at the heart of Turnstile: GCRA (the generic cell rate algorithm).
//!
//! This crate is pure: no async, no I/O, no global state. Every backend (the single actor, the
//! sharded actors, the concurrent map, Redis) stores the state this crate defines and calls
//! [`Policy::check`] to decide; that is why they all return identical decisions.
//!
//! # The model
//!
//! A [`Policy`] admits `limit` requests per `period`, with a `burst`: the most requests admitted at
//! once from idle. GCRA keeps, per key, one number: the *theoretical arrival time* (TAT), the
//! instant at which the key would be back to fully idle if no more requests arrived. Each admitted
//! unit of cost pushes the TAT forward by the emission interval `T = period / limit`; a request is
//! admitted when, after that push, the TAT lies no more than the tolerance `τ = burst × T` ahead
//! of now.
//!
//! # Worked example: `limit = 10`, `period = 1 s`, `burst = 5`
//!
//! `T` = 100 ms and `τ` = 500 ms. Starting idle at t = 0:
//!
//! | time     | request | TAT before | decision | remaining | retry after | TAT after |
//! |----------|---------|------------|----------|-----------|-------------|-----------|
//! | 0 ms     | 1st–5th | 0 → 400 ms | allowed  | 4 … 0     |             | 500 ms    |
//! | 0 ms     | 6th     | 500 ms     | denied   | 0         | 100 ms      | 500 ms    |
//! | 100 ms   | 7th     | 500 ms     | allowed  | 0         |             | 600 ms    |
//! | 150 ms   | 8th     | 600 ms     | denied   | 0         | 50 ms       | 600 ms    |
//! | 1000 ms  | (any)   | 600 ms     | allowed  | 4         |             | 1100 ms   |
//!
//! So the five-request burst is admitted at once, then one request per 100 ms: a client that
//! keeps asking as fast as it can gets 5 + 10 = 15 requests in its first second and 10 per second
//! after that. Idle time refills the burst at the same rate (one unit per 100 ms, up to 5).
//! The crate's tests replay exactly this table.
//!
//! # Semantics pinned here
//!
//! - `cost` is the number of units a request consumes at once. A request whose cost exceeds the
//!   burst can never be admitted, and is an error ([`CostExceedsBurst`]), not a denial.
//! - `cost = 0` *peeks*: it answers what a cost-1 request would get now, and never changes state.
//! - A denied request never changes state (denials do not push the TAT, so a client hammering a
//!   denied key does not extend its own punishment).
//! - `remaining` is how many cost-1 requests would be admitted right after this decision.
//! - `reset_after` is the time until the key is fully idle again (its whole burst available).
//! - `retry_after` (denied only) is the earliest time after which the same request would be
//!   admitted, if nothing else consumes the key meanwhile.
//! - A state whose TAT is at or before now is *expired* and behaves exactly like an absent key
//!   (state `0`). That is what lets every backend drop idle keys without changing any decision.
//!
//! # Layout
//!
//! - [`policy`]: [`Policy`] (validated numbers), [`Policy::check`] (the algorithm).
//! - [`decision`]: [`Decision`] and [`Verdict`] (the decision plus the state to store).
//! - [`clock`]: the [`Clock`] trait, a monotonic clock for production and a [`ManualClock`] for
//!   tests.
//!
//! # Invariants
//!
//! - Per-key state is one `u64` (nanoseconds of TAT on the backend's clock), so a backend can
//!   update it with a single compare-and-swap.
//! - The core never reads the time itself: `now` is always an argument.
//! - Integer nanoseconds throughout; no floating point in a decision.

pub mod clock;
pub mod decision;
pub mod policy;

pub use clock::{Clock, ManualClock, MonotonicClock};
pub use decision::{Decision, Verdict};
pub use policy::{CostExceedsBurst, Policy, PolicyError, State, is_expired};

/// The longest key any backend accepts, in bytes (keys are never empty either). Here, beside
/// [`Policy`], because everything that composes keys (the backends' tables, the descriptor
/// rules' key builder) must agree on it.
pub const MAX_KEY_LEN: usize = 256;
