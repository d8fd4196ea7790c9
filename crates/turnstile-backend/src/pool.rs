//! The check pool: a bounded set of worker actors between the gateway and a backend, each
//! handling one check at a time (the Poolboy remedy of the seed articles), managed by
//! `deadpool`.
//!
//! - **Where the state lives.** Workers hold no rate-limit state: they *front* the backend
//!   behind them. In front of the concurrent map they are the only tasks touching the shared
//!   table, so a worker that dies (an injected poison panics inside it) loses exactly the one
//!   check it was running, while every other worker keeps serving and no key loses its state.
//!   In front of the single actor the pool cannot save the actor's mailbox (the state still
//!   lives in one process); what it does there is bound how many callers can queue in that
//!   mailbox to the pool's size, and make the rest wait (or be shed) in the pool instead.
//! - **Supervision.** `deadpool` recycles a worker before handing it out again; a dead one is
//!   discarded and a fresh one created in its place. Replacements obey the same restart
//!   intensity as supervised actors: too many within the window and the pool is failed
//!   (checks get `unavailable`) until its cool-off ends.
//! - **Bounded waiting.** A caller waits at most `wait_timeout` for a worker
//!   (`pool_timeout`); a wait timeout of zero sheds at once when every worker is busy.
//!   Workers are handed out LIFO, so a lightly loaded pool keeps reusing its warmest workers.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use deadpool::Runtime;
use deadpool::managed::{
    self, Manager, PoolError, QueueMode, RecycleError, RecycleResult, Timeouts,
};
use tokio::time::Instant;
use turnstile_actor::{Actor, ActorRef, ActorTask, MailboxConfig, RestartWindow, SupervisorConfig};
use turnstile_core::{Decision, Policy};

use crate::status::{BackendObserver, BackendStatus, KillError, KillTarget, PoolStatus};
use crate::{Backend, BackendKind, BoxFuture, CheckError, CheckFuture};

/// The pool's shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolConfig {
    /// Workers, all created at start-up.
    pub size: usize,
    /// How long a caller waits for a free worker; zero sheds at once.
    pub wait_timeout: Duration,
}

impl PoolConfig {
    /// How long a caller waits for a free worker unless configured otherwise.
    pub const DEFAULT_WAIT_TIMEOUT: Duration = Duration::from_secs(1);
}

/// One check handed to a worker.
pub(crate) struct WorkerCall {
    key: Box<str>,
    policy: Policy,
    cost: u32,
}

/// A worker: runs the backend's check for one caller at a time.
pub(crate) struct CheckWorker {
    inner: Arc<dyn Backend>,
}

impl Actor for CheckWorker {
    type Call = WorkerCall;
    type Reply = Result<Decision, CheckError>;

    async fn handle_call(&mut self, call: WorkerCall) -> Self::Reply {
        self.inner.check(&call.key, &call.policy, call.cost).await
    }
}

/// A pooled worker: its handle and its task.
pub(crate) struct Worker {
    actor: ActorRef<CheckWorker>,
    task: ActorTask,
}

/// Worker deaths and the pool's failed state.
struct Health {
    backend: BackendKind,
    observer: Arc<dyn BackendObserver>,
    replaced: AtomicU64,
    /// Restart intensity and the end of the current cool-off. A std mutex: held only for a
    /// few instructions, never across an `.await`.
    window: Mutex<(RestartWindow, Option<Instant>)>,
    failed: AtomicBool,
    cool_off: Duration,
}

impl Health {
    fn worker_died(&self) {
        self.replaced.fetch_add(1, Ordering::Relaxed);
        self.observer.pool_worker_replaced(self.backend);
        tracing::warn!(backend = %self.backend, "pool worker died; replacing it");
        let Ok(mut guard) = self.window.lock() else {
            return;
        };
        let now = Instant::now();
        if guard.0.record(now).is_none() {
            guard.1 = Some(now + self.cool_off);
            self.failed.store(true, Ordering::Release);
            self.observer.pool_failed(self.backend, true);
            tracing::error!(backend = %self.backend, "pool restart intensity exceeded: pool failed");
        }
    }

    /// Whether the pool is failed now (re-arming it once its cool-off has passed).
    fn is_failed(&self) -> bool {
        if !self.failed.load(Ordering::Acquire) {
            return false;
        }
        let Ok(mut guard) = self.window.lock() else {
            return true;
        };
        match guard.1 {
            Some(until) if Instant::now() < until => true,
            _ => {
                guard.1 = None;
                guard.0.clear();
                self.failed.store(false, Ordering::Release);
                self.observer.pool_failed(self.backend, false);
                tracing::info!(backend = %self.backend, "pool cool-off over: re-armed");
                false
            }
        }
    }
}

pub(crate) struct WorkerManager {
    inner: Arc<dyn Backend>,
    call_timeout: Duration,
    health: Arc<Health>,
}

impl Manager for WorkerManager {
    type Type = Worker;
    type Error = CheckError;

    async fn create(&self) -> Result<Worker, CheckError> {
        let worker = CheckWorker {
            inner: Arc::clone(&self.inner),
        };
        // A mailbox of one: the pool, not the worker, is where callers wait.
        let (actor, task) =
            turnstile_actor::spawn(worker, MailboxConfig::bounded(1), self.call_timeout);
        Ok(Worker { actor, task })
    }

    async fn recycle(
        &self,
        worker: &mut Worker,
        _: &managed::Metrics,
    ) -> RecycleResult<CheckError> {
        if worker.actor.is_closed() {
            self.health.worker_died();
            return Err(RecycleError::message("worker died"));
        }
        Ok(())
    }
}

/// A backend behind a pool of check workers.
pub(crate) struct PooledBackend {
    inner: Arc<dyn Backend>,
    pool: managed::Pool<WorkerManager>,
    health: Arc<Health>,
}

impl PooledBackend {
    /// Puts `inner` behind a pool of `config.size` workers and fills it (inside a tokio runtime).
    pub(crate) fn start(
        inner: Arc<dyn Backend>,
        config: PoolConfig,
        call_timeout: Duration,
        supervision: &SupervisorConfig,
        observer: Arc<dyn BackendObserver>,
    ) -> Result<Self, crate::BuildError> {
        let health = Arc::new(Health {
            backend: inner.kind(),
            observer,
            replaced: AtomicU64::new(0),
            window: Mutex::new((
                RestartWindow::new(supervision.max_restarts, supervision.window),
                None,
            )),
            failed: AtomicBool::new(false),
            cool_off: supervision.cool_off,
        });
        let manager = WorkerManager {
            inner: Arc::clone(&inner),
            call_timeout,
            health: Arc::clone(&health),
        };
        let pool = managed::Pool::builder(manager)
            .max_size(config.size)
            .queue_mode(QueueMode::Lifo)
            .wait_timeout(Some(config.wait_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|error| crate::BuildError::Pool(error.to_string()))?;
        // Fill at start-up: every worker exists before the first check arrives.
        let filler = pool.clone();
        tokio::spawn(async move {
            let mut workers = Vec::with_capacity(config.size);
            for _ in 0..config.size {
                match filler.get().await {
                    Ok(worker) => workers.push(worker),
                    Err(error) => {
                        tracing::error!(%error, "could not fill the check pool");
                        break;
                    }
                }
            }
        });
        Ok(Self {
            inner,
            pool,
            health,
        })
    }
}

impl Backend for PooledBackend {
    fn kind(&self) -> BackendKind {
        self.inner.kind()
    }

    fn check<'a>(&'a self, key: &'a str, policy: &'a Policy, cost: u32) -> CheckFuture<'a> {
        CheckFuture::waiting(async move {
            if self.health.is_failed() {
                return Err(CheckError::Unavailable);
            }
            let worker = self.pool.get().await.map_err(|error| match error {
                PoolError::Timeout(_) => CheckError::PoolTimeout,
                _ => CheckError::Unavailable,
            })?;
            let call = WorkerCall {
                key: key.into(),
                policy: *policy,
                cost,
            };
            worker.actor.call(call).await?
        })
    }

    fn keys_tracked(&self) -> usize {
        self.inner.keys_tracked()
    }

    fn is_ready(&self) -> bool {
        !self.health.is_failed() && self.inner.is_ready()
    }

    fn status(&self) -> BackendStatus {
        let pool = self.pool.status();
        BackendStatus {
            pool: Some(PoolStatus {
                max_size: pool.max_size,
                size: pool.size,
                available: pool.available,
                waiting: pool.waiting,
                replaced: self.health.replaced.load(Ordering::Relaxed),
                failed: self.health.is_failed(),
            }),
            ..self.inner.status()
        }
    }

    fn kill(&self, target: KillTarget) -> BoxFuture<'_, Result<(), KillError>> {
        match target {
            KillTarget::PoolWorker => Box::pin(async move {
                let idle_only = Timeouts {
                    wait: Some(Duration::ZERO),
                    ..Timeouts::default()
                };
                let worker = self
                    .pool
                    .timeout_get(&idle_only)
                    .await
                    .map_err(|_| KillError::NoIdleWorker)?;
                worker.task.abort();
                Ok(())
            }),
            target => self.inner.kill(target),
        }
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        self.pool.close();
        self.inner.shutdown()
    }
}
