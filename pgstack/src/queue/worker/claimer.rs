//! Claiming: waits for free handler slots, claims up to that many jobs in one statement and
//! spawns a task per job; when the queue runs dry it sleeps until a NOTIFY, the next scheduled
//! job, or the poll interval, whichever comes first.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use chrono::Utc;
use tokio::sync::{Semaphore, mpsc, watch};

use super::Shared;
use super::completer::Outcome;
use super::job::spawn_job;
use super::stats::Counters;

pub(super) async fn claimer(
    shared: Arc<Shared>,
    outcomes: mpsc::UnboundedSender<Outcome>,
    mut stop: watch::Receiver<bool>,
) {
    let table = shared.queue.def().table;
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
        let started = Instant::now();
        let jobs = match shared.queue.claim(&shared.db, asked).await {
            Ok(jobs) => {
                crate::metrics::queue_claim(table, started.elapsed());
                failures = 0;
                jobs
            }
            Err(e) => {
                shared.database_error("claim", &e);
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
        crate::metrics::queue_count(table, "claimed", got as u64);
        if got > 0 {
            tracing::debug!(queue = table, claimed = got, "pgstack worker: claimed jobs");
        }
        for job in jobs {
            let Some(permit) = permits.pop() else { break };
            spawn_job(&shared, job, permit, outcomes.clone());
        }
        drop(permits);
        if got == asked && waiting_since.is_some() {
            // Busy: leave the waiters so enqueues stop paying for NOTIFY.
            match shared.queue.wait_end(&shared.db, &shared.id).await {
                Ok(()) => waiting_since = None,
                Err(e) => shared.database_error("wait_end", &e),
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
                        Err(e) => shared.database_error("wait_start", &e),
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
            shared.database_error("wait_end", &e);
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
