//! What a `[[queue]]` is: its tables, lease, attempts, backoff and archive.

use std::time::Duration;

use crate::value::ValueKind;

/// How long a failed job waits before its next attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    pub kind: BackoffKind,
    pub initial_ms: u64,
    pub max_ms: u64,
    /// Each delay is multiplied by a random factor in `[0.5, 1]` (on the server).
    pub jitter: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackoffKind {
    /// `initial * 2^(attempt - 1)`, capped at `max`.
    Exponential,
    /// `initial * attempt`, capped at `max`.
    Linear,
    /// Always `initial`.
    Fixed,
}

impl Backoff {
    /// The delay after failed attempt `attempt` (1-based), before jitter.
    pub fn delay(&self, attempt: u32) -> Duration {
        let attempt = attempt.max(1);
        let ms = match self.kind {
            BackoffKind::Exponential => {
                let factor = 1u64.checked_shl(attempt - 1).unwrap_or(u64::MAX);
                self.initial_ms.saturating_mul(factor)
            }
            BackoffKind::Linear => self.initial_ms.saturating_mul(u64::from(attempt)),
            BackoffKind::Fixed => self.initial_ms,
        };
        Duration::from_millis(ms.min(self.max_ms))
    }
}

/// The archive's partitioning, from `archive = { retention, partition }`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ArchiveDef {
    pub retention_ms: u64,
    pub partition_ms: u64,
}

/// Everything the runtime knows about a `[[queue]]`, generated from the spec.
#[derive(Clone, Copy, Debug)]
pub struct QueueDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub payload: ValueKind,
    pub visibility_timeout_ms: u64,
    pub max_attempts: u32,
    pub backoff: Backoff,
    pub dead_letter: bool,
    pub priorities: bool,
    pub unique: bool,
    /// `groups = true`: jobs may carry a group key; a group runs one job at a time, in order.
    pub groups: bool,
    /// The LISTEN/NOTIFY channel when `notify = true`.
    pub notify_channel: Option<&'static str>,
    pub archive: Option<ArchiveDef>,
    /// Recurring jobs (`schedules = [..]`), enqueued by the queue's workers.
    pub schedules: &'static [ScheduleDef],
}

/// A recurring job of a queue, from `schedules = [{ name, cron, kind, .. }]`
/// (see `queue::schedule`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ScheduleDef {
    pub name: &'static str,
    /// Five fields (minute to weekday), six with seconds first, or `@daily` and the like.
    pub cron: &'static str,
    /// The IANA time zone the cron fields are read in.
    pub timezone: &'static str,
    pub kind: &'static str,
    /// JSON text on a jsonb queue; the payload's bytes as UTF-8 text on a bytea queue.
    pub payload: &'static str,
    pub priority: i16,
    pub catch_up: CatchUp,
    /// A tick enqueued later than this after its time counts as missed.
    pub grace_ms: u64,
}

/// What happens to ticks missed while no worker of the queue ran (older than `grace`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CatchUp {
    /// Dropped; the schedule resumes with its next tick.
    Skip,
    /// The latest missed tick is enqueued once, to run at once; earlier ones are dropped.
    Last,
}

impl QueueDef {
    pub fn visibility_timeout(&self) -> Duration {
        Duration::from_millis(self.visibility_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXP: Backoff = Backoff {
        kind: BackoffKind::Exponential,
        initial_ms: 1_000,
        max_ms: 60_000,
        jitter: true,
    };

    #[test]
    fn backoff_kinds() {
        let exp = EXP;
        let secs: Vec<u64> = (1..=8).map(|a| exp.delay(a).as_secs()).collect();
        assert_eq!(secs, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(exp.delay(200), Duration::from_secs(60), "no overflow");
        let linear = Backoff {
            kind: BackoffKind::Linear,
            ..exp
        };
        assert_eq!(linear.delay(3), Duration::from_secs(3));
        let fixed = Backoff {
            kind: BackoffKind::Fixed,
            ..exp
        };
        assert_eq!(fixed.delay(9), Duration::from_secs(1));
    }
}
