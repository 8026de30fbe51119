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
mod embedder;
mod embedding;
mod pipeline;
mod progress;
mod search;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Mutex, OnceLock};

use chrono::{DateTime, FixedOffset};
use sea_orm::prelude::Uuid;
use sea_orm::{ConnectionTrait, DbErr, QueryResult, Statement, Value};

use crate::cluster::Route;

pub use embedder::{EmbedFuture, Embedder, HashEmbedder};
#[cfg(feature = "openai")]
pub use embedder::{OpenAiConfig, OpenAiEmbedder};
pub use embedding::{Embedding, EmbeddingField, SparseVector};
pub use pipeline::{EmbedJob, EmbeddingPipeline};
pub use progress::{Progress, ProgressBar};
pub use search::{Filter, Hit, Hybrid, HybridHit, MAX_K, Search, Strategy, default_exact_below};

use crate::error::{DbContext, Error, Result};
use crate::ident::{Ident, TableName};
use crate::sql::stmt;

/// The pgvector type of the `embedding` column.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Element {
    Vector,
    Halfvec,
    Bit,
    Sparsevec,
}

impl Element {
    pub fn name(self) -> &'static str {
        match self {
            Element::Vector => "vector",
            Element::Halfvec => "halfvec",
            Element::Bit => "bit",
            Element::Sparsevec => "sparsevec",
        }
    }
}

/// How distance is measured; each has its pgvector operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Distance {
    Cosine,
    L2,
    InnerProduct,
    L1,
    Hamming,
    Jaccard,
}

impl Distance {
    pub fn operator(self) -> &'static str {
        match self {
            Distance::Cosine => "<=>",
            Distance::L2 => "<->",
            Distance::InnerProduct => "<#>",
            Distance::L1 => "<+>",
            Distance::Hamming => "<~>",
            Distance::Jaccard => "<%>",
        }
    }
}

/// The collection's ANN index and the setting pgstack searches it with by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IndexDef {
    Hnsw { ef_search: u32 },
    IvfFlat { lists: u32, probes: u32 },
    None,
}

/// The SQL type of an id or metadata field.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FieldKind {
    Text,
    Bigint,
    Integer,
    Boolean,
    Double,
    Timestamptz,
    Uuid,
    Jsonb,
}

impl FieldKind {
    pub fn sql(self) -> &'static str {
        match self {
            FieldKind::Text => "text",
            FieldKind::Bigint => "bigint",
            FieldKind::Integer => "integer",
            FieldKind::Boolean => "boolean",
            FieldKind::Double => "double precision",
            FieldKind::Timestamptz => "timestamptz",
            FieldKind::Uuid => "uuid",
            FieldKind::Jsonb => "jsonb",
        }
    }

    /// Converts a JSON value to a bound parameter of this type, or says why it cannot.
    fn bind(self, value: &serde_json::Value) -> std::result::Result<Value, String> {
        use serde_json::Value as J;
        let wrong = || format!("expected {}, found {}", self.describe(), shown(value));
        Ok(match (self, value) {
            (FieldKind::Jsonb, v) => {
                crate::json::check_depth(v).map_err(|e| e.to_string())?;
                Value::Json(Some(Box::new(v.clone())))
            }
            (_, J::Null) => return Err(format!("expected {}, found null", self.describe())),
            (FieldKind::Text, J::String(s)) => Value::String(Some(s.clone())),
            (FieldKind::Bigint, J::Number(n)) => Value::BigInt(Some(n.as_i64().ok_or_else(wrong)?)),
            (FieldKind::Integer, J::Number(n)) => {
                let n = n.as_i64().and_then(|n| i32::try_from(n).ok());
                Value::Int(Some(n.ok_or_else(wrong)?))
            }
            (FieldKind::Boolean, J::Bool(b)) => Value::Bool(Some(*b)),
            (FieldKind::Double, J::Number(n)) => Value::Double(Some(n.as_f64().ok_or_else(wrong)?)),
            (FieldKind::Timestamptz, J::String(s)) => {
                let t = DateTime::<FixedOffset>::parse_from_rfc3339(s).map_err(|_| wrong())?;
                Value::ChronoDateTimeWithTimeZone(Some(t))
            }
            (FieldKind::Uuid, J::String(s)) => {
                Value::Uuid(Some(Uuid::parse_str(s).map_err(|_| wrong())?))
            }
            _ => return Err(wrong()),
        })
    }

    /// Whether a JSON value fits this type when loaded through `json_to_recordset` (null
    /// always does). Checks without building a value: it runs for every field of every row.
    fn accepts(self, value: &serde_json::Value) -> bool {
        use serde_json::Value as J;
        match (self, value) {
            (_, J::Null) | (FieldKind::Jsonb, _) => true,
            (FieldKind::Text, J::String(_)) | (FieldKind::Boolean, J::Bool(_)) => true,
            (FieldKind::Bigint, J::Number(n)) => n.as_i64().is_some(),
            (FieldKind::Integer, J::Number(n)) => {
                n.as_i64().is_some_and(|n| i32::try_from(n).is_ok())
            }
            (FieldKind::Double, J::Number(n)) => n.as_f64().is_some(),
            (FieldKind::Timestamptz, J::String(s)) => DateTime::parse_from_rfc3339(s).is_ok(),
            (FieldKind::Uuid, J::String(s)) => Uuid::parse_str(s).is_ok(),
            _ => false,
        }
    }

    fn describe(self) -> &'static str {
        match self {
            FieldKind::Text => "a string (`text`)",
            FieldKind::Bigint => "a whole number (`bigint`)",
            FieldKind::Integer => "a whole number within i32 (`integer`)",
            FieldKind::Boolean => "true or false (`boolean`)",
            FieldKind::Double => "a number (`double`)",
            FieldKind::Timestamptz => "an RFC 3339 timestamp string (`timestamptz`)",
            FieldKind::Uuid => "a UUID string (`uuid`)",
            FieldKind::Jsonb => "any JSON (`jsonb`)",
        }
    }

    /// Reads column `name` of this type as JSON (NULL as `null`).
    fn read(self, row: &QueryResult, name: &str) -> std::result::Result<serde_json::Value, DbErr> {
        use serde_json::Value as J;
        Ok(match self {
            FieldKind::Text => row
                .try_get::<Option<String>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Bigint => row
                .try_get::<Option<i64>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Integer => row
                .try_get::<Option<i32>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Boolean => row
                .try_get::<Option<bool>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Double => row
                .try_get::<Option<f64>>("", name)?
                .map_or(J::Null, J::from),
            FieldKind::Timestamptz => row
                .try_get::<Option<DateTime<FixedOffset>>>("", name)?
                .map_or(J::Null, |t| J::from(t.to_rfc3339())),
            FieldKind::Uuid => row
                .try_get::<Option<Uuid>>("", name)?
                .map_or(J::Null, |u| J::from(u.to_string())),
            FieldKind::Jsonb => row
                .try_get::<Option<serde_json::Value>>("", name)?
                .unwrap_or(J::Null),
        })
    }
}

/// A declared metadata field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldDef {
    pub name: &'static str,
    pub kind: FieldKind,
    /// Has a B-tree index: filters on it can be counted cheaply, so a selective filter is
    /// answered by exact search.
    pub indexed: bool,
}

/// What the generator (or `#[derive(Embedded)]`) knows about a `[[vector]]` collection.
#[derive(Clone, Copy, Debug)]
pub struct CollectionDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub dimensions: u32,
    pub element: Element,
    pub distance: Distance,
    pub index: IndexDef,
    pub id: FieldKind,
    pub fields: &'static [FieldDef],
    /// The text search configuration when the collection has a `fts` column.
    pub full_text: Option<&'static str>,
    /// The fields the `fts` column is built from, most important first.
    pub text_fields: &'static [&'static str],
    /// The field each value of which has its own partition.
    pub partition_by: Option<&'static str>,
}

impl CollectionDef {
    pub fn field(&self, name: &str) -> Option<&FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    fn partition_field(&self) -> Option<&FieldDef> {
        self.partition_by.and_then(|p| self.field(p))
    }
}

/// A value for an error message: scalars as they are, containers by kind (printing a
/// container recurses, and a too-deep one would overflow the stack).
fn shown(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => json_kind(value).to_string(),
        scalar => format!("`{scalar}`"),
    }
}

/// What kind of JSON value `value` is, without printing it.
fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A typed handle on a declared field, for filters: `fields::TENANT_ID.eq(7)`.
pub struct Field<V> {
    name: &'static str,
    _value: std::marker::PhantomData<fn(V)>,
}

impl<V> Clone for Field<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Field<V> {}

impl<V: serde::Serialize> Field<V> {
    pub const fn new(name: &'static str) -> Self {
        Field {
            name,
            _value: std::marker::PhantomData,
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// One comparison with `value`; a value that cannot become JSON makes a filter the search
    /// refuses, naming why.
    fn compare(&self, make: fn(&str, serde_json::Value) -> Filter, value: impl Into<V>) -> Filter {
        match crate::json::to_json(&value.into()) {
            Ok(json) => make(self.name, json),
            Err(e) => Filter::invalid(self.name, e.to_string()),
        }
    }

    pub fn eq(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::eq, value)
    }
    pub fn ne(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::ne, value)
    }
    pub fn lt(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::lt, value)
    }
    pub fn le(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::le, value)
    }
    pub fn gt(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::gt, value)
    }
    pub fn ge(&self, value: impl Into<V>) -> Filter {
        self.compare(Filter::ge, value)
    }
    pub fn one_of<I: IntoIterator<Item = V>>(&self, values: I) -> Filter {
        let values: std::result::Result<Vec<_>, _> = values
            .into_iter()
            .map(|v| crate::json::to_json(&v))
            .collect();
        match values {
            Ok(values) => Filter::one_of(self.name, values),
            Err(e) => Filter::invalid(self.name, e.to_string()),
        }
    }
    pub fn is_null(&self) -> Filter {
        Filter::is_null(self.name)
    }
}

/// A row to write, untyped: metadata as JSON, checked against the declared field types.
#[derive(Clone, Debug, PartialEq)]
pub struct Record {
    pub id: serde_json::Value,
    /// `None` stores NULL: the row is kept but not found by vector search until embedded.
    pub embedding: Option<Embedding>,
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl Record {
    pub fn new(id: impl Into<serde_json::Value>) -> Record {
        Record {
            id: id.into(),
            embedding: None,
            fields: serde_json::Map::new(),
        }
    }

    pub fn embedding(mut self, embedding: impl Into<Embedding>) -> Record {
        self.embedding = Some(embedding.into());
        self
    }

    pub fn field(mut self, name: &str, value: impl Into<serde_json::Value>) -> Record {
        self.fields.insert(name.to_string(), value.into());
        self
    }

    pub fn get(&self, name: &str) -> Option<&serde_json::Value> {
        self.fields.get(name)
    }
}

/// Which row: its id, and its tenant when the collection is partitioned.
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    pub id: serde_json::Value,
    pub tenant: Option<serde_json::Value>,
}

impl Key {
    pub fn new(id: impl Into<serde_json::Value>) -> Key {
        Key {
            id: id.into(),
            tenant: None,
        }
    }

    /// The value of the collection's `partition_by` field.
    pub fn tenant(mut self, tenant: impl Into<serde_json::Value>) -> Key {
        self.tenant = Some(tenant.into());
        self
    }
}

macro_rules! key_from {
    ($($t:ty),*) => {$(
        impl From<$t> for Key {
            fn from(id: $t) -> Key {
                Key::new(id)
            }
        }
    )*};
}
key_from!(i64, i32, u32, String, &str);

impl From<Uuid> for Key {
    fn from(id: Uuid) -> Key {
        Key::new(id.to_string())
    }
}

/// A type bound to a collection by `#[derive(Embedded)]`; the provided methods read and write
/// it through the collection.
pub trait Embedded: Sized + Send + Sync + 'static {
    /// The collection's handle (built from the spec at compile time).
    fn collection() -> &'static Collection;

    /// The row this value is written as.
    fn to_record(&self) -> Result<Record>;

    /// The value a row reads as. A row without an embedding reads as `None` into an
    /// `Option` embedding field and is an error for a required one.
    fn from_record(record: Record) -> Result<Self>;

    /// Whether the type's embedding field is required (not an `Option`): then every search
    /// selects the embedding, so a hit always carries it. The derive implements this.
    fn embedding_required() -> bool {
        false
    }

    /// Inserts or replaces this row.
    fn upsert<'a, C: Route>(&'a self, db: &'a C) -> impl Future<Output = Result<()>> + Send + 'a {
        async move { Self::collection().upsert(db, &self.to_record()?).await }
    }

    /// Inserts or replaces many rows in large statements; returns how many were written.
    fn upsert_many<'a, C: Route>(
        db: &'a C,
        items: &'a [Self],
    ) -> impl Future<Output = Result<u64>> + Send + 'a {
        async move {
            Self::collection()
                .load(db, items.len(), items.iter().map(Self::to_record), &mut ())
                .await
        }
    }

    /// [`Embedded::upsert_many`], reporting progress (e.g. to a [`ProgressBar`]).
    fn upsert_many_with_progress<'a, C: Route, P: Progress + Send>(
        db: &'a C,
        items: &'a [Self],
        progress: &'a mut P,
    ) -> impl Future<Output = Result<u64>> + Send + 'a {
        async move {
            Self::collection()
                .load(db, items.len(), items.iter().map(Self::to_record), progress)
                .await
        }
    }

    /// The row with this key, embedding included.
    fn get<'a, C: Route>(
        db: &'a C,
        key: impl Into<Key> + Send + 'a,
    ) -> impl Future<Output = Result<Option<Self>>> + Send + 'a {
        async move {
            match Self::collection().get(db, key).await? {
                Some(record) => Self::from_record(record).map(Some),
                None => Ok(None),
            }
        }
    }

    /// Deletes the row with this key; false when there was none.
    fn delete<'a, C: Route>(
        db: &'a C,
        key: impl Into<Key> + Send + 'a,
    ) -> impl Future<Output = Result<bool>> + Send + 'a {
        async move { Self::collection().delete(db, key).await }
    }

    /// Nearest neighbours, closest first.
    fn search<'a, C: Route>(
        db: &'a C,
        search: &'a Search,
    ) -> impl Future<Output = Result<Vec<Hit<Self>>>> + Send + 'a {
        async move {
            let embeddings = search.with_embeddings || Self::embedding_required();
            Self::collection()
                .search_with(db, search, embeddings)
                .await?
                .into_iter()
                .map(|hit| {
                    Ok(Hit {
                        item: Self::from_record(hit.item)?,
                        distance: hit.distance,
                    })
                })
                .collect()
        }
    }

    /// Semantic and full-text rankings fused, best first.
    fn hybrid<'a, C: Route>(
        db: &'a C,
        hybrid: &'a Hybrid,
    ) -> impl Future<Output = Result<Vec<HybridHit<Self>>>> + Send + 'a {
        async move {
            let embeddings = hybrid.with_embeddings || Self::embedding_required();
            Self::collection()
                .hybrid_with(db, hybrid, embeddings)
                .await?
                .into_iter()
                .map(|hit| {
                    Ok(HybridHit {
                        item: Self::from_record(hit.item)?,
                        score: hit.score,
                        semantic_rank: hit.semantic_rank,
                        keyword_rank: hit.keyword_rank,
                    })
                })
                .collect()
        }
    }
}

/// Rows per `json_to_recordset` statement when loading; also bounded by `LOAD_CHUNK_BYTES`.
const LOAD_CHUNK_ROWS: usize = 2_000;
const LOAD_CHUNK_BYTES: usize = 4 << 20;

/// Encoded rows for one `json_to_recordset` statement.
#[derive(Default)]
struct Chunk {
    /// JSON objects, at most one per key.
    rows: Vec<String>,
    /// Where each key's row is, so a repeat replaces it.
    by_key: HashMap<(String, Option<String>), usize>,
    tenants: BTreeSet<String>,
    bytes: usize,
    /// Records pushed, repeats included.
    pushed: usize,
}

impl Chunk {
    fn push(&mut self, key: (String, Option<String>), row: String) {
        self.pushed += 1;
        self.bytes += row.len();
        if let Some(tenant) = &key.1 {
            self.tenants.insert(tenant.clone());
        }
        match self.by_key.get(&key) {
            Some(&i) => self.rows[i] = row,
            None => {
                self.by_key.insert(key, self.rows.len());
                self.rows.push(row);
            }
        }
    }

    /// The JSON array and the chunk's tenants.
    fn finish(self) -> (String, Vec<String>) {
        (
            format!("[{}]", self.rows.join(",")),
            self.tenants.into_iter().collect(),
        )
    }
}

/// The statements of one collection, built once from its definition.
struct CollectionSql {
    table: String,
    /// `vector(1536)`: the cast every bound embedding gets.
    vtype: String,
    /// `"id", "content", "title"`: what a row reads as (no embedding).
    columns: String,
    upsert: String,
    get: String,
    delete: String,
    count: String,
    count_tenant: String,
    set_embedding: String,
    ensure_partition: String,
}

impl CollectionSql {
    fn new(def: &CollectionDef) -> Result<CollectionSql> {
        let table = TableName::new(def.schema, def.table)?;
        let mut names = vec![Ident::new("id")?];
        for field in def.fields {
            names.push(Ident::new(field.name)?);
        }
        if let Some(p) = def.partition_by {
            Ident::new(p)?;
        }
        // The text search configuration is written into hybrid statements: same rules.
        if let Some(language) = def.full_text {
            Ident::new(language)?;
        }
        let vtype = format!("{}({})", def.element.name(), def.dimensions);
        let columns = names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let id = Ident::new("id")?;
        let key_where = match def.partition_by {
            Some(p) => format!("{} = $1 AND {} = $2", id, Ident::new(p)?),
            None => format!("{id} = $1"),
        };
        let conflict = match def.partition_by {
            Some(p) => format!("{}, {id}", Ident::new(p)?),
            None => id.to_string(),
        };
        // Insert columns: id, embedding, every field; the recordset declares their types.
        let mut record_types = vec![
            format!("{id} {}", def.id.sql()),
            "\"embedding\" text".to_string(),
        ];
        let mut select = vec![format!("r.{id}"), format!("r.\"embedding\"::{vtype}")];
        let mut insert = vec![id.to_string(), "\"embedding\"".to_string()];
        let mut update = vec!["\"embedding\" = EXCLUDED.\"embedding\"".to_string()];
        for field in def.fields {
            let col = Ident::new(field.name)?;
            record_types.push(format!("{col} {}", field.kind.sql()));
            select.push(format!("r.{col}"));
            insert.push(col.to_string());
            if def.partition_by != Some(field.name) {
                update.push(format!("{col} = EXCLUDED.{col}"));
            }
        }
        update.push("\"updated_at\" = now()".to_string());
        let upsert = format!(
            "INSERT INTO {table} ({insert})\nSELECT {select}\nFROM json_to_recordset($1::json) AS r({record_types})\n\
             ON CONFLICT ({conflict}) DO UPDATE SET {update}\nRETURNING {id}{tenant}, floor(extract(epoch FROM \"updated_at\") * 1000000)::bigint AS \"version\"",
            insert = insert.join(", "),
            select = select.join(", "),
            record_types = record_types.join(", "),
            update = update.join(", "),
            tenant = match def.partition_by {
                Some(p) => format!(", {}", Ident::new(p)?),
                None => String::new(),
            },
        );
        Ok(CollectionSql {
            get: format!(
                "SELECT {columns}, \"embedding\"::text AS \"embedding\" FROM {table} WHERE {key_where}"
            ),
            delete: format!("DELETE FROM {table} WHERE {key_where}"),
            count: format!("SELECT count(*) AS n FROM {table}"),
            count_tenant: match def.partition_by {
                Some(p) => format!(
                    "SELECT count(*) AS n FROM {table} WHERE {} = $1",
                    Ident::new(p)?
                ),
                None => String::new(),
            },
            set_embedding: format!(
                "UPDATE {table} SET \"embedding\" = ${n}::{vtype} WHERE {key_where}",
                n = if def.partition_by.is_some() { 3 } else { 2 }
            ),
            ensure_partition: format!(
                "SELECT {}.\"pgstack_ensure_list_partition\"($1, $2)",
                table.schema
            ),
            table: table.to_string(),
            vtype,
            columns,
            upsert,
        })
    }
}

/// A `[[vector]]` collection. Generated code declares one as a `static`.
pub struct Collection {
    def: CollectionDef,
    sql: OnceLock<std::result::Result<CollectionSql, String>>,
    /// Tenants whose partition this process has seen created.
    tenants: Mutex<BTreeSet<String>>,
    /// Whether a filter (with its values) matches few rows, and when that was counted.
    selectivity: Mutex<BTreeMap<String, (bool, std::time::Instant)>>,
}

impl Collection {
    pub const fn new(def: CollectionDef) -> Collection {
        Collection {
            def,
            sql: OnceLock::new(),
            tenants: Mutex::new(BTreeSet::new()),
            selectivity: Mutex::new(BTreeMap::new()),
        }
    }

    pub fn def(&self) -> &CollectionDef {
        &self.def
    }

    fn facility(&self) -> &'static str {
        self.def.table
    }

    fn sql(&self) -> Result<&CollectionSql> {
        self.sql
            .get_or_init(|| CollectionSql::new(&self.def).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|_| {
                Error::InvalidIdentifier(format!("{}.{}", self.def.schema, self.def.table))
            })
    }

    fn invalid(&self, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            facility: self.facility().to_string(),
            message: message.into(),
        }
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
            source,
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
            db.write()
                .execute_raw(stmt(
                    &self.sql()?.ensure_partition,
                    vec![self.def.table.into(), tenant.clone().into()],
                ))
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

    /// Writes one chunk (a JSON array) and returns the written keys with their versions.
    async fn write_chunk<C: Route>(
        &self,
        db: &C,
        json: String,
        tenants: &[String],
    ) -> Result<Vec<QueryResult>> {
        self.ensure_partitions(db, tenants).await?;
        let sql = &self.sql()?.upsert;
        // Kept for a retry only where one can happen.
        let retry = self.def.partition_by.is_some().then(|| json.clone());
        match db.write().query_all_raw(stmt(sql, vec![json.into()])).await {
            Ok(rows) => Ok(rows),
            // A partition this process created was rolled back or dropped: create it again.
            Err(e) if e.to_string().contains("no partition of relation") => match retry {
                Some(json) => {
                    self.forget_partitions();
                    self.ensure_partitions(db, tenants).await?;
                    db.write()
                        .query_all_raw(stmt(sql, vec![json.into()]))
                        .await
                        .in_facility(self.facility())
                }
                None => Err(Error::Database {
                    facility: self.facility().to_string(),
                    source: e,
                }),
            },
            Err(e) => Err(Error::Database {
                facility: self.facility().to_string(),
                source: e,
            }),
        }
    }

    /// Loads records in chunks of at most [`LOAD_CHUNK_ROWS`] rows (and about 4 MB), one
    /// statement each. Each record is checked and encoded as it comes; a key repeated within a
    /// chunk keeps its last version (one statement may not write a row twice).
    pub(crate) async fn load<C, R, I, P>(
        &self,
        db: &C,
        total: usize,
        records: I,
        progress: &mut P,
    ) -> Result<u64>
    where
        C: Route,
        R: std::borrow::Borrow<Record>,
        I: Iterator<Item = Result<R>> + Send,
        P: Progress + Send + ?Sized,
    {
        self.load_returning(db, total, records, progress, |_| Ok(()))
            .await
    }

    /// [`Collection::load`], handing each chunk's `RETURNING` rows to `written`.
    pub(crate) async fn load_returning<C, R, I, P, W>(
        &self,
        db: &C,
        total: usize,
        records: I,
        progress: &mut P,
        mut written: W,
    ) -> Result<u64>
    where
        C: Route,
        R: std::borrow::Borrow<Record>,
        I: Iterator<Item = Result<R>> + Send,
        P: Progress + Send + ?Sized,
        W: FnMut(Vec<QueryResult>) -> Result<()> + Send,
    {
        let mut done = 0u64;
        let mut chunk = Chunk::default();
        let mut records = records.peekable();
        progress.update(0, total as u64);
        while let Some(record) = records.next() {
            let record = record?;
            let record = record.borrow();
            // Encoded (and so checked) before the id and tenant are printed.
            let row = self.encode(record)?;
            let tenant = self
                .def
                .partition_by
                .and_then(|p| record.fields.get(p))
                .map(Self::tenant_text);
            chunk.push((record.id.to_string(), tenant), row);
            if chunk.rows.len() >= LOAD_CHUNK_ROWS
                || chunk.bytes >= LOAD_CHUNK_BYTES
                || records.peek().is_none()
            {
                let pushed = chunk.pushed as u64;
                let (json, tenants) = std::mem::take(&mut chunk).finish();
                written(self.write_chunk(db, json, &tenants).await?)?;
                done += pushed;
                progress.update(done, total as u64);
            }
        }
        progress.finish(done);
        Ok(done)
    }

    /// Inserts or replaces one row (all fields; a missing field is stored as NULL).
    pub async fn upsert<C: Route>(&self, db: &C, record: &Record) -> Result<()> {
        self.load(db, 1, std::iter::once(Ok(record)), &mut ())
            .await
            .map(|_| ())
    }

    /// Inserts or replaces many rows in large statements; returns how many were written.
    pub async fn upsert_many<C: Route>(&self, db: &C, records: &[Record]) -> Result<u64> {
        self.load(db, records.len(), records.iter().map(Ok), &mut ())
            .await
    }

    /// [`Collection::upsert_many`], reporting progress (e.g. to a [`ProgressBar`]).
    pub async fn upsert_many_with_progress<C: Route, P: Progress + Send + ?Sized>(
        &self,
        db: &C,
        records: &[Record],
        progress: &mut P,
    ) -> Result<u64> {
        self.load(db, records.len(), records.iter().map(Ok), progress)
            .await
    }

    /// The row with this key, embedding included.
    pub async fn get<C: Route>(&self, db: &C, key: impl Into<Key>) -> Result<Option<Record>> {
        let values = self.key_values(&key.into())?;
        let row = db
            .read()
            .query_one_raw(stmt(&self.sql()?.get, values))
            .await
            .in_facility(self.facility())?;
        row.map(|r| self.decode(&r, true)).transpose()
    }

    /// Deletes the row with this key; false when there was none.
    pub async fn delete<C: Route>(&self, db: &C, key: impl Into<Key>) -> Result<bool> {
        let values = self.key_values(&key.into())?;
        let result = db
            .write()
            .execute_raw(stmt(&self.sql()?.delete, values))
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
        let row = db
            .read()
            .query_one_raw(statement)
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
        let result = db
            .write()
            .execute_raw(stmt(update, values))
            .await
            .in_facility(self.facility())?;
        Ok(result.rows_affected() > 0)
    }
}

/// How [`Collection::bulk_load`] builds the ANN index after loading.
#[derive(Clone, Debug)]
pub struct BuildOptions {
    /// `maintenance_work_mem` for the build: an HNSW graph that does not fit is built far
    /// more slowly (PostgreSQL says "hnsw graph no longer fits into maintenance_work_mem").
    pub maintenance_work_mem: String,
    /// `max_parallel_maintenance_workers`: processes helping the leader build.
    pub parallel_workers: u32,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            maintenance_work_mem: "512MB".to_string(),
            parallel_workers: 2,
        }
    }
}

/// What a bulk load did.
#[derive(Clone, Debug, PartialEq)]
pub struct BulkLoad {
    pub rows: u64,
    /// Time spent building the ANN index again after the load.
    pub index_build: std::time::Duration,
}

impl Collection {
    /// The ANN index definitions of the collection's table (`pg_get_indexdef`), by name.
    async fn ann_indexes<C: Route>(&self, db: &C) -> Result<Vec<(String, String)>> {
        let sql = "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS def \
                   FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am a ON a.oid = c.relam \
                   WHERE i.indrelid = to_regclass($1) AND a.amname IN ('hnsw', 'ivfflat')";
        let rows = db
            .primary()
            .query_all_raw(stmt(sql, vec![self.sql()?.table.clone().into()]))
            .await
            .in_facility(self.facility())?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("", "name").in_facility(self.facility())?,
                    r.try_get("", "def").in_facility(self.facility())?,
                ))
            })
            .collect()
    }

    /// Builds the ANN index again, in bulk (`REINDEX`), with the memory and workers given:
    /// after many single-row inserts, or to build an IVFFlat index's lists from the data now
    /// present. Blocks writes to the table while it runs.
    pub async fn rebuild_index<C: ConnectionTrait + sea_orm::TransactionTrait>(
        &self,
        db: &C,
        options: &BuildOptions,
    ) -> Result<std::time::Duration> {
        let indexes = self.ann_indexes(db).await?;
        let started = std::time::Instant::now();
        for (name, _) in &indexes {
            self.in_build_txn(db, options, &format!("REINDEX INDEX {name}"))
                .await?;
        }
        Ok(started.elapsed())
    }

    async fn in_build_txn<C: ConnectionTrait + sea_orm::TransactionTrait>(
        &self,
        db: &C,
        options: &BuildOptions,
        ddl: &str,
    ) -> Result<()> {
        use sea_orm::TransactionSession;
        let f = self.facility();
        let txn = db.begin().await.in_facility(f)?;
        txn.execute_raw(stmt(
            "SELECT set_config('maintenance_work_mem', $1, true), set_config('max_parallel_maintenance_workers', $2, true)",
            vec![options.maintenance_work_mem.clone().into(), options.parallel_workers.to_string().into()],
        ))
        .await
        .in_facility(f)?;
        txn.execute_unprepared(ddl).await.in_facility(f)?;
        txn.commit().await.in_facility(f)
    }

    /// Loads many rows into a collection that is empty or about to be replaced: drops the ANN
    /// index, writes the rows in large statements, then builds the index once, in bulk, as
    /// pgvector advises (inserting into an HNSW index row by row costs milliseconds a row).
    /// Searches during the load are exact and slow. If the load fails, the index is built
    /// again before the error is returned. The table is analyzed afterwards.
    pub async fn bulk_load<C, P>(
        &self,
        db: &C,
        records: &[Record],
        options: &BuildOptions,
        progress: &mut P,
    ) -> Result<BulkLoad>
    where
        C: ConnectionTrait + sea_orm::TransactionTrait,
        P: Progress + Send + ?Sized,
    {
        let indexes = self.ann_indexes(db).await?;
        for (name, _) in &indexes {
            db.execute_unprepared(&format!("DROP INDEX {name}"))
                .await
                .in_facility(self.facility())?;
        }
        let loaded = self
            .load(db, records.len(), records.iter().map(Ok), progress)
            .await;
        let started = std::time::Instant::now();
        for (_, definition) in &indexes {
            // A partitioned parent's definition reads `ON ONLY`; building on the parent must
            // cascade to the partitions.
            let definition = definition.replacen(" ON ONLY ", " ON ", 1);
            self.in_build_txn(db, options, &definition).await?;
        }
        // Fresh statistics, so the planner sees the new rows (filters, exact search).
        db.execute_unprepared(&format!("ANALYZE {}", self.sql()?.table))
            .await
            .in_facility(self.facility())?;
        Ok(BulkLoad {
            rows: loaded?,
            index_build: started.elapsed(),
        })
    }
}
