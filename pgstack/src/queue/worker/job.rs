//! Running one job: its handler in a task of its own (a panic ends that task, not the worker),
//! its timeout, its cancellation signal, and the outcome it reports to the completer.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::{Notify, OwnedSemaphorePermit, mpsc};

use super::Shared;
use super::completer::Outcome;
use super::stats::Counters;
use crate::queue::{ClaimedJob, Failure, JobToken};

/// What a handler returns on failure: any error, shown as the job's `last_error`. Two errors
/// steer the job instead of failing the attempt: [`JobSnooze`] and [`JobCancel`].
pub type JobError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Returned by a handler (`Err(JobSnooze::after(d).into())`): run the job again after `d`
/// without spending an attempt. The attempt counter still goes up at the next claim (it is
/// the job's fencing token), and `max_attempts` goes up with it, so a snooze never brings the
/// job closer to its dead letter. Like River's `JobSnooze` and Oban's `{:snooze, seconds}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobSnooze {
    after: Duration,
}

impl JobSnooze {
    /// Again after `after` (at least 1 ms, at most [`limits::MAX_DURATION`](crate::limits::MAX_DURATION)).
    pub fn after(after: Duration) -> Self {
        JobSnooze { after }
    }

    pub fn delay(&self) -> Duration {
        self.after
    }
}

impl std::fmt::Display for JobSnooze {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "snoozed for {:?}", self.after)
    }
}

impl std::error::Error for JobSnooze {}

/// Returned by a handler (`Err(JobCancel::because("account closed").into())`): stop, and never
/// retry. The job goes to the dead letters with the reason (or is deleted when the queue keeps
/// none), whatever attempts it had left. Like River's `JobCancel` and Oban's `{:cancel, reason}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobCancel {
    reason: String,
}

impl JobCancel {
    pub fn because(reason: impl Into<String>) -> Self {
        JobCancel {
            reason: reason.into(),
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl std::fmt::Display for JobCancel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cancelled by its handler: {}", self.reason)
    }
}

impl std::error::Error for JobCancel {}

pub(super) enum HandlerResult {
    Done,
    /// A transactional handler's job, completed in its own transaction (nothing left to write).
    Settled,
    /// A transactional handler's job that was no longer this worker's: rolled back.
    Stale,
    Failed(String),
    /// Can never succeed (the payload does not decode, or its handler cancelled it):
    /// dead-letter at once.
    Discard(String),
    /// Run again after this long, the attempt not spent ([`JobSnooze`]).
    Snooze(Duration),
}

impl HandlerResult {
    /// A handler's error: a snooze, a cancellation, or a failed attempt.
    pub(super) fn from_error(error: JobError) -> HandlerResult {
        if let Some(snooze) = error.downcast_ref::<JobSnooze>() {
            // Checked here: one bad delay must not fail the batch of snoozes it is written in.
            let range = Duration::from_millis(1)..=crate::limits::MAX_DURATION;
            if range.contains(&snooze.after) {
                HandlerResult::Snooze(snooze.after)
            } else {
                HandlerResult::Failed(format!(
                    "the handler snoozed for {:?}, outside 1ms to 100 years",
                    snooze.after
                ))
            }
        } else if let Some(cancel) = error.downcast_ref::<JobCancel>() {
            HandlerResult::Discard(cancel.to_string())
        } else {
            HandlerResult::Failed(error.to_string())
        }
    }
}

pub(super) type HandlerFuture = Pin<Box<dyn Future<Output = HandlerResult> + Send>>;
pub(super) type Handler = Arc<dyn Fn(ClaimedJob, Cancellation) -> HandlerFuture + Send + Sync>;

/// Tells a running handler that its job was cancelled ([`Queue::cancel`](crate::queue::Queue))
/// or its lease lost to another worker: whatever it still writes back is ignored, so it may
/// as well stop.
///
/// A typed handler gets it as [`Delivery::cancel`]; any handler can reach its own with
/// [`Cancellation::current`].
#[derive(Clone)]
pub struct Cancellation {
    state: Arc<CancelState>,
}

/// One job's cancellation, shared by the worker's [`Canceller`] and the handler's
/// [`Cancellation`]s: a flag and a wake-up (one allocation per job; a `watch` channel took
/// eight wake-up lists).
struct CancelState {
    cancelled: AtomicBool,
    /// Set when the worker is done with the job (its `Canceller` dropped).
    over: AtomicBool,
    changed: Notify,
}

/// The worker's side of a job's [`Cancellation`], kept in `Shared::inflight`. Dropping it (the
/// job is over) wakes whatever still waits on [`Cancellation::cancelled`].
pub(super) struct Canceller {
    state: Arc<CancelState>,
}

impl Canceller {
    pub(super) fn cancel(&self) {
        self.state.cancelled.store(true, Ordering::Release);
        self.state.changed.notify_waiters();
    }
}

impl Drop for Canceller {
    fn drop(&mut self) {
        self.state.over.store(true, Ordering::Release);
        self.state.changed.notify_waiters();
    }
}

tokio::task_local! {
    static CURRENT: Cancellation;
}

impl Cancellation {
    pub(super) fn new() -> (Canceller, Cancellation) {
        let state = Arc::new(CancelState {
            cancelled: AtomicBool::new(false),
            over: AtomicBool::new(false),
            changed: Notify::new(),
        });
        (
            Canceller {
                state: state.clone(),
            },
            Cancellation { state },
        )
    }

    /// The cancellation of the job whose handler is running this code, if any.
    pub fn current() -> Option<Cancellation> {
        CURRENT.try_with(Clone::clone).ok()
    }

    /// Whether the job was cancelled (or its lease lost).
    pub fn is_cancelled(&self) -> bool {
        self.state.cancelled.load(Ordering::Acquire)
    }

    /// Waits until the job is cancelled; never returns for a job that finishes normally, so
    /// race it against the work (`tokio::select!`). (It does return once the worker is done
    /// with the job, for a task the handler left behind.)
    pub async fn cancelled(&self) {
        loop {
            let changed = self.state.changed.notified();
            tokio::pin!(changed);
            // Registered before the flags are read: a cancel between the two still wakes us.
            changed.as_mut().enable();
            if self.is_cancelled() || self.state.over.load(Ordering::Acquire) {
                return;
            }
            changed.await;
        }
    }
}

impl std::fmt::Debug for Cancellation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cancellation")
            .field("cancelled", &self.is_cancelled())
            .finish()
    }
}

/// A typed job as its handler receives it.
#[derive(Clone, Debug)]
pub struct Delivery<J> {
    pub job: J,
    pub id: i64,
    /// 1 on the first delivery.
    pub attempt: i32,
    pub max_attempts: i32,
    /// When the job was enqueued; for a schedule's job, the tick it serves (also when it runs
    /// late).
    pub created_at: DateTime<Utc>,
    /// The error of the previous attempt, if it failed.
    pub last_error: Option<String>,
    /// Becomes true when the job is cancelled or its lease is lost.
    pub cancel: Cancellation,
}

/// Runs `job` (claimed and already in `Shared::inflight`, holding `permit`), reporting its
/// outcome on `outcomes`.
///
/// One task per job: the handler runs inside it behind [`CatchUnwind`] (a panic fails the
/// attempt and ends nothing else) and its timeout; aborted at shutdown, the task's
/// [`Settle`] guard gives the job back as it is dropped.
pub(super) fn spawn_job(
    shared: &Arc<Shared>,
    job: ClaimedJob,
    cancel: Cancellation,
    permit: OwnedSemaphorePermit,
    outcomes: mpsc::UnboundedSender<Outcome>,
) {
    let token = job.token();
    let max_attempts = job.max_attempts;
    let table = shared.queue.def().table;
    let failure = move |error: String, discard: bool| {
        Outcome::Fail(Failure {
            token,
            max_attempts,
            error,
            discard,
        })
    };
    let settle = Settle {
        shared: shared.clone(),
        token,
        outcomes,
        _permit: permit,
        settled: false,
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
        if let Outcome::Fail(f) = &outcome {
            tracing::warn!(queue = table, job = token.id, kind = %job.kind, error = %f.error, "pgstack worker: job not run");
        }
        Counters::add(&shared.stats.failed, 1);
        crate::metrics::queue_count(table, "failed", 1);
        settle.send(outcome);
        return;
    }
    let Some(handler) = handler else { return };
    let timeout = shared
        .config
        .kind_timeouts
        .get(&job.kind)
        .copied()
        .unwrap_or(shared.config.job_timeout);
    let task = tokio::spawn(async move {
        let kind = job.kind.clone();
        let started = Instant::now();
        let run = CURRENT.scope(cancel.clone(), CatchUnwind(handler(job, cancel)));
        let joined = match timeout {
            // Elapsed, the timeout drops the handler's future: it runs no further.
            Some(limit) => tokio::time::timeout(limit, run).await.ok(),
            None => Some(run.await),
        };
        let stats = &settle.shared.stats;
        let outcome = match joined {
            None => {
                Counters::add(&stats.timed_out, 1);
                Counters::add(&stats.failed, 1);
                let limit = timeout.unwrap_or_default();
                failure(format!("timed out after {limit:?}"), false)
            }
            Some(Ok(HandlerResult::Done)) => Outcome::Complete(token),
            Some(Ok(HandlerResult::Settled)) => {
                Counters::add(&stats.completed, 1);
                crate::metrics::queue_count(table, "completed", 1);
                Outcome::Settled
            }
            Some(Ok(HandlerResult::Stale)) => {
                Counters::add(&stats.stale, 1);
                Outcome::Settled
            }
            Some(Ok(HandlerResult::Failed(error))) => {
                Counters::add(&stats.failed, 1);
                failure(error, false)
            }
            Some(Ok(HandlerResult::Discard(error))) => {
                Counters::add(&stats.failed, 1);
                failure(error, true)
            }
            Some(Ok(HandlerResult::Snooze(delay))) => Outcome::Snooze(token, delay),
            Some(Err(panic)) => {
                Counters::add(&stats.panicked, 1);
                Counters::add(&stats.failed, 1);
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "a non-string panic".to_string());
                tracing::warn!(queue = table, job = token.id, kind = %kind, panic = %message, "pgstack worker: handler panicked");
                failure(format!("the handler panicked: {message}"), false)
            }
        };
        crate::metrics::queue_job(table, &kind, started.elapsed());
        if matches!(outcome, Outcome::Fail(_)) {
            crate::metrics::queue_count(table, "failed", 1);
        }
        settle.send(outcome);
    });
    if let Some(entry) = shared.inflight().get_mut(&token.id) {
        entry.abort = Some(task.abort_handle());
    }
}

/// A job's last duty, carried by its task: report the outcome, let go of the job, free the
/// handler slot. Dropped without [`Settle::send`] (the task aborted at shutdown, or its
/// runtime gone) it reports a release, so the job is redelivered at once.
struct Settle {
    shared: Arc<Shared>,
    token: JobToken,
    outcomes: mpsc::UnboundedSender<Outcome>,
    /// The handler slot, freed when this is dropped.
    _permit: OwnedSemaphorePermit,
    settled: bool,
}

impl Settle {
    fn send(mut self, outcome: Outcome) {
        self.settled = true;
        self.finish(outcome);
    }

    fn finish(&self, outcome: Outcome) {
        // The completer is gone only when the worker is: the lease then runs out on its own.
        let _ = self.outcomes.send(outcome);
        finished(&self.shared, self.token.id);
    }
}

impl Drop for Settle {
    fn drop(&mut self) {
        if !self.settled {
            self.finish(Outcome::Release(self.token));
        }
    }
}

/// Polls a handler's future, turning a panic into an error: a job task's own
/// `JoinHandle` without a second task to await it.
struct CatchUnwind<F>(F);

impl<F: Future + Unpin> Future for CatchUnwind<F> {
    type Output = std::result::Result<F::Output, Box<dyn std::any::Any + Send>>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let inner = Pin::new(&mut self.0);
        // A future that panicked is dropped, never polled again, so no broken state of it is
        // observed: unwind safety holds as it does for tokio's own JoinHandle.
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(panic) => Poll::Ready(Err(panic)),
        }
    }
}

/// The job is no longer this worker's to hold; wakes a shutdown waiting for the last one.
fn finished(shared: &Shared, id: i64) {
    let now_idle = {
        let mut inflight = shared.inflight();
        inflight.remove(&id);
        inflight.is_empty()
    };
    if now_idle {
        shared.idle.notify_waiters();
    }
}
