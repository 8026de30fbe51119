//! A worker's counters, and the last error it met.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of a worker since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerStats {
    pub claimed: u64,
    /// Claim statements that brought jobs (`claimed / claims` is the mean claim size).
    pub claims: u64,
    pub completed: u64,
    /// Attempts that failed (errors, panics, timeouts, unknown kinds).
    pub failed: u64,
    pub retried: u64,
    pub dead: u64,
    pub panicked: u64,
    pub timed_out: u64,
    /// Jobs given back at shutdown.
    pub released: u64,
    /// Jobs whose handler snoozed them ([`JobSnooze`](crate::queue::JobSnooze)).
    pub snoozed: u64,
    /// Completions or failures ignored because the job's lease had passed to another worker
    /// (or the job was cancelled).
    pub stale: u64,
    /// Running jobs whose lease a heartbeat found taken (or cancelled).
    pub lost_leases: u64,
    /// Database errors (each retried or left to lease expiry).
    pub errors: u64,
    /// The last database error, as it was logged.
    pub last_error: Option<String>,
}

#[derive(Default)]
pub(super) struct Counters {
    pub(super) claimed: AtomicU64,
    pub(super) claims: AtomicU64,
    pub(super) completed: AtomicU64,
    pub(super) failed: AtomicU64,
    pub(super) retried: AtomicU64,
    pub(super) dead: AtomicU64,
    pub(super) panicked: AtomicU64,
    pub(super) timed_out: AtomicU64,
    pub(super) released: AtomicU64,
    pub(super) snoozed: AtomicU64,
    pub(super) stale: AtomicU64,
    pub(super) lost_leases: AtomicU64,
    pub(super) errors: AtomicU64,
    pub(super) last_error: Mutex<Option<String>>,
}

impl Counters {
    pub(super) fn add(counter: &AtomicU64, n: usize) {
        counter.fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(super) fn set_last_error(&self, error: String) {
        *self.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(error);
    }

    pub(super) fn snapshot(&self) -> WorkerStats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        WorkerStats {
            claimed: get(&self.claimed),
            claims: get(&self.claims),
            completed: get(&self.completed),
            failed: get(&self.failed),
            retried: get(&self.retried),
            dead: get(&self.dead),
            panicked: get(&self.panicked),
            timed_out: get(&self.timed_out),
            released: get(&self.released),
            snoozed: get(&self.snoozed),
            stale: get(&self.stale),
            lost_leases: get(&self.lost_leases),
            errors: get(&self.errors),
            last_error: self
                .last_error
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}
