//! Rate limiters (`[[rate_limit]]`): GCRA, fixed window, sliding window and token bucket, each
//! one statement and one round trip on the database clock, with a cost per request.
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection, api: &'static pgstack::rate_limit::RateLimiter) -> pgstack::Result<()> {
//! let decision = api.check(db, "user:42").await?;
//! if !decision.allowed {
//!     // 429, with Retry-After and RateLimit headers.
//!     for (name, value) in decision.headers("api") {
//!         println!("{name}: {value}");
//!     }
//! }
//!
//! // Several keys in one statement, each judged as its own check would be.
//! let both = api.check_many(db, &[("user:42", 1), ("ip:10.0.0.7", 1)]).await?;
//!
//! // Many tasks checking at once: a batcher sends their checks together.
//! let batcher = api.batcher(db, 2);
//! let decision = batcher.check("user:42").await?;
//! # Ok(()) }
//! ```
//!
//! What each algorithm guarantees, with `limit` per `period` and `burst` (default `limit`):
//!
//! - `gcra` and `token_bucket`: at most `burst` at once, then `limit` per `period` as capacity
//!   refills; over any span `t`, at most `burst + limit·t/period` requests pass.
//! - `fixed_window`: at most `limit` per epoch-aligned window (twice that across a boundary).
//! - `sliding_window`: at most `limit` in **any** window of length `period` (exact; it keeps one
//!   timestamp per admitted request, so `limit` is at most 10,000).
//!
//! Concurrent callers on one key cannot overshoot: admission happens inside the row lock of an
//! `INSERT ... ON CONFLICT DO UPDATE ... WHERE`. A denied request changes nothing.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Value};

use crate::cluster::Route;
use tokio::sync::oneshot;

use crate::coalesce::{Answer, Coalescer};
use crate::error::{DbContext, Error, Result};
use crate::ident::TableName;
use crate::limits;
use crate::sql::{SqlFile, stmt};

/// The algorithm of a limiter, from the spec's `algorithm`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Algorithm {
    Gcra,
    FixedWindow,
    SlidingWindow,
    TokenBucket,
}

/// What the generator knows about a `[[rate_limit]]` facility.
#[derive(Clone, Copy, Debug)]
pub struct RateLimitDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub algorithm: Algorithm,
    /// Requests (cost units) per period.
    pub limit: u64,
    pub period_ms: u64,
    /// Capacity for `gcra` and `token_bucket`; `None` means `limit`.
    pub burst: Option<u64>,
}

/// The outcome of a check: whether it passed, and what to tell the client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    /// The most a client may use at once: `burst` for gcra and token_bucket, else `limit`.
    pub limit: u64,
    /// What is left now (after this request, if it passed).
    pub remaining: u64,
    /// Until the limiter is back to full capacity for this key.
    pub reset_after: Duration,
    /// For a denied request: how long until the same request would pass.
    pub retry_after: Option<Duration>,
    /// The spec's `limit` and `period`, for the `RateLimit-Policy` header.
    pub quota: u64,
    pub window: Duration,
}

impl Decision {
    /// Response headers: the IETF draft's `RateLimit-Policy` and `RateLimit` (named `policy`),
    /// the older `RateLimit-Limit`, `-Remaining` and `-Reset`, and `Retry-After` when denied.
    /// Times are whole seconds, rounded up.
    pub fn headers(&self, policy: &str) -> Vec<(&'static str, String)> {
        let secs = |d: Duration| d.as_millis().div_ceil(1000).to_string();
        let mut headers = vec![
            (
                "RateLimit-Policy",
                format!("\"{policy}\";q={};w={}", self.quota, secs(self.window)),
            ),
            ("RateLimit-Limit", self.limit.to_string()),
            ("RateLimit-Remaining", self.remaining.to_string()),
            ("RateLimit-Reset", secs(self.reset_after)),
            (
                "RateLimit",
                format!(
                    "\"{policy}\";r={};t={}",
                    self.remaining,
                    secs(self.reset_after)
                ),
            ),
        ];
        if let Some(retry) = self.retry_after {
            headers.push(("Retry-After", secs(retry)));
        }
        headers
    }
}

/// The most checks one batched statement takes ([`limits::MAX_BATCH`]).
pub const MAX_CHECKS: usize = limits::MAX_BATCH;

/// The most checks a [`CheckBatcher`] sends in one statement: past a thousand, a batch only
/// holds its rows' locks longer.
const BATCHER_CHECKS: usize = 1000;

struct LimitSql {
    check: String,
    check_many: String,
    peek: String,
    reset: String,
    sweep: String,
}

fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../sql/rate_limit.sql")))
}

fn micros(us: i64) -> Duration {
    Duration::from_micros(us.max(0) as u64)
}

/// A `[[rate_limit]]`.
pub struct RateLimiter {
    def: RateLimitDef,
    sql: OnceLock<std::result::Result<LimitSql, String>>,
}

impl RateLimiter {
    pub const fn new(def: RateLimitDef) -> RateLimiter {
        RateLimiter {
            def,
            sql: OnceLock::new(),
        }
    }

    pub fn def(&self) -> &RateLimitDef {
        &self.def
    }

    fn name(&self) -> &'static str {
        self.def.table
    }

    fn sql(&self) -> Result<&LimitSql> {
        self.sql
            .get_or_init(|| {
                let table =
                    TableName::new(self.def.schema, self.def.table).map_err(|e| e.to_string())?;
                let table = table.to_string();
                let vars = [
                    ("table", table.as_str()),
                    (
                        "now_us",
                        "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint",
                    ),
                ];
                let suffix = match self.def.algorithm {
                    Algorithm::Gcra => "Gcra",
                    Algorithm::FixedWindow => "FixedWindow",
                    Algorithm::SlidingWindow => "SlidingWindow",
                    Algorithm::TokenBucket => "TokenBucket",
                };
                let file = sql_file();
                Ok(LimitSql {
                    check: file.get(&format!("Rate{suffix}"), &vars),
                    check_many: file.get(&format!("Rate{suffix}Many"), &vars),
                    peek: file.get(&format!("RatePeek{suffix}"), &vars),
                    reset: file.get("RateReset", &vars),
                    sweep: file.get(&format!("RateSweep{suffix}"), &vars),
                })
            })
            .as_ref()
            .map_err(|_| {
                Error::InvalidIdentifier(format!("{}.{}", self.def.schema, self.def.table))
            })
    }

    fn period_us(&self) -> i64 {
        i64::try_from(self.def.period_ms.saturating_mul(1000)).unwrap_or(i64::MAX)
    }

    fn capacity(&self) -> u64 {
        match self.def.algorithm {
            Algorithm::Gcra | Algorithm::TokenBucket => self.def.burst.unwrap_or(self.def.limit),
            Algorithm::FixedWindow | Algorithm::SlidingWindow => self.def.limit,
        }
        .max(1)
    }

    /// Microseconds between two requests at the sustained rate (GCRA's emission interval).
    fn interval_us(&self) -> f64 {
        self.period_us() as f64 / self.def.limit.max(1) as f64
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() || key.contains('\0') {
            return Err(Error::InvalidArgument {
                facility: self.name().to_string(),
                message: format!("key {key:?} must be non-empty text without NUL characters"),
            });
        }
        Ok(())
    }

    /// Refuses a cost the limiter could never admit, even with a full bucket or an empty
    /// window: no `retry_after` would ever be true for it.
    fn check_cost_fits(&self, cost: u64) -> Result<()> {
        let capacity = self.capacity();
        if cost <= capacity {
            return Ok(());
        }
        let bound = match self.def.algorithm {
            Algorithm::Gcra | Algorithm::TokenBucket => "its `burst`",
            Algorithm::FixedWindow | Algorithm::SlidingWindow => "its `limit` per window",
        };
        Err(self.invalid(format!(
            "a cost of {cost} can never pass: this limiter admits at most {capacity} at once \
             ({bound}); pass a cost between 1 and {capacity}, or raise it in pgstack.toml"
        )))
    }

    fn invalid(&self, message: String) -> Error {
        Error::InvalidArgument {
            facility: self.name().to_string(),
            message,
        }
    }

    /// Checks one request (cost 1) against `key`'s limit.
    pub async fn check<C: Route>(&self, db: &C, key: &str) -> Result<Decision> {
        self.check_cost(db, key, 1).await
    }

    /// Checks a request costing `cost` units; a cost of 0 is a [`RateLimiter::peek`].
    pub async fn check_cost<C: Route>(&self, db: &C, key: &str, cost: u64) -> Result<Decision> {
        self.check_key(key)?;
        if cost == 0 {
            return self.peek(db, key).await;
        }
        self.check_cost_fits(cost)?;
        let sql = self.sql()?;
        let cost_i = i64::try_from(cost).unwrap_or(i64::MAX);
        let capacity = self.capacity();
        let values: Vec<Value> = match self.def.algorithm {
            Algorithm::Gcra => {
                let t = self.interval_us();
                vec![
                    key.into(),
                    ((t * cost as f64).round() as i64).into(),
                    ((t * capacity as f64).round() as i64).into(),
                ]
            }
            Algorithm::TokenBucket => vec![
                key.into(),
                (self.def.limit as f64 / self.period_us().max(1) as f64).into(),
                (capacity as f64).into(),
                (cost as f64).into(),
            ],
            Algorithm::FixedWindow | Algorithm::SlidingWindow => vec![
                key.into(),
                self.period_us().max(1).into(),
                i64::try_from(self.def.limit).unwrap_or(i64::MAX).into(),
                cost_i.into(),
            ],
        };
        let row = db
            .primary()
            .query_one_raw(stmt(&sql.check, values))
            .await
            .in_facility(self.name())?;
        let row = row.ok_or_else(|| Error::Database {
            facility: self.name().to_string(),
            source: sea_orm::DbErr::RecordNotFound("the check returned nothing".into()),
        })?;
        self.decide(&row, 0, cost, true)
    }

    /// Checks many requests in one statement and one round trip, one per key: keys must be
    /// distinct (at most [`MAX_CHECKS`]) and costs at least 1. Each key is judged exactly as
    /// [`RateLimiter::check_cost`] would judge it alone; decisions come back in the order asked.
    pub async fn check_many<C: Route>(
        &self,
        db: &C,
        requests: &[(&str, u64)],
    ) -> Result<Vec<Decision>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        limits::batch(self.name(), "checks", requests.len())?;
        for (key, cost) in requests {
            self.check_key(key)?;
            if *cost == 0 {
                return Err(self.invalid(format!(
                    "key {key:?} has cost 0; use `peek` to look without consuming"
                )));
            }
            self.check_cost_fits(*cost)?;
        }
        // Sorted keys: concurrent batches lock their rows in one order.
        let mut sorted: Vec<(&str, u64)> = requests.to_vec();
        sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
        if let Some(pair) = sorted.windows(2).find(|pair| pair[0].0 == pair[1].0) {
            return Err(self.invalid(format!(
                "key {:?} appears twice; check it once with the summed cost, or in two calls",
                pair[0].0
            )));
        }
        let keys: Vec<String> = sorted.iter().map(|(k, _)| k.to_string()).collect();
        let costs = sorted.iter().map(|(_, cost)| *cost);
        let capacity = self.capacity();
        // Keys, then each key's cost in the unit the algorithm's statement takes.
        let values: Vec<Value> = match self.def.algorithm {
            Algorithm::Gcra => {
                let t = self.interval_us();
                let incs: Vec<i64> = costs.map(|c| (t * c as f64).round() as i64).collect();
                vec![
                    keys.into(),
                    incs.into(),
                    ((t * capacity as f64).round() as i64).into(),
                ]
            }
            Algorithm::TokenBucket => vec![
                keys.into(),
                costs.map(|c| c as f64).collect::<Vec<f64>>().into(),
                (capacity as f64).into(),
                (self.def.limit as f64 / self.period_us().max(1) as f64).into(),
            ],
            Algorithm::FixedWindow | Algorithm::SlidingWindow => vec![
                keys.into(),
                costs
                    .map(|c| i64::try_from(c).unwrap_or(i64::MAX))
                    .collect::<Vec<i64>>()
                    .into(),
                i64::try_from(self.def.limit).unwrap_or(i64::MAX).into(),
                self.period_us().max(1).into(),
            ],
        };
        let rows = db
            .primary()
            .query_all_raw(stmt(&self.sql()?.check_many, values))
            .await
            .in_facility(self.name())?;
        let mut by_key = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get_by_index(0).in_facility(self.name())?;
            by_key.insert(key, row);
        }
        requests
            .iter()
            .map(|(key, cost)| {
                let row = by_key.get(*key).ok_or_else(|| Error::Database {
                    facility: self.name().to_string(),
                    source: sea_orm::DbErr::RecordNotFound(format!(
                        "the batched check returned no row for key {key:?}"
                    )),
                })?;
                self.decide(row, 1, *cost, true)
            })
            .collect()
    }

    /// A batcher for many concurrent checks: checks arriving while a statement is in flight
    /// go out together in the next one ([`RateLimiter::check_many`]), with at most
    /// `statements` in flight on `db`'s pool. Decisions are the ones single checks would get.
    /// Must be created in a tokio runtime.
    pub fn batcher(&'static self, db: &DatabaseConnection, statements: usize) -> CheckBatcher {
        CheckBatcher {
            limiter: self,
            db: db.clone(),
            requests: Coalescer::spawn(statements, BATCHER_CHECKS, |_| CheckLoop {
                limiter: self,
                db: db.clone(),
            }),
        }
    }

    /// What a cost-1 request would see now, without consuming anything.
    pub async fn peek<C: Route>(&self, db: &C, key: &str) -> Result<Decision> {
        self.check_key(key)?;
        let row = db
            .primary()
            .query_one_raw(stmt(&self.sql()?.peek, vec![key.into()]))
            .await
            .in_facility(self.name())?;
        let row = row.ok_or_else(|| Error::Database {
            facility: self.name().to_string(),
            source: sea_orm::DbErr::RecordNotFound("the peek returned nothing".into()),
        })?;
        self.decide(&row, 0, 1, false)
    }

    /// Forgets `key`'s state: its next request starts with full capacity.
    pub async fn reset<C: Route>(&self, db: &C, key: &str) -> Result<()> {
        self.check_key(key)?;
        db.primary()
            .execute_raw(stmt(&self.sql()?.reset, vec![key.into()]))
            .await
            .in_facility(self.name())?;
        Ok(())
    }

    /// Deletes up to `batch` rows whose state equals "no state" (a full bucket, a past window);
    /// returns how many. The table stays small without it; call it now and then.
    pub async fn sweep<C: Route>(&self, db: &C, batch: u32) -> Result<u64> {
        let batch = i64::from(batch.max(1));
        let values: Vec<Value> = match self.def.algorithm {
            Algorithm::Gcra => vec![batch.into()],
            Algorithm::TokenBucket => {
                let refill_us = (self.capacity() as f64 * self.interval_us()).ceil() as i64;
                vec![batch.into(), refill_us.into()]
            }
            Algorithm::FixedWindow | Algorithm::SlidingWindow => {
                vec![batch.into(), self.period_us().into()]
            }
        };
        let result = db
            .primary()
            .execute_raw(stmt(&self.sql()?.sweep, values))
            .await
            .in_facility(self.name())?;
        Ok(result.rows_affected())
    }

    /// Turns a check's (or peek's) row into a decision. Check rows are
    /// `now, admitted_state, current_state...`; peek rows are `now, current_state...`; both
    /// start at column `base` (batched rows lead with the key).
    /// A check passed exactly when its admitted state is present; a peek reports whether a
    /// request of `cost` would pass now.
    fn decide(
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

type Reply = oneshot::Sender<Result<Decision>>;

struct CheckRequest {
    key: String,
    cost: u64,
    reply: Reply,
}

/// Coalesces concurrent checks into batched statements; see [`RateLimiter::batcher`]. Cheap
/// to clone; its tasks stop when the last clone is dropped.
#[derive(Clone)]
pub struct CheckBatcher {
    limiter: &'static RateLimiter,
    db: DatabaseConnection,
    requests: Coalescer<CheckRequest>,
}

impl CheckBatcher {
    /// As [`RateLimiter::check`].
    pub async fn check(&self, key: &str) -> Result<Decision> {
        self.check_cost(key, 1).await
    }

    /// As [`RateLimiter::check_cost`]; a cost of 0 is a [`RateLimiter::peek`], sent alone.
    pub async fn check_cost(&self, key: &str, cost: u64) -> Result<Decision> {
        // Checked here so that one bad request cannot fail the batch it would have joined.
        self.limiter.check_key(key)?;
        if cost == 0 {
            return self.limiter.peek(&self.db, key).await;
        }
        self.limiter.check_cost_fits(cost)?;
        let (reply, answer) = oneshot::channel();
        let request = CheckRequest {
            key: key.to_string(),
            cost,
            reply,
        };
        let stopped = || {
            self.limiter
                .invalid("the check batcher's tasks stopped".to_string())
        };
        self.requests.send(request).map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// One of a batcher's loops: one `check_many` per batch, a repeated key waits for the next.
struct CheckLoop {
    limiter: &'static RateLimiter,
    db: DatabaseConnection,
}

impl Answer for CheckLoop {
    type Request = CheckRequest;

    async fn answer(&mut self, batch: Vec<CheckRequest>) -> Vec<CheckRequest> {
        let mut seen = HashSet::with_capacity(batch.len());
        let (now, later): (Vec<CheckRequest>, Vec<CheckRequest>) = batch
            .into_iter()
            .partition(|request| seen.insert(request.key.clone()));
        let asked: Vec<(&str, u64)> = now.iter().map(|r| (r.key.as_str(), r.cost)).collect();
        match self.limiter.check_many(&self.db, &asked).await {
            Ok(decisions) => {
                for (request, decision) in now.into_iter().zip(decisions) {
                    let _ = request.reply.send(Ok(decision));
                }
            }
            Err(e) => {
                let message = e.to_string();
                for request in now {
                    let _ = request.reply.send(Err(Error::Database {
                        facility: self.limiter.name().to_string(),
                        source: sea_orm::DbErr::Custom(message.clone()),
                    }));
                }
            }
        }
        later
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_follow_the_drafts() {
        let d = Decision {
            allowed: false,
            limit: 100,
            remaining: 0,
            reset_after: Duration::from_millis(2500),
            retry_after: Some(Duration::from_millis(1200)),
            quota: 100,
            window: Duration::from_secs(3600),
        };
        let headers = d.headers("api");
        assert!(headers.contains(&("RateLimit", "\"api\";r=0;t=3".to_string())));
        assert!(headers.contains(&("RateLimit-Limit", "100".to_string())));
        assert!(headers.contains(&("Retry-After", "2".to_string())));
        assert!(headers.contains(&("RateLimit-Policy", "\"api\";q=100;w=3600".to_string())));
    }
}
