//! The worker runtime: claims jobs in batches, runs their handlers concurrently, and settles the
//! results in batches.
//!
//! Tasks of one running worker:
//!
//! - **claimer** (`claimer.rs`): keeps up to `concurrency + prefetch` jobs leased to this
//!   worker, the running ones and a local buffer it refills in one statement; starts a
//!   buffered job in each free handler slot; when the queue runs dry (or is paused) it sleeps
//!   until a NOTIFY, the next scheduled job, or the poll interval, whichever comes first.
//! - **jobs** (`job.rs`): each handler in a task of its own, with its timeout and its
//!   [`Cancellation`].
//! - **completer** (`completer.rs`): receives each job's outcome and writes them in batches
//!   (a transactional handler's job, `tx.rs`, is completed in the handler's own transaction).
//! - **heartbeat**, **listener**, **maintenance**, **scheduler**, **sampler**
//!   (`background.rs`): lease extension (a lost lease cancels the handler), LISTEN on a
//!   connection of its own (from [`Worker::listen_url`], else the pool's settings; never a
//!   pooled one, polling instead behind a pooler), archive upkeep, the schedules' ticks
//!   (`schedule.rs`: each once across all workers), and the queue-depth gauges.
//!
//! A handler that returns an error, panics or exceeds the job timeout fails its attempt; the job
//! is retried with backoff or dead-lettered. Shutdown stops claiming, releases the buffered
//! jobs at once, lets running jobs finish until the deadline, then aborts the rest and releases their jobs so they are redelivered at
//! once (the attempt is not counted).
//!
//! Everything a worker meets goes to `tracing` (target `pgstack::queue::worker`): its start
//! and stop at INFO, retries at INFO, dead letters, lost leases, panics and lost connections
//! at WARN, a missing table or a read-only database at ERROR, repeated for as long as it lasts.

mod background;
mod claimer;
mod completer;
mod job;
mod stats;
mod tx;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use sea_orm::{ConnectionTrait, DatabaseConnection};
use tokio::sync::{Notify, mpsc, watch};
use tokio::task::{AbortHandle, JoinHandle};

pub use self::job::{Cancellation, Delivery, JobCancel, JobError, JobSnooze};
use self::job::{Canceller, Handler, HandlerResult};
use self::stats::Counters;
pub use self::stats::WorkerStats;
pub use self::tx::JobTx;
use super::{ClaimedJob, Job, Queue};
use crate::error::{Error, Result, pg_error};
use crate::sql::stmt;

pub(super) struct InFlight {
    attempt: i32,
    lease_until: Instant,
    /// The running handler's task; `None` while the job waits in the claimer's buffer.
    abort: Option<AbortHandle>,
    /// Cancels the handler (lost lease, or `Queue::cancel`).
    cancel: Canceller,
}

pub(super) struct Shared {
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
    /// Counts and reports a database error the worker retries (or leaves to the job's lease):
    /// it is returned to no one, so it is logged here, at a level that says how bad it is.
    fn database_error(&self, during: &str, error: &Error) {
        let table = self.queue.def().table;
        let message = error.to_string();
        Counters::add(&self.stats.errors, 1);
        self.stats.set_last_error(message.clone());
        crate::metrics::queue_worker_error(table, during);
        let code = match error {
            Error::Database { cause, .. } => pg_error(cause).map(|e| e.code().to_string()),
            _ => None,
        };
        match code.as_deref() {
            // undefined_table, undefined_column, undefined_function: not migrated.
            Some("42P01" | "42703" | "42883") => tracing::error!(
                queue = table,
                during,
                error = %message,
                "pgstack worker: the queue's tables are missing or out of date; run `pgstack-gen migrate`"
            ),
            // read_only_sql_transaction: pointed at a hot standby.
            Some("25006") => tracing::error!(
                queue = table,
                during,
                error = %message,
                "pgstack worker: the database is read-only (a hot standby?); give the worker the primary"
            ),
            Some(_) => {
                tracing::warn!(queue = table, during, error = %message, "pgstack worker: database error; retrying")
            }
            None => {
                tracing::warn!(queue = table, during, error = %message, "pgstack worker: lost the database connection; retrying")
            }
        }
    }

    /// A connection the worker opens itself (the listener) failed.
    fn connection_error(&self, during: &str, error: &str) {
        let table = self.queue.def().table;
        Counters::add(&self.stats.errors, 1);
        self.stats.set_last_error(error.to_string());
        crate::metrics::queue_worker_error(table, during);
        tracing::warn!(
            queue = table,
            during,
            error,
            "pgstack worker: lost the LISTEN connection; reconnecting (claims go on by polling)"
        );
    }

    fn inflight(&self) -> std::sync::MutexGuard<'_, HashMap<i64, InFlight>> {
        // A handler cannot panic while holding this lock; recover the map if it ever did.
        self.inflight.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A queue as the workers of one process share things per queue: its schema and table.
type QueueKey = (&'static str, &'static str);

fn queue_key(queue: &Queue) -> QueueKey {
    (queue.def().schema, queue.def().table)
}

/// The most jobs a worker holds beyond its running ones unless told otherwise
/// ([`Worker::prefetch`]); the buffer is paced below this to the rate jobs start.
const DEFAULT_PREFETCH: usize = 1024;

#[derive(Clone)]
struct Config {
    concurrency: usize,
    /// Claimed jobs held in the local buffer beyond the running ones: the most, when `paced`.
    prefetch: usize,
    /// Size the buffer to the rate jobs start (`claimer::Pace`) rather than hold `prefetch`.
    paced: bool,
    /// The most jobs one claim statement takes (resolved at start: `concurrency + prefetch`
    /// unless set).
    batch: usize,
    batch_set: bool,
    poll_interval: Duration,
    listen: bool,
    /// A direct (not pooled) URL for the LISTEN connection; else the pool's own settings.
    listen_url: Option<String>,
    job_timeout: Option<Duration>,
    /// Per-kind timeouts, in place of `job_timeout` for those kinds.
    kind_timeouts: HashMap<String, Option<Duration>>,
    heartbeat: bool,
    completion_batch: usize,
    maintenance_interval: Duration,
    metrics_interval: Duration,
    /// Enqueue the queue's schedule ticks (`schedules = [..]` in the spec).
    schedules: bool,
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
    /// A worker for `queue` with the defaults: 16 concurrent handlers, a buffer of prefetched
    /// jobs paced to about 250 ms of work (16 to 1,024 jobs, claims of up to 1,040), LISTEN/NOTIFY
    /// when the queue has it plus a 1s poll, a 5-minute job timeout.
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
                prefetch: DEFAULT_PREFETCH,
                paced: true,
                batch: 16 + DEFAULT_PREFETCH,
                batch_set: false,
                poll_interval: Duration::from_secs(1),
                listen: queue.def().notify_channel.is_some(),
                listen_url: None,
                job_timeout: Some(Duration::from_secs(300)),
                kind_timeouts: HashMap::new(),
                heartbeat: true,
                completion_batch: 1000,
                maintenance_interval: maintenance,
                metrics_interval: Duration::from_secs(5),
                schedules: true,
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
        self.check_queue::<J>();
        let handler = Arc::new(handler);
        let wrapped: Handler = Arc::new(move |job: ClaimedJob, cancel: Cancellation| {
            let handler = handler.clone();
            Box::pin(async move {
                let delivery = match delivery::<J>(job, cancel) {
                    Ok(delivery) => delivery,
                    Err(discard) => return discard,
                };
                match handler(delivery).await {
                    Ok(()) => HandlerResult::Done,
                    Err(e) => HandlerResult::from_error(e),
                }
            })
        });
        self.register(J::KIND, wrapped);
        self
    }

    /// Notes a problem (reported by `start`) when `J` belongs to another queue.
    fn check_queue<J: Job>(&mut self) {
        let (theirs, ours) = (J::queue().def(), self.queue.def());
        if (theirs.schema, theirs.table) != (ours.schema, ours.table) {
            self.problems.push(format!(
                "`{}` jobs belong to queue `{}`, but this worker runs queue `{}`",
                std::any::type_name::<J>(),
                theirs.table,
                ours.table
            ));
        }
    }

    /// Runs `handler` for every job of type `J` inside a transaction that also completes the
    /// job: the handler writes through the [`JobTx`] it is given and returns it; the worker
    /// then deletes (or archives) the job in that transaction and commits. The handler's writes
    /// and the job's completion commit together or not at all, so its effects in this database
    /// happen exactly once, across crashes, lost leases and redeliveries (a stale delivery
    /// rolls back). An error, panic or timeout rolls the writes back and retries the job.
    /// Effects outside the database (an email, an HTTP call) stay at least once.
    ///
    /// Each job takes a transaction of its own (BEGIN, the handler's statements, the
    /// completion, COMMIT) instead of the batched completions of [`Worker::handle`].
    pub fn handle_tx<J, F, Fut>(mut self, handler: F) -> Self
    where
        J: Job,
        F: Fn(Delivery<J>, JobTx) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<JobTx, JobError>> + Send + 'static,
    {
        self.check_queue::<J>();
        let handler = Arc::new(handler);
        let (db, queue) = (self.db.clone(), self.queue);
        let wrapped: Handler = Arc::new(move |job: ClaimedJob, cancel: Cancellation| {
            let (handler, db) = (handler.clone(), db.clone());
            Box::pin(async move {
                let token = job.token();
                let delivery = match delivery::<J>(job, cancel) {
                    Ok(delivery) => delivery,
                    Err(discard) => return discard,
                };
                let tx = match tx::begin(&db).await {
                    Ok(tx) => tx,
                    Err(error) => return HandlerResult::Failed(error),
                };
                match handler(delivery, tx).await {
                    Ok(tx) => tx::settle(queue, tx, token).await,
                    Err(e) => HandlerResult::from_error(e),
                }
            })
        });
        self.register(J::KIND, wrapped);
        self
    }

    /// Runs `handler` for every job whose kind is `kind`, with the claimed job as is (its
    /// cancellation through [`Cancellation::current`]).
    pub fn handle_raw<F, Fut>(mut self, kind: &str, handler: F) -> Self
    where
        F: Fn(ClaimedJob) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::result::Result<(), JobError>> + Send + 'static,
    {
        let handler = Arc::new(handler);
        let wrapped: Handler = Arc::new(move |job: ClaimedJob, _cancel: Cancellation| {
            let handler = handler.clone();
            Box::pin(async move {
                match handler(job).await {
                    Ok(()) => HandlerResult::Done,
                    Err(e) => HandlerResult::from_error(e),
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

    /// How many handlers run at once (default 16).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.config.concurrency = n.max(1);
        self
    }

    /// Fixes how many claimed jobs the worker holds in a local buffer beyond the running ones,
    /// so a free handler slot starts its next job without a round trip and one claim statement
    /// serves many jobs. By default the buffer is paced: it holds about 250 ms of work at the
    /// rate jobs have been starting, from one job per handler slot up to 1,024, so fast
    /// handlers get large claims and a job queued behind slow ones (or with a higher priority)
    /// waits at most about that long in a buffer. Buffered jobs are leased to this worker: the
    /// heartbeat extends their leases, a cancellation drops them before they start, and
    /// shutdown releases them at once for other workers. `0` claims only for free slots (the
    /// fairest spread of a small backlog over many workers).
    pub fn prefetch(mut self, n: usize) -> Self {
        self.config.prefetch = n;
        self.config.paced = false;
        self
    }

    /// The most jobs one claim statement takes (default: concurrency + prefetch).
    pub fn batch(mut self, n: usize) -> Self {
        self.config.batch = n.max(1);
        self.config.batch_set = true;
        self
    }

    /// How long an idle worker waits before looking again when no NOTIFY arrives (default 1s).
    /// A paused queue is looked at again within this long of being resumed.
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

    /// The timeout of jobs of `kind` (e.g. `Report::KIND`), in place of
    /// [`Worker::job_timeout`] for them (`None`: no limit for that kind).
    pub fn kind_timeout(mut self, kind: &str, timeout: Option<Duration>) -> Self {
        self.config.kind_timeouts.insert(kind.to_string(), timeout);
        self
    }

    /// Turns lease heartbeats off (then a job running past the visibility timeout is
    /// redelivered while it still runs, and a cancelled running job's handler is told only
    /// through NOTIFY).
    pub fn without_heartbeat(mut self) -> Self {
        self.config.heartbeat = false;
        self
    }

    /// Leaves the queue's `schedules` to other processes: by default every worker enqueues
    /// the ticks that fall due (each tick once, whichever worker takes it).
    pub fn without_schedules(mut self) -> Self {
        self.config.schedules = false;
        self
    }

    /// How often the queue-depth gauges are read (default 5s).
    pub fn metrics_interval(mut self, interval: Duration) -> Self {
        self.config.metrics_interval = interval.max(Duration::from_millis(100));
        self
    }

    /// Checks the worker's configuration and its database, then starts its tasks on the
    /// current tokio runtime. Fails, naming what to do, when the queue's table does not exist
    /// (its migration has not been applied) or the database is a read-only standby.
    pub async fn start(mut self) -> Result<WorkerHandle> {
        let table = self.queue.def().table;
        if !self.config.batch_set {
            self.config.batch = self.config.concurrency + self.config.prefetch;
        }
        let mut problems = self.problems;
        if self.handlers.is_empty() {
            problems.push("no handlers registered; add one with `handle` or `handle_raw`".into());
        }
        for (what, n) in [
            ("concurrency", self.config.concurrency),
            ("prefetch", self.config.prefetch),
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
                facility: table.to_string(),
                message: format!("the worker cannot start: {}", problems.join("; ")),
            });
        }
        let schedules = super::schedule::Schedules::new(self.queue)?;
        check_database(&self.db, self.queue).await?;
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
        let listening = shared.config.listen && shared.queue.def().notify_channel.is_some();
        if listening && let Some(channel) = shared.queue.def().notify_channel {
            background.push(tokio::spawn(background::listener(
                shared.clone(),
                channel,
                halt.clone(),
            )));
        }
        if shared.config.heartbeat {
            background.push(tokio::spawn(background::heartbeat(
                shared.clone(),
                halt.clone(),
            )));
        }
        if shared.queue.def().archive.is_some() {
            background.push(tokio::spawn(background::maintenance(
                shared.clone(),
                halt.clone(),
            )));
        }
        if shared.config.schedules && !schedules.is_empty() {
            background.push(tokio::spawn(background::scheduler(
                shared.clone(),
                schedules,
                halt.clone(),
            )));
        }
        background.push(tokio::spawn(background::sampler(
            shared.clone(),
            halt.clone(),
        )));
        tracing::info!(
            queue = table,
            worker = %shared.id,
            concurrency = shared.config.concurrency,
            prefetch = shared.config.prefetch,
            prefetch_paced = shared.config.paced,
            batch = shared.config.batch,
            wake_up = if listening { "notify" } else { "poll" },
            poll_interval_ms = shared.config.poll_interval.as_millis() as u64,
            "pgstack worker: started"
        );
        let completer = tokio::spawn(completer::completer(shared.clone(), outcomes_rx));
        let claimer = tokio::spawn(claimer::claimer(shared.clone(), outcomes, claiming));
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

/// Decodes a claimed job for a typed handler; a payload that does not decode can never
/// succeed, so the job is dead-lettered at once.
fn delivery<J: Job>(
    job: ClaimedJob,
    cancel: Cancellation,
) -> std::result::Result<Delivery<J>, HandlerResult> {
    let payload = job.payload.decode::<J>().map_err(|e| {
        HandlerResult::Discard(format!(
            "the payload does not decode as `{}`: {e}",
            std::any::type_name::<J>()
        ))
    })?;
    Ok(Delivery {
        job: payload,
        id: job.id,
        attempt: job.attempt,
        max_attempts: job.max_attempts,
        created_at: job.created_at,
        last_error: job.last_error,
        cancel,
    })
}

/// The queue's table exists and the database takes writes; else an error naming the fix.
async fn check_database(db: &DatabaseConnection, queue: &'static Queue) -> Result<()> {
    let def = queue.def();
    let row = db
        .query_one_raw(stmt(
            "SELECT to_regclass(format('%I.%I', $1::text, $2::text)) IS NOT NULL, pg_is_in_recovery()",
            [def.schema.into(), def.table.into()],
        ))
        .await
        .map_err(|cause| Error::Database {
            facility: def.table.to_string(),
            cause,
        })?;
    let (exists, standby) = match row {
        Some(row) => (
            row.try_get_by_index::<bool>(0).unwrap_or(false),
            row.try_get_by_index::<bool>(1).unwrap_or(false),
        ),
        None => (false, false),
    };
    if !exists {
        return Err(Error::NotMigrated {
            facility: def.table.to_string(),
            table: format!("{}.{}", def.schema, def.table),
        });
    }
    if standby {
        return Err(Error::InvalidArgument {
            facility: def.table.to_string(),
            message: "the worker's database is a read-only hot standby: give the worker the \
                      primary's connection (`Cluster::primary_connection`)"
                .to_string(),
        });
    }
    Ok(())
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
        self.shared
            .inflight()
            .values()
            .filter(|job| job.abort.is_some())
            .count()
    }

    /// Jobs claimed and leased to this worker, waiting in its local buffer for a free handler
    /// slot (at most [`Worker::prefetch`], or the paced buffer's cap of 1,024).
    pub fn buffered(&self) -> usize {
        self.shared
            .inflight()
            .values()
            .filter(|job| job.abort.is_none())
            .count()
    }

    /// Stops claiming, waits up to `grace` for running jobs, aborts the rest and releases their
    /// jobs for immediate redelivery, writes every outcome, and returns the final counters.
    pub async fn shutdown(self, grace: Duration) -> WorkerStats {
        let table = self.shared.queue.def().table;
        tracing::info!(
            queue = table,
            running = self.running(),
            "pgstack worker: shutting down"
        );
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
                for abort in self
                    .shared
                    .inflight()
                    .values()
                    .filter_map(|j| j.abort.as_ref())
                {
                    abort.abort();
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
        let stats = self.shared.stats.snapshot();
        tracing::info!(
            queue = table,
            completed = stats.completed,
            failed = stats.failed,
            released = stats.released,
            errors = stats.errors,
            "pgstack worker: stopped"
        );
        stats
    }
}
