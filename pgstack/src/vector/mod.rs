//! Vector collections (`[[vector]]`): pgvector embeddings with typed metadata, nearest-neighbour
//! search that stays correct under filters, and hybrid (semantic + full-text) search.
//!
//! ```no_run
//! # async fn demo(db: &sea_orm::DatabaseConnection, docs: &'static pgstack::vector::Collection) -> pgstack::Result<()> {
//! use pgstack::vector::{Filter, HashEmbedder, Embedder, Hybrid, Record, Search};
//!
//! let embedder = HashEmbedder::new(docs.def().dimensions);
//! let text = "PostgreSQL can be your queue";
//! let embedding = embedder.embed_one(text).await?;
//! docs.upsert(db, &Record::new(1).embedding(embedding.clone()).field("title", text)).await?;
//!
//! // The 10 nearest, then the nearest among tenant 7's published documents.
//! let hits = docs.search(db, &Search::new(embedding.clone())).await?;
//! let filtered = docs
//!     .search(db, &Search::new(embedding.clone()).filter(Filter::eq("published", true)))
//!     .await?;
//!
//! // Semantic and keyword rankings fused by reciprocal rank fusion.
//! let hybrid = docs.hybrid(db, &Hybrid::new("queue", embedding)).await?;
//! # Ok(()) }
//! ```
//!
//! How searches are shaped (see `search.rs`): always `ORDER BY embedding <op> $1 LIMIT k`, so the
//! HNSW or IVFFlat index serves them; `ef_search` / `probes` are set for that one statement with
//! `set_config(..., true)` in the same round trip; a filtered search uses pgvector's iterative
//! scan, or exact search when the filter matches few rows, so it still returns `k` rows.

#[doc(hidden)]
pub mod check;
mod def;
mod embedded;
mod embedder;
mod embedding;
mod load;
mod pipeline;
mod progress;
mod query;
mod record;
mod search;
mod sql;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use sea_orm::{ConnectionTrait, QueryResult, Statement, Value};

pub use self::def::{CollectionDef, Distance, Element, FieldDef, FieldKind, IndexDef};
use self::def::{json_kind, shown};
pub use self::embedded::Embedded;
pub use self::load::{BuildOptions, BulkLoad};
pub use self::record::{Field, Key, Record};
use self::sql::CollectionSql;
use crate::cluster::Route;
use crate::error::{DbContext, Error, Result};
use crate::handle::Handle;
use crate::sql::stmt;

pub use embedder::{EmbedFuture, Embedder, HashEmbedder};
#[cfg(feature = "openai")]
pub use embedder::{OpenAiConfig, OpenAiEmbedder};
pub use embedding::{Embedding, EmbeddingField, SparseVector};
pub use pipeline::{EmbedJob, EmbeddingPipeline};
pub use progress::{Progress, ProgressBar};
pub use query::{Filter, Hit, Hybrid, HybridHit, Search, Strategy, default_exact_below};
pub use search::{MAX_K, SELECTIVITY_TTL};

/// A `[[vector]]` collection. Generated code declares one as a `static`.
pub struct Collection {
    def: CollectionDef,
    handle: Handle<CollectionSql>,
    /// Tenants whose partition this process has seen created.
    tenants: Mutex<BTreeSet<String>>,
    /// Whether a filter (with its values) matches few rows, and when that was counted.
    selectivity: Mutex<BTreeMap<String, (bool, std::time::Instant)>>,
}

impl Collection {
    pub const fn new(def: CollectionDef) -> Collection {
        Collection {
            def,
            handle: Handle::new("vector", def.table),
            tenants: Mutex::new(BTreeSet::new()),
            selectivity: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn def(&self) -> &CollectionDef {
        &self.def
    }

    fn facility(&self) -> &'static str {
        self.handle.name()
    }

    fn sql(&self) -> Result<&CollectionSql> {
        self.handle.sql(|| CollectionSql::new(&self.def))
    }

    fn invalid(&self, message: impl Into<String>) -> Error {
        self.handle.invalid(message)
    }

    /// Checks an embedding before it reaches SQL; `what` names it in the message.
    pub fn check_embedding(&self, embedding: &Embedding, what: &str) -> Result<()> {
        embedding
            .check(&self.def)
            .map_err(|why| self.invalid(format!("{what}: {why}")))
    }

    /// The bound parameters locating one row: id, then tenant when partitioned.
    fn key_values(&self, key: &Key) -> Result<Vec<Value>> {
        for value in std::iter::once(&key.id).chain(key.tenant.as_ref()) {
            crate::json::check_depth(value)
                .map_err(|_| self.invalid(crate::json::too_deep("in a key")))?;
        }
        let id = self
            .def
            .id
            .bind(&key.id)
            .map_err(|why| self.invalid(format!("id: {why}")))?;
        match (self.def.partition_field(), &key.tenant) {
            (Some(field), Some(tenant)) => {
                let tenant = field
                    .kind
                    .bind(tenant)
                    .map_err(|why| self.invalid(format!("tenant (`{}`): {why}", field.name)))?;
                Ok(vec![id, tenant])
            }
            (Some(field), None) => Err(self.invalid(format!(
                "the collection is partitioned by `{}`: give the tenant, e.g. \
                 `Key::new(id).tenant(value)`",
                field.name
            ))),
            (None, Some(_)) => {
                Err(self.invalid("the collection has no `partition_by`, so a key takes no tenant"))
            }
            (None, None) => Ok(vec![id]),
        }
    }

    /// Reads a row selected with [`CollectionSql::columns`] (and `embedding` when present).
    fn decode(&self, row: &QueryResult, with_embedding: bool) -> Result<Record> {
        let f = self.facility();
        let id = self.def.id.read(row, "id").in_facility(f)?;
        let mut fields = serde_json::Map::new();
        for field in self.def.fields {
            fields.insert(
                field.name.to_string(),
                field.kind.read(row, field.name).in_facility(f)?,
            );
        }
        let embedding = if with_embedding {
            match row
                .try_get::<Option<String>>("", "embedding")
                .in_facility(f)?
            {
                Some(text) => Some(
                    Embedding::from_sql_text(self.def.element, &text)
                        .map_err(|why| self.invalid(format!("reading row {id}: {why}")))?,
                ),
                None => None,
            }
        } else {
            None
        };
        Ok(Record {
            id,
            embedding,
            fields,
        })
    }

    /// Checks a record against the declaration and returns it as a `json_to_recordset` object.
    fn encode(&self, record: &Record) -> Result<String> {
        let what = |id: &serde_json::Value| format!("record {id}");
        // Before anything prints the id: printing a too-deep value recurses.
        if !matches!(
            record.id,
            serde_json::Value::Number(_) | serde_json::Value::String(_)
        ) {
            return Err(self.invalid(format!(
                "a record id must be {}, found {}",
                self.def.id.describe(),
                json_kind(&record.id)
            )));
        }
        if !self.def.id.accepts(&record.id) || record.id.is_null() {
            return Err(self.invalid(format!(
                "record id `{}`: expected {}",
                record.id,
                self.def.id.describe()
            )));
        }
        for name in record.fields.keys() {
            if self.def.field(name).is_none() {
                let declared: Vec<&str> = self.def.fields.iter().map(|f| f.name).collect();
                return Err(self.invalid(format!(
                    "{}: `{name}` is not a declared field; declared: {}",
                    what(&record.id),
                    declared.join(", ")
                )));
            }
        }
        const NULL: serde_json::Value = serde_json::Value::Null;
        let embedding = match &record.embedding {
            Some(e) => {
                self.check_embedding(e, &format!("{} embedding", what(&record.id)))?;
                serde_json::Value::String(e.to_sql_text())
            }
            None => NULL,
        };
        // Borrowed values: a row's fields are serialized, not copied.
        let mut row: BTreeMap<&str, &serde_json::Value> = BTreeMap::new();
        row.insert("id", &record.id);
        row.insert("embedding", &embedding);
        for field in self.def.fields {
            let value = record.fields.get(field.name).unwrap_or(&NULL);
            crate::json::check_depth(value).map_err(|_| {
                self.invalid(format!(
                    "{} field `{}`: {}",
                    what(&record.id),
                    field.name,
                    crate::json::too_deep("stored")
                ))
            })?;
            if !field.kind.accepts(value) {
                return Err(self.invalid(format!(
                    "{} field `{}`: expected {}, found {}",
                    what(&record.id),
                    field.name,
                    field.kind.describe(),
                    shown(value)
                )));
            }
            if value.is_null() && self.def.partition_by == Some(field.name) {
                return Err(self.invalid(format!(
                    "{}: `{}` is the partition key and must have a value",
                    what(&record.id),
                    field.name
                )));
            }
            row.insert(field.name, value);
        }
        serde_json::to_string(&row).map_err(|source| Error::Json {
            facility: self.facility().to_string(),
            direction: "encode",
            what: what(&record.id),
            cause: source,
        })
    }

    /// The text form of a tenant value, as the partition function takes it.
    fn tenant_text(value: &serde_json::Value) -> String {
        match value {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        }
    }

    /// Creates the partitions of tenants this process has not written yet.
    async fn ensure_partitions<C: Route>(&self, db: &C, tenants: &[String]) -> Result<()> {
        let missing: Vec<String> = {
            let known = self.tenants.lock().unwrap_or_else(|e| e.into_inner());
            tenants
                .iter()
                .filter(|t| !known.contains(*t))
                .cloned()
                .collect()
        };
        for tenant in missing {
            self.handle
                .traced(
                    "ensure_partitions",
                    db.write().execute_raw(stmt(
                        &self.sql()?.ensure_partition,
                        vec![self.def.table.into(), tenant.clone().into()],
                    )),
                )
                .await
                .in_facility(self.facility())?;
            self.tenants
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(tenant);
        }
        Ok(())
    }

    fn forget_partitions(&self) {
        self.tenants
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }

    /// The row with this key, embedding included.
    pub async fn get<C: Route>(&self, db: &C, key: impl Into<Key>) -> Result<Option<Record>> {
        let values = self.key_values(&key.into())?;
        let row = self
            .handle
            .traced(
                "get",
                db.read().query_one_raw(stmt(&self.sql()?.get, values)),
            )
            .await
            .in_facility(self.facility())?;
        row.map(|r| self.decode(&r, true)).transpose()
    }

    /// Deletes the row with this key; false when there was none.
    pub async fn delete<C: Route>(&self, db: &C, key: impl Into<Key>) -> Result<bool> {
        let values = self.key_values(&key.into())?;
        let result = self
            .handle
            .traced(
                "delete",
                db.write().execute_raw(stmt(&self.sql()?.delete, values)),
            )
            .await
            .in_facility(self.facility())?;
        Ok(result.rows_affected() > 0)
    }

    /// How many rows the collection holds.
    pub async fn count<C: Route>(&self, db: &C) -> Result<u64> {
        self.count_rows(db, stmt(&self.sql()?.count, Vec::new()))
            .await
    }

    /// How many rows one tenant of a partitioned collection holds.
    pub async fn count_tenant<C: Route>(
        &self,
        db: &C,
        tenant: impl Into<serde_json::Value>,
    ) -> Result<u64> {
        let Some(field) = self.def.partition_field() else {
            return Err(self.invalid("the collection has no `partition_by`; use `count`"));
        };
        let tenant = field
            .kind
            .bind(&tenant.into())
            .map_err(|why| self.invalid(format!("tenant (`{}`): {why}", field.name)))?;
        self.count_rows(db, stmt(&self.sql()?.count_tenant, vec![tenant]))
            .await
    }

    async fn count_rows<C: Route>(&self, db: &C, statement: Statement) -> Result<u64> {
        let row = self
            .handle
            .traced("count", db.read().query_one_raw(statement))
            .await
            .in_facility(self.facility())?;
        let n: i64 = match row {
            Some(row) => row.try_get("", "n").in_facility(self.facility())?,
            None => 0,
        };
        Ok(n as u64)
    }

    /// Stores an embedding for an existing row; false when the row does not exist.
    pub async fn set_embedding<C: Route>(
        &self,
        db: &C,
        key: impl Into<Key>,
        embedding: &Embedding,
    ) -> Result<bool> {
        self.check_embedding(embedding, "embedding")?;
        let mut values = self.key_values(&key.into())?;
        values.push(embedding.to_sql_text().into());
        let update = &self.sql()?.set_embedding;
        let result = self
            .handle
            .traced(
                "set_embedding",
                db.write().execute_raw(stmt(update, values)),
            )
            .await
            .in_facility(self.facility())?;
        Ok(result.rows_affected() > 0)
    }
}
