//! The machinery [`JsonKv`](super::JsonKv) and [`BytesKv`](super::BytesKv) share: every
//! statement, with values already encoded by the typed wrapper.

use std::time::Duration;

use sea_orm::sea_query::ArrayType;
use sea_orm::{ConnectionTrait, QueryResult, Value};

use super::def::{Entry, KvDef, MAX_PAGE, Page};
use super::sql::KvSql;
use crate::cluster::Route;
use crate::error::{DbContext, Error, Result};
use crate::handle::Handle;
use crate::limits;
use crate::sql::stmt;

/// The shared machinery of [`JsonKv`](super::JsonKv) and [`BytesKv`](super::BytesKv).
pub(super) struct KvCore {
    def: KvDef,
    handle: Handle<KvSql>,
}

impl KvCore {
    pub(super) fn def(&self) -> &KvDef {
        &self.def
    }

    pub(super) const fn new(def: KvDef) -> Self {
        KvCore {
            def,
            handle: Handle::new("kv", def.table),
        }
    }

    pub(super) fn facility(&self) -> &'static str {
        self.handle.name()
    }

    fn sql(&self) -> Result<&KvSql> {
        self.handle.sql(|| KvSql::new(&self.def))
    }

    pub(super) fn check_key(&self, key: &str) -> Result<()> {
        self.handle.check_key("key", key)
    }

    fn require_expiry(&self) -> Result<()> {
        if self.def.expiry {
            return Ok(());
        }
        Err(self.handle.unsupported(
            "per-key expiry",
            "set `expiry = true` on this [[kv]] in pgstack.toml and run `pgstack-gen generate`",
        ))
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

    pub(super) async fn get_row<C: Route>(&self, db: &C, key: &str) -> Result<Option<QueryResult>> {
        self.check_key(key)?;
        self.handle
            .traced(
                "get",
                db.read()
                    .query_one_raw(stmt(&self.sql()?.get, vec![key.into()])),
            )
            .await
            .in_facility(self.facility())
    }

    pub(super) async fn get_many_rows<C: Route>(
        &self,
        db: &C,
        keys: &[&str],
    ) -> Result<Vec<QueryResult>> {
        limits::batch(self.facility(), "keys", keys.len())?;
        for key in keys {
            self.check_key(key)?;
        }
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        self.handle
            .traced(
                "get_many",
                db.read()
                    .query_all_raw(stmt(&self.sql()?.get_many, vec![keys.into()])),
            )
            .await
            .in_facility(self.facility())
    }

    pub(super) async fn exists<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let row = self
            .handle
            .traced(
                "exists",
                db.read()
                    .query_one_raw(stmt(&self.sql()?.exists, vec![key.into()])),
            )
            .await
            .in_facility(self.facility())?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.facility()),
            None => Ok(false),
        }
    }

    pub(super) async fn set<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<i64> {
        self.check_key(key)?;
        let ttl = self.ttl_param(ttl)?;
        let row = self
            .handle
            .traced(
                "set",
                db.write()
                    .query_one_raw(stmt(&self.sql()?.set, vec![key.into(), value, ttl])),
            )
            .await
            .in_facility(self.facility())?;
        self.version_of(row)
    }

    pub(super) async fn set_if_absent<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: Value,
        ttl: Option<Duration>,
    ) -> Result<Option<i64>> {
        self.check_key(key)?;
        let ttl = self.ttl_param(ttl)?;
        let row = self
            .handle
            .traced(
                "set_if_absent",
                db.write().query_one_raw(stmt(
                    &self.sql()?.set_if_absent,
                    vec![key.into(), value, ttl],
                )),
            )
            .await
            .in_facility(self.facility())?;
        match row {
            Some(row) => Ok(Some(row.try_get_by_index(0).in_facility(self.facility())?)),
            None => Ok(None),
        }
    }

    pub(super) async fn compare_and_set<C: Route>(
        &self,
        db: &C,
        key: &str,
        expected_version: i64,
        value: Value,
    ) -> Result<i64> {
        self.check_key(key)?;
        let row = self
            .handle
            .traced(
                "compare_and_set",
                db.write().query_one_raw(stmt(
                    &self.sql()?.compare_and_set,
                    vec![
                        key.into(),
                        value,
                        expected_version.into(),
                        Value::BigInt(None),
                    ],
                )),
            )
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
            let row = self
                .handle
                .traced(
                    "compare_and_set",
                    db.write()
                        .query_one_raw(stmt(&self.sql()?.get, vec![key.into()])),
                )
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

    pub(super) async fn delete<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
        self.check_key(key)?;
        let row = self
            .handle
            .traced(
                "delete",
                db.write()
                    .query_one_raw(stmt(&self.sql()?.delete, vec![key.into()])),
            )
            .await
            .in_facility(self.facility())?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.facility()),
            None => Ok(false),
        }
    }

    pub(super) async fn set_many<C: Route>(
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
        self.handle
            .traced(
                "set_many",
                db.write()
                    .execute_raw(stmt(&self.sql()?.set_many, vec![keys.into(), values, ttl])),
            )
            .await
            .in_facility(self.facility())?;
        Ok(())
    }

    pub(super) async fn scan_rows<C: Route>(
        &self,
        db: &C,
        prefix: &str,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<Vec<QueryResult>> {
        if limit == 0 || limit > MAX_PAGE {
            return Err(self.handle.invalid(format!(
                "a page holds 1 to {MAX_PAGE} entries, asked for {limit}"
            )));
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
        self.handle
            .traced("scan_prefix", db.read().query_all_raw(statement))
            .await
            .in_facility(self.facility())
    }

    pub(super) async fn expire<C: Route>(
        &self,
        db: &C,
        key: &str,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        self.check_key(key)?;
        self.require_expiry()?;
        let ttl = self.ttl_param(ttl)?;
        let row = self
            .handle
            .traced(
                "expire",
                db.write()
                    .query_one_raw(stmt(&self.sql()?.expire, vec![key.into(), ttl])),
            )
            .await
            .in_facility(self.facility())?;
        Ok(row.is_some())
    }

    pub(super) async fn sweep_expired<C: Route>(&self, db: &C, batch: u32) -> Result<u64> {
        let result = self
            .handle
            .traced(
                "sweep_expired",
                db.write().execute_raw(stmt(
                    &self.sql()?.sweep,
                    vec![i64::from(batch.max(1)).into()],
                )),
            )
            .await
            .in_facility(self.facility())?;
        Ok(result.rows_affected())
    }

    pub(super) async fn explain_scan<C: Route>(&self, db: &C, prefix: &str) -> Result<String> {
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
        let rows = self
            .handle
            .traced(
                "explain_scan",
                db.read()
                    .query_all_raw(stmt(&format!("EXPLAIN {text}"), values)),
            )
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

    pub(super) fn version_of(&self, row: Option<QueryResult>) -> Result<i64> {
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(self.facility()),
            None => Err(self.handle.no_row("the write")),
        }
    }

    /// Decodes `key, value, version, updated_at, expires_at` with the value decoded by `value`.
    pub(super) fn entry<V>(
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

pub(super) fn page<V>(entries: Vec<Entry<V>>, limit: u32) -> Page<V> {
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
}
