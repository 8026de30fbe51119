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

mod core;
mod def;
mod sql;

use std::time::Duration;

use sea_orm::QueryResult;
use sea_orm::Value;
use sea_orm::sea_query::ArrayType;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub use self::core::prefix_upper_bound;
use self::core::{KvCore, page};
pub use self::def::{Entry, KvDef, MAX_PAGE, Page, ValueKind};
use crate::cluster::Route;
use crate::error::{DbContext, Error, Result};
use crate::json;

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
            cause: source,
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

    /// As [`BytesKv::set_if_absent`], with a time to live. Needs `expiry = true`.
    pub async fn set_if_absent_with_ttl<C: Route>(
        &self,
        db: &C,
        key: &str,
        value: &[u8],
        ttl: Duration,
    ) -> Result<Option<i64>> {
        self.core
            .set_if_absent(db, key, value.to_vec().into(), Some(ttl))
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

    /// Stores every pair in one statement, in key order.
    pub async fn set_many<K: AsRef<str>, V: AsRef<[u8]>, C: Route>(
        &self,
        db: &C,
        entries: &[(K, V)],
    ) -> Result<()> {
        self.set_many_inner(db, entries, None).await
    }

    /// As [`BytesKv::set_many`], every key expiring after `ttl`. Needs `expiry = true`.
    pub async fn set_many_with_ttl<K: AsRef<str>, V: AsRef<[u8]>, C: Route>(
        &self,
        db: &C,
        entries: &[(K, V)],
        ttl: Duration,
    ) -> Result<()> {
        self.set_many_inner(db, entries, Some(ttl)).await
    }

    async fn set_many_inner<K: AsRef<str>, V: AsRef<[u8]>, C: Route>(
        &self,
        db: &C,
        entries: &[(K, V)],
        ttl: Option<Duration>,
    ) -> Result<()> {
        let encoded = entries
            .iter()
            .map(|(k, v)| (k.as_ref().to_string(), Value::from(v.as_ref().to_vec())))
            .collect();
        self.core.set_many(db, encoded, ttl, ArrayType::Bytes).await
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
}

/// The accessors whose arguments and results are the same for JSON and byte stores.
macro_rules! value_free_accessors {
    ($store:ident) => {
        impl $store {
            /// The store's definition, as generated from the spec.
            pub fn def(&self) -> &KvDef {
                self.core.def()
            }

            /// Whether a live value is stored at `key`.
            pub async fn exists<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
                self.core.exists(db, key).await
            }

            /// Deletes `key`; `true` if a live value was there.
            pub async fn delete<C: Route>(&self, db: &C, key: &str) -> Result<bool> {
                self.core.delete(db, key).await
            }

            /// Sets (`Some`) or clears (`None`) the expiry of a live key; `false` if it is
            /// absent. Needs `expiry = true`.
            pub async fn expire<C: Route>(
                &self,
                db: &C,
                key: &str,
                ttl: Option<Duration>,
            ) -> Result<bool> {
                self.core.expire(db, key, ttl).await
            }

            /// Deletes up to `batch` expired entries, skipping rows other sessions hold;
            /// returns how many.
            pub async fn sweep_expired<C: Route>(&self, db: &C, batch: u32) -> Result<u64> {
                self.core.sweep_expired(db, batch).await
            }

            /// The plan PostgreSQL picks for a prefix scan (`EXPLAIN`), to check the index
            /// serves it.
            pub async fn explain_scan_prefix<C: Route>(
                &self,
                db: &C,
                prefix: &str,
            ) -> Result<String> {
                self.core.explain_scan(db, prefix).await
            }
        }
    };
}

value_free_accessors!(JsonKv);
value_free_accessors!(BytesKv);
