//! Caches (`[[cache]]`): string keys, JSON or byte values, TTLs, stampede protection, a bound
//! on size, on an UNLOGGED table by default.
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection, pages: &'static pgstack::cache::Cache) -> pgstack::Result<()> {
//! use pgstack::cache::{Compute, Expiry};
//! use std::time::Duration;
//!
//! pages.set_with(db, "/", &"<html>home</html>", Expiry::After(Duration::from_secs(60))).await?;
//! let html: Option<String> = pages.get(db, "/").await?;
//!
//! // Concurrent callers for a missing key: one computes, the others wait (or get the stale
//! // value); the computation runs once.
//! let about: String = pages
//!     .get_or_compute(db, "/about", Compute::default(), || async {
//!         Ok::<_, std::io::Error>("<html>about</html>".to_string())
//!     })
//!     .await?;
//!
//! // Many tasks reading at once: a reader coalesces their gets into one `= ANY` statement.
//! let reader = pages.reader(db, 2);
//! let home: Option<String> = reader.get("/").await?;
//! # Ok(()) }
//! ```
//!
//! UNLOGGED tables skip the write-ahead log: writes are cheap, but the table is **emptied after
//! a crash or a failover** and **cannot be read on a hot standby**. A cache that comes back
//! empty is a correct cache; plan for the misses. Use `durability = "logged"` when that is not
//! acceptable.

mod cached;
mod def;
mod reader;
mod sql;
mod stats;

use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, DatabaseConnection, QueryResult, Value};
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::cached::Cached;
pub use self::def::{CacheDef, Compute, Expiry};
pub use self::reader::CacheReader;
use self::reader::ReadLoop;
use self::sql::CacheSql;
pub use self::stats::CacheStats;
use self::stats::{Counters, bump};
use crate::cluster::Route;
use crate::coalesce::Coalescer;
use crate::error::{DbContext, Error, Result};
use crate::handle::Handle;
use crate::kv::prefix_upper_bound;
use crate::sql::stmt;
use crate::value::ValueKind;
use crate::{json, limits};

/// The most keys one statement takes ([`limits::MAX_BATCH`]).
pub const MAX_BATCH: usize = limits::MAX_BATCH;

/// A `[[cache]]`. JSON caches use `get`/`set`; `value = "bytea"` caches the `*_bytes` methods.
pub struct Cache {
    def: CacheDef,
    handle: Handle<CacheSql>,
    counters: Counters,
}

impl Cache {
    pub const fn new(def: CacheDef) -> Cache {
        Cache {
            def,
            handle: Handle::new("cache", def.table),
            counters: Counters::new(),
        }
    }

    pub fn def(&self) -> &CacheDef {
        &self.def
    }

    fn name(&self) -> &'static str {
        self.handle.name()
    }

    fn sql(&self) -> Result<&CacheSql> {
        self.handle.sql(|| CacheSql::new(&self.def))
    }

    /// This process's counters for the cache.
    pub fn stats(&self) -> CacheStats {
        self.counters.snapshot()
    }

    fn invalid(&self, message: String) -> Error {
        self.handle.invalid(message)
    }

    fn check_key(&self, key: &str) -> Result<()> {
        self.handle.check_key("key", key)
    }

    fn expect_kind(&self, kind: ValueKind) -> Result<()> {
        if self.def.value == kind {
            return Ok(());
        }
        Err(self.invalid(match kind {
            ValueKind::Jsonb => {
                "this cache stores bytea values; use the *_bytes methods".to_string()
            }
            ValueKind::Bytea => {
                "this cache stores jsonb values; use get/set with serde types".to_string()
            }
        }))
    }

    /// Milliseconds for the `$n::bigint` TTL parameter (NULL: never expires).
    fn ttl(&self, expiry: Expiry) -> Result<Value> {
        let ms = match expiry {
            Expiry::Default => self
                .def
                .default_ttl_ms
                .map(|ms| i64::try_from(ms).unwrap_or(i64::MAX)),
            Expiry::After(d) => Some(limits::millis(
                self.name(),
                "a time to live",
                d,
                Duration::from_millis(1),
            )?),
            Expiry::Never => None,
        };
        Ok(Value::BigInt(ms))
    }

    fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<Value> {
        self.expect_kind(ValueKind::Jsonb)?;
        let json = json::to_json(value)
            .map_err(|e| e.into_error(self.name(), &format!("for key `{key}`")))?;
        Ok(Value::Json(Some(Box::new(json))))
    }

    fn decode<T: DeserializeOwned>(&self, row: &QueryResult, index: usize) -> Result<T> {
        let json: serde_json::Value = row.try_get_by_index(index).in_facility(self.name())?;
        serde_json::from_value(json).map_err(|source| self.decode_error(source))
    }

    fn decode_error(&self, source: serde_json::Error) -> Error {
        Error::Json {
            facility: self.name().to_string(),
            direction: "decode",
            what: "as the requested type".to_string(),
            cause: source,
        }
    }

    fn count_lookup(&self, found: usize, asked: usize) {
        let (hits, misses) = (found as u64, (asked - found) as u64);
        bump(&self.counters.hits, hits);
        bump(&self.counters.misses, misses);
        crate::metrics::cache_lookups(self.name(), hits, misses);
    }

    async fn get_row<C: Route>(&self, db: &C, key: &str) -> Result<Option<QueryResult>> {
        self.check_key(key)?;
        let row = self
            .handle
            .traced(
                "get",
                db.primary()
                    .query_one_raw(stmt(&self.sql()?.get, vec![key.into()])),
            )
            .await
            .in_facility(self.name())?;
        self.count_lookup(usize::from(row.is_some()), 1);
        Ok(row)
    }

    /// The live value at `key` (expired entries are misses).
    pub async fn get<T: DeserializeOwned, C: Route>(&self, db: &C, key: &str) -> Result<Option<T>> {
        self.expect_kind(ValueKind::Jsonb)?;
        self.get_row(db, key)
            .await?
            .map(|row| self.decode(&row, 0))
            .transpose()
    }

    /// The live bytes at `key`.
    pub async fn get_bytes<C: Route>(&self, db: &C, key: &str) -> Result<Option<Vec<u8>>> {
        self.expect_kind(ValueKind::Bytea)?;
        self.get_row(db, key)
            .await?
            .map(|row| row.try_get_by_index(0).in_facility(self.name()))
            .transpose()
    }

    async fn get_many_rows<C: Route>(
        &self,
        db: &C,
        keys: &[&str],
    ) -> Result<HashMap<String, QueryResult>> {
        limits::batch(self.name(), "keys", keys.len())?;
        for key in keys {
            self.check_key(key)?;
        }
        let list: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let rows = self
            .handle
            .traced(
                "get_many",
                db.primary()
                    .query_all_raw(stmt(&self.sql()?.get_many, vec![list.into()])),
            )
            .await
            .in_facility(self.name())?;
        let mut found = HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get_by_index(0).in_facility(self.name())?;
            found.insert(key, row);
        }
        self.count_lookup(found.len(), keys.len());
        Ok(found)
    }

    /// The live values at `keys`, in the same order, in one statement.
    pub async fn get_many<T: DeserializeOwned, C: Route>(
        &self,
        db: &C,
        keys: &[&str],
    ) -> Result<Vec<Option<T>>> {
        self.expect_kind(ValueKind::Jsonb)?;
        let found = self.get_many_rows(db, keys).await?;
        keys.iter()
            .map(|k| found.get(*k).map(|row| self.decode(row, 1)).transpose())
            .collect()
    }

    /// The live bytes at `keys`, in the same order, in one statement.
    pub async fn get_many_bytes<C: Route>(
        &self,
        db: &C,
        keys: &[&str],
    ) -> Result<Vec<Option<Vec<u8>>>> {
        self.expect_kind(ValueKind::Bytea)?;
        let found = self.get_many_rows(db, keys).await?;
        keys.iter()
            .map(|k| {
                found
                    .get(*k)
                    .map(|row| row.try_get_by_index(1).in_facility(self.name()))
                    .transpose()
            })
            .collect()
    }

    async fn write<C: Route>(
        &self,
        db: &C,
        sql: &str,
        values: Vec<Value>,
        count: u64,
    ) -> Result<Option<QueryResult>> {
        let row = self
            .handle
            .traced("set", db.primary().query_one_raw(stmt(sql, values)))
            .await
            .in_facility(self.name())?;
        self.after_writes(db, count).await?;
        Ok(row)
    }

    /// Stores `value` with the spec's default TTL.
    pub async fn set<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
    ) -> Result<()> {
        self.set_with(db, key, value, Expiry::Default).await
    }

    /// Stores `value` with the given expiry.
    pub async fn set_with<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
        expiry: Expiry,
    ) -> Result<()> {
        self.check_key(key)?;
        let values = vec![key.into(), self.encode(key, value)?, self.ttl(expiry)?];
        self.write(db, &self.sql()?.set, values, 1).await?;
        Ok(())
    }

    /// Stores bytes with the given expiry.
    pub async fn set_bytes<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        self.expect_kind(ValueKind::Bytea)?;
        self.check_key(key)?;
        let values = vec![key.into(), value.to_vec().into(), self.ttl(expiry)?];
        self.write(db, &self.sql()?.set, values, 1).await?;
        Ok(())
    }

    /// Stores every pair in one statement (in key order, so concurrent batches cannot
    /// deadlock); a key given twice keeps its last value.
    pub async fn set_many<K: AsRef<str>, T: Serialize, C: Route>(
        &self,
        db: &C,
        entries: &[(K, T)],
        expiry: Expiry,
    ) -> Result<()> {
        limits::batch(self.name(), "entries", entries.len())?;
        let mut last: HashMap<&str, &T> = HashMap::with_capacity(entries.len());
        for (key, value) in entries {
            self.check_key(key.as_ref())?;
            last.insert(key.as_ref(), value);
        }
        if last.is_empty() {
            return Ok(());
        }
        let mut keys = Vec::with_capacity(last.len());
        let mut values = Vec::with_capacity(last.len());
        for (key, value) in last {
            keys.push(key.to_string());
            values.push(self.encode(key, value)?);
        }
        let n = keys.len() as u64;
        let params = vec![
            keys.into(),
            Value::Array(ArrayType::Json, Some(Box::new(values))),
            self.ttl(expiry)?,
        ];
        self.handle
            .traced(
                "set_many",
                db.primary()
                    .execute_raw(stmt(&self.sql()?.set_many, params)),
            )
            .await
            .in_facility(self.name())?;
        self.after_writes(db, n).await
    }

    /// Stores `value` only if there is no live entry; `true` when it did.
    pub async fn set_if_absent<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
        expiry: Expiry,
    ) -> Result<bool> {
        self.check_key(key)?;
        let values = vec![key.into(), self.encode(key, value)?, self.ttl(expiry)?];
        Ok(self
            .write(db, &self.sql()?.set_if_absent, values, 1)
            .await?
            .is_some())
    }

    /// Stores `value` only over a live entry; `true` when it did.
    pub async fn replace<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
        expiry: Expiry,
    ) -> Result<bool> {
        self.check_key(key)?;
        let values = vec![key.into(), self.encode(key, value)?, self.ttl(expiry)?];
        let row = self
            .handle
            .traced(
                "replace",
                db.primary()
                    .query_one_raw(stmt(&self.sql()?.replace, values)),
            )
            .await
            .in_facility(self.name())?;
        Ok(row.is_some())
    }

    /// Sets a live entry's expiry; `false` if there is none.
    pub async fn touch<C: Route>(&self, db: &C, key: &str, expiry: Expiry) -> Result<bool> {
        self.check_key(key)?;
        let row = self
            .handle
            .traced(
                "touch",
                db.primary().query_one_raw(stmt(
                    &self.sql()?.touch,
                    vec![key.into(), self.ttl(expiry)?],
                )),
            )
            .await
            .in_facility(self.name())?;
        Ok(row.is_some())
    }

    /// Deletes `key`; `true` if a live entry was there.
    pub async fn delete<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let row = self
            .handle
            .traced(
                "delete",
                db.primary()
                    .query_one_raw(stmt(&self.sql()?.delete, vec![key.into()])),
            )
            .await
            .in_facility(self.name())?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.name()),
            None => Ok(false),
        }
    }

    /// Deletes every entry whose key starts with `prefix` (a range scan on the key), in batches
    /// of 10,000; returns how many.
    pub async fn delete_prefix<C: Route>(&self, db: &C, prefix: &str) -> Result<u64> {
        if prefix.contains('\0') {
            self.check_key(prefix)?;
        }
        let sql = self.sql()?;
        let batch = MAX_BATCH as i64;
        let mut total = 0;
        loop {
            let statement = match prefix_upper_bound(prefix) {
                Some(upper) => stmt(
                    &sql.delete_prefix,
                    vec![prefix.into(), upper.into(), batch.into()],
                ),
                None => stmt(&sql.delete_from, vec![prefix.into(), batch.into()]),
            };
            let deleted = self
                .handle
                .traced("delete_prefix", db.primary().execute_raw(statement))
                .await
                .in_facility(self.name())?
                .rows_affected();
            total += deleted;
            if deleted < batch as u64 {
                return Ok(total);
            }
        }
    }

    /// Adds `delta` to the integer at `key` atomically and returns the result; an absent or
    /// expired entry starts at `delta` with `expiry`, a live one keeps its expiry.
    pub async fn incr<C: Route>(
        &self,
        db: &C,
        key: &str,
        delta: i64,
        expiry: Expiry,
    ) -> Result<i64> {
        self.check_key(key)?;
        let values = vec![key.into(), delta.into(), self.ttl(expiry)?];
        let row = self
            .handle
            .traced(
                "incr",
                db.primary().query_one_raw(stmt(&self.sql()?.incr, values)),
            )
            .await
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("cannot cast")
                    || text.contains("invalid input syntax")
                    || text.contains("out of range")
                {
                    self.invalid(format!(
                        "the value at `{key}` is not an integer, or adding {delta} to it leaves \
                         bigint's range: {text}"
                    ))
                } else {
                    Error::Database {
                        facility: self.name().to_string(),
                        cause: e,
                    }
                }
            })?;
        self.after_writes(db, 1).await?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.name()),
            None => Err(self.invalid("the increment returned nothing".to_string())),
        }
    }

    /// The live value at `key`, or the result of `compute`, stored with `options.expiry`.
    ///
    /// Concurrent callers for a missing key compute it once: the first takes a lease (in one
    /// statement); the others get the expired value if there is one (`serve_stale`), or wait
    /// for the winner's value, polling with backoff. If the winner fails or outlives its lease,
    /// the next caller computes.
    pub async fn get_or_compute<T, F, Fut, E, C>(
        &self,
        db: &C,
        key: &str,
        options: Compute,
        compute: F,
    ) -> Result<T>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce() -> Fut,
        Fut: Future<Output = std::result::Result<T, E>>,
        E: Into<Box<dyn std::error::Error + Send + Sync>>,
        C: Route,
    {
        self.expect_kind(ValueKind::Jsonb)?;
        self.check_key(key)?;
        let sql = self.sql()?;
        let lease = limits::millis(
            self.name(),
            "a compute lease",
            options.lease,
            Duration::from_millis(1),
        )?;
        let mut pause = Duration::from_millis(2);
        let mut waited = false;
        let mut compute = Some(compute);
        loop {
            let row = self
                .handle
                .traced(
                    "get_or_compute",
                    db.primary()
                        .query_one_raw(stmt(&sql.get_for_compute, vec![key.into()])),
                )
                .await
                .in_facility(self.name())?;
            let (stale, leased) = match &row {
                Some(row) => {
                    let live: bool = row.try_get_by_index(1).in_facility(self.name())?;
                    let value: Option<serde_json::Value> =
                        row.try_get_by_index(0).in_facility(self.name())?;
                    if live && let Some(value) = value {
                        self.count_lookup(1, 1);
                        return serde_json::from_value(value).map_err(|e| self.decode_error(e));
                    }
                    let leased: bool = row.try_get_by_index(2).in_facility(self.name())?;
                    (value, leased)
                }
                None => (None, false),
            };
            if !leased {
                let won = self
                    .handle
                    .traced(
                        "get_or_compute",
                        db.primary()
                            .query_one_raw(stmt(&sql.lease, vec![key.into(), lease.into()])),
                    )
                    .await
                    .in_facility(self.name())?
                    .is_some();
                if won && let Some(compute) = compute.take() {
                    self.count_lookup(0, 1);
                    bump(&self.counters.computes, 1);
                    return match compute().await {
                        Ok(value) => {
                            self.set_with(db, key, &value, options.expiry).await?;
                            Ok(value)
                        }
                        Err(e) => {
                            // Let the next caller try rather than wait out the lease.
                            self.handle
                                .traced(
                                    "get_or_compute",
                                    db.primary()
                                        .execute_raw(stmt(&sql.lease_release, vec![key.into()])),
                                )
                                .await
                                .in_facility(self.name())?;
                            Err(Error::Compute {
                                facility: self.name().to_string(),
                                key: key.to_string(),
                                cause: e.into(),
                            })
                        }
                    };
                }
            }
            if options.serve_stale
                && let Some(value) = stale
            {
                bump(&self.counters.stale_hits, 1);
                return serde_json::from_value(value).map_err(|e| self.decode_error(e));
            }
            if !waited {
                waited = true;
                bump(&self.counters.waits, 1);
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Deletes up to `batch` expired entries (and abandoned placeholders), skipping rows other
    /// sessions hold; returns how many. Without an index on `expires_at` (which would make
    /// every write non-HOT) this scans until it finds `batch` rows: call it now and then.
    pub async fn sweep_expired<C: Route>(&self, db: &C, batch: u32) -> Result<u64> {
        let result = self
            .handle
            .traced(
                "sweep_expired",
                db.primary().execute_raw(stmt(
                    &self.sql()?.sweep,
                    vec![i64::from(batch.max(1)).into()],
                )),
            )
            .await
            .in_facility(self.name())?;
        Ok(result.rows_affected())
    }

    /// Deletes the oldest entries beyond `max_entries` (up to 10,000 a call); returns how many.
    /// Writes call it every `max_entries / 100` writes (at least 16, at most 1,000), so the
    /// bound holds without counting rows on each write.
    pub async fn evict<C: Route>(&self, db: &C) -> Result<u64> {
        let Some(max) = self.def.max_entries else {
            return Ok(0);
        };
        let values = vec![
            (max.min(i64::MAX as u64) as i64).into(),
            (MAX_BATCH as i64).into(),
        ];
        let deleted = self
            .handle
            .traced(
                "evict",
                db.primary().execute_raw(stmt(&self.sql()?.evict, values)),
            )
            .await
            .in_facility(self.name())?
            .rows_affected();
        bump(&self.counters.evicted, deleted);
        crate::metrics::cache_evicted(self.name(), deleted);
        Ok(deleted)
    }

    async fn after_writes<C: Route>(&self, db: &C, n: u64) -> Result<()> {
        let total = bump(&self.counters.writes, n);
        let Some(max) = self.def.max_entries else {
            return Ok(());
        };
        let every = (max / 100).clamp(16, 1000);
        if total / every != (total - n) / every {
            self.evict(db).await?;
        }
        Ok(())
    }

    /// A reader for many concurrent gets: requests arriving while a statement is in flight are
    /// answered together by the next one (`key = ANY($1)`), like Redis pipelining. It opens
    /// `connections` connections of its own, with `db`'s settings (never taking them from
    /// `db`'s pool, so it cannot starve it), opened on first use and closed when the last
    /// clone of the reader is dropped. Give it the primary: cache tables are UNLOGGED. Must
    /// be created in a tokio runtime.
    pub fn reader(&'static self, db: &DatabaseConnection, connections: usize) -> CacheReader {
        let options = (*db.get_postgres_connection_pool().connect_options()).clone();
        CacheReader {
            cache: self,
            requests: Coalescer::spawn(connections, MAX_BATCH, |_| ReadLoop {
                cache: self,
                options: options.clone(),
                connection: None,
            }),
        }
    }
}
