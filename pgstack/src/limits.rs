//! Every limit the runtime enforces on what callers pass, in one place.
//!
//! A value past a limit is refused in Rust with [`Error::InvalidArgument`](crate::Error)
//! naming the limit, before anything reaches PostgreSQL, so no input can panic, abort the
//! process or fail with a raw database error.
//!
//! | limit | applies to |
//! | --- | --- |
//! | [`MAX_BATCH`] items per call | every call that takes or returns a list: kv `get_many`, `set_many`, `scan_prefix` pages; cache `get_many`, `set_many`; queue `enqueue_many`, `claim`, `complete`, `fail`, `extend_lease`, `release`, `redrive`, `dead_letters` pages; rate-limit `check_many`; document `list` pages; vector `k` and `upsert_many` chunks are split internally |
//! | [`MAX_JSON_DEPTH`] nested levels | every JSON value written: kv and cache values, documents and patches, job payloads, vector metadata |
//! | [`MAX_DURATION`] | every duration: TTLs, cache leases, queue delays and leases |
//! | a rate limiter's capacity | a check's cost: `burst` for gcra and token_bucket, `limit` for the window algorithms; a larger cost could never pass |
//!
//! Lists longer than [`MAX_BATCH`] are the caller's to split: one statement holding a
//! 100,000-element array plans, locks and returns as one unit, which is rarely what a caller
//! means, and one limit is easier to remember than one per call.

use std::time::Duration;

use crate::error::{Error, Result};

/// The most items any one call takes or returns (keys, jobs, checks, rows of a page).
pub const MAX_BATCH: usize = 10_000;

/// The deepest nesting of arrays and objects a JSON value may have: what serde_json (and so
/// sqlx) reads back. A real document never comes close; user input can.
pub const MAX_JSON_DEPTH: usize = 127;

/// The longest duration the runtime accepts anywhere (TTL, delay, lease): 100 years of
/// 365.25 days. PostgreSQL's timestamps end in the year 294276, so `now() + MAX_DURATION`
/// always fits; use "no expiry" (`Expiry::Never`, a write without a TTL) for forever.
pub const MAX_DURATION: Duration = Duration::from_secs(36_525 * 86_400);

/// `d` in whole milliseconds, when it is between `min` and [`MAX_DURATION`]; else an
/// `InvalidArgument` naming `what` and the range.
pub(crate) fn millis(facility: &str, what: &str, d: Duration, min: Duration) -> Result<i64> {
    if d < min || d > MAX_DURATION {
        return Err(Error::InvalidArgument {
            facility: facility.to_string(),
            message: format!(
                "{what} must be between {} and 100 years, found {d:?}",
                show(min)
            ),
        });
    }
    // At most 100 years: about 3.2e12 ms, far inside i64.
    Ok(d.as_millis() as i64)
}

/// A list of `len` items, when it is at most [`MAX_BATCH`].
pub(crate) fn batch(facility: &str, what: &str, len: usize) -> Result<()> {
    if len > MAX_BATCH {
        return Err(Error::InvalidArgument {
            facility: facility.to_string(),
            message: format!(
                "at most {MAX_BATCH} {what} per call (`pgstack::limits::MAX_BATCH`), found \
                 {len}; split the list"
            ),
        });
    }
    Ok(())
}

fn show(d: Duration) -> String {
    if d.is_zero() {
        "0".to_string()
    } else if d.subsec_nanos() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{d:?}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_checked_at_both_ends() {
        let ms = Duration::from_millis(1);
        assert_eq!(
            millis("f", "a ttl", Duration::from_secs(2), ms).unwrap(),
            2000
        );
        assert_eq!(
            millis("f", "a ttl", MAX_DURATION, ms).unwrap(),
            3_155_760_000_000
        );
        for bad in [Duration::ZERO, Duration::from_micros(999), Duration::MAX] {
            let message = millis("f", "a ttl", bad, ms).unwrap_err().to_string();
            assert!(message.contains("between 1ms and 100 years"), "{message}");
        }
        assert!(millis("f", "a delay", Duration::ZERO, Duration::ZERO).is_ok());
    }

    #[test]
    fn batches_name_the_limit() {
        assert!(batch("f", "keys", MAX_BATCH).is_ok());
        let message = batch("f", "keys", MAX_BATCH + 1).unwrap_err().to_string();
        assert!(message.contains("at most 10000 keys per call"), "{message}");
    }
}
