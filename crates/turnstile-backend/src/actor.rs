//! The actor backends: one actor owning every key (`actor`), or N of them behind a registry that
//! routes each key to its shard by a stable hash (`sharded`). The single actor is literally the
//! one-shard case of the same code, so any difference between them is the partitioning alone.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use turnstile_actor::{Actor, ActorRef, ActorTask};
use turnstile_core::{Clock, Decision, Policy};

use crate::state_key::StateKey;
use crate::table::KeyTable;
use crate::{
    Backend, BackendConfig, BackendKind, BoxFuture, CheckError, CheckFuture, SimulatedWork,
};

/// One check, as sent to the actor that owns the key.
pub(crate) struct CheckCall {
    /// The composite `(policy, key)` table key, owned because it crosses into another task.
    key: Box<[u8]>,
    policy: Policy,
    cost: u32,
}

/// The state owner: a key table, a clock, and optional simulated work, behind a mailbox.
pub(crate) struct TableActor {
    table: KeyTable,
    clock: Arc<dyn Clock>,
    simulated_work: Option<SimulatedWork>,
    sweep_interval: std::time::Duration,
    /// The table's size, published for `keys_tracked` without a round trip to the actor.
    keys: Arc<AtomicUsize>,
}

impl Actor for TableActor {
    type Call = CheckCall;
    type Reply = Result<Decision, CheckError>;

    async fn handle_call(&mut self, call: CheckCall) -> Self::Reply {
        if let Some(work) = self.simulated_work {
            work.perform().await;
        }
        // Time is read when the actor gets to the message, not when it was sent: a backlog
        // makes decisions late, exactly as with a GenServer.
        let result = self
            .table
            .check(&call.key, &call.policy, call.cost, self.clock.now_ns());
        self.keys.store(self.table.len(), Ordering::Relaxed);
        result
    }

    fn tick_interval(&self) -> Option<std::time::Duration> {
        Some(self.sweep_interval)
    }

    fn handle_tick(&mut self) {
        let removed = self.table.sweep_if_due(self.clock.now_ns());
        self.keys.store(self.table.len(), Ordering::Relaxed);
        if removed > 0 {
            tracing::debug!(removed, "swept expired keys");
        }
    }
}

/// One shard: its handle and the count of keys it holds.
struct Shard {
    actor: ActorRef<TableActor>,
    keys: Arc<AtomicUsize>,
}

/// The single-actor and sharded backends.
pub struct ActorBackend {
    kind: BackendKind,
    /// The registry: shard `i` serves every key whose stable hash maps to `i`.
    shards: Vec<Shard>,
    /// The running actor tasks, taken on shutdown. A std mutex: touched only at shutdown.
    tasks: Mutex<Vec<ActorTask>>,
}

impl ActorBackend {
    /// Starts `shards` actors (1 for the single-actor backend); must run inside a tokio runtime.
    pub fn start(config: &BackendConfig, shards: usize, clock: Arc<dyn Clock>) -> Self {
        let shards = shards.max(1);
        let kind = if shards == 1 && config.kind == BackendKind::Actor {
            BackendKind::Actor
        } else {
            BackendKind::Sharded
        };
        let mut handles = Vec::with_capacity(shards);
        let mut tasks = Vec::with_capacity(shards);
        for index in 0..shards {
            // Split max_keys exactly: the shards' caps add up to the configured total.
            let cap = config.max_keys / shards + usize::from(index < config.max_keys % shards);
            let keys = Arc::new(AtomicUsize::new(0));
            let actor = TableActor {
                table: KeyTable::new(cap.max(1), config.sweep_interval),
                clock: Arc::clone(&clock),
                simulated_work: config.simulated_work,
                sweep_interval: config.sweep_interval,
                keys: Arc::clone(&keys),
            };
            let (actor, task) = turnstile_actor::spawn(actor, config.mailbox, config.call_timeout);
            handles.push(Shard { actor, keys });
            tasks.push(task);
        }
        Self {
            kind,
            shards: handles,
            tasks: Mutex::new(tasks),
        }
    }

    /// How many shards (1 for the single actor).
    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns `key` under `policy`: stable for the life of the process and
    /// across restarts, since it depends only on the bytes and the shard count.
    pub fn shard_of(&self, key: &str, policy: &Policy) -> Result<usize, CheckError> {
        Ok(self.route(StateKey::new(policy.id(), key)?.as_bytes()))
    }

    /// Each shard's current mailbox depth, in shard order.
    pub fn mailbox_depths(&self) -> impl Iterator<Item = usize> + '_ {
        self.shards.iter().map(|shard| shard.actor.depth())
    }

    fn route(&self, state_key: &[u8]) -> usize {
        match self.shards.len() {
            1 => 0,
            // xxh3 with its fixed default seed: the same key maps to the same shard in every
            // process, which keeps shard-level experiments reproducible.
            n => (xxhash_rust::xxh3::xxh3_64(state_key) % n as u64) as usize,
        }
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
        let shard = &self.shards[self.route(state_key.as_bytes())];
        let call = CheckCall {
            key: state_key.as_bytes().into(),
            policy: *policy,
            cost,
        };
        CheckFuture::waiting(async move { shard.actor.call(call).await? })
    }

    fn keys_tracked(&self) -> usize {
        self.shards
            .iter()
            .map(|shard| shard.keys.load(Ordering::Relaxed))
            .sum()
    }

    fn is_ready(&self) -> bool {
        self.shards.iter().all(|shard| !shard.actor.is_closed())
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        let tasks = self
            .tasks
            .lock()
            .map(|mut tasks| std::mem::take(&mut *tasks))
            .unwrap_or_default();
        Box::pin(async move {
            for task in tasks {
                if let Err(error) = task.stop().await {
                    tracing::warn!(%error, "an actor ended abnormally during shutdown");
                }
            }
        })
    }
}
