//! Job queues (`[[queue]]`): enqueue in the caller's transaction, claim with leases in one
//! statement, complete and fail in batches, retries with backoff, dead letters, a partitioned
//! archive, and a worker runtime ([`Worker`]).
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection, queue: &'static pgstack::queue::Queue) -> pgstack::Result<()> {
//! use pgstack::queue::{EnqueueOptions, Worker};
//! use std::time::Duration;
//!
//! // Untyped: any serde payload, a `kind` string to route it.
//! queue
//!     .enqueue(db, "send_email", &serde_json::json!({"to": "a@example.com"}), &EnqueueOptions::default())
//!     .await?;
//!
//! // A worker: handlers per kind, batch claims, batched completions, NOTIFY wake-ups.
//! let worker = Worker::new(db, queue)
//!     .handle_raw("send_email", |job| async move {
//!         println!("sending {:?}", job.payload);
//!         Ok(())
//!     })
//!     .concurrency(16)
//!     .start().await?;
//! worker.shutdown(Duration::from_secs(10)).await;
//! # Ok(()) }
//! ```
//!
//! Delivery is at least once: a job whose worker dies is redelivered when its lease
//! (`visibility_timeout`) expires. Every completion, failure, heartbeat and release names the
//! attempt it was claimed with, so a worker that lost its lease to a redelivery changes nothing.

mod admin;
mod def;
mod job;
mod maintenance;
mod records;
mod schedule;
mod sql;
mod worker;

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Datelike, Utc};
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, TransactionTrait, Value};
use serde::Serialize;

pub use self::admin::{Cancelled, JobFilter, JobInfo, JobPage, JobState, Paused};
pub use self::def::{ArchiveDef, Backoff, BackoffKind, CatchUp, QueueDef, ScheduleDef};
pub use self::job::Job;
pub use self::maintenance::MaintenanceReport;
pub use self::records::{
    ClaimedJob, DeadJob, EnqueueOptions, Enqueued, FailReport, Failure, JobToken, KeyMode, NewJob,
    Payload, QueueMetrics,
};
pub use self::schedule::SchedulePass;
use self::sql::QueueSql;
pub use self::worker::{
    Cancellation, Delivery, JobCancel, JobError, JobSnooze, JobTx, Worker, WorkerHandle,
    WorkerStats,
};
use crate::cluster::Route;
use crate::error::{DbContext, Error, Result};
use crate::handle::Handle;
use crate::sql::stmt;
use crate::value::ValueKind;
use crate::{json, limits};

/// How long a worker's claim waits for a turn at claiming before it claims without one
/// ([`Queue::claim_in_turn`]).
pub(crate) const CLAIM_TURN_WAIT: Duration = Duration::from_secs(1);

/// The largest batch any one statement takes ([`limits::MAX_BATCH`]).
pub const MAX_BATCH: usize = limits::MAX_BATCH;

/// The years PostgreSQL's `timestamptz` can hold (4713 BC is year -4712).
const MIN_RUN_AT: i32 = -4712;
const MAX_RUN_AT: i32 = 294_275;

fn array<T: Into<Value>>(ty: ArrayType, items: Vec<T>) -> Value {
    Value::Array(
        ty,
        Some(Box::new(items.into_iter().map(Into::into).collect())),
    )
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// A `[[queue]]`: the untyped API. Typed jobs (`#[derive(Queue)]`) go through [`Job`].
pub struct Queue {
    def: QueueDef,
    handle: Handle<QueueSql>,
}

impl Queue {
    pub const fn new(def: QueueDef) -> Queue {
        Queue {
            def,
            handle: Handle::new("queue", def.table),
        }
    }

    pub fn def(&self) -> &QueueDef {
        &self.def
    }

    fn name(&self) -> &'static str {
        self.handle.name()
    }

    fn sql(&self) -> Result<&QueueSql> {
        self.handle.sql(|| QueueSql::new(&self.def))
    }

    fn invalid(&self, message: String) -> Error {
        self.handle.invalid(message)
    }

    /// A page size between 1 and [`MAX_BATCH`].
    fn page(&self, limit: u32) -> Result<i64> {
        if limit == 0 || limit as usize > MAX_BATCH {
            return Err(self.invalid(format!(
                "a page holds 1 to {MAX_BATCH} jobs, asked for {limit}"
            )));
        }
        Ok(i64::from(limit))
    }

    fn encode(&self, payload: &Payload) -> Result<Value> {
        match (payload, self.def.payload) {
            (Payload::Json(json), ValueKind::Jsonb) => {
                // Checked before the clone: cloning a too-deep value overflows the stack.
                json::check_depth(json)
                    .map_err(|e| e.into_error(self.name(), "of a job's payload"))?;
                Ok(Value::Json(Some(Box::new(json.clone()))))
            }
            (Payload::Bytes(bytes), ValueKind::Bytea) => Ok(Value::Bytes(Some(bytes.clone()))),
            (Payload::Json(_), ValueKind::Bytea) => Err(self.invalid(
                "this queue stores bytea payloads; enqueue bytes (Payload::Bytes)".to_string(),
            )),
            (Payload::Bytes(_), ValueKind::Jsonb) => Err(self.invalid(
                "this queue stores jsonb payloads; enqueue JSON (Payload::Json)".to_string(),
            )),
        }
    }

    fn decode_payload(&self, row: &QueryResult, index: usize) -> Result<Payload> {
        let f = self.name();
        Ok(match self.def.payload {
            ValueKind::Jsonb => Payload::Json(row.try_get_by_index(index).in_facility(f)?),
            ValueKind::Bytea => Payload::Bytes(row.try_get_by_index(index).in_facility(f)?),
        })
    }

    /// Checks options against the spec; returns (priority, max_attempts, unique_key).
    fn check_options(&self, kind: &str, options: &EnqueueOptions) -> Result<(i16, i32, String)> {
        self.handle.check_key("job kind", kind)?;
        let priority = match options.priority {
            Some(p) if p != 0 && !self.def.priorities => {
                return Err(self.handle.unsupported("job priorities", "set `priorities = true` on this [[queue]] in pgstack.toml and run `pgstack-gen generate`"));
            }
            Some(p) => p,
            None => 0,
        };
        let unique_key = match &options.unique_key {
            Some(_) if !self.def.unique => {
                return Err(self.handle.unsupported("unique keys", "set `unique = true` on this [[queue]] in pgstack.toml and run `pgstack-gen generate`"));
            }
            Some(key) => {
                self.handle.check_key("unique key", key)?;
                key.clone()
            }
            None => String::new(),
        };
        if let Some(delay) = options.delay {
            limits::millis(self.name(), "a delay", delay, Duration::ZERO)?;
        }
        if let Some(at) = options.run_at
            && !(MIN_RUN_AT..=MAX_RUN_AT).contains(&at.year())
        {
            return Err(self.invalid(format!(
                "run_at {at} is outside PostgreSQL's timestamps; use a year between \
                 {MIN_RUN_AT} and {MAX_RUN_AT}"
            )));
        }
        let max_attempts = options.max_attempts.unwrap_or(self.def.max_attempts);
        if max_attempts == 0 || max_attempts > 1000 {
            return Err(self.invalid(format!(
                "max_attempts must be between 1 and 1000, found {max_attempts}"
            )));
        }
        Ok((priority, max_attempts as i32, unique_key))
    }

    /// A job's group key, checked: only queues with `groups = true` take one.
    fn check_group<'a>(&self, group: &'a Option<String>) -> Result<Option<&'a str>> {
        let Some(group) = group else { return Ok(None) };
        if !self.def.groups {
            return Err(self.handle.unsupported(
                "group keys",
                "set `groups = true` on this [[queue]] in pgstack.toml and run `pgstack-gen generate`",
            ));
        }
        self.handle.check_key("group key", group)?;
        Ok(Some(group))
    }

    /// Enqueues one job with a JSON payload; `db` may be the caller's transaction.
    pub async fn enqueue<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        kind: &str,
        payload: &T,
        options: &EnqueueOptions,
    ) -> Result<Enqueued> {
        let json = json::to_json(payload)
            .map_err(|e| e.into_error(self.name(), &format!("of a `{kind}` job's payload")))?;
        self.enqueue_payload(db, kind, &Payload::Json(json), options)
            .await
    }

    /// Enqueues one job with any payload (bytes for `payload = "bytea"` queues).
    pub async fn enqueue_payload<C: Route>(
        &self,
        db: &C,
        kind: &str,
        payload: &Payload,
        options: &EnqueueOptions,
    ) -> Result<Enqueued> {
        let (priority, max_attempts, unique_key) = self.check_options(kind, options)?;
        let payload = self.encode(payload)?;
        // Checked by `check_options`: at most 100 years.
        let delay = options.delay.map(millis).unwrap_or(0);
        let sql = self.sql()?;
        let (sql, window) = match options.key_mode {
            KeyMode::Keep => (Some(&sql.enqueue), None),
            KeyMode::Replace => (sql.enqueue_replace.as_ref(), None),
            KeyMode::Debounce => (sql.enqueue_debounce.as_ref(), None),
            KeyMode::Throttle(window) => (
                sql.enqueue_throttle.as_ref(),
                Some(limits::millis(
                    self.name(),
                    "a throttle window",
                    window,
                    Duration::from_millis(1),
                )?),
            ),
        };
        if options.key_mode != KeyMode::Keep && unique_key.is_empty() {
            return Err(self.invalid(format!(
                "key mode {:?} needs a unique key; set one with EnqueueOptions::unique_key",
                options.key_mode
            )));
        }
        // The modes' statements exist only on queues with unique keys; `check_options` already
        // refused a key on the others, so this is reached only without one.
        let sql = sql.ok_or_else(|| {
            self.handle.unsupported(
                "key modes",
                "set `unique = true` on this [[queue]] in pgstack.toml and run `pgstack-gen generate`",
            )
        })?;
        let mut values = vec![
            kind.into(),
            payload,
            priority.into(),
            Value::ChronoDateTimeUtc(options.run_at),
            delay.into(),
            max_attempts.into(),
            if unique_key.is_empty() {
                Value::String(None)
            } else {
                unique_key.into()
            },
        ];
        values.push(match self.check_group(&options.group_key)? {
            Some(group) => group.into(),
            None => Value::String(None),
        });
        if let Some(window) = window {
            values.push(window.into());
        }
        let row = self
            .handle
            .traced("enqueue", db.write().query_one_raw(stmt(sql, values)))
            .await
            .in_facility(self.name())?;
        let row = row.ok_or_else(|| Error::Database {
            facility: self.name().to_string(),
            cause: sea_orm::DbErr::RecordNotInserted,
        })?;
        Ok(Enqueued {
            id: row.try_get_by_index(0).in_facility(self.name())?,
            duplicate: row.try_get_by_index(1).in_facility(self.name())?,
        })
    }

    /// Enqueues every job in one statement; the result follows the input order. A unique key
    /// given twice in the batch yields the same job for both.
    pub async fn enqueue_many<C: Route>(&self, db: &C, jobs: &[NewJob]) -> Result<Vec<Enqueued>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        limits::batch(self.name(), "jobs", jobs.len())?;
        // Within one statement ON CONFLICT may touch a row once: send each key once.
        let mut first_of_key: HashMap<&str, usize> = HashMap::new();
        let mut sent: Vec<usize> = Vec::with_capacity(jobs.len());
        let mut kinds = Vec::new();
        let mut payloads = Vec::new();
        let mut priorities = Vec::new();
        let mut has_run_at = Vec::new();
        let mut run_ats = Vec::new();
        let mut delays = Vec::new();
        let mut attempts = Vec::new();
        let mut keys = Vec::new();
        let mut groups = Vec::new();
        for (i, job) in jobs.iter().enumerate() {
            let (priority, max_attempts, unique_key) =
                self.check_options(&job.kind, &job.options)?;
            if job.options.key_mode != KeyMode::Keep {
                return Err(self.invalid(format!(
                    "key mode {:?} is for single enqueues (`enqueue_with`, `enqueue_payload`); \
                     enqueue_many keeps the existing job of a key",
                    job.options.key_mode
                )));
            }
            if !unique_key.is_empty() {
                if first_of_key.contains_key(unique_key.as_str()) {
                    continue;
                }
                first_of_key.insert(job.options.unique_key.as_deref().unwrap_or_default(), i);
            }
            sent.push(i);
            kinds.push(job.kind.clone());
            payloads.push(self.encode(&job.payload)?);
            priorities.push(priority);
            has_run_at.push(job.options.run_at.is_some());
            run_ats.push(job.options.run_at.unwrap_or(DateTime::<Utc>::UNIX_EPOCH));
            delays.push(job.options.delay.map(millis).unwrap_or(0));
            attempts.push(max_attempts);
            keys.push(unique_key);
            groups.push(
                self.check_group(&job.options.group_key)?
                    .unwrap_or_default()
                    .to_string(),
            );
        }
        let payload_type = match self.def.payload {
            ValueKind::Jsonb => ArrayType::Json,
            ValueKind::Bytea => ArrayType::Bytes,
        };
        let values = vec![
            array(ArrayType::String, kinds),
            array(payload_type, payloads),
            array(ArrayType::SmallInt, priorities),
            array(ArrayType::Bool, has_run_at),
            array(ArrayType::ChronoDateTimeUtc, run_ats),
            array(ArrayType::BigInt, delays),
            array(ArrayType::Int, attempts),
            array(ArrayType::String, keys),
            array(ArrayType::String, groups),
        ];
        let rows = self
            .handle
            .traced(
                "enqueue_many",
                db.write()
                    .query_all_raw(stmt(&self.sql()?.enqueue_many, values)),
            )
            .await
            .in_facility(self.name())?;
        // New rows get ids in input order; existing rows (duplicates) are matched by key.
        let f = self.name();
        let mut fresh: Vec<i64> = Vec::new();
        let mut by_key: HashMap<String, Enqueued> = HashMap::new();
        for row in &rows {
            let id: i64 = row.try_get_by_index(0).in_facility(f)?;
            let key: Option<String> = row.try_get_by_index(1).in_facility(f)?;
            let duplicate: bool = row.try_get_by_index(2).in_facility(f)?;
            match key {
                Some(key) => {
                    by_key.insert(key, Enqueued { id, duplicate });
                }
                None => fresh.push(id),
            }
        }
        fresh.sort_unstable();
        let mut fresh = fresh.into_iter();
        let mut out = Vec::with_capacity(jobs.len());
        for (i, job) in jobs.iter().enumerate() {
            let result = match job.options.unique_key.as_deref() {
                Some(key) => {
                    let enqueued = by_key.get(key).copied().ok_or_else(|| {
                        self.invalid(format!("no job came back for unique key `{key}`"))
                    })?;
                    // A later copy of a key in the same batch is a duplicate of the first.
                    let first = first_of_key.get(key).copied().unwrap_or(i);
                    Enqueued {
                        id: enqueued.id,
                        duplicate: enqueued.duplicate || first != i,
                    }
                }
                None => Enqueued {
                    id: fresh.next().ok_or_else(|| {
                        self.invalid("fewer jobs came back than were sent".to_string())
                    })?,
                    duplicate: false,
                },
            };
            out.push(result);
        }
        debug_assert_eq!(sent.len(), rows.len());
        Ok(out)
    }

    /// Claims up to `limit` jobs, leased for the queue's visibility timeout, in one statement.
    pub async fn claim<C: Route>(&self, db: &C, limit: usize) -> Result<Vec<ClaimedJob>> {
        self.claim_with_lease(db, limit, self.def.visibility_timeout())
            .await
    }

    /// As [`Queue::claim`], in a transaction that first takes one of `turns` turns at claiming
    /// this queue, shared by every process (transaction-scoped advisory locks keyed by the
    /// queue's table; see `QueueClaimTurn` in `pgstack/sql/queue.sql`). The worker runtime
    /// claims this way: claims running at once step over each other's locked rows. A claim
    /// that waits longer than [`CLAIM_TURN_WAIT`] for a turn (one held by a stuck
    /// transaction) claims without one.
    pub(crate) async fn claim_in_turn(
        &self,
        db: &DatabaseConnection,
        limit: usize,
        turns: usize,
    ) -> Result<Vec<ClaimedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let f = self.name();
        let sql = self.sql()?;
        let key = format!("pgstack claims {}.{}", self.def.schema, self.def.table);
        let args = || vec![key.clone().into(), (turns as i32).into()];
        let txn = db.begin().await.in_facility(f)?;
        let took = self
            .handle
            .traced(
                "claim_turn",
                txn.query_one_raw(stmt(&sql.claim_turn, args())),
            )
            .await
            .in_facility(f)?
            .map(|row| row.try_get_by_index::<bool>(0))
            .transpose()
            .in_facility(f)?
            .unwrap_or(false);
        if !took {
            let mut wait = args();
            wait.push(format!("{}ms", CLAIM_TURN_WAIT.as_millis()).into());
            let waited = self
                .handle
                .traced(
                    "claim_turn_wait",
                    txn.execute_raw(stmt(&sql.claim_turn_wait, wait)),
                )
                .await;
            match waited {
                Ok(_) => {}
                Err(e) if crate::error::is_lock_timeout(&e) => {
                    tracing::warn!(
                        queue = f,
                        "pgstack queue: waited {CLAIM_TURN_WAIT:?} for a turn to claim (a \
                         transaction holding one may be stuck: see pg_locks, locktype \
                         advisory); claiming without one"
                    );
                    txn.rollback().await.in_facility(f)?;
                    return self.claim(db, limit).await;
                }
                Err(e) => return Err(e).in_facility(f),
            }
        }
        let jobs = self.claim(&txn, limit).await?;
        txn.commit().await.in_facility(f)?;
        Ok(jobs)
    }

    /// As [`Queue::claim`] with another lease length.
    pub async fn claim_with_lease<C: Route>(
        &self,
        db: &C,
        limit: usize,
        lease: Duration,
    ) -> Result<Vec<ClaimedJob>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        limits::batch(self.name(), "jobs", limit)?;
        let lease = limits::millis(self.name(), "a lease", lease, Duration::from_millis(1))?;
        let rows = self
            .handle
            .traced(
                "claim",
                db.write().query_all_raw(stmt(
                    &self.sql()?.claim,
                    vec![(limit as i64).into(), lease.into()],
                )),
            )
            .await
            .in_facility(self.name())?;
        let f = self.name();
        let mut jobs = rows
            .iter()
            .map(|row| {
                Ok(ClaimedJob {
                    id: row.try_get_by_index(0).in_facility(f)?,
                    kind: row.try_get_by_index(1).in_facility(f)?,
                    payload: self.decode_payload(row, 2)?,
                    priority: row.try_get_by_index(3).in_facility(f)?,
                    attempt: row.try_get_by_index(4).in_facility(f)?,
                    max_attempts: row.try_get_by_index(5).in_facility(f)?,
                    created_at: row.try_get_by_index(6).in_facility(f)?,
                    unique_key: row.try_get_by_index(7).in_facility(f)?,
                    lease_expires_at: row.try_get_by_index(8).in_facility(f)?,
                    last_error: row.try_get_by_index(9).in_facility(f)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        jobs.sort_by_key(|j| (j.priority, j.id));
        Ok(jobs)
    }

    fn tokens(&self, jobs: &[JobToken]) -> Result<(Value, Value)> {
        limits::batch(self.name(), "jobs", jobs.len())?;
        Ok((
            array(ArrayType::BigInt, jobs.iter().map(|j| j.id).collect()),
            array(ArrayType::Int, jobs.iter().map(|j| j.attempt).collect()),
        ))
    }

    async fn ids<C: Route>(
        &self,
        db: &C,
        op: &'static str,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<i64>> {
        let rows = self
            .handle
            .traced(op, db.write().query_all_raw(stmt(sql, values)))
            .await
            .in_facility(self.name())?;
        rows.iter()
            .map(|r| r.try_get_by_index(0).in_facility(self.name()))
            .collect()
    }

    /// Completes jobs in one statement (deleting them, or archiving them when `archive` is
    /// set). Returns the ids completed; a job whose attempt no longer matches is skipped.
    pub async fn complete<C: Route>(&self, db: &C, jobs: &[JobToken]) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, attempts) = self.tokens(jobs)?;
        self.ids(db, "complete", &self.sql()?.complete, vec![ids, attempts])
            .await
    }

    /// Fails attempts in at most two statements: jobs with attempts left are retried after the
    /// spec's backoff; the others (and `discard`ed ones) are dead-lettered with their error.
    pub async fn fail<C: Route>(&self, db: &C, failures: &[Failure]) -> Result<FailReport> {
        limits::batch(self.name(), "failures", failures.len())?;
        let mut retry = Vec::new();
        let mut kill = Vec::new();
        for failure in failures {
            if failure.discard || failure.token.attempt >= failure.max_attempts {
                kill.push(failure);
            } else {
                retry.push(failure);
            }
        }
        let sql = self.sql()?;
        let mut report = FailReport::default();
        if !retry.is_empty() {
            let values = vec![
                array(
                    ArrayType::BigInt,
                    retry.iter().map(|f| f.token.id).collect(),
                ),
                array(
                    ArrayType::Int,
                    retry.iter().map(|f| f.token.attempt).collect(),
                ),
                array(
                    ArrayType::BigInt,
                    retry
                        .iter()
                        .map(|f| millis(self.def.backoff.delay(f.token.attempt.max(1) as u32)))
                        .collect(),
                ),
                array(
                    ArrayType::String,
                    retry.iter().map(|f| f.error.clone()).collect(),
                ),
                self.def.backoff.jitter.into(),
            ];
            report.retried = self.ids(db, "retry", &sql.retry, values).await?;
        }
        if !kill.is_empty() {
            let values = vec![
                array(ArrayType::BigInt, kill.iter().map(|f| f.token.id).collect()),
                array(
                    ArrayType::Int,
                    kill.iter().map(|f| f.token.attempt).collect(),
                ),
                array(
                    ArrayType::String,
                    kill.iter().map(|f| f.error.clone()).collect(),
                ),
            ];
            report.dead = self.ids(db, "dead_letter", &sql.kill, values).await?;
        }
        Ok(report)
    }

    /// Extends the leases of still-held jobs by `lease` (default: the visibility timeout);
    /// returns the ids still held. A worker that finds its job missing lost the lease.
    pub async fn extend_lease<C: Route>(
        &self,
        db: &C,
        jobs: &[JobToken],
        lease: Option<Duration>,
    ) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, attempts) = self.tokens(jobs)?;
        let lease = limits::millis(
            self.name(),
            "a lease",
            lease.unwrap_or(self.def.visibility_timeout()),
            Duration::from_millis(1),
        )?;
        self.ids(
            db,
            "extend_lease",
            &self.sql()?.extend,
            vec![ids, attempts, lease.into()],
        )
        .await
    }

    /// Gives jobs back unfinished: claimable at once, the attempt not counted. Wakes listeners
    /// when the queue has NOTIFY.
    pub async fn release<C: Route>(&self, db: &C, jobs: &[JobToken]) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let (ids, attempts) = self.tokens(jobs)?;
        let released = self
            .ids(db, "release", &self.sql()?.release, vec![ids, attempts])
            .await?;
        if let Some(channel) = self.def.notify_channel
            && !released.is_empty()
        {
            self.handle
                .traced(
                    "release",
                    db.write()
                        .execute_raw(stmt(&self.sql()?.notify, vec![channel.into()])),
                )
                .await
                .in_facility(self.name())?;
        }
        Ok(released)
    }

    /// Gives claimed jobs back to run again after their delay, without spending the attempt:
    /// `max_attempts` goes up by one with the attempt counter at the next claim (the counter
    /// is the fencing token and never goes back). Returns the ids snoozed; a job whose attempt
    /// no longer matches (its lease was lost) is skipped.
    pub async fn snooze<C: Route>(
        &self,
        db: &C,
        jobs: &[(JobToken, Duration)],
    ) -> Result<Vec<i64>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let tokens: Vec<JobToken> = jobs.iter().map(|(t, _)| *t).collect();
        let (ids, attempts) = self.tokens(&tokens)?;
        let mut delays = Vec::with_capacity(jobs.len());
        for (_, delay) in jobs {
            delays.push(limits::millis(
                self.name(),
                "a snooze",
                *delay,
                Duration::from_millis(1),
            )?);
        }
        let delays = array(ArrayType::BigInt, delays);
        self.ids(
            db,
            "snooze",
            &self.sql()?.snooze,
            vec![ids, attempts, delays],
        )
        .await
    }

    /// Registers (or refreshes) `worker` as waiting for a NOTIFY on this queue: inserts wake it
    /// only while it is registered. For worker runtimes; needs `notify = true`.
    pub async fn wait_start<C: Route>(&self, db: &C, worker: &str) -> Result<()> {
        let Some(channel) = self.def.notify_channel else {
            return Ok(());
        };
        self.handle
            .traced(
                "wait_start",
                db.write().execute_raw(stmt(
                    &self.sql()?.wait_start,
                    vec![channel.into(), worker.into()],
                )),
            )
            .await
            .in_facility(self.name())?;
        Ok(())
    }

    /// Removes `worker` from the waiting workers.
    pub async fn wait_end<C: Route>(&self, db: &C, worker: &str) -> Result<()> {
        let Some(channel) = self.def.notify_channel else {
            return Ok(());
        };
        self.handle
            .traced(
                "wait_end",
                db.write().execute_raw(stmt(
                    &self.sql()?.wait_end,
                    vec![channel.into(), worker.into()],
                )),
            )
            .await
            .in_facility(self.name())?;
        Ok(())
    }

    /// When the next waiting job becomes claimable (none: nothing is waiting).
    pub async fn next_visible_at<C: Route>(&self, db: &C) -> Result<Option<DateTime<Utc>>> {
        let row = self
            .handle
            .traced(
                "next_visible_at",
                db.primary()
                    .query_one_raw(stmt(&self.sql()?.next_visible, vec![])),
            )
            .await
            .in_facility(self.name())?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.name()),
            None => Ok(None),
        }
    }

    fn dead_sql<'a>(&self, sql: &'a Option<String>) -> Result<&'a str> {
        sql.as_deref().ok_or_else(|| self.handle.unsupported("dead letters", "set `dead_letter = true` on this [[queue]] in pgstack.toml and run `pgstack-gen generate`"))
    }

    /// Dead-lettered jobs in id order, `limit` at a time after `after`.
    pub async fn dead_letters<C: Route>(
        &self,
        db: &C,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<DeadJob>> {
        let sql = self.dead_sql(&self.sql()?.dead_list)?;
        let limit = self.page(limit)?;
        let rows = self
            .handle
            .traced(
                "dead_letters",
                db.read()
                    .query_all_raw(stmt(sql, vec![after.unwrap_or(0).into(), limit.into()])),
            )
            .await
            .in_facility(self.name())?;
        let f = self.name();
        rows.iter()
            .map(|row| {
                Ok(DeadJob {
                    id: row.try_get_by_index(0).in_facility(f)?,
                    kind: row.try_get_by_index(1).in_facility(f)?,
                    payload: self.decode_payload(row, 2)?,
                    priority: row.try_get_by_index(3).in_facility(f)?,
                    attempt: row.try_get_by_index(4).in_facility(f)?,
                    max_attempts: row.try_get_by_index(5).in_facility(f)?,
                    unique_key: row.try_get_by_index(6).in_facility(f)?,
                    last_error: row.try_get_by_index(7).in_facility(f)?,
                    created_at: row.try_get_by_index(8).in_facility(f)?,
                    failed_at: row.try_get_by_index(9).in_facility(f)?,
                })
            })
            .collect()
    }

    /// Moves dead jobs back to the queue with fresh attempts, in one statement; returns the
    /// ids moved (a job whose unique key is taken by a live job stays dead).
    pub async fn redrive<C: Route>(&self, db: &C, ids: &[i64]) -> Result<Vec<i64>> {
        let sql = self.dead_sql(&self.sql()?.redrive)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        limits::batch(self.name(), "ids", ids.len())?;
        self.ids(
            db,
            "redrive",
            sql,
            vec![array(ArrayType::BigInt, ids.to_vec())],
        )
        .await
    }

    /// Redrives up to `limit` dead jobs, oldest first.
    pub async fn redrive_all<C: Route>(&self, db: &C, limit: u32) -> Result<Vec<i64>> {
        let sql = self.dead_sql(&self.sql()?.dead_ids)?;
        let ids = self
            .ids(db, "dead_ids", sql, vec![self.page(limit)?.into()])
            .await?;
        self.redrive(db, &ids).await
    }

    /// Queue depth and the age of the oldest claimable job; each count stops at `cap`.
    pub async fn metrics<C: Route>(&self, db: &C, cap: u64) -> Result<QueueMetrics> {
        let cap = cap.clamp(1, i64::MAX as u64);
        let row = self
            .handle
            .traced(
                "metrics",
                db.read()
                    .query_one_raw(stmt(&self.sql()?.metrics, vec![(cap as i64).into()])),
            )
            .await
            .in_facility(self.name())?;
        let f = self.name();
        let Some(row) = row else {
            return Err(Error::Database {
                facility: f.to_string(),
                cause: sea_orm::DbErr::RecordNotFound("metrics".into()),
            });
        };
        let count = |i: usize| -> Result<u64> {
            let n: i64 = row.try_get_by_index(i).in_facility(f)?;
            Ok((n.max(0) as u64).min(cap))
        };
        let oldest: Option<i64> = row.try_get_by_index(4).in_facility(f)?;
        Ok(QueueMetrics {
            ready: count(0)?,
            running: count(1)?,
            scheduled: count(2)?,
            dead: count(3)?,
            oldest_ready_age: oldest.map(|ms| Duration::from_millis(ms.max(0) as u64)),
            cap,
        })
    }

    /// Enqueues the due ticks of this queue's `schedules` once, registering them first (a new
    /// schedule counts from now). Every worker of the queue does this on its own, sleeping
    /// until the next tick; call it from a process that enqueues recurring jobs without
    /// running a worker. Safe to call from many processes at once: each tick is enqueued once.
    pub async fn run_schedules(
        &'static self,
        db: &sea_orm::DatabaseConnection,
    ) -> Result<SchedulePass> {
        let schedules = schedule::Schedules::new(self)?;
        schedules.register(db).await?;
        schedules.pass(db).await
    }

    /// Archive upkeep (when `archive` is set): creates the partitions for the coming periods
    /// and drops those wholly past retention. Safe to call from several workers at once.
    pub async fn maintain<C: ConnectionTrait + sea_orm::TransactionTrait>(
        &self,
        db: &C,
    ) -> Result<MaintenanceReport> {
        maintenance::maintain(self, db, Utc::now()).await
    }

    /// As [`Queue::maintain`], as if the clock read `now` (tests, backfills).
    pub async fn maintain_at<C: ConnectionTrait + sea_orm::TransactionTrait>(
        &self,
        db: &C,
        now: DateTime<Utc>,
    ) -> Result<MaintenanceReport> {
        maintenance::maintain(self, db, now).await
    }
}
