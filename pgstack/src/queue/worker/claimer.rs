//! Claiming and dispatching. The claimer keeps up to `concurrency + prefetch` jobs leased to
//! this worker: the running ones and a local buffer of claimed jobs waiting for a free handler
//! slot. It refills the buffer in one statement when room for a batch opens up, while jobs keep
//! starting from the buffer; when the queue runs dry it sleeps until a NOTIFY, the next
//! scheduled job, or the poll interval, whichever comes first.
//!
//! Unless [`super::Worker::prefetch`] fixed its size, the buffer is paced ([`Pace`]): it aims
//! at about [`AHEAD`] of work at the rate jobs have been starting, between `concurrency` and
//! the default cap. Fast handlers get claims of a thousand jobs (the per-job cost of a claim
//! falls with its size); slow ones hold a few, so a job enqueued behind them, or with a higher
//! priority, waits at most about [`AHEAD`] in a buffer, and a small backlog spreads over
//! workers.
//!
//! A queue's claims run at most [`CLAIMS_AT_ONCE`] at a time, across all processes:
//! concurrent claims of the same ready rows step over each other's locks.
//!
//! A buffered job is leased like a running one: it sits in `Shared::inflight` (without an
//! abort handle) so the heartbeat extends its lease, a cancellation or a lost lease drops it
//! before it starts, and when claiming stops (shutdown) every buffered job is released at
//! once, so another worker claims it without waiting for the lease to run out.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Sleep;

use super::completer::Outcome;
use super::job::{Cancellation, spawn_job};
use super::stats::Counters;
use super::{InFlight, QueueKey, Shared, queue_key};
use crate::error::Result;
use crate::queue::ClaimedJob;

/// What one refill brought back.
struct Refill {
    jobs: Vec<ClaimedJob>,
    /// Set when the queue ran dry (fewer jobs than asked): how long to wait before asking again.
    idle: Option<Duration>,
    /// When this worker registered as a waiter (listening workers only), as the refill left it.
    waiting_since: Option<Instant>,
}

pub(super) async fn claimer(
    shared: Arc<Shared>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    mut stop: watch::Receiver<bool>,
) {
    let concurrency = shared.config.concurrency;
    let config = &shared.config;
    let mut pace = Pace::new(concurrency, config.prefetch, config.paced, Instant::now());
    let slots = Arc::new(Semaphore::new(concurrency));
    let mut buffer: VecDeque<(ClaimedJob, Cancellation)> = VecDeque::new();
    let mut claim: Option<(usize, JoinHandle<Result<Refill>>)> = None;
    let mut pause: Option<Pin<Box<Sleep>>> = None;
    let mut failures = 0u32;
    let mut waiting_since: Option<Instant> = None;
    loop {
        if *stop.borrow() {
            break;
        }
        let running = concurrency - slots.available_permits();
        let held = running + buffer.len();
        let prefetch = pace.target(Instant::now());
        // A refill waits until it can take at least this many (with no prefetch: one free slot).
        let refill_at = (prefetch / 2).max(1);
        let room = (concurrency + prefetch)
            .saturating_sub(held)
            .min(shared.config.batch);
        let starved = buffer.is_empty() && running < concurrency;
        if claim.is_none() && pause.is_none() && room > 0 && (room >= refill_at || starved) {
            let task = tokio::spawn(refill(shared.clone(), room, waiting_since));
            claim = Some((room, task));
        }
        tokio::select! {
            biased;
            _ = stop.changed() => break,
            joined = async { (&mut claim.as_mut().map(|c| &mut c.1)?).await.ok() }, if claim.is_some() => {
                claim = None;
                match joined {
                    Some(Ok(refill)) => {
                        failures = 0;
                        waiting_since = refill.waiting_since;
                        pause = refill.idle.map(|d| Box::pin(tokio::time::sleep(d)));
                        take(&shared, refill.jobs, &mut buffer);
                    }
                    Some(Err(e)) => {
                        shared.database_error("claim", &e);
                        failures = (failures + 1).min(6);
                        // Back off 100ms, 200ms, ... 3.2s while the database is unavailable.
                        pause = Some(Box::pin(tokio::time::sleep(Duration::from_millis(50 << failures))));
                    }
                    // The refill task panicked or was cancelled: nothing was claimed that we
                    // know of (a lease it took runs out on its own).
                    None => pause = Some(Box::pin(tokio::time::sleep(shared.config.poll_interval))),
                }
            }
            permit = slots.clone().acquire_owned(), if !buffer.is_empty() => {
                let Ok(permit) = permit else { break };
                let mut permit = Some(permit);
                while let Some(p) = permit.take().or_else(|| slots.clone().try_acquire_owned().ok()) {
                    let Some((job, cancel)) = buffer.pop_front() else { break };
                    if cancel.is_cancelled() {
                        // Cancelled or its lease lost while it waited: it is not ours to run.
                        shared.inflight().remove(&job.id);
                        permit = Some(p);
                        continue;
                    }
                    spawn_job(&shared, job, cancel, p, outcomes.clone());
                    pace.started += 1;
                }
            }
            _ = async { pause.as_mut()?.await; Some(()) }, if pause.is_some() => pause = None,
            _ = shared.wake.notified(), if pause.is_some() && failures == 0 => pause = None,
        }
    }
    // Claiming stops: a claim in flight still lands (its jobs are ours until released), then
    // every job not yet started goes back at once.
    if let Some((_, task)) = claim
        && let Ok(Ok(refill)) = task.await
    {
        waiting_since = refill.waiting_since;
        take(&shared, refill.jobs, &mut buffer);
    }
    if !buffer.is_empty() {
        let mut inflight = shared.inflight();
        for (job, _) in buffer.drain(..) {
            inflight.remove(&job.id);
            let _ = outcomes.send(Outcome::Release(job.token()));
        }
        if inflight.is_empty() {
            shared.idle.notify_waiters();
        }
    }
    if waiting_since.is_some() {
        // Left registered, the row only costs inserts a NOTIFY until it goes stale (60s).
        if let Err(e) = shared.queue.wait_end(&shared.db, &shared.id).await {
            shared.database_error("wait_end", &e);
        }
    }
}

/// How long a paced buffer's jobs should last at the rate jobs have been starting.
const AHEAD: Duration = Duration::from_millis(250);
/// How often a paced buffer's size is reconsidered, at most.
const SAMPLE: Duration = Duration::from_millis(100);

/// The size the local buffer aims at: fixed, or paced to about [`AHEAD`] of work.
struct Pace {
    /// The largest buffer (a fixed one's size).
    max: usize,
    /// The smallest paced buffer: one job per handler slot, so a refill is never the only
    /// thing between a slot and its next job.
    min: usize,
    paced: bool,
    target: usize,
    /// Jobs started since `since`.
    started: usize,
    since: Instant,
}

impl Pace {
    fn new(concurrency: usize, prefetch: usize, paced: bool, now: Instant) -> Pace {
        let min = concurrency.min(prefetch);
        Pace {
            max: prefetch,
            min,
            paced,
            target: if paced { min } else { prefetch },
            started: 0,
            since: now,
        }
    }

    fn target(&mut self, now: Instant) -> usize {
        let elapsed = now.saturating_duration_since(self.since);
        if !self.paced || elapsed < SAMPLE {
            return self.target;
        }
        let rate = self.started as f64 / elapsed.as_secs_f64();
        let want = (rate * AHEAD.as_secs_f64()).ceil() as usize;
        // Grow at once; shrink halfway, so one slow sample (a pause, a burst of slow jobs)
        // does not empty the buffer.
        let next = if want >= self.target {
            want
        } else {
            (self.target + want) / 2
        };
        self.target = next.clamp(self.min, self.max);
        self.started = 0;
        self.since = now;
        self.target
    }
}

/// Buffers freshly claimed jobs, leased to this worker from now on.
fn take(shared: &Shared, jobs: Vec<ClaimedJob>, buffer: &mut VecDeque<(ClaimedJob, Cancellation)>) {
    if jobs.is_empty() {
        return;
    }
    let lease_until = Instant::now() + shared.queue.def().visibility_timeout();
    let mut inflight = shared.inflight();
    for job in jobs {
        let (cancel_tx, cancel) = Cancellation::new();
        inflight.insert(
            job.id,
            InFlight {
                attempt: job.attempt,
                lease_until,
                abort: None,
                cancel: cancel_tx,
            },
        );
        buffer.push_back((job, cancel));
    }
}

/// One claim statement for up to `asked` jobs, plus the bookkeeping of a listening worker
/// around it: a busy worker leaves the waiters (enqueues stop paying for NOTIFY); one that ran
/// dry registers, then claims once more before it blocks (a job committed after the
/// registration notifies; one committed before it is claimed now).
async fn refill(
    shared: Arc<Shared>,
    asked: usize,
    mut waiting_since: Option<Instant>,
) -> Result<Refill> {
    let table = shared.queue.def().table;
    let started = Instant::now();
    let mut jobs = claim(&shared, asked).await?;
    crate::metrics::queue_claim(table, started.elapsed());
    if jobs.len() == asked && waiting_since.is_some() {
        match shared.queue.wait_end(&shared.db, &shared.id).await {
            Ok(()) => waiting_since = None,
            Err(e) => shared.database_error("wait_end", &e),
        }
    }
    if jobs.len() < asked && shared.listening.load(Ordering::Relaxed) {
        let stale = waiting_since.is_none_or(|at| at.elapsed() > Duration::from_secs(60));
        if stale {
            match shared.queue.wait_start(&shared.db, &shared.id).await {
                Ok(()) => {
                    let first = waiting_since.is_none();
                    waiting_since = Some(Instant::now());
                    if first {
                        // Straight, not in turn: the jobs claimed above are not yet in the
                        // heartbeat's care, and a wait for a turn could outlast their lease.
                        let more = shared.queue.claim(&shared.db, asked - jobs.len()).await?;
                        jobs.extend(more);
                    }
                }
                Err(e) => shared.database_error("wait_start", &e),
            }
        }
    }
    let got = jobs.len();
    Counters::add(&shared.stats.claimed, got);
    crate::metrics::queue_count(table, "claimed", got as u64);
    if got > 0 {
        Counters::add(&shared.stats.claims, 1);
        tracing::debug!(queue = table, claimed = got, "pgstack worker: claimed jobs");
    }
    // A claim that found some but not all looks again as soon as there is room.
    let idle = if got == 0 {
        Some(idle_wait(&shared).await)
    } else {
        None
    };
    Ok(Refill {
        jobs,
        idle,
        waiting_since,
    })
}

/// How many claim statements of one queue run at once: in turns across processes (advisory
/// locks, `QueueClaimTurn` in `pgstack/sql/queue.sql`), and in this process behind a
/// semaphore first, so a claim waiting for its turn holds no pooled connection.
///
/// Claims run concurrently all start at the head of the same ready index, and each steps over
/// the rows the others hold locked (or claimed after its snapshot) before it finds its own.
/// Under `pgstack-bench queue` with 16 workers in one process, letting every worker claim at
/// once ran 60k-69k jobs/s; at most four at a time, 109k (at most two: the same; one: 88k-93k).
/// With 16 worker processes, turns across processes took 48k-60k to 80k-82k (two turns: 76k-78k;
/// eight: 71k).
const CLAIMS_AT_ONCE: usize = 4;

/// The claim gate of each queue in this process.
static CLAIM_GATES: Mutex<Vec<(QueueKey, Arc<Semaphore>)>> = Mutex::new(Vec::new());

/// One claim statement for up to `asked` jobs, once this process's gate for the queue and then
/// a turn at claiming it let it.
async fn claim(shared: &Shared, asked: usize) -> Result<Vec<ClaimedJob>> {
    let gate = claim_gate(queue_key(shared.queue));
    // The gate is never closed, so a permit always comes.
    let _permit = gate.acquire().await;
    shared
        .queue
        .claim_in_turn(&shared.db, asked, CLAIMS_AT_ONCE)
        .await
}

/// This process's claim gate for the queue `key`.
fn claim_gate(key: QueueKey) -> Arc<Semaphore> {
    // Nothing panics while holding it; recover the list if something ever did.
    let mut gates = CLAIM_GATES.lock().unwrap_or_else(|e| e.into_inner());
    match gates.iter().find(|(k, _)| *k == key) {
        Some((_, gate)) => gate.clone(),
        None => {
            let gate = Arc::new(Semaphore::new(CLAIMS_AT_ONCE));
            gates.push((key, gate.clone()));
            gate
        }
    }
}

/// How long a claimer that found nothing waits before claiming again: the poll interval, or
/// less when a scheduled job is due sooner.
async fn idle_wait(shared: &Shared) -> Duration {
    let poll = shared.config.poll_interval;
    if shared.queue.def().priorities {
        return poll;
    }
    match shared.queue.next_visible_at(&shared.db).await {
        // A job already due that the claim did not get: another worker took it, or the queue
        // is paused. Look again soon, without spinning.
        Ok(Some(at)) if at <= Utc::now() => poll.min(Duration::from_millis(100)),
        Ok(Some(at)) => {
            let until = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            until.clamp(Duration::from_millis(1), poll)
        }
        Ok(None) => poll,
        Err(e) => {
            shared.database_error("next_visible_at", &e);
            poll
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pace(paced: bool) -> (Pace, Instant) {
        let now = Instant::now();
        (Pace::new(16, 1024, paced, now), now)
    }

    #[test]
    fn a_paced_buffer_starts_at_one_job_per_slot_and_grows_with_the_rate() {
        let (mut pace, t0) = pace(true);
        assert_eq!(pace.target(t0), 16);
        // 400 starts in 100 ms is 4,000/s: 250 ms of it is 1,000 jobs.
        pace.started = 400;
        assert_eq!(pace.target(t0 + SAMPLE), 1000);
        // Faster still: the cap holds.
        pace.started = 10_000;
        assert_eq!(pace.target(t0 + 2 * SAMPLE), pace.max);
    }

    #[test]
    fn a_paced_buffer_shrinks_halfway_per_sample_down_to_one_job_per_slot() {
        let (mut pace, t0) = pace(true);
        pace.started = 400;
        assert_eq!(pace.target(t0 + SAMPLE), 1000);
        // Slow handlers: 16 starts per 100 ms (160/s) want a buffer of 40.
        pace.started = 16;
        assert_eq!(pace.target(t0 + 2 * SAMPLE), 520);
        pace.started = 16;
        assert_eq!(pace.target(t0 + 3 * SAMPLE), 280);
        // An idle stretch: nothing started, down to the floor.
        for n in 4..12 {
            assert!(pace.target(t0 + n * SAMPLE) >= 16);
        }
        assert_eq!(pace.target(t0 + 12 * SAMPLE), 16);
    }

    #[test]
    fn a_paced_buffer_is_reconsidered_at_most_once_per_sample() {
        let (mut pace, t0) = pace(true);
        pace.started = 400;
        assert_eq!(pace.target(t0 + SAMPLE / 2), 16);
        assert_eq!(pace.target(t0 + SAMPLE), 1000);
    }

    #[test]
    fn the_workers_of_one_queue_share_its_claim_gate() {
        let a = claim_gate(("gate_test", "jobs_a"));
        assert!(Arc::ptr_eq(&a, &claim_gate(("gate_test", "jobs_a"))));
        assert!(!Arc::ptr_eq(&a, &claim_gate(("gate_test", "jobs_b"))));
        assert!(!Arc::ptr_eq(&a, &claim_gate(("other_schema", "jobs_a"))));
        assert_eq!(a.available_permits(), CLAIMS_AT_ONCE);
    }

    #[test]
    fn a_fixed_prefetch_holds_its_size() {
        let (mut pace, t0) = pace(false);
        assert_eq!(pace.target(t0), pace.max);
        pace.started = 1;
        assert_eq!(pace.target(t0 + 10 * SAMPLE), pace.max);
    }
}
