//! Restart intensity: the sliding window that decides when restarts have become too many
//! (OTP's `max_restarts` within `max_seconds`).

use std::collections::VecDeque;
use std::time::Duration;

use tokio::time::Instant;

/// Restart intensity bookkeeping: how many restarts happened within the sliding window.
///
/// Shared by [`Supervisor`] and by anything else that replaces dead workers (the check pool),
/// so every restart in Turnstile obeys the same rule: more than `max_restarts` within `window`
/// is too many.
///
/// [`Supervisor`]: super::Supervisor
#[derive(Debug, Clone)]
pub struct RestartWindow {
    max_restarts: u32,
    window: Duration,
    history: VecDeque<Instant>,
}

impl RestartWindow {
    /// Allows `max_restarts` restarts within any `window`.
    pub fn new(max_restarts: u32, window: Duration) -> Self {
        Self {
            max_restarts,
            window,
            history: VecDeque::new(),
        }
    }

    /// Records a restart at `now`. Returns which restart this is within the window (1-based),
    /// or `None` if it exceeds the intensity, in which case the history is cleared (the
    /// caller escalates, and starts counting afresh when it re-arms).
    pub fn record(&mut self, now: Instant) -> Option<usize> {
        while self
            .history
            .front()
            .is_some_and(|at| now.duration_since(*at) >= self.window)
        {
            self.history.pop_front();
        }
        if self.history.len() >= self.max_restarts as usize {
            self.history.clear();
            return None;
        }
        self.history.push_back(now);
        Some(self.history.len())
    }

    /// Forgets every recorded restart.
    pub fn clear(&mut self) {
        self.history.clear();
    }
}
