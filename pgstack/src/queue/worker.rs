//! The worker runtime: claims jobs in batches, runs their handlers concurrently, and settles the
//! results in batches.
//!
//! Tasks of one running worker:
//!
//! - **claimer**: waits for free handler slots, claims up to that many jobs in one statement,
//!   spawns a task per job; when the queue runs dry it sleeps until a NOTIFY, the next scheduled
//!   job, or the poll interval, whichever comes first.
//! - **completer**: receives each job's outcome and writes them in batches: everything that
//!   finished while the previous batch was being written goes in the next statement. At low
//!   load that is one job per statement (no added latency); under load, hundreds.
//! - **heartbeat**: extends the leases of jobs running longer than a third of the visibility
//!   timeout, in one statement per beat; a lease found lost is counted.
//! - **listener** (unless poll-only): LISTEN on the queue's channel over a connection of its
//!   own (from [`Worker::listen_url`], else the pool's settings), never a pooled one; when
//!   that connection goes through a pooler or proxy, it logs so once and the worker polls.
//! - **maintenance** (queues with an archive): partition upkeep, hourly at most.
//!
//! A handler that returns an error, panics or exceeds the job timeout fails its attempt; the job
//! is retried with backoff or dead-lettered. Shutdown stops claiming, lets running jobs finish
//! until the deadline, then aborts the rest and releases their jobs so they are redelivered at
//! once (the attempt is not counted).

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

use super::{ClaimedJob, Failure, Job, JobToken, Queue};
use crate::error::{Error, Result};

/// What a handler returns on failure: any error, shown as the job's `last_error`.
pub type JobError = Box<dyn std::error::Error + Send + Sync + 'static>;

enum HandlerResult {
    Done,
    Failed(String),
    /// Can never succeed (the payload does not decode): dead-letter at once.
    Discard(String),
}

type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
type Handler = Arc<dyn Fn(ClaimedJob) -> HandlerFuture + Send + Sync>;

/// A typed job as its handler receives it.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery<J> {
    pub job: J,
    pub id: i64,
    /// 1 on the first delivery.
    pub attempt: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    /// The error of the previous attempt, if it failed.
    pub last_error: Option<String>,
}

/// Counters of a worker since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub claimed: u64,
    pub completed: u64,
    /// Attempts that failed (errors, panics, timeouts, unknown kinds).
    pub failed: u64,
    pub retried: u64,
    pub dead: u64,
    pub panicked: u64,
    pub timed_out: u64,
    /// Jobs given back at shutdown.
    pub released: u64,
    /// Completions or failures ignored because the job's lease had passed to another worker.
    pub stale: u64,
    /// Running jobs whose lease a heartbeat found taken.
    pub lost_leases: u64,
    /// Database errors (each retried or left to lease expiry).
    pub errors: u64,
}

#[derive(Default)]
struct Counters {
    claimed: AtomicU64,
    completed: AtomicU64,
    failed: AtomicU64,
    retried: AtomicU64,
    dead: AtomicU64,
    panicked: AtomicU64,
    timed_out: AtomicU64,
    released: AtomicU64,
    stale: AtomicU64,
    lost_leases: AtomicU64,
    errors: AtomicU64,
}

impl Counters {
    fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn snapshot(&self) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            claimed: get(&self.claimed),
            completed: get(&self.completed),
            failed: get(&self.failed),
            retried: get(&self.retried),
            dead: get(&self.dead),
            panicked: get(&self.panicked),
            timed_out: get(&self.timed_out),
            released: get(&self.released),
            stale: get(&self.stale),
            lost_leases: get(&self.lost_leases),
            errors: get(&self.errors),
        }
    }
}

enum Outcome {
    Complete(JobToken),
    Fail(Failure),
    Release(JobToken),
}

struct InFlight {
    attempt: i32,
    lease_until: Instant,
    abort: AbortHandle,
}

struct Shared {
    /// This worker's name in `pgstack_queue_waiters`.
    id: String,
    db: DatabaseConnection,
    queue: &'static Queue,
    handlers: HashMap<String, Handler>,
    config: Config,
    stats: Counters,
    inflight: Mutex<HashMap<i64, InFlight>>,
    /// Signalled by the listener (a job was enqueued) and at start.
    wake: Notify,
    /// Whether the listener is listening now: only then does the claimer register as a
    /// waiter (an insert would notify nobody otherwise).
    listening: AtomicBool,
    /// Signalled whenever the last in-flight job finishes.
    idle: Notify,
}

impl Shared {
    /// Counts a database error and reports it: the worker retries (or leaves the job to its
    /// lease), so the error is not returned to anyone.
    fn database_error(&self, during: &str, error: &str) {
        Counters::add(&self.stats.errors, 1);
        tracing::warn!(
            queue = self.queue.def().table,
            during,
            error,
            "pgstack worker: database error; retrying"
        );
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<i64, InFlight>> {
        // A handler cannot panic while holding this lock; recover the map if it ever did.
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Clone)]
struct Config {
    concurrency: usize,
    batch: usize,
    poll_interval: Duration,
    listen: bool,
    /// A direct (not pooled) URL for the LISTEN connection; else the pool's own settings.
    listen_url: Option<String>,
    job_timeout: Option<Duration>,
    heartbeat: bool,
    completion_batch: usize,
    maintenance_interval: Duration,
}

/// A worker for one queue, configured with handlers and limits, then [`Worker::start`]ed.
pub struct Worker {
    db: DatabaseConnection,
    queue: &'static Queue,
    handlers: HashMap<String, Handler>,
    problems: Vec<String>,
    config: Config,
}

impl Worker {
    /// A worker for `queue` with the defaults: 16 concurrent handlers, claims of up to 16,
    /// LISTEN/NOTIFY when the queue has it plus a 1s poll, a 5-minute job timeout.
    pub fn new(db: &DatabaseConnection, queue: &'static Queue) -> Worker {
        let maintenance = queue
            .def()
            .archive
            .map(|a| Duration::from_millis(a.partition_ms / 4))
            .unwrap_or(Duration::from_secs(3600))
            .clamp(Duration::from_secs(60), Duration::from_secs(3600));
        Worker {
            db: db.clone(),
            queue,
            handlers: HashMap::new(),
            problems: Vec::new(),
            config: Config {
                concurrency: 16,
                batch: 16,
                poll_interval: Duration::from_secs(1),
                listen: queue.def().notify_channel.is_some(),
                listen_url: None,
                job_timeout: Some(Duration::from_secs(300)),
                heartbeat: true,
                completion_batch: 1000,
                maintenance_interval: maintenance,
            },
        }
    }

    /// Runs `handler` for every job of type `J` (its [`Job::KIND`]).
    pub fn handle<J, F, Fut>(mut self, handler: F) -> Self
    where
        J: Job,
        F: Fn(Delivery<J>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
    {
        let (theirs, ours) = (J::queue().def(), self.queue.def());
        if (theirs.schema, theirs.table) != (ours.schema, ours.table) {
            self.problems.push(format!(
                "`{}` jobs belong to queue `{}`, but this worker runs queue `{}`",
                std::any::type_name::<J>(),
                theirs.table,
                ours.table
            ));
        }
        let handler = Arc::new(handler);
        let wrapped: Handler = Arc::new(move |job: ClaimedJob| {
            let handler = handler.clone();
            Box::pin(async move {
                let payload = match job.payload.decode::<J>() {
                    Ok(payload) => payload,
                    Err(e) => {
                        return HandlerResult::Discard(format!(
                            "the payload does not decode as `{}`: {e}",
                            std::any::type_name::<J>()
                        ));
                    }
                };
                let delivery = Delivery {
                    job: payload,
                    id: job.id,
                    attempt: job.attempt,
                    max_attempts: job.max_attempts,
                    created_at: job.created_at,
                    last_error: job.last_error,
                };
                match handler(delivery).await {
                    Ok(()) => HandlerResult::Done,
                    Err(e) => HandlerResult::Failed(e.to_string()),
                }
            })
        });
        self.register(J::KIND, wrapped);
        self
    }

    /// Runs `handler` for every job whose kind is `kind`, with the claimed job as is.
    pub fn handle_raw<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let wrapped: Handler = Arc::new(move |job: ClaimedJob| {
            let handler = handler.clone();
            Box::pin(async move {
                match handler(job).await {
                    Ok(()) => HandlerResult::Done,
                    Err(e) => HandlerResult::Failed(e.to_string()),
                }
            })
        });
        self.register(kind, wrapped);
        self
    }

    fn register(&mut self, kind: &str, handler: Handler) {
        if self.handlers.insert(kind.to_string(), handler).is_some() {
            self.problems
                .push(format!("two handlers for job kind `{kind}`; register one"));
        }
    }

    /// How many handlers run at once (default 16). Claims never exceed free slots.
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self.config.batch = self.config.batch.min(self.config.concurrency).max(1);
        self
    }

    /// The most jobs one claim takes (default: the concurrency).
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n.max(1);
        self
    }

    /// How long an idle worker waits before looking again when no NOTIFY arrives (default 1s).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.config.poll_interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Poll only, no LISTEN.
    pub fn poll_only(mut self) -> Self {
        self.config.listen = false;
        self
    }

    /// LISTEN on a connection opened with this URL, straight to PostgreSQL. Behind a
    /// transaction-mode pooler (PgBouncer) the pool's URL cannot carry LISTEN: the pooler hands
    /// the listening server connection to other clients. Without it, the worker listens on a
    /// connection of its own made with the pool's settings, and polls instead when that
    /// connection turns out to go through a pooler or proxy (it reaches a server whose port
    /// is not the one it dialled), saying so once in the log.
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.config.listen_url = Some(url.into());
        self
    }

    /// Fails an attempt that runs longer than this (default 5 minutes; `None`: no limit).
    pub fn job_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.config.job_timeout = timeout;
        self
    }

    /// Turns lease heartbeats off (then a job running past the visibility timeout is
    /// redelivered while it still runs).
    pub fn without_heartbeat(mut self) -> Self {
        self.config.heartbeat = false;
        self
    }

    /// Starts the worker's tasks on the current tokio runtime.
    pub fn start(self) -> Result<WorkerHandle> {
        let mut problems = self.problems;
        if self.handlers.is_empty() {
            problems.push("no handlers registered; add one with `handle` or `handle_raw`".into());
        }
        for (what, n) in [
            ("concurrency", self.config.concurrency),
            ("batch", self.config.batch),
        ] {
            if n > super::MAX_BATCH {
                problems.push(format!(
                    "{what} {n} is above {} (`pgstack::limits::MAX_BATCH`)",
                    super::MAX_BATCH
                ));
            }
        }
        if !problems.is_empty() {
            return Err(Error::InvalidArgument {
                facility: self.queue.def().table.to_string(),
                message: format!("the worker cannot start: {}", problems.join("; ")),
            });
        }
        static WORKERS: AtomicU64 = AtomicU64::new(0);
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            WORKERS.fetch_add(1, Ordering::Relaxed),
            Utc::now().timestamp_micros()
        );
        let shared = Arc::new(Shared {
            id,
            db: self.db,
            queue: self.queue,
            handlers: self.handlers,
            config: self.config,
            stats: Counters::default(),
            inflight: Mutex::new(HashMap::new()),
            wake: Notify::new(),
            listening: AtomicBool::new(false),
            idle: Notify::new(),
        });
        let (stop_claiming, claiming) = watch::channel(false);
        let (halt_tx, halt) = watch::channel(false);
        let (outcomes, outcomes_rx) = mpsc::unbounded_channel();
        let mut background = Vec::new();
        if shared.config.listen
            && let Some(channel) = shared.queue.def().notify_channel
        {
            background.push(tokio::spawn(listener(
                shared.clone(),
                channel,
                halt.clone(),
            )));
        }
        if shared.config.heartbeat {
            background.push(tokio::spawn(heartbeat(shared.clone(), halt.clone())));
        }
        if shared.queue.def().archive.is_some() {
            background.push(tokio::spawn(maintenance(shared.clone(), halt.clone())));
        }
        let completer = tokio::spawn(completer(shared.clone(), outcomes_rx));
        let claimer = tokio::spawn(claimer(shared.clone(), outcomes, claiming));
        Ok(WorkerHandle {
            shared,
            stop_claiming,
            halt: halt_tx,
            claimer,
            completer,
            background,
        })
    }
}

/// A running worker. Call [`WorkerHandle::shutdown`] to stop it cleanly.
pub struct WorkerHandle {
    shared: Arc<Shared>,
    stop_claiming: watch::Sender<bool>,
    halt: watch::Sender<bool>,
    claimer: JoinHandle<()>,
    completer: JoinHandle<()>,
    background: Vec<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Counters so far.
    pub fn stats(&self) -> WorkerStats {
        self.shared.stats.snapshot()
    }

    /// Jobs running right now.
    pub fn running(&self) -> usize {
        self.shared.inflight().len()
    }

    /// Stops claiming, waits up to `grace` for running jobs, aborts the rest and releases their
    /// jobs for immediate redelivery, writes every outcome, and returns the final counters.
    pub async fn shutdown(self, grace: Duration) -> WorkerStats {
        let _ = self.stop_claiming.send(true);
        let _ = self.claimer.await;
        // `Duration::MAX` means "wait for every job": a deadline that never comes.
        let deadline = Instant::now().checked_add(grace);
        loop {
            let idle = self.shared.idle.notified();
            if self.shared.inflight().is_empty() {
                break;
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left.is_some_and(|left| left.is_zero()) {
                for job in self.shared.inflight().values() {
                    job.abort.abort();
                }
                // Aborted jobs report a release; wait for that without a deadline.
                while !self.shared.inflight().is_empty() {
                    let idle = self.shared.idle.notified();
                    let _ = tokio::time::timeout(Duration::from_millis(50), idle).await;
                }
                break;
            }
            match left {
                Some(left) => {
                    let _ = tokio::time::timeout(left, idle).await;
                }
                None => idle.await,
            }
        }
        // Every job task has sent its outcome and dropped its sender; the completer drains them.
        let _ = self.completer.await;
        let _ = self.halt.send(true);
        for task in self.background {
            let _ = task.await;
        }
        self.shared.stats.snapshot()
    }
}

async fn claimer(
    shared: Arc<Shared>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(shared.config.concurrency));
    let mut failures = 0u32;
    // Registered in pgstack_queue_waiters (listening workers only): inserts NOTIFY us.
    let mut waiting_since: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let first = tokio::select! {
            permit = slots.clone().acquire_owned() => permit.ok(),
            _ = stop.changed() => None,
        };
        let Some(first) = first else { break };
        let mut permits = vec![first];
        while permits.len() < shared.config.batch {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => permits.push(permit),
                Err(_) => break,
            }
        }
        let asked = permits.len();
        let jobs = match shared.queue.claim(&shared.db, asked).await {
            Ok(jobs) => {
                failures = 0;
                jobs
            }
            Err(e) => {
                shared.database_error("claim", &e.to_string());
                failures = (failures + 1).min(6);
                drop(permits);
                // Back off 100ms, 200ms, ... 3.2s while the database is unavailable.
                let pause = Duration::from_millis(50 << failures);
                tokio::select! {
                    _ = tokio::time::sleep(pause) => {}
                    _ = stop.changed() => {}
                }
                continue;
            }
        };
        let got = jobs.len();
        Counters::add(&shared.stats.claimed, got);
        for job in jobs {
            let Some(permit) = permits.pop() else { break };
            spawn_job(&shared, job, permit, outcomes.clone());
        }
        drop(permits);
        if got == asked && waiting_since.is_some() {
            // Busy: leave the waiters so enqueues stop paying for NOTIFY.
            match shared.queue.wait_end(&shared.db, &shared.id).await {
                Ok(()) => waiting_since = None,
                Err(e) => shared.database_error("wait_end", &e.to_string()),
            }
        }
        if got < asked {
            if shared.listening.load(Ordering::Relaxed) {
                let stale = waiting_since.is_none_or(|at| at.elapsed() > Duration::from_secs(60));
                if stale {
                    // Register, then claim once more before blocking: a job committed after
                    // the registration notifies; one committed before it is claimed now.
                    match shared.queue.wait_start(&shared.db, &shared.id).await {
                        Ok(()) => {
                            let first = waiting_since.is_none();
                            waiting_since = Some(Instant::now());
                            if first {
                                continue;
                            }
                        }
                        Err(e) => shared.database_error("wait_start", &e.to_string()),
                    }
                }
            }
            let wait = idle_wait(&shared, got).await;
            tokio::select! {
                _ = shared.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = stop.changed() => {}
            }
        }
    }
    if waiting_since.is_some() {
        // Left registered, the row only costs inserts a NOTIFY until it goes stale (60s).
        if let Err(e) = shared.queue.wait_end(&shared.db, &shared.id).await {
            shared.database_error("wait_end", &e.to_string());
        }
    }
}

/// How long an idle claimer sleeps: the poll interval, or less when a scheduled job is due
/// sooner (only asked when the last claim found nothing).
async fn idle_wait(shared: &Shared, got: usize) -> Duration {
    let poll = shared.config.poll_interval;
    if got > 0 || shared.queue.def().priorities {
        return if got > 0 { Duration::ZERO } else { poll };
    }
    match shared.queue.next_visible_at(&shared.db).await {
        Ok(Some(at)) => {
            let until = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            until.clamp(Duration::from_millis(1), poll)
        }
        Ok(None) => poll,
        Err(e) => {
            shared.database_error("next_visible_at", &e.to_string());
            poll
        }
    }
}

fn spawn_job(
    shared: &Arc<Shared>,
    job: ClaimedJob,
    permit: OwnedSemaphorePermit,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    let token = job.token();
    let max_attempts = job.max_attempts;
    let failure = move |error: String, discard: bool| {
        Outcome::Fail(Failure {
            token,
            max_attempts,
            error,
            discard,
        })
    };
    let handler = shared.handlers.get(&job.kind).cloned();
    let early = match &handler {
        None => Some(failure(
            format!("no handler for job kind `{}` on this worker", job.kind),
            false,
        )),
        // The previous worker ran the last attempt and vanished (its lease expired).
        Some(_) if job.attempt > job.max_attempts => Some(failure(
            format!(
                "the lease of attempt {} expired before it finished (worker crashed or stalled); \
                 last error: {}",
                job.max_attempts,
                job.last_error.as_deref().unwrap_or("none")
            ),
            true,
        )),
        Some(_) => None,
    };
    if let Some(outcome) = early {
        Counters::add(&shared.stats.failed, 1);
        let _ = outcomes.send(outcome);
        drop(permit);
        return;
    }
    let Some(handler) = handler else { return };
    // Run the handler in a task of its own: a panic ends that task, not the worker.
    let mut task = tokio::spawn(handler(job));
    shared.inflight().insert(
        token.id,
        InFlight {
            attempt: token.attempt,
            lease_until: Instant::now() + shared.queue.def().visibility_timeout(),
            abort: task.abort_handle(),
        },
    );
    let shared = shared.clone();
    tokio::spawn(async move {
        let joined = match shared.config.job_timeout {
            Some(limit) => match tokio::time::timeout(limit, &mut task).await {
                Ok(joined) => Some(joined),
                Err(_) => {
                    task.abort();
                    None
                }
            },
            None => Some((&mut task).await),
        };
        let stats = &shared.stats;
        let outcome = match joined {
            None => {
                Counters::add(&stats.timed_out, 1);
                Counters::add(&stats.failed, 1);
                let limit = shared.config.job_timeout.unwrap_or_default();
                failure(format!("timed out after {limit:?}"), false)
            }
            Some(Ok(HandlerResult::Done)) => Outcome::Complete(token),
            Some(Ok(HandlerResult::Failed(error))) => {
                Counters::add(&stats.failed, 1);
                failure(error, false)
            }
            Some(Ok(HandlerResult::Discard(error))) => {
                Counters::add(&stats.failed, 1);
                failure(error, true)
            }
            Some(Err(e)) if e.is_panic() => {
                Counters::add(&stats.panicked, 1);
                Counters::add(&stats.failed, 1);
                let panic = e.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".to_string());
                failure(format!("the handler panicked: {message}"), false)
            }
            // Aborted at shutdown: give the job back.
            Some(Err(_)) => Outcome::Release(token),
        };
        let _ = outcomes.send(outcome);
        let now_idle = {
            let mut inflight = shared.inflight();
            inflight.remove(&token.id);
            inflight.is_empty()
        };
        if now_idle {
            shared.idle.notify_waiters();
        }
        drop(permit);
    });
}

async fn completer(shared: Arc<Shared>, mut outcomes: mpsc::UnboundedReceiver<Outcome>) {
    let mut batch = Vec::new();
    while let Some(first) = outcomes.recv().await {
        batch.push(first);
        while batch.len() < shared.config.completion_batch {
            match outcomes.try_recv() {
                Ok(outcome) => batch.push(outcome),
                Err(_) => break,
            }
        }
        settle(&shared, &mut batch).await;
    }
}

/// Writes a batch of outcomes: at most one statement each for completions, retries,
/// dead letters and releases. A database error is retried a few times; after that the jobs'
/// leases expire and they are redelivered.
async fn settle(shared: &Shared, batch: &mut Vec<Outcome>) {
    let mut done = Vec::new();
    let mut failed = Vec::new();
    let mut released = Vec::new();
    for outcome in batch.drain(..) {
        match outcome {
            Outcome::Complete(token) => done.push(token),
            Outcome::Fail(failure) => failed.push(failure),
            Outcome::Release(token) => released.push(token),
        }
    }
    let (queue, db, stats) = (shared.queue, &shared.db, &shared.stats);
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let result: Result<()> = async {
            if !done.is_empty() {
                let completed = queue.complete(db, &done).await?;
                Counters::add(&stats.completed, completed.len());
                Counters::add(&stats.stale, done.len() - completed.len());
                done.clear();
            }
            if !failed.is_empty() {
                let report = queue.fail(db, &failed).await?;
                Counters::add(&stats.retried, report.retried.len());
                Counters::add(&stats.dead, report.dead.len());
                let settled = report.retried.len() + report.dead.len();
                Counters::add(&stats.stale, failed.len().saturating_sub(settled));
                failed.clear();
            }
            if !released.is_empty() {
                let back = queue.release(db, &released).await?;
                Counters::add(&stats.released, back.len());
                released.clear();
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => shared.database_error("settle", &e.to_string()),
        }
    }
}

async fn heartbeat(shared: Arc<Shared>, mut halt: watch::Receiver<bool>) {
    let lease = shared.queue.def().visibility_timeout();
    let beat = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::select! {
            _ = tokio::time::sleep(beat) => {}
            _ = halt.changed() => return,
        }
        // Extend the leases that would run out before the beat after next.
        let horizon = Instant::now() + beat * 2;
        let due: Vec<JobToken> = shared
            .inflight()
            .iter()
            .filter(|(_, job)| job.lease_until <= horizon)
            .map(|(id, job)| JobToken {
                id: *id,
                attempt: job.attempt,
            })
            .collect();
        if due.is_empty() {
            continue;
        }
        match shared.queue.extend_lease(&shared.db, &due, None).await {
            Ok(held) => {
                let until = Instant::now() + lease;
                let mut inflight = shared.inflight();
                for id in &held {
                    if let Some(job) = inflight.get_mut(id) {
                        job.lease_until = until;
                    }
                }
                drop(inflight);
                Counters::add(&shared.stats.lost_leases, due.len() - held.len());
            }
            Err(e) => shared.database_error("extend_lease", &e.to_string()),
        }
    }
}

async fn listener(shared: Arc<Shared>, channel: &'static str, mut halt: watch::Receiver<bool>) {
    use sea_orm::sqlx::postgres::{PgConnectOptions, PgListener, PgPoolOptions};
    let table = shared.queue.def().table;
    let options: PgConnectOptions = match &shared.config.listen_url {
        Some(url) => match url.parse() {
            Ok(options) => options,
            Err(e) => {
                tracing::error!(queue = table, error = %e, "pgstack worker: `listen_url` is not a PostgreSQL URL; polling instead of listening");
                return;
            }
        },
        None => (*shared.db.get_postgres_connection_pool().connect_options()).clone(),
    };
    // A pool of one of its own: LISTEN state never reaches the application's pool.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .min_connections(0)
        .max_lifetime(None)
        .idle_timeout(None)
        .connect_lazy_with(options.clone());
    let mut failures = 0u32;
    loop {
        let connected = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            // LISTEN through a transaction pooler reaches a server connection the pooler then
            // gives to other clients: only listen where the server is the one we dialled.
            let row: (Option<i32>,) = sea_orm::sqlx::query_as("SELECT inet_server_port()")
                .fetch_one(&mut listener)
                .await?;
            let direct = options.get_socket().is_some()
                || row.0.is_none()
                || row.0 == Some(i32::from(options.get_port()));
            if !direct {
                return Ok(Err((options.get_port(), row.0.unwrap_or_default())));
            }
            listener.listen(channel).await?;
            Ok::<_, sea_orm::sqlx::Error>(Ok(listener))
        }
        .await;
        let mut listener = match connected {
            Ok(Ok(listener)) => listener,
            Ok(Err((dialled, server))) => {
                tracing::warn!(
                    queue = table,
                    dialled_port = dialled,
                    server_port = server,
                    poll_interval_ms = shared.config.poll_interval.as_millis() as u64,
                    "pgstack worker: the LISTEN connection goes through a pooler or proxy (it \
                     dialled port {dialled}, the server listens on {server}); polling instead. \
                     Give the worker a direct URL with `listen_url` for NOTIFY wake-ups"
                );
                pool.close().await;
                return;
            }
            Err(e) => {
                shared.database_error("listen", &e.to_string());
                failures = (failures + 1).min(5);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200 << failures)) => continue,
                    _ = halt.changed() => return,
                }
            }
        };
        failures = 0;
        shared.listening.store(true, Ordering::Relaxed);
        // Anything enqueued while we were not listening is found by this wake-up.
        shared.wake.notify_one();
        loop {
            tokio::select! {
                received = listener.recv() => match received {
                    Ok(_) => shared.wake.notify_one(),
                    Err(e) => {
                        shared.listening.store(false, Ordering::Relaxed);
                        shared.database_error("listen", &e.to_string());
                        break;
                    }
                },
                _ = halt.changed() => {
                    shared.listening.store(false, Ordering::Relaxed);
                    drop(listener);
                    pool.close().await;
                    return;
                }
            }
        }
    }
}

async fn maintenance(shared: Arc<Shared>, mut halt: watch::Receiver<bool>) {
    loop {
        if let Err(e) = shared.queue.maintain(&shared.db).await {
            shared.database_error("maintain", &e.to_string());
        }
        tokio::select! {
            _ = tokio::time::sleep(shared.config.maintenance_interval) => {}
            _ = halt.changed() => return,
        }
    }
}
