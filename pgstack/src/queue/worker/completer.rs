//! Writing outcomes in batches: everything that finished while the previous batch was being
//! written goes in the next statement. At low load that is one job per statement (no added
//! latency); under load, hundreds.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::Shared;
use super::stats::Counters;
use crate::error::Result;
use crate::queue::{Failure, JobToken};

pub(super) enum Outcome {
    Complete(JobToken),
    Fail(Failure),
    Release(JobToken),
    /// Back to waiting after the delay, the attempt not spent (a handler's `JobSnooze`).
    Snooze(JobToken, Duration),
    /// Already written by a transactional handler: nothing to do.
    Settled,
}

pub(super) async fn completer(shared: Arc<Shared>, mut outcomes: mpsc::UnboundedReceiver<Outcome>) {
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
    let mut snoozed = Vec::new();
    for outcome in batch.drain(..) {
        match outcome {
            Outcome::Complete(token) => done.push(token),
            Outcome::Fail(failure) => failed.push(failure),
            Outcome::Release(token) => released.push(token),
            Outcome::Snooze(token, delay) => snoozed.push((token, delay)),
            Outcome::Settled => {}
        }
    }
    let (queue, db, stats) = (shared.queue, &shared.db, &shared.stats);
    let table = queue.def().table;
    for attempt in 0..4u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
        }
        let result: Result<()> = async {
            if !done.is_empty() {
                let completed = queue.complete(db, &done).await?;
                Counters::add(&stats.completed, completed.len());
                Counters::add(&stats.stale, done.len() - completed.len());
                crate::metrics::queue_count(table, "completed", completed.len() as u64);
                done.clear();
            }
            if !failed.is_empty() {
                let report = queue.fail(db, &failed).await?;
                Counters::add(&stats.retried, report.retried.len());
                Counters::add(&stats.dead, report.dead.len());
                crate::metrics::queue_count(table, "retried", report.retried.len() as u64);
                crate::metrics::queue_count(table, "dead", report.dead.len() as u64);
                for f in &failed {
                    if report.dead.contains(&f.token.id) {
                        tracing::warn!(queue = table, job = f.token.id, attempt = f.token.attempt, error = %f.error, "pgstack worker: job dead-lettered");
                    } else if report.retried.contains(&f.token.id) {
                        tracing::info!(queue = table, job = f.token.id, attempt = f.token.attempt, error = %f.error, "pgstack worker: job failed; it will be retried");
                    }
                }
                let settled = report.retried.len() + report.dead.len();
                Counters::add(&stats.stale, failed.len().saturating_sub(settled));
                failed.clear();
            }
            if !released.is_empty() {
                let back = queue.release(db, &released).await?;
                Counters::add(&stats.released, back.len());
                crate::metrics::queue_count(table, "released", back.len() as u64);
                released.clear();
            }
            if !snoozed.is_empty() {
                let back = queue.snooze(db, &snoozed).await?;
                Counters::add(&stats.snoozed, back.len());
                Counters::add(&stats.stale, snoozed.len() - back.len());
                crate::metrics::queue_count(table, "snoozed", back.len() as u64);
                snoozed.clear();
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => return,
            Err(e) => shared.database_error("settle", &e),
        }
    }
    tracing::error!(
        queue = table,
        jobs = done.len() + failed.len() + released.len() + snoozed.len(),
        "pgstack worker: could not write outcomes after 4 tries; the jobs will be redelivered when their leases expire"
    );
}
