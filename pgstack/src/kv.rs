//! Key-value stores (`[[kv]]`): string keys, JSON or byte values, versions for
//! compare-and-set, optional expiry.
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection) -> pgstack::Result<()> {
//! use pgstack::kv::{JsonKv, KvDef, ValueKind};
//!
//! // `pgstack-gen generate` writes this static into the accessor module of a `[[kv]]`.
//! static SETTINGS: JsonKv = JsonKv::new(KvDef {
//!     schema: "public",
//!     table: "settings",
//!     value: ValueKind::Jsonb,
//!     expiry: false,
//! });
//!
//! SETTINGS.set(db, "app.theme", "dark").await?;
//! let theme: Option<String> = SETTINGS.get(db, "app.theme").await?;
//! assert_eq!(theme.as_deref(), Some("dark"));
//! # Ok(()) }
//! ```
//!
//! Every method takes any SeaORM connection: a `DatabaseConnection`, or a `DatabaseTransaction`
//! to make several writes atomic with the caller's own.
//!
//! Keys are `text COLLATE "C"`: they sort bytewise, so a prefix scan is a range on the primary
//! key. Writes without `_with_ttl` store no expiry (as Redis `SET` does); `expire` changes the
//! expiry of a live key. Expired keys read as absent and are deleted by [`JsonKv::sweep_expired`].

use std::sync::OnceLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, QueryResult, Value};

use crate::cluster::Route;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DbContext, Error, Result};
use crate::ident::TableName;
use crate::sql::{SqlFile, stmt};
use crate::{json, limits};

/// The value column type of a store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    Jsonb,
    Bytea,
}

impl ValueKind {
    /// The column type: `jsonb` or `bytea`.
    pub fn sql(self) -> &'static str {
        match self {
            ValueKind::Jsonb => "jsonb",
            ValueKind::Bytea => "bytea",
        }
    }
}

/// What the generator knows about a `[[kv]]` facility.
#[derive(Clone, Copy, Debug)]
pub struct KvDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub value: ValueKind,
    /// The spec's `expiry`: whether the TTL methods are allowed.
    pub expiry: bool,
}

/// One stored key with its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<V> {
    pub key: String,
    pub value: V,
    /// Starts at 1, grows by one on every write; the token for compare-and-set.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One page of a prefix scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<V> {
    pub entries: Vec<Entry<V>>,
    /// Pass back as `cursor` to read the next page; `None` once the scan is done.
    pub next_cursor: Option<String>,
}

/// The most rows one page of a scan may ask for ([`limits::MAX_BATCH`]).
pub const MAX_PAGE: u32 = limits::MAX_BATCH as u32;

struct KvSql {
    get: String,
    get_many: String,
    exists: String,
    set: String,
    set_if_absent: String,
    compare_and_set: String,
    delete: String,
    set_many: String,
    scan_prefix: String,
    scan_from: String,
    expire: String,
    sweep: String,
}

fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../sql/kv.sql")))
}

impl KvSql {
    fn new(def: &KvDef) -> Result<KvSql> {
        let table = TableName::new(def.schema, def.table)?.to_string();
        let vars = [("table", table.as_str()), ("value_type", def.value.sql())];
        let file = sql_file();
        let get = |name: &str| file.get(name, &vars);
        Ok(KvSql {
            get: get("KvGet"),
            get_many: get("KvGetMany"),
            exists: get("KvExists"),
            set: get("KvSet"),
            set_if_absent: get("KvSetIfAbsent"),
            compare_and_set: get("KvCompareAndSet"),
            delete: get("KvDelete"),
            set_many: get("KvSetMany"),
            scan_prefix: get("KvScanPrefix"),
            scan_from: get("KvScanFrom"),
            expire: get("KvExpire"),
            sweep: get("KvSweep"),
        })
    }
}

/// The shared machinery of [`JsonKv`] and [`BytesKv`]: SQL built once, values already encoded.
struct KvCore {
    def: KvDef,
    sql: OnceLock<std::result::Result<KvSql, String>>,
}

impl KvCore {
    const fn new(def: KvDef) -> Self {
        KvCore {
            def,
            sql: OnceLock::new(),
        }
    }

    fn facility(&self) -> &'static str {
        self.def.table
    }

    fn sql(&self) -> Result<&KvSql> {
        self.sql
            .get_or_init(|| KvSql::new(&self.def).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|_| {
                Error::InvalidIdentifier(format!("{}.{}", self.def.schema, self.def.table))
            })
    }

    fn check_key(&self, key: &str) -> Result<()> {
        if key.is_empty() || key.contains('\0') {
            return Err(Error::InvalidArgument {
                facility: self.facility().to_string(),
                message: format!("key {key:?} must be non-empty text without NUL characters"),
            });
        }
        Ok(())
    }

    fn require_expiry(&self) -> Result<()> {
        if self.def.expiry {
            return Ok(());
        }
        Err(Error::Unsupported {
            facility: self.facility().to_string(),
            what: "per-key expiry",
            help: "set `expiry = true` on this [[kv]] in pgstack.toml and run `pgstack-gen generate`",
        })
    }

    /// Milliseconds for the `$n::bigint` TTL parameter; refuses TTLs on stores without expiry.
    fn ttl_param(&self, ttl: Option<Duration>) -> Result<Value> {
        let Some(ttl) = ttl else {
            return Ok(Value::BigInt(None));
        };
        self.require_expiry()?;
        let millis = limits::millis(
            self.facility(),
            "a time to live",
            ttl,
            Duration::from_millis(1),
        )?;
        Ok(Value::BigInt(Some(millis)))
    }

    async fn get_row<C: Route>(&self, db: &C, key: &str) -> Result<Option<QueryResult>> {
        self.check_key(key)?;
        db.read()
            .query_one_raw(stmt(&self.sql()?.get, vec![key.into()]))
            .await
            .in_facility(self.facility())
    }

    async fn get_many_rows<C: Route>(&self, db: &C, keys: &[&str]) -> Result<Vec<QueryResult>> {
        limits::batch(self.facility(), "keys", keys.len())?;
        for key in keys {
            self.check_key(key)?;
        }
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        db.read()
            .query_all_raw(stmt(&self.sql()?.get_many, vec![keys.into()]))
            .await
            .in_facility(self.facility())
    }

    async fn exists<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let row = db
            .read()
            .query_one_raw(stmt(&self.sql()?.exists, vec![key.into()]))
            .await
            .in_facility(self.facility())?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.facility()),
            None => Ok(false),
        }
    }

    async fn set<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        self.check_key(key)?;
        let ttl = self.ttl_param(ttl)?;
        let row = db
            .write()
            .query_one_raw(stmt(&self.sql()?.set, vec![key.into(), value, ttl]))
            .await
            .in_facility(self.facility())?;
        self.version_of(row)
    }

    async fn set_if_absent<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<Option<i64>> {
        self.check_key(key)?;
        let ttl = self.ttl_param(ttl)?;
        let row = db
            .write()
            .query_one_raw(stmt(
                &self.sql()?.set_if_absent,
                vec![key.into(), value, ttl],
            ))
            .await
            .in_facility(self.facility())?;
        match row {
            Some(row) => Ok(Some(row.try_get_by_index(0).in_facility(self.facility())?)),
            None => Ok(None),
        }
    }

    async fn compare_and_set<C: Route>(
        &self,
        db: &C,
        key: &str,
        expected_version: i64,
        value: Value,
    ) -> Result<i64> {
        self.check_key(key)?;
        let row = db
            .write()
            .query_one_raw(stmt(
                &self.sql()?.compare_and_set,
                vec![
                    key.into(),
                    value,
                    expected_version.into(),
                    Value::BigInt(None),
                ],
            ))
            .await
            .in_facility(self.facility())?;
        let Some(row) = row else {
            return Err(self.conflict(key, expected_version, None));
        };
        let new_version: Option<i64> = row.try_get_by_index(0).in_facility(self.facility())?;
        let mut current: Option<i64> = row.try_get_by_index(1).in_facility(self.facility())?;
        if let Some(version) = new_version {
            return Ok(version);
        }
        if current == Some(expected_version) {
            // The statement waited for a concurrent writer's row lock and then found the row
            // changed; its snapshot still shows the old version. Read the version that won.
            let row = db
                .write()
                .query_one_raw(stmt(&self.sql()?.get, vec![key.into()]))
                .await
                .in_facility(self.facility())?;
            current = match row {
                Some(row) => row.try_get_by_index(1).in_facility(self.facility())?,
                None => None,
            };
        }
        Err(self.conflict(key, expected_version, current))
    }

    fn conflict(&self, key: &str, expected: i64, actual: Option<i64>) -> Error {
        Error::Conflict {
            facility: self.facility().to_string(),
            what: format!("key `{key}`"),
            expected,
            actual,
        }
    }

    async fn delete<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let row = db
            .write()
            .query_one_raw(stmt(&self.sql()?.delete, vec![key.into()]))
            .await
            .in_facility(self.facility())?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.facility()),
            None => Ok(false),
        }
    }

    async fn set_many<C: Route>(
        &self,
        db: &C,
        mut entries: Vec<(String, Value)>,
        ttl: Option<Duration>,
        array_type: ArrayType,
    ) -> Result<()> {
        limits::batch(self.facility(), "entries", entries.len())?;
        for (key, _) in &entries {
            self.check_key(key)?;
        }
        let ttl = self.ttl_param(ttl)?;
        // Last write wins for a key given twice; ON CONFLICT may touch a row once per statement.
        entries.reverse();
        let mut seen = std::collections::HashSet::new();
        entries.retain(|(k, _)| seen.insert(k.clone()));
        if entries.is_empty() {
            return Ok(());
        }
        let (keys, values): (Vec<String>, Vec<Value>) = entries.into_iter().unzip();
        let values = Value::Array(array_type, Some(Box::new(values)));
        db.write()
            .execute_raw(stmt(&self.sql()?.set_many, vec![keys.into(), values, ttl]))
            .await
            .in_facility(self.facility())?;
        Ok(())
    }

    async fn scan_rows<C: Route>(
        &self,
        db: &C,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QueryResult>> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(Error::InvalidArgument {
                facility: self.facility().to_string(),
                message: format!("a page holds 1 to {MAX_PAGE} entries, asked for {limit}"),
            });
        }
        if prefix.contains('\0') {
            self.check_key(prefix)?;
        }
        let sql = self.sql()?;
        let cursor = cursor.unwrap_or("").to_string();
        let limit = i64::from(limit);
        let statement = match prefix_upper_bound(prefix) {
            Some(upper) => stmt(
                &sql.scan_prefix,
                vec![prefix.into(), upper.into(), cursor.into(), limit.into()],
            ),
            None => stmt(
                &sql.scan_from,
                vec![prefix.into(), cursor.into(), limit.into()],
            ),
        };
        db.read()
            .query_all_raw(statement)
            .await
            .in_facility(self.facility())
    }

    async fn expire<C: Route>(&self, db: &C, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.check_key(key)?;
        self.require_expiry()?;
        let ttl = self.ttl_param(ttl)?;
        let row = db
            .write()
            .query_one_raw(stmt(&self.sql()?.expire, vec![key.into(), ttl]))
            .await
            .in_facility(self.facility())?;
        Ok(row.is_some())
    }

    async fn sweep_expired<C: Route>(&self, db: &C, batch: u32) -> Result<u64> {
        let result = db
            .write()
            .execute_raw(stmt(
                &self.sql()?.sweep,
                vec![i64::from(batch.max(1)).into()],
            ))
            .await
            .in_facility(self.facility())?;
        Ok(result.rows_affected())
    }

    async fn explain_scan<C: Route>(&self, db: &C, prefix: &str) -> Result<String> {
        let sql = self.sql()?;
        let (text, values): (&str, Vec<Value>) = match prefix_upper_bound(prefix) {
            Some(upper) => (
                &sql.scan_prefix,
                vec![prefix.into(), upper.into(), "".into(), 100i64.into()],
            ),
            None => (
                &sql.scan_from,
                vec![prefix.into(), "".into(), 100i64.into()],
            ),
        };
        let rows = db
            .read()
            .query_all_raw(stmt(&format!("EXPLAIN {text}"), values))
            .await
            .in_facility(self.facility())?;
        let mut plan = String::new();
        for row in rows {
            let line: String = row.try_get_by_index(0).in_facility(self.facility())?;
            plan.push_str(&line);
            plan.push('\n');
        }
        Ok(plan)
    }

    fn version_of(&self, row: Option<QueryResult>) -> Result<i64> {
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.facility()),
            None => Err(Error::Database {
                facility: self.facility().to_string(),
                source: sea_orm::DbErr::RecordNotFound("the write returned no version".into()),
            }),
        }
    }

    /// Decodes `key, value, version, updated_at, expires_at` with the value decoded by `value`.
    fn entry<V>(
        &self,
        row: &QueryResult,
        key: Option<String>,
        offset: usize,
        value: impl FnOnce(&QueryResult, usize) -> Result<V>,
    ) -> Result<Entry<V>> {
        let f = self.facility();
        let key = match key {
            Some(k) => k,
            None => row.try_get_by_index(0).in_facility(f)?,
        };
        Ok(Entry {
            value: value(row, offset)?,
            version: row.try_get_by_index(offset + 1).in_facility(f)?,
            updated_at: row.try_get_by_index(offset + 2).in_facility(f)?,
            expires_at: row.try_get_by_index(offset + 3).in_facility(f)?,
            key,
        })
    }
}

/// The smallest string greater than every string starting with `prefix`, in code-point (and so
/// UTF-8 byte, `COLLATE "C"`) order; `None` when no such bound exists (the empty prefix).
pub fn prefix_upper_bound(prefix: &str) -> Option<String> {
    let mut chars: Vec<char> = prefix.chars().collect();
    while let Some(last) = chars.pop() {
        let next = match last as u32 + 1 {
            0xD800 => Some('\u{E000}'),
            n => char::from_u32(n),
        };
        if let Some(next) = next {
            chars.push(next);
            return Some(chars.into_iter().collect());
        }
    }
    None
}

fn page<V>(entries: Vec<Entry<V>>, limit: u32) -> Page<V> {
    let next_cursor = if entries.len() == limit as usize {
        entries.last().map(|e| e.key.clone())
    } else {
        None
    };
    Page {
        entries,
        next_cursor,
    }
}

/// A `[[kv]]` store with `value = "jsonb"`: values are any serde type.
pub struct JsonKv {
    core: KvCore,
}

/// A `[[kv]]` store with `value = "bytea"`: values are bytes.
pub struct BytesKv {
    core: KvCore,
}

impl JsonKv {
    pub const fn new(def: KvDef) -> Self {
        JsonKv {
            core: KvCore::new(def),
        }
    }

    fn encode<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<Value> {
        let json = json::to_json(value)
            .map_err(|e| e.into_error(self.core.facility(), &format!("for key `{key}`")))?;
        Ok(Value::Json(Some(Box::new(json))))
    }

    fn decode<T: DeserializeOwned>(&self, row: &QueryResult, index: usize) -> Result<T> {
        let json: serde_json::Value = row
            .try_get_by_index(index)
            .in_facility(self.core.facility())?;
        serde_json::from_value(json).map_err(|source| Error::Json {
            facility: self.core.facility().to_string(),
            direction: "decode",
            what: "as the requested type".to_string(),
            source,
        })
    }

    /// The value at `key`, or `None` when absent or expired.
    pub async fn get<T: DeserializeOwned, C: Route>(&self, db: &C, key: &str) -> Result<Option<T>> {
        match self.core.get_row(db, key).await? {
            Some(row) => Ok(Some(self.decode(&row, 0)?)),
            None => Ok(None),
        }
    }

    /// The value at `key` with its version and timestamps.
    pub async fn get_entry<T: DeserializeOwned, C: Route>(
        &self,
        db: &C,
        key: &str,
    ) -> Result<Option<Entry<T>>> {
        match self.core.get_row(db, key).await? {
            Some(row) => Ok(Some(self.core.entry(
                &row,
                Some(key.to_string()),
                0,
                |r, i| self.decode(r, i),
            )?)),
            None => Ok(None),
        }
    }

    /// The values at `keys`, in the same order, `None` where absent; one statement.
    pub async fn get_many<T: DeserializeOwned, C: Route>(
        &self,
        db: &C,
        keys: &[&str],
    ) -> Result<Vec<Option<T>>> {
        let rows = self.core.get_many_rows(db, keys).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get_by_index(0).in_facility(self.core.facility())?;
            found.insert(key, row);
        }
        keys.iter()
            .map(|k| found.get(*k).map(|row| self.decode(row, 1)).transpose())
            .collect()
    }

    /// Whether a live value is stored at `key`.
    pub async fn exists<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.core.exists(db, key).await
    }

    /// Stores `value` at `key` with no expiry; returns the new version.
    pub async fn set<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
    ) -> Result<i64> {
        self.core.set(db, key, self.encode(key, value)?, None).await
    }

    /// Stores `value` at `key`, gone after `ttl`. Needs `expiry = true`.
    pub async fn set_with_ttl<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<i64> {
        self.core
            .set(db, key, self.encode(key, value)?, Some(ttl))
            .await
    }

    /// Stores `value` only if `key` is absent (or expired); `Some(version)` when it did.
    pub async fn set_if_absent<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
    ) -> Result<Option<i64>> {
        self.core
            .set_if_absent(db, key, self.encode(key, value)?, None)
            .await
    }

    /// As [`JsonKv::set_if_absent`], with a time to live. Needs `expiry = true`.
    pub async fn set_if_absent_with_ttl<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &T,
        ttl: Duration,
    ) -> Result<Option<i64>> {
        self.core
            .set_if_absent(db, key, self.encode(key, value)?, Some(ttl))
            .await
    }

    /// Stores `value` only if the key's version is still `expected_version`; returns the new
    /// version, or [`Error::Conflict`] naming the version found.
    pub async fn compare_and_set<T: Serialize + ?Sized, C: Route>(
        &self,
        db: &C,
        key: &str,
        expected_version: i64,
        value: &T,
    ) -> Result<i64> {
        self.core
            .compare_and_set(db, key, expected_version, self.encode(key, value)?)
            .await
    }

    /// Deletes `key`; `true` if a live value was there.
    pub async fn delete<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.core.delete(db, key).await
    }

    /// Stores every pair in one statement (in key order, so concurrent batches cannot
    /// deadlock). A key given twice keeps its last value.
    pub async fn set_many<K: AsRef<str>, T: Serialize, C: Route>(
        &self,
        db: &C,
        entries: &[(K, T)],
    ) -> Result<()> {
        self.set_many_inner(db, entries, None).await
    }

    /// As [`JsonKv::set_many`], every key expiring after `ttl`. Needs `expiry = true`.
    pub async fn set_many_with_ttl<K: AsRef<str>, T: Serialize, C: Route>(
        &self,
        db: &C,
        entries: &[(K, T)],
        ttl: Duration,
    ) -> Result<()> {
        self.set_many_inner(db, entries, Some(ttl)).await
    }

    async fn set_many_inner<K: AsRef<str>, T: Serialize, C: Route>(
        &self,
        db: &C,
        entries: &[(K, T)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let encoded = entries
            .iter()
            .map(|(k, v)| Ok((k.as_ref().to_string(), self.encode(k.as_ref(), v)?)))
            .collect::<Result<Vec<_>>>()?;
        self.core.set_many(db, encoded, ttl, ArrayType::Json).await
    }

    /// Up to `limit` live entries whose key starts with `prefix`, in key order, after `cursor`.
    pub async fn scan_prefix<T: DeserializeOwned, C: Route>(
        &self,
        db: &C,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<T>> {
        let rows = self.core.scan_rows(db, prefix, cursor, limit).await?;
        let entries = rows
            .iter()
            .map(|row| self.core.entry(row, None, 1, |r, i| self.decode(r, i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(page(entries, limit))
    }

    /// Sets (`Some`) or clears (`None`) the expiry of a live key; `false` if it is absent.
    /// Needs `expiry = true`.
    pub async fn expire<C: Route>(&self, db: &C, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.core.expire(db, key, ttl).await
    }

    /// Deletes up to `batch` expired entries, skipping rows other sessions hold; returns how many.
    pub async fn sweep_expired<C: Route>(&self, db: &C, batch: u32) -> Result<u64> {
        self.core.sweep_expired(db, batch).await
    }

    /// The plan PostgreSQL picks for a prefix scan (`EXPLAIN`), to check the index serves it.
    pub async fn explain_scan_prefix<C: Route>(&self, db: &C, prefix: &str) -> Result<String> {
        self.core.explain_scan(db, prefix).await
    }
}

impl BytesKv {
    pub const fn new(def: KvDef) -> Self {
        BytesKv {
            core: KvCore::new(def),
        }
    }

    fn decode(&self, row: &QueryResult, index: usize) -> Result<Vec<u8>> {
        row.try_get_by_index(index)
            .in_facility(self.core.facility())
    }

    /// The bytes at `key`, or `None` when absent or expired.
    pub async fn get<C: Route>(&self, db: &C, key: &str) -> Result<Option<Vec<u8>>> {
        match self.core.get_row(db, key).await? {
            Some(row) => Ok(Some(self.decode(&row, 0)?)),
            None => Ok(None),
        }
    }

    /// The bytes at `key` with their version and timestamps.
    pub async fn get_entry<C: Route>(&self, db: &C, key: &str) -> Result<Option<Entry<Vec<u8>>>> {
        match self.core.get_row(db, key).await? {
            Some(row) => Ok(Some(self.core.entry(
                &row,
                Some(key.to_string()),
                0,
                |r, i| self.decode(r, i),
            )?)),
            None => Ok(None),
        }
    }

    /// The values at `keys`, in the same order, `None` where absent; one statement.
    pub async fn get_many<C: Route>(&self, db: &C, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>> {
        let rows = self.core.get_many_rows(db, keys).await?;
        let mut found = std::collections::HashMap::with_capacity(rows.len());
        for row in rows {
            let key: String = row.try_get_by_index(0).in_facility(self.core.facility())?;
            found.insert(key, row);
        }
        keys.iter()
            .map(|k| found.get(*k).map(|row| self.decode(row, 1)).transpose())
            .collect()
    }

    /// Whether a live value is stored at `key`.
    pub async fn exists<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.core.exists(db, key).await
    }

    /// Stores `value` at `key` with no expiry; returns the new version.
    pub async fn set<C: Route>(&self, db: &C, key: &str, value: &[u8]) -> Result<i64> {
        self.core.set(db, key, value.to_vec().into(), None).await
    }

    /// Stores `value` at `key`, gone after `ttl`. Needs `expiry = true`.
    pub async fn set_with_ttl<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<i64> {
        self.core
            .set(db, key, value.to_vec().into(), Some(ttl))
            .await
    }

    /// Stores `value` only if `key` is absent (or expired); `Some(version)` when it did.
    pub async fn set_if_absent<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &[u8],
    ) -> Result<Option<i64>> {
        self.core
            .set_if_absent(db, key, value.to_vec().into(), None)
            .await
    }

    /// Stores `value` only if the key's version is still `expected_version`.
    pub async fn compare_and_set<C: Route>(
        &self,
        db: &C,
        key: &str,
        expected_version: i64,
        value: &[u8],
    ) -> Result<i64> {
        self.core
            .compare_and_set(db, key, expected_version, value.to_vec().into())
            .await
    }

    /// Deletes `key`; `true` if a live value was there.
    pub async fn delete<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.core.delete(db, key).await
    }

    /// Stores every pair in one statement, in key order.
    pub async fn set_many<K: AsRef<str>, V: AsRef<[u8]>, C: Route>(
        &self,
        db: &C,
        entries: &[(K, V)],
    ) -> Result<()> {
        let encoded = entries
            .iter()
            .map(|(k, v)| (k.as_ref().to_string(), Value::from(v.as_ref().to_vec())))
            .collect();
        self.core
            .set_many(db, encoded, None, ArrayType::Bytes)
            .await
    }

    /// Up to `limit` live entries whose key starts with `prefix`, in key order, after `cursor`.
    pub async fn scan_prefix<C: Route>(
        &self,
        db: &C,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Page<Vec<u8>>> {
        let rows = self.core.scan_rows(db, prefix, cursor, limit).await?;
        let entries = rows
            .iter()
            .map(|row| self.core.entry(row, None, 1, |r, i| self.decode(r, i)))
            .collect::<Result<Vec<_>>>()?;
        Ok(page(entries, limit))
    }

    /// Sets (`Some`) or clears (`None`) the expiry of a live key. Needs `expiry = true`.
    pub async fn expire<C: Route>(&self, db: &C, key: &str, ttl: Option<Duration>) -> Result<bool> {
        self.core.expire(db, key, ttl).await
    }

    /// Deletes up to `batch` expired entries; returns how many.
    pub async fn sweep_expired<C: Route>(&self, db: &C, batch: u32) -> Result<u64> {
        self.core.sweep_expired(db, batch).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upper_bound_is_the_next_string_in_byte_order() {
        assert_eq!(prefix_upper_bound("user:"), Some("user;".to_string()));
        assert_eq!(prefix_upper_bound("a"), Some("b".to_string()));
        assert_eq!(prefix_upper_bound(""), None);
        assert_eq!(prefix_upper_bound("\u{10FFFF}"), None);
        assert_eq!(prefix_upper_bound("a\u{10FFFF}"), Some("b".to_string()));
        assert_eq!(prefix_upper_bound("\u{D7FF}"), Some("\u{E000}".to_string()));
        // Every string with the prefix sorts below the bound, bytewise.
        let bound = prefix_upper_bound("ké").unwrap();
        for s in ["ké", "kéz", "ké\u{10FFFF}\u{10FFFF}"] {
            assert!(s.as_bytes() < bound.as_bytes(), "{s}");
        }
        assert_eq!(bound, "kê");
        assert!("kêa".as_bytes() >= bound.as_bytes());
    }

    #[test]
    fn every_statement_renders() {
        let sql = KvSql::new(&KvDef {
            schema: "public",
            table: "settings",
            value: ValueKind::Bytea,
            expiry: true,
        })
        .unwrap();
        assert!(sql.set_many.contains("$2::bytea[]"));
        assert!(sql.get.contains("FROM \"public\".\"settings\""));
        for name in sql_file().names() {
            assert!(!sql_file().get(name, &[]).is_empty());
        }
    }
}
