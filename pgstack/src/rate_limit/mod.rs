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

mod batcher;
mod decide;
mod def;
mod sql;

use std::collections::HashMap;

use sea_orm::{ConnectionTrait, DatabaseConnection, Value};

pub use self::batcher::CheckBatcher;
use self::batcher::CheckLoop;
pub use self::def::{Algorithm, Decision, RateLimitDef};
use self::sql::LimitSql;
use crate::cluster::Route;
use crate::coalesce::Coalescer;
use crate::error::{DbContext, Error, Result};
use crate::handle::Handle;
use crate::limits;
use crate::sql::stmt;

/// The most checks one batched statement takes ([`limits::MAX_BATCH`]).
pub const MAX_CHECKS: usize = limits::MAX_BATCH;

/// The most checks a [`CheckBatcher`] sends in one statement: past a thousand, a batch only
/// holds its rows' locks longer.
const BATCHER_CHECKS: usize = 1000;

/// A `[[rate_limit]]`.
pub struct RateLimiter {
    def: RateLimitDef,
    handle: Handle<LimitSql>,
}

impl RateLimiter {
    pub const fn new(def: RateLimitDef) -> RateLimiter {
        RateLimiter {
            def,
            handle: Handle::new("rate_limit", def.table),
        }
    }

    pub fn def(&self) -> &RateLimitDef {
        &self.def
    }

    fn name(&self) -> &'static str {
        self.handle.name()
    }

    fn sql(&self) -> Result<&LimitSql> {
        self.handle.sql(|| LimitSql::new(&self.def))
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
        self.handle.check_key("key", key)
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
        self.handle.invalid(message)
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
        let row = self
            .handle
            .traced(
                "check",
                db.primary().query_one_raw(stmt(&sql.check, values)),
            )
            .await
            .in_facility(self.name())?;
        let row = row.ok_or_else(|| self.handle.no_row("the check"))?;
        let decision = self.decide(&row, 0, cost, true)?;
        crate::metrics::rate_check(self.name(), decision.allowed);
        Ok(decision)
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
        let rows = self
            .handle
            .traced(
                "check_many",
                db.primary()
                    .query_all_raw(stmt(&self.sql()?.check_many, values)),
            )
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
                    cause: sea_orm::DbErr::RecordNotFound(format!(
                        "the batched check returned no row for key {key:?}"
                    )),
                })?;
                let decision = self.decide(row, 1, *cost, true)?;
                crate::metrics::rate_check(self.name(), decision.allowed);
                Ok(decision)
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
        let row = self
            .handle
            .traced(
                "peek",
                db.primary()
                    .query_one_raw(stmt(&self.sql()?.peek, vec![key.into()])),
            )
            .await
            .in_facility(self.name())?;
        let row = row.ok_or_else(|| self.handle.no_row("the peek"))?;
        self.decide(&row, 0, 1, false)
    }

    /// Forgets `key`'s state: its next request starts with full capacity.
    pub async fn reset<C: Route>(&self, db: &C, key: &str) -> Result<()> {
        self.check_key(key)?;
        self.handle
            .traced(
                "reset",
                db.primary()
                    .execute_raw(stmt(&self.sql()?.reset, vec![key.into()])),
            )
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
        let result = self
            .handle
            .traced(
                "sweep",
                db.primary().execute_raw(stmt(&self.sql()?.sweep, values)),
            )
            .await
            .in_facility(self.name())?;
        Ok(result.rows_affected())
    }
}
