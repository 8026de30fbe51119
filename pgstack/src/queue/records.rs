//! What goes into a queue and what comes out: payloads, enqueue options, claimed and dead
//! jobs, fencing tokens, failures and metrics.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::Result;
use crate::json;

/// A job's payload: JSON for `payload = "jsonb"` queues, bytes for `"bytea"`.
#[derive(Clone, Debug, PartialEq)]
pub enum Payload {
    Json(serde_json::Value),
    Bytes(Vec<u8>),
}

impl Payload {
    /// Decodes a JSON payload into `T`.
    pub fn decode<T: DeserializeOwned>(&self) -> std::result::Result<T, String> {
        match self {
            Payload::Json(json) => T::deserialize(json).map_err(|e| e.to_string()),
            Payload::Bytes(_) => Err("the payload is bytes, not JSON".to_string()),
        }
    }

    pub fn as_json(&self) -> Option<&serde_json::Value> {
        match self {
            Payload::Json(json) => Some(json),
            Payload::Bytes(_) => None,
        }
    }

    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Payload::Bytes(bytes) => Some(bytes),
            Payload::Json(_) => None,
        }
    }
}

/// Options for one enqueue. `Default` runs the job as soon as possible.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EnqueueOptions {
    /// Run no earlier than this time (wins over `delay`).
    pub run_at: Option<DateTime<Utc>>,
    /// Run no earlier than this long after the enqueue, on the database clock.
    pub delay: Option<Duration>,
    /// Lower runs first; needs `priorities = true` (default 0).
    pub priority: Option<i16>,
    /// A waiting or running job with the same key makes this enqueue return it instead;
    /// needs `unique = true`.
    pub unique_key: Option<String>,
    /// Overrides the spec's `max_attempts` for this job.
    pub max_attempts: Option<u32>,
    /// What an enqueue does when a job with its `unique_key` is already there.
    pub key_mode: KeyMode,
    /// Jobs that share a group key run one at a time, in enqueue order (SQS FIFO message
    /// groups); other groups and jobs without one run in parallel.
    pub group_key: Option<String>,
}

/// What an enqueue with a `unique_key` does when a job with that key is already waiting or
/// running (a running job is never changed). Single enqueues only; `enqueue_many` keeps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum KeyMode {
    /// Return the existing job, unchanged.
    #[default]
    Keep,
    /// A waiting job takes this enqueue's kind, payload, run time, priority and
    /// max_attempts (graphile-worker's `jobKeyMode: "replace"`).
    Replace,
    /// A waiting job moves to this enqueue's run time and payload: with a delay, it runs once
    /// the enqueues have stopped for that long.
    Debounce,
    /// At most one job per key per window: the job runs at the start of the next window (on
    /// the database clock), and every enqueue until then joins it (pg-boss `sendThrottled`).
    /// Its stored key is `<key>@<window number>`.
    Throttle(Duration),
}

impl EnqueueOptions {
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = Some(delay);
        self
    }

    pub fn run_at(mut self, at: DateTime<Utc>) -> Self {
        self.run_at = Some(at);
        self
    }

    pub fn priority(mut self, priority: i16) -> Self {
        self.priority = Some(priority);
        self
    }

    pub fn unique_key(mut self, key: impl Into<String>) -> Self {
        self.unique_key = Some(key.into());
        self
    }

    pub fn max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = Some(attempts);
        self
    }

    /// With a `unique_key`: what happens when a job with the key is already there.
    pub fn key_mode(mut self, mode: KeyMode) -> Self {
        self.key_mode = mode;
        self
    }

    /// Runs this job after every job of the same group enqueued before it, one at a time.
    pub fn group_key(mut self, key: impl Into<String>) -> Self {
        self.group_key = Some(key.into());
        self
    }
}

/// A job for [`Queue::enqueue_many`].
#[derive(Clone, Debug, PartialEq)]
pub struct NewJob {
    pub kind: String,
    pub payload: Payload,
    pub options: EnqueueOptions,
}

impl NewJob {
    /// A JSON job of `kind`.
    pub fn json<T: Serialize + ?Sized>(kind: &str, payload: &T) -> Result<NewJob> {
        let json = json::to_json(payload)
            .map_err(|e| e.into_error("", &format!("of a `{kind}` job's payload")))?;
        Ok(NewJob {
            kind: kind.to_string(),
            payload: Payload::Json(json),
            options: EnqueueOptions::default(),
        })
    }

    pub fn with(mut self, options: EnqueueOptions) -> NewJob {
        self.options = options;
        self
    }
}

/// What an enqueue returns: the job's id, and whether it already existed (unique key).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Enqueued {
    pub id: i64,
    pub duplicate: bool,
}

/// The fencing token of a claimed job: its id and the attempt it was claimed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct JobToken {
    pub id: i64,
    pub attempt: i32,
}

/// A job claimed by [`Queue::claim`]; it is leased until `lease_expires_at`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClaimedJob {
    pub id: i64,
    pub kind: String,
    pub payload: Payload,
    pub priority: i16,
    /// 1 on the first delivery.
    pub attempt: i32,
    pub max_attempts: i32,
    pub created_at: DateTime<Utc>,
    pub unique_key: Option<String>,
    pub lease_expires_at: DateTime<Utc>,
    /// The error of the previous attempt, if it failed.
    pub last_error: Option<String>,
}

impl ClaimedJob {
    pub fn token(&self) -> JobToken {
        JobToken {
            id: self.id,
            attempt: self.attempt,
        }
    }
}

/// A failed attempt, for [`Queue::fail`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub token: JobToken,
    pub max_attempts: i32,
    pub error: String,
    /// Dead-letter at once whatever the attempts left (a payload that can never work).
    pub discard: bool,
}

impl Failure {
    pub fn of(job: &ClaimedJob, error: impl Into<String>) -> Failure {
        Failure {
            token: job.token(),
            max_attempts: job.max_attempts,
            error: error.into(),
            discard: false,
        }
    }
}

/// What [`Queue::fail`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailReport {
    /// Ids scheduled for another attempt.
    pub retried: Vec<i64>,
    /// Ids moved to the dead-letter table (or archived as discarded, or deleted).
    pub dead: Vec<i64>,
}

/// A job in the dead-letter table.
#[derive(Clone, Debug, PartialEq)]
pub struct DeadJob {
    pub id: i64,
    pub kind: String,
    pub payload: Payload,
    pub priority: i16,
    pub attempt: i32,
    pub max_attempts: i32,
    pub unique_key: Option<String>,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub failed_at: DateTime<Utc>,
}

/// Queue depth without scanning the table: each count reads a partial index and stops at
/// `cap` (a count equal to `cap` means at least that many).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueMetrics {
    /// Claimable now (including jobs whose lease expired).
    pub ready: u64,
    /// Claimed, lease still running.
    pub running: u64,
    /// Waiting for their run time or retry time.
    pub scheduled: u64,
    pub dead: u64,
    /// How long the oldest claimable job has been waiting.
    pub oldest_ready_age: Option<Duration>,
    pub cap: u64,
}
