//! The actor backends: one actor owning every key (`actor`), or N of them behind a registry that
//! routes each key to its shard by a stable hash (`sharded`). The single actor is literally the
//! one-shard case of the same code, so any difference between them is the partitioning alone.
//!
//! Every actor runs under a [`Supervisor`]: a crashed actor is restarted with an empty table
//! (its keys' state is lost, and so is every check waiting in its mailbox), and past the restart
//! intensity the whole backend is failed until its cool-off ends.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use turnstile_actor::{Actor, Supervisor, SupervisorSpec, SupervisorState};
use turnstile_core::{Clock, Decision, Policy};

use crate::faults::Faults;
use crate::state_key::StateKey;
use crate::status::{BackendState, BackendStatus, ChildStatus, KillError, KillTarget, Tagged};
use crate::table::{EvictionReporter, KeyTable};
use crate::{
    Backend, BackendConfig, BackendKind, BoxFuture, BuildContext, CheckError, CheckFuture,
    SimulatedWork,
};

/// One check, as sent to the actor that owns the key.
pub(crate) struct CheckCall {
    /// The key, owned because it crosses into another task (validated by the caller).
    key: Box<str>,
    policy: Policy,
    cost: u32,
}

/// The state owner: a key table, a clock, and optional simulated work, behind a mailbox.
pub(crate) struct TableActor {
    table: KeyTable,
    clock: Arc<dyn Clock>,
    faults: Arc<Faults>,
    simulated_work: Option<SimulatedWork>,
    sweep_interval: std::time::Duration,
    /// The table's size, published for `keys_tracked` without a round trip to the actor.
    keys: Arc<AtomicUsize>,
}

impl Actor for TableActor {
    type Call = CheckCall;
    type Reply = Result<Decision, CheckError>;

    async fn handle_call(&mut self, call: CheckCall) -> Self::Reply {
        // A poisoned key takes the whole actor down, with everything queued behind it.
        self.faults.trip_poison(call.policy.id(), &call.key);
        if let Some(delay) = self.faults.slow_delay() {
            tokio::time::sleep(delay).await;
        }
        if let Some(work) = self.simulated_work {
            work.perform().await;
        }
        // Time is read when the actor gets to the message, not when it was sent: a backlog
        // makes decisions late, exactly as with a GenServer.
        let result = self.table.check(
            call.key.as_bytes(),
            &call.policy,
            call.cost,
            self.clock.now_ns(),
        );
        self.keys.store(self.table.len(), Ordering::Relaxed);
        result
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(self.sweep_interval)
    }

    fn handle_tick(&mut self) {
        self.table.sweep_if_due(self.clock.now_ns());
        self.keys.store(self.table.len(), Ordering::Relaxed);
    }
}

/// The registry's routing rule: which of `shards` owns a composite table key.
fn route(state_key: &[u8], shards: usize) -> usize {
    match shards {
        0 | 1 => 0,
        // xxh3 with its fixed default seed: the same key maps to the same shard in every
        // process, which keeps shard-level experiments reproducible.
        n => (xxhash_rust::xxh3::xxh3_64(state_key) % n as u64) as usize,
    }
}

/// The shard (of `shards`) that owns `key` under `policy`: what the sharded backend's registry
/// computes, for tools and tests that need to aim at one shard. Stable for the life of the
/// process and across restarts, since it depends only on the bytes and the shard count.
pub fn shard_for(key: &str, policy: &Policy, shards: usize) -> Result<usize, CheckError> {
    Ok(route(StateKey::new(policy.id(), key)?.as_bytes(), shards))
}

/// The single-actor and sharded backends.
pub(crate) struct ActorBackend {
    kind: BackendKind,
    /// Supervises the shards and is the registry: shard `i` serves every key whose stable
    /// hash maps to `i`, through whichever incarnation of it is alive.
    supervisor: Supervisor<TableActor>,
    /// Keys held per shard, published by each incarnation (reset when it restarts).
    keys: Arc<[Arc<AtomicUsize>]>,
}

impl ActorBackend {
    /// Starts `shards` supervised actors (1 for the single-actor backend); must run inside a
    /// tokio runtime.
    pub(crate) fn start(config: &BackendConfig, shards: usize, context: &BuildContext) -> Self {
        let shards = shards.max(1);
        let kind = if shards == 1 && config.kind == BackendKind::Actor {
            BackendKind::Actor
        } else {
            BackendKind::Sharded
        };
        let keys: Arc<[Arc<AtomicUsize>]> = (0..shards).map(|_| Arc::default()).collect();
        let factory = {
            let keys = Arc::clone(&keys);
            let clock = Arc::clone(&context.clock);
            let faults = Arc::clone(&context.faults);
            let evictions = EvictionReporter {
                backend: kind,
                observer: Arc::clone(&context.observer),
            };
            let (max_keys, sweep_interval, simulated_work) = (
                config.max_keys,
                config.sweep_interval,
                config.simulated_work,
            );
            move |index: usize| {
                // Split max_keys exactly: the shards' caps add up to the configured total.
                let cap = max_keys / shards + usize::from(index < max_keys % shards);
                // A new incarnation starts empty.
                keys[index].store(0, Ordering::Relaxed);
                TableActor {
                    table: KeyTable::new(cap.max(1), sweep_interval, evictions.clone()),
                    clock: Arc::clone(&clock),
                    faults: Arc::clone(&faults),
                    simulated_work,
                    sweep_interval,
                    keys: Arc::clone(&keys[index]),
                }
            }
        };
        let supervisor = Supervisor::start(
            SupervisorSpec {
                children: shards,
                mailbox: config.mailbox,
                call_timeout: config.call_timeout,
                supervision: config.supervisor.clone(),
                observer: Arc::new(Tagged {
                    backend: kind,
                    observer: Arc::clone(&context.observer),
                }),
            },
            factory,
        );
        Self {
            kind,
            supervisor,
            keys,
        }
    }

    fn route(&self, state_key: &[u8]) -> usize {
        route(state_key, self.supervisor.len())
    }
}

impl Backend for ActorBackend {
    fn kind(&self) -> BackendKind {
        self.kind
    }

    fn check<'a>(&'a self, key: &'a str, policy: &'a Policy, cost: u32) -> CheckFuture<'a> {
        let state_key = match StateKey::new(policy.id(), key) {
            Ok(state_key) => state_key,
            Err(error) => return CheckFuture::ready(Err(error)),
        };
        let shard = self.route(state_key.as_bytes());
        let call = CheckCall {
            key: key.into(),
            policy: *policy,
            cost,
        };
        CheckFuture::waiting(async move { self.supervisor.call(shard, call).await? })
    }

    fn keys_tracked(&self) -> usize {
        self.keys
            .iter()
            .map(|keys| keys.load(Ordering::Relaxed))
            .sum()
    }

    fn is_ready(&self) -> bool {
        self.supervisor.state() == SupervisorState::Running
    }

    fn status(&self) -> BackendStatus {
        let status = self.supervisor.status();
        BackendStatus {
            backend: self.kind,
            state: BackendState::from(status.state),
            children: status
                .children
                .into_iter()
                .enumerate()
                .map(|(index, child)| ChildStatus {
                    index,
                    alive: child.alive,
                    restarts: child.restarts,
                    mailbox_depth: child.mailbox_depth,
                })
                .collect(),
            escalations: status.escalations,
            pool: None,
            redis: None,
        }
    }

    fn kill(&self, target: KillTarget) -> BoxFuture<'_, Result<(), KillError>> {
        Box::pin(async move {
            match target {
                KillTarget::Child(index) if index < self.supervisor.len() => {
                    if self.supervisor.kill(index).await {
                        Ok(())
                    } else {
                        Err(KillError::NotRunning(index))
                    }
                }
                // No such shard, or a pool worker (the pool, if any, wraps this backend).
                absent => Err(absent.absent()),
            }
        })
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.supervisor.shutdown())
    }
}
