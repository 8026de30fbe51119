//! Turning a check's row into a [`Decision`]: remaining capacity, reset and retry times.

use std::time::Duration;

use sea_orm::QueryResult;

use super::RateLimiter;
use super::def::{Algorithm, Decision};
use crate::error::{DbContext, Result};

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

impl RateLimiter {
    /// Turns a check's (or peek's) row into a decision. Check rows are
    /// `now, admitted_state, current_state...`; peek rows are `now, current_state...`; both
    /// start at column `base` (batched rows lead with the key).
    /// A check passed exactly when its admitted state is present; a peek reports whether a
    /// request of `cost` would pass now.
    pub(super) fn decide(
        &self,
        row: &QueryResult,
        base: usize,
        cost: u64,
        is_check: bool,
    ) -> Result<Decision> {
        let f = self.name();
        let now: i64 = row.try_get_by_index(base).in_facility(f)?;
        let offset = usize::from(is_check);
        let capacity = self.capacity();
        let cost_f = cost as f64;
        // `admitted` is Some(state after this request) when a check passed.
        let passed = |admitted: bool, fits: bool| if is_check { admitted } else { fits };
        let window = micros(self.period_us());
        let quota = self.def.limit;
        Ok(match self.def.algorithm {
            Algorithm::Gcra => {
                let t = self.interval_us();
                let cap_us = t * capacity as f64;
                let admitted: Option<i64> = if is_check {
                    row.try_get_by_index(base + 1).in_facility(f)?
                } else {
                    None
                };
                let current: Option<i64> =
                    row.try_get_by_index(base + 1 + offset).in_facility(f)?;
                let tat = admitted.or(current).unwrap_or(now).max(now);
                let used = (tat - now) as f64;
                let allowed = passed(admitted.is_some(), used + t * cost_f <= cap_us);
                Decision {
                    allowed,
                    limit: capacity,
                    remaining: ((cap_us - used) / t).floor().max(0.0) as u64,
                    reset_after: micros(tat - now),
                    retry_after: (!allowed)
                        .then(|| micros((used + t * cost_f - cap_us).ceil().max(0.0) as i64)),
                    quota,
                    window,
                }
            }
            Algorithm::TokenBucket => {
                let rate = self.def.limit as f64 / self.period_us().max(1) as f64;
                let admitted: Option<f64> = if is_check {
                    row.try_get_by_index(base + 1).in_facility(f)?
                } else {
                    None
                };
                let stored: Option<f64> = row.try_get_by_index(base + 1 + offset).in_facility(f)?;
                let updated: Option<i64> =
                    row.try_get_by_index(base + 2 + offset).in_facility(f)?;
                let tokens = match (admitted, stored, updated) {
                    (Some(after), _, _) => after,
                    (None, Some(tokens), Some(updated)) => {
                        (tokens + (now - updated).max(0) as f64 * rate).min(capacity as f64)
                    }
                    _ => capacity as f64,
                };
                let allowed = passed(admitted.is_some(), tokens >= cost_f);
                Decision {
                    allowed,
                    limit: capacity,
                    remaining: tokens.floor().max(0.0) as u64,
                    reset_after: micros(((capacity as f64 - tokens) / rate).ceil() as i64),
                    retry_after: (!allowed)
                        .then(|| micros(((cost_f - tokens) / rate).ceil().max(0.0) as i64)),
                    quota,
                    window,
                }
            }
            Algorithm::FixedWindow => {
                let window_us = self.period_us().max(1);
                // Check rows: now, admitted count, admitted window, stored window and count.
                let (admitted, admitted_window, stored_at) = if is_check {
                    let count: Option<i64> = row.try_get_by_index(base + 1).in_facility(f)?;
                    let window: Option<i64> = row.try_get_by_index(base + 2).in_facility(f)?;
                    (count, window, base + 3)
                } else {
                    (None, None, base + 1)
                };
                let stored_start: Option<i64> = row.try_get_by_index(stored_at).in_facility(f)?;
                let stored_count: Option<i64> =
                    row.try_get_by_index(stored_at + 1).in_facility(f)?;
                // The window this request counts in: a check admitted while it waited for the
                // row lock may have been counted in the window a later check opened.
                let own = now - now.rem_euclid(window_us);
                let start = admitted_window.or(stored_start).map_or(own, |s| s.max(own));
                let used = match (admitted, stored_start, stored_count) {
                    (Some(count), _, _) => count,
                    (None, Some(s), Some(count)) if s >= own => count,
                    _ => 0,
                };
                let limit = i64::try_from(self.def.limit).unwrap_or(i64::MAX);
                let fits = used.saturating_add(cost as i64) <= limit;
                let allowed = passed(admitted.is_some(), fits);
                let window_left = micros(start + window_us - now);
                Decision {
                    allowed,
                    limit: self.def.limit,
                    remaining: (limit - used).max(0) as u64,
                    reset_after: if used == 0 {
                        Duration::ZERO
                    } else {
                        window_left
                    },
                    // A denied request that fits lost a race with a concurrent one: retry now.
                    retry_after: (!allowed).then_some(if fits {
                        Duration::ZERO
                    } else {
                        window_left
                    }),
                    quota,
                    window,
                }
            }
            Algorithm::SlidingWindow => {
                let period = self.period_us().max(1);
                let admitted: Option<Vec<i64>> = if is_check {
                    row.try_get_by_index(base + 1).in_facility(f)?
                } else {
                    None
                };
                let stored: Option<Vec<i64>> =
                    row.try_get_by_index(base + 1 + offset).in_facility(f)?;
                let was_admitted = admitted.is_some();
                let mut hits: Vec<i64> = admitted
                    .or(stored)
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|h| *h > now - period)
                    .collect();
                hits.sort_unstable();
                let limit = usize::try_from(self.def.limit).unwrap_or(usize::MAX);
                let need = usize::try_from(cost).unwrap_or(usize::MAX);
                let fits = hits.len().saturating_add(need) <= limit;
                let allowed = passed(was_admitted, fits);
                // The request fits once the oldest `hits + need - limit` hits have left.
                let retry_after = (!allowed).then(|| {
                    if fits {
                        return Duration::ZERO;
                    }
                    let leaving = hits.len() + need - limit;
                    let at = hits.get(leaving - 1).copied().unwrap_or(now);
                    micros(at + period - now)
                });
                Decision {
                    allowed,
                    limit: self.def.limit,
                    remaining: limit.saturating_sub(hits.len()) as u64,
                    reset_after: hits
                        .last()
                        .map_or(Duration::ZERO, |newest| micros(newest + period - now)),
                    retry_after,
                    quota,
                    window,
                }
            }
        })
    }
}
