//! The maintenance runner: every upkeep task a spec implies, run in the background so that no
//! application has to remember a sweep.
//!
//! | facility | task | what it does |
//! | --- | --- | --- |
//! | `[[cache]]` | `expired` | deletes expired entries and abandoned placeholders ([`Cache::sweep_expired`]) |
//! | `[[cache]]` with `max_entries` | `evict` | deletes the oldest entries beyond the bound ([`Cache::evict`]) |
//! | `[[kv]]` with `expiry = true` | `expired` | deletes expired keys (`sweep_expired`) |
//! | `[[rate_limit]]` | `idle` | deletes keys back at "no state" ([`RateLimiter::sweep`]) |
//! | `[[queue]]` with `archive` | `partitions` | creates coming partitions, drops those past retention ([`Queue::maintain`]) |
//!
//! The generated `db::upkeep()` hands every cache, kv store, rate limiter and queue of the
//! spec to the builder, which keeps those with upkeep to do (the table above, the one place
//! that rule lives); [`Upkeep::start`] runs them every
//! `interval` (default 60 s) until [`UpkeepHandle::shutdown`]; [`Upkeep::run_once`] runs one
//! pass (from a cron job, a test, or a command).
//!
//! Each task runs in batches of `batch` rows (default 1,000), each batch in a transaction of
//! its own that first takes `pg_try_advisory_xact_lock` on the task's name: a batch another
//! process is running is skipped, never waited for, so any number of processes can run the
//! runner and only one works on a table at a time. A pass stops a task after `max_rows` rows
//! (default 100,000) or once the pass has run `budget` (default 5 s); the rest waits for the
//! next pass. Transaction-scoped locks work through PgBouncer in transaction mode.
//!
//! Results go to the metrics (`pgstack_upkeep_rows_total{facility, table, task}`,
//! `pgstack_upkeep_pass_seconds`) and to `tracing` (a DEBUG event per task that did work; a
//! WARN with the cause when a task fails, after which the pass goes on with the next task).

use std::time::{Duration, Instant};

use sea_orm::{ConnectionTrait, DatabaseConnection, TransactionTrait};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::cache::Cache;
use crate::error::{DbContext, Error, Result};
use crate::kv::{BytesKv, JsonKv};
use crate::queue::Queue;
use crate::rate_limit::RateLimiter;
use crate::sql::stmt;

/// One upkeep task: a facility and what is done to it.
#[derive(Clone, Copy)]
enum Task {
    CacheExpired(&'static Cache),
    CacheEvict(&'static Cache),
    JsonKvExpired(&'static JsonKv),
    BytesKvExpired(&'static BytesKv),
    RateLimitIdle(&'static RateLimiter),
    QueuePartitions(&'static Queue),
}

impl Task {
    /// `(facility, schema, table, task)`.
    fn names(&self) -> (&'static str, &'static str, &'static str, &'static str) {
        match self {
            Task::CacheExpired(c) => ("cache", c.def().schema, c.def().table, "expired"),
            Task::CacheEvict(c) => ("cache", c.def().schema, c.def().table, "evict"),
            Task::JsonKvExpired(k) => ("kv", k.def().schema, k.def().table, "expired"),
            Task::BytesKvExpired(k) => ("kv", k.def().schema, k.def().table, "expired"),
            Task::RateLimitIdle(r) => ("rate_limit", r.def().schema, r.def().table, "idle"),
            Task::QueuePartitions(q) => ("queue", q.def().schema, q.def().table, "partitions"),
        }
    }

    /// One batch in `txn`: how many rows it removed (or partitions it changed), and whether
    /// there may be more.
    async fn batch<C: ConnectionTrait + TransactionTrait>(
        &self,
        txn: &C,
        batch: u32,
    ) -> Result<(u64, bool)> {
        let full = |n: u64| (n, n >= u64::from(batch));
        Ok(match self {
            Task::CacheExpired(c) => full(c.sweep_expired(txn, batch).await?),
            // Evicts everything beyond the bound in one statement of bounded size.
            Task::CacheEvict(c) => {
                let n = c.evict(txn).await?;
                (n, n > 0)
            }
            Task::JsonKvExpired(k) => full(k.sweep_expired(txn, batch).await?),
            Task::BytesKvExpired(k) => full(k.sweep_expired(txn, batch).await?),
            Task::RateLimitIdle(r) => full(r.sweep(txn, batch).await?),
            Task::QueuePartitions(q) => {
                let report = q.maintain(txn).await?;
                let changed = report.created.len() + report.dropped.len();
                (
                    changed as u64 + report.moved_from_default + report.purged_from_default,
                    false,
                )
            }
        })
    }
}

/// What one pass did, per task: `(facility, table, task, rows)`, and the tasks that failed.
#[derive(Debug, Default, Clone)]
pub struct UpkeepReport {
    pub done: Vec<(&'static str, &'static str, &'static str, u64)>,
    /// Tasks skipped because another process held their lock.
    pub skipped: Vec<(&'static str, &'static str, &'static str)>,
    /// Tasks that failed, with the error's text (also logged at WARN).
    pub failed: Vec<(&'static str, &'static str, &'static str, String)>,
}

impl UpkeepReport {
    /// Rows removed (or partitions changed) by `task` on `table` in this pass.
    pub fn rows(&self, table: &str, task: &str) -> u64 {
        self.done
            .iter()
            .filter(|(_, t, k, _)| *t == table && *k == task)
            .map(|(_, _, _, n)| n)
            .sum()
    }
}

/// The upkeep tasks of a spec and how to run them; see the [module docs](self).
#[derive(Clone)]
pub struct Upkeep {
    tasks: Vec<Task>,
    interval: Duration,
    batch: u32,
    max_rows: u64,
    budget: Duration,
}

impl Default for Upkeep {
    fn default() -> Self {
        Upkeep::new()
    }
}

impl Upkeep {
    /// No tasks yet; the generated `db::upkeep()` adds every task its spec implies.
    pub fn new() -> Self {
        Upkeep {
            tasks: Vec::new(),
            interval: Duration::from_secs(60),
            batch: 1000,
            max_rows: 100_000,
            budget: Duration::from_secs(5),
        }
    }

    /// A cache's expired entries, and its size bound when it has `max_entries`.
    pub fn cache(mut self, cache: &'static Cache) -> Self {
        self.tasks.push(Task::CacheExpired(cache));
        if cache.def().max_entries.is_some() {
            self.tasks.push(Task::CacheEvict(cache));
        }
        self
    }

    /// A JSON kv store's expired keys (stores without `expiry` have none and are left out).
    pub fn json_kv(mut self, store: &'static JsonKv) -> Self {
        if store.def().expiry {
            self.tasks.push(Task::JsonKvExpired(store));
        }
        self
    }

    /// A bytes kv store's expired keys (stores without `expiry` have none and are left out).
    pub fn bytes_kv(mut self, store: &'static BytesKv) -> Self {
        if store.def().expiry {
            self.tasks.push(Task::BytesKvExpired(store));
        }
        self
    }

    /// A rate limiter's keys that are back at "no state".
    pub fn rate_limiter(mut self, limiter: &'static RateLimiter) -> Self {
        self.tasks.push(Task::RateLimitIdle(limiter));
        self
    }

    /// A queue's archive partitions (queues without `archive` have none and are left out).
    pub fn queue(mut self, queue: &'static Queue) -> Self {
        if queue.def().archive.is_some() {
            self.tasks.push(Task::QueuePartitions(queue));
        }
        self
    }

    /// How often [`Upkeep::start`] runs a pass (default 60 s; at least 10 ms).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(10));
        self
    }

    /// Rows per batch, each in its own short transaction (default 1,000; 1 to 10,000).
    pub fn batch(mut self, rows: u32) -> Self {
        self.batch = rows.clamp(1, crate::limits::MAX_BATCH as u32);
        self
    }

    /// The most rows one task removes in one pass (default 100,000).
    pub fn max_rows(mut self, rows: u64) -> Self {
        self.max_rows = rows.max(1);
        self
    }

    /// How long one pass may run before the tasks left wait for the next (default 5 s).
    pub fn budget(mut self, budget: Duration) -> Self {
        self.budget = budget;
        self
    }

    /// The tasks, as `(facility, table, task)`.
    pub fn tasks(&self) -> Vec<(&'static str, &'static str, &'static str)> {
        self.tasks
            .iter()
            .map(|t| {
                let (facility, _, table, task) = t.names();
                (facility, table, task)
            })
            .collect()
    }

    /// Runs one pass over every task. A failing task is reported (and logged) and the pass
    /// goes on; the `Err` case is only for a database that cannot start a transaction at all.
    pub async fn run_once(&self, db: &DatabaseConnection) -> Result<UpkeepReport> {
        let started = Instant::now();
        let mut report = UpkeepReport::default();
        for task in &self.tasks {
            let (facility, schema, table, name) = task.names();
            if started.elapsed() >= self.budget {
                break;
            }
            match self.run_task(db, task, started).await {
                Ok(Some(rows)) => {
                    crate::metrics::upkeep_rows(facility, table, name, rows);
                    if rows > 0 {
                        tracing::debug!(
                            facility,
                            schema,
                            table,
                            task = name,
                            rows,
                            "pgstack upkeep"
                        );
                    }
                    report.done.push((facility, table, name, rows));
                }
                Ok(None) => report.skipped.push((facility, table, name)),
                Err(e) => {
                    tracing::warn!(facility, schema, table, task = name, error = %e, "pgstack upkeep: task failed; the next pass tries again");
                    report.failed.push((facility, table, name, e.to_string()));
                }
            }
        }
        crate::metrics::upkeep_pass(started.elapsed());
        Ok(report)
    }

    /// One task's batches, until it runs dry, reaches `max_rows` or the pass's budget.
    /// `None` when another process holds its lock.
    async fn run_task(
        &self,
        db: &DatabaseConnection,
        task: &Task,
        started: Instant,
    ) -> Result<Option<u64>> {
        let (facility, schema, table, name) = task.names();
        let key = format!("pgstack.upkeep:{schema}.{table}:{name}");
        let mut rows = 0u64;
        loop {
            let txn = db.begin().await.in_facility(table)?;
            let locked = txn
                .query_one_raw(stmt(
                    "SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0))",
                    vec![key.clone().into()],
                ))
                .await
                .in_facility(table)?
                .map(|row| row.try_get_by_index::<bool>(0))
                .transpose()
                .in_facility(table)?
                .unwrap_or(false);
            if !locked {
                txn.rollback().await.in_facility(table)?;
                return Ok(if rows == 0 { None } else { Some(rows) });
            }
            let (n, more) = match task.batch(&txn, self.batch).await {
                Ok(done) => done,
                Err(e) => {
                    if let Err(rollback) = txn.rollback().await {
                        tracing::warn!(facility, table, task = name, error = %rollback, "pgstack upkeep: rollback failed");
                    }
                    return Err(e);
                }
            };
            txn.commit().await.in_facility(table)?;
            rows += n;
            if !more || rows >= self.max_rows || started.elapsed() >= self.budget {
                return Ok(Some(rows));
            }
        }
    }

    /// Runs a pass now and then every `interval`, on a task of its own, until the handle is
    /// shut down or dropped. Refuses a runner with no tasks (nothing in the spec needs upkeep,
    /// or the builder was given none).
    pub fn start(self, db: &DatabaseConnection) -> Result<UpkeepHandle> {
        if self.tasks.is_empty() {
            return Err(Error::InvalidArgument {
                facility: "upkeep".to_string(),
                message: "no upkeep tasks: add caches, kv stores with expiry, rate limiters or \
                          archived queues (the generated `db::upkeep()` lists the spec's)"
                    .to_string(),
            });
        }
        let (stop, mut stopped) = watch::channel(false);
        let db = db.clone();
        let task = tokio::spawn(async move {
            loop {
                // Failed tasks are logged by the pass itself.
                if let Err(e) = self.run_once(&db).await {
                    tracing::warn!(error = %e, "pgstack upkeep: pass failed; retrying at the next interval");
                }
                tokio::select! {
                    _ = tokio::time::sleep(self.interval) => {}
                    _ = stopped.changed() => return,
                }
            }
        });
        Ok(UpkeepHandle {
            stop,
            task: Some(task),
        })
    }
}

/// A running [`Upkeep`]; dropping it stops the runner after its current batch.
pub struct UpkeepHandle {
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl UpkeepHandle {
    /// Stops after the current batch and waits for it.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take()
            && let Err(e) = task.await
            && e.is_panic()
        {
            tracing::error!(error = %e, "pgstack upkeep: the runner panicked");
        }
    }
}

impl Drop for UpkeepHandle {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
    }
}
