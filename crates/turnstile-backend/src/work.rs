//! Simulated per-check work: the seeds' "heavy computation" inside a GenServer, on demand.

use std::time::{Duration, Instant};

/// What simulated work does while it takes its time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkKind {
    /// Await a timer, like waiting on I/O: the owner is busy but the CPU is free.
    Sleep,
    /// Burn CPU in a loop: the owner's thread is busy.
    Spin,
}

/// Work each check performs inside whatever owns the state (the actor, a shard, or the caller
/// of the concurrent map), to make the cost of serialization visible: one actor doing 1 ms of
/// I/O-like work per check tops out near 1,000 checks/s, sixteen shards near 16,000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct SimulatedWork {
    /// Sleep or spin.
    pub kind: WorkKind,
    /// How long each check takes.
    #[serde(with = "humantime_serde")]
    pub duration: Duration,
}

impl SimulatedWork {
    /// Performs the work once.
    pub async fn perform(&self) {
        match self.kind {
            WorkKind::Sleep => tokio::time::sleep(self.duration).await,
            WorkKind::Spin => self.spin(),
        }
    }

    /// Burns CPU for the duration on the current thread (a blocking call, deliberately).
    pub fn spin(&self) {
        let started = Instant::now();
        while started.elapsed() < self.duration {
            std::hint::spin_loop();
        }
    }
}
