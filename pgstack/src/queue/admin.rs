//! The job admin API: list and search jobs, look at one, cancel, retry now, delete, purge,
//! pause and resume a queue, redrive dead letters by kind. Every call is one statement
//! (`cancel` of a listened-to queue adds a NOTIFY so running workers hear at once), through any
//! connection, and acts by id: unlike a worker's writes, it is not fenced by attempt.
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection, queue: &'static pgstack::queue::Queue) -> pgstack::Result<()> {
//! use pgstack::queue::{JobFilter, JobState};
//!
//! let failing = queue.list_jobs(db, &JobFilter::new(JobState::Retrying).kind("send_email")).await?;
//! for job in &failing.jobs {
//!     println!("{} attempt {}: {:?}", job.id, job.attempt, job.last_error);
//! }
//! queue.pause(db, "deploying the mail provider fix").await?; // workers stop claiming
//! queue.resume(db).await?;
//! # Ok(()) }
//! ```

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, QueryResult, Value};

use super::{MAX_BATCH, Payload, Queue};
use crate::cluster::Route;
use crate::error::{DbContext, Result};
use crate::sql::stmt;

/// Where a job is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum JobState {
    /// Claimable now (never attempted).
    Waiting,
    /// Waiting for its run time.
    Scheduled,
    /// Claimed by a worker; its lease may have expired (the worker died) and the next claim
    /// takes it.
    Running,
    /// Failed, waiting for its next attempt.
    Retrying,
    /// Out of attempts, or cancelled, in the dead-letter table.
    Dead,
    /// In the archive, finished.
    Completed,
    /// In the archive: out of attempts in a queue without dead letters.
    Discarded,
    /// In the archive: cancelled in a queue without dead letters.
    Cancelled,
}

/// One job as the admin API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct JobInfo {
    pub id: i64,
    pub kind: String,
    pub state: JobState,
    pub payload: Payload,
    pub priority: i16,
    /// Attempts made so far (including a running one).
    pub attempt: i32,
    pub max_attempts: i32,
    pub unique_key: Option<String>,
    /// The error of the last failed attempt (for a cancelled job: why).
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    /// When it may next be claimed: its run time, retry time or, running, its lease's end.
    pub visible_at: Option<DateTime<Utc>>,
    /// When its running attempt was claimed.
    pub claimed_at: Option<DateTime<Utc>>,
    /// Running with its lease run out: its worker stopped beating.
    pub lease_expired: bool,
    /// When it failed for good, finished or was cancelled.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Which jobs [`Queue::list_jobs`] returns: one state, optionally one kind or unique key, a
/// page after a cursor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobFilter {
    pub state: JobState,
    pub kind: Option<String>,
    pub unique_key: Option<String>,
    /// The id the previous page ended with.
    pub after: Option<i64>,
    /// 1 to [`MAX_BATCH`]; default 100.
    pub limit: u32,
}

impl JobFilter {
    pub fn new(state: JobState) -> JobFilter {
        JobFilter {
            state,
            kind: None,
            unique_key: None,
            after: None,
            limit: 100,
        }
    }

    pub fn kind(mut self, kind: impl Into<String>) -> Self {
        self.kind = Some(kind.into());
        self
    }

    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn after(mut self, id: i64) -> Self {
        self.after = Some(id);
        self
    }

    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = limit;
        self
    }
}

/// One page of [`Queue::list_jobs`], in id order.
#[derive(Clone, Debug, PartialEq)]
pub struct JobPage {
    pub jobs: Vec<JobInfo>,
    /// Pass as [`JobFilter::after`] for the next page; `None` when this one was the last.
    pub next: Option<i64>,
}

/// What [`Queue::cancel`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cancelled {
    /// No waiting or running job has this id.
    NotFound,
    /// A waiting, scheduled or retrying job: it will never run.
    Waiting,
    /// A running job: its handler is told (at once when the worker listens, else at its next
    /// heartbeat), and whatever it writes back changes nothing.
    Running,
}

/// Whether a queue is paused, since when and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Paused {
    pub since: DateTime<Utc>,
    pub reason: Option<String>,
}

impl Queue {
    fn admin_sql<'a>(&self, sql: &'a Option<String>, what: &'static str) -> Result<&'a str> {
        sql.as_deref().ok_or_else(|| {
            self.handle.unsupported(
                what,
                "set `dead_letter = true` (or an `archive`) on this [[queue]] in pgstack.toml and \
                 run `pgstack-gen generate`",
            )
        })
    }

    /// A hot-table row (`QueueJobGet` / `QueueJobList` columns) as a job.
    fn hot_job(&self, row: &QueryResult) -> Result<JobInfo> {
        let f = self.name();
        let attempt: i32 = row.try_get_by_index(4).in_facility(f)?;
        let claimed_at: Option<DateTime<Utc>> = row.try_get_by_index(10).in_facility(f)?;
        let due: bool = row.try_get_by_index(11).in_facility(f)?;
        let state = match (claimed_at.is_some(), attempt > 0, due) {
            (true, _, _) => JobState::Running,
            (false, true, _) => JobState::Retrying,
            (false, false, true) => JobState::Waiting,
            (false, false, false) => JobState::Scheduled,
        };
        Ok(JobInfo {
            id: row.try_get_by_index(0).in_facility(f)?,
            kind: row.try_get_by_index(1).in_facility(f)?,
            state,
            payload: self.decode_payload(row, 2)?,
            priority: row.try_get_by_index(3).in_facility(f)?,
            attempt,
            max_attempts: row.try_get_by_index(5).in_facility(f)?,
            unique_key: row.try_get_by_index(6).in_facility(f)?,
            last_error: row.try_get_by_index(7).in_facility(f)?,
            created_at: row.try_get_by_index(8).in_facility(f)?,
            visible_at: row.try_get_by_index(9).in_facility(f)?,
            claimed_at,
            lease_expired: claimed_at.is_some() && due,
            finished_at: None,
        })
    }

    /// A dead-letter or archive row (`QueueDeadGet`, `QueueArchiveGet` columns).
    fn finished_job(&self, row: &QueryResult, state: JobState) -> Result<JobInfo> {
        let f = self.name();
        Ok(JobInfo {
            id: row.try_get_by_index(0).in_facility(f)?,
            kind: row.try_get_by_index(1).in_facility(f)?,
            state,
            payload: self.decode_payload(row, 2)?,
            priority: row.try_get_by_index(3).in_facility(f)?,
            attempt: row.try_get_by_index(4).in_facility(f)?,
            max_attempts: row.try_get_by_index(5).in_facility(f)?,
            unique_key: row.try_get_by_index(6).in_facility(f)?,
            last_error: row.try_get_by_index(7).in_facility(f)?,
            created_at: row.try_get_by_index(8).in_facility(f)?,
            visible_at: None,
            claimed_at: None,
            lease_expired: false,
            finished_at: row.try_get_by_index(9).in_facility(f)?,
        })
    }

    /// One page of jobs in `filter.state` (optionally of one kind or unique key), in id order.
    /// Archived states cannot be listed (the archive is partitioned by time, not id): use
    /// [`Queue::job`] for one archived job.
    pub async fn list_jobs<C: Route>(&self, db: &C, filter: &JobFilter) -> Result<JobPage> {
        if filter.limit == 0 || filter.limit as usize > MAX_BATCH {
            return Err(self.invalid(format!(
                "a page holds 1 to {MAX_BATCH} jobs, asked for {}",
                filter.limit
            )));
        }
        let admin = &self.sql()?.admin;
        let sql = match filter.state {
            JobState::Waiting => admin.list_waiting.as_str(),
            JobState::Scheduled => admin.list_scheduled.as_str(),
            JobState::Retrying => admin.list_retrying.as_str(),
            JobState::Running => admin.list_running.as_str(),
            JobState::Dead => self.admin_sql(&admin.dead_list, "dead letters")?,
            archived => {
                return Err(self.invalid(format!(
                    "{archived:?} jobs are in the archive, which is not listed by id; look one \
                     up with `job(id)`"
                )));
            }
        };
        let values: Vec<Value> = vec![
            filter.after.unwrap_or(0).into(),
            filter.kind.clone().into(),
            filter.unique_key.clone().into(),
            i64::from(filter.limit).into(),
        ];
        let rows = self
            .handle
            .traced("list_jobs", db.read().query_all_raw(stmt(sql, values)))
            .await
            .in_facility(self.name())?;
        let jobs = rows
            .iter()
            .map(|row| match filter.state {
                JobState::Dead => self.finished_job(row, JobState::Dead),
                _ => self.hot_job(row),
            })
            .collect::<Result<Vec<_>>>()?;
        let next = (jobs.len() == filter.limit as usize)
            .then(|| jobs.last().map(|j| j.id))
            .flatten();
        Ok(JobPage { jobs, next })
    }

    /// The job with this id, wherever it is: waiting or running, dead, or archived.
    pub async fn job<C: Route>(&self, db: &C, id: i64) -> Result<Option<JobInfo>> {
        let admin = &self.sql()?.admin;
        let f = self.name();
        let found = self
            .handle
            .traced(
                "job",
                db.read().query_one_raw(stmt(&admin.job_get, [id.into()])),
            )
            .await
            .in_facility(f)?;
        if let Some(row) = found {
            return self.hot_job(&row).map(Some);
        }
        if let Some(sql) = &admin.dead_get {
            let found = self
                .handle
                .traced("job", db.read().query_one_raw(stmt(sql, [id.into()])))
                .await
                .in_facility(f)?;
            if let Some(row) = found {
                return self.finished_job(&row, JobState::Dead).map(Some);
            }
        }
        if let Some(sql) = &admin.archive_get {
            let found = self
                .handle
                .traced("job", db.read().query_one_raw(stmt(sql, [id.into()])))
                .await
                .in_facility(f)?;
            if let Some(row) = found {
                let outcome: String = row.try_get_by_index(10).in_facility(f)?;
                let state = match outcome.as_str() {
                    "discarded" => JobState::Discarded,
                    "cancelled" => JobState::Cancelled,
                    _ => JobState::Completed,
                };
                return self.finished_job(&row, state).map(Some);
            }
        }
        Ok(None)
    }

    /// Cancels a waiting or running job: it moves to the dead letters (or the archive, or is
    /// deleted, as the queue keeps failed jobs) with `cancelled: <reason>` as its error. A
    /// running job's handler sees [`Cancellation::is_cancelled`](super::Cancellation) turn
    /// true; its completion is fenced and changes nothing.
    pub async fn cancel<C: Route>(&self, db: &C, id: i64, reason: &str) -> Result<Cancelled> {
        let sql = self.sql()?;
        let row = self
            .handle
            .traced(
                "cancel",
                db.write()
                    .query_one_raw(stmt(&sql.admin.cancel, [id.into(), reason.into()])),
            )
            .await
            .in_facility(self.name())?;
        let Some(row) = row else {
            return Ok(Cancelled::NotFound);
        };
        let running: bool = row.try_get_by_index(1).in_facility(self.name())?;
        if !running {
            return Ok(Cancelled::Waiting);
        }
        if let Some(channel) = self.def.notify_channel {
            self.handle
                .traced(
                    "cancel",
                    db.write()
                        .execute_raw(stmt(&sql.admin.notify_cancel, [channel.into(), id.into()])),
                )
                .await
                .in_facility(self.name())?;
        }
        Ok(Cancelled::Running)
    }

    /// Makes a waiting, scheduled or retrying job claimable now; `false` when there is no such
    /// job (a dead one comes back with [`Queue::redrive`]).
    pub async fn retry_now<C: Route>(&self, db: &C, id: i64) -> Result<bool> {
        let sql = &self.sql()?.admin.retry_now;
        let row = self
            .handle
            .traced(
                "retry_now",
                db.write().query_one_raw(stmt(sql, [id.into()])),
            )
            .await
            .in_facility(self.name())?;
        Ok(row.is_some())
    }

    /// Deletes a job that is not running (waiting, scheduled, retrying or dead); `false` when
    /// there is none. A running job is refused: [`Queue::cancel`] it.
    pub async fn delete_job<C: Route>(&self, db: &C, id: i64) -> Result<bool> {
        let admin = &self.sql()?.admin;
        let f = self.name();
        let deleted = self
            .handle
            .traced(
                "delete_job",
                db.write()
                    .query_one_raw(stmt(&admin.delete_waiting, [id.into()])),
            )
            .await
            .in_facility(f)?;
        if deleted.is_some() {
            return Ok(true);
        }
        if let Some(sql) = &admin.delete_dead {
            let deleted = self
                .handle
                .traced(
                    "delete_job",
                    db.write().query_one_raw(stmt(sql, [id.into()])),
                )
                .await
                .in_facility(f)?;
            if deleted.is_some() {
                return Ok(true);
            }
        }
        match self.job(db, id).await? {
            Some(job) if job.state == JobState::Running => Err(self.invalid(format!(
                "job {id} is running; cancel it with `cancel` instead of deleting it"
            ))),
            _ => Ok(false),
        }
    }

    /// Deletes every job not running (waiting, scheduled and retrying); returns how many.
    pub async fn purge<C: Route>(&self, db: &C) -> Result<u64> {
        let sql = &self.sql()?.admin.purge;
        let result = self
            .handle
            .traced("purge", db.write().execute_raw(stmt(sql, [])))
            .await
            .in_facility(self.name())?;
        Ok(result.rows_affected())
    }

    /// Deletes every dead letter; returns how many.
    pub async fn purge_dead<C: Route>(&self, db: &C) -> Result<u64> {
        let admin = &self.sql()?.admin;
        let sql = self.admin_sql(&admin.purge_dead, "dead letters")?;
        let result = self
            .handle
            .traced("purge_dead", db.write().execute_raw(stmt(sql, [])))
            .await
            .in_facility(self.name())?;
        Ok(result.rows_affected())
    }

    /// Pauses the queue: from the next claim on, no worker (in any process) claims from it;
    /// running jobs finish. The state is a row in `pgstack_queue_pauses`, so it outlives
    /// restarts; `resume` lifts it.
    pub async fn pause<C: Route>(&self, db: &C, reason: &str) -> Result<()> {
        let sql = &self.sql()?.admin.pause;
        self.handle
            .traced("pause", db.write().execute_raw(stmt(sql, [reason.into()])))
            .await
            .in_facility(self.name())?;
        Ok(())
    }

    /// Resumes a paused queue and wakes its listening workers.
    pub async fn resume<C: Route>(&self, db: &C) -> Result<()> {
        let sql = self.sql()?;
        self.handle
            .traced(
                "resume",
                db.write().execute_raw(stmt(&sql.admin.resume, [])),
            )
            .await
            .in_facility(self.name())?;
        if let Some(channel) = self.def.notify_channel {
            self.handle
                .traced(
                    "resume",
                    db.write().execute_raw(stmt(&sql.notify, [channel.into()])),
                )
                .await
                .in_facility(self.name())?;
        }
        Ok(())
    }

    /// Whether the queue is paused, since when and why.
    pub async fn paused<C: Route>(&self, db: &C) -> Result<Option<Paused>> {
        let sql = &self.sql()?.admin.paused;
        let row = self
            .handle
            .traced("paused", db.primary().query_one_raw(stmt(sql, [])))
            .await
            .in_facility(self.name())?;
        match row {
            Some(row) => Ok(Some(Paused {
                since: row.try_get_by_index(0).in_facility(self.name())?,
                reason: row.try_get_by_index(1).in_facility(self.name())?,
            })),
            None => Ok(None),
        }
    }

    /// Redrives up to `limit` dead jobs of `kind`, oldest first; returns the ids moved.
    pub async fn redrive_kind<C: Route>(&self, db: &C, kind: &str, limit: u32) -> Result<Vec<i64>> {
        let admin = &self.sql()?.admin;
        let sql = self.admin_sql(&admin.dead_ids_by_kind, "dead letters")?;
        if limit == 0 || limit as usize > MAX_BATCH {
            return Err(self.invalid(format!(
                "redrive takes 1 to {MAX_BATCH} jobs at a time, asked for {limit}"
            )));
        }
        let rows = self
            .handle
            .traced(
                "redrive_kind",
                db.write()
                    .query_all_raw(stmt(sql, [kind.into(), i64::from(limit).into()])),
            )
            .await
            .in_facility(self.name())?;
        let ids = rows
            .iter()
            .map(|r| r.try_get_by_index(0).in_facility(self.name()))
            .collect::<Result<Vec<i64>>>()?;
        self.redrive(db, &ids).await
    }
}
