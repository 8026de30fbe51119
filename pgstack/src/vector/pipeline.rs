//! Embedding in the background: write rows without embeddings and enqueue jobs on a
//! `[[queue]]`; a worker embeds the rows' text and fills the vectors in.
//!
//! ```no_run
//! # async fn demo(db: sea_orm::DatabaseConnection, docs: &'static pgstack::vector::Collection, jobs: &'static pgstack::queue::Queue) -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use pgstack::vector::{EmbeddingPipeline, HashEmbedder, Record};
//! use pgstack::queue::Worker;
//! use sea_orm::TransactionTrait;
//!
//! let pipeline = Arc::new(EmbeddingPipeline::new(docs, jobs));
//! // Rows and their jobs commit together.
//! let txn = db.begin().await?;
//! pipeline.upsert(&txn, &[Record::new(1).field("title", "Queues in PostgreSQL")]).await?;
//! txn.commit().await?;
//!
//! let embedder = Arc::new(HashEmbedder::new(docs.def().dimensions));
//! let handle = pipeline.register(Worker::new(&db, jobs), db.clone(), embedder).start().await?;
//! # Ok(()) }
//! ```
//!
//! Each job names rows and the version (`updated_at`) they were written at; a row rewritten
//! since is skipped (the newer write has its own job), so a slow worker never stores an
//! embedding of stale text.

use std::sync::Arc;

use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::cluster::Route;
use serde::{Deserialize, Serialize};

use super::{Collection, Embedder, Embedding, FieldKind, Record};
use crate::error::{DbContext, Error, Result};
use crate::ident::Ident;
use crate::queue::{NewJob, Queue, Worker};
use crate::sql::stmt;

/// A row to embed: its key and the version it was written at.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedRow {
    pub id: serde_json::Value,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<serde_json::Value>,
    /// `updated_at` in microseconds since the epoch.
    pub version: i64,
}

/// The payload of one embedding job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EmbedJob {
    /// `schema.table` of the collection.
    pub collection: String,
    pub rows: Vec<EmbedRow>,
}

/// Rows written without embeddings, embedded later by a queue worker.
pub struct EmbeddingPipeline {
    collection: &'static Collection,
    queue: &'static Queue,
    text_fields: Vec<&'static str>,
    rows_per_job: usize,
}

impl EmbeddingPipeline {
    /// The job kind the pipeline enqueues and handles.
    pub const KIND: &'static str = "pgstack.embed";

    /// Embeds the collection's `full_text` fields (or, without them, every text field),
    /// joined by blank lines.
    pub fn new(collection: &'static Collection, queue: &'static Queue) -> EmbeddingPipeline {
        let def = collection.def();
        let text_fields = if def.text_fields.is_empty() {
            def.fields
                .iter()
                .filter(|f| f.kind == FieldKind::Text)
                .map(|f| f.name)
                .collect()
        } else {
            def.text_fields.to_vec()
        };
        EmbeddingPipeline {
            collection,
            queue,
            text_fields,
            rows_per_job: 32,
        }
    }

    /// The text fields whose text is embedded, in order.
    pub fn text_fields(mut self, fields: &[&'static str]) -> EmbeddingPipeline {
        self.text_fields = fields.to_vec();
        self
    }

    /// Rows per job, so one embedder request covers several rows (default 32).
    pub fn rows_per_job(mut self, rows: usize) -> EmbeddingPipeline {
        self.rows_per_job = rows.clamp(1, 1000);
        self
    }

    fn name(&self) -> String {
        let def = self.collection.def();
        format!("{}.{}", def.schema, def.table)
    }

    fn check(&self) -> Result<()> {
        let def = self.collection.def();
        if !matches!(
            def.element,
            super::Element::Vector | super::Element::Halfvec
        ) {
            return Err(Error::InvalidArgument {
                facility: def.table.to_string(),
                message: format!(
                    "the embedding pipeline fills dense embeddings; this collection stores `{}`",
                    def.element.name()
                ),
            });
        }
        if self.text_fields.is_empty() {
            return Err(Error::InvalidArgument {
                facility: def.table.to_string(),
                message: "the embedding pipeline has no text field to embed; name them with \
                          `text_fields`"
                    .to_string(),
            });
        }
        for name in &self.text_fields {
            if def.field(name).is_none_or(|f| f.kind != FieldKind::Text) {
                return Err(Error::InvalidArgument {
                    facility: def.table.to_string(),
                    message: format!("`{name}` is not a declared text field"),
                });
            }
        }
        Ok(())
    }

    /// Writes the records with their embeddings left NULL (any given is ignored) and enqueues
    /// jobs to embed them, through `db`: pass a transaction to commit both together.
    pub async fn upsert<C: Route>(&self, db: &C, records: &[Record]) -> Result<u64> {
        self.check()?;
        let collection = self.collection;
        let partitioned = collection.def().partition_by;
        let mut rows: Vec<EmbedRow> = Vec::new();
        let records = records.iter().map(|r| {
            Ok(Record {
                id: r.id.clone(),
                embedding: None,
                fields: r.fields.clone(),
            })
        });
        let n = collection
            .load_returning(db, 0, records, &mut (), |written| {
                for row in written {
                    let f = collection.def().table;
                    let id = collection.def().id.read(&row, "id").in_facility(f)?;
                    let tenant = match partitioned.and_then(|p| collection.def().field(p)) {
                        Some(field) => Some(field.kind.read(&row, field.name).in_facility(f)?),
                        None => None,
                    };
                    let version: i64 = row.try_get("", "version").in_facility(f)?;
                    rows.push(EmbedRow {
                        id,
                        tenant,
                        version,
                    });
                }
                Ok(())
            })
            .await?;
        self.enqueue(db, rows).await?;
        Ok(n)
    }

    async fn enqueue<C: Route>(&self, db: &C, rows: Vec<EmbedRow>) -> Result<()> {
        let mut jobs = Vec::new();
        for chunk in rows.chunks(self.rows_per_job) {
            jobs.push(NewJob::json(
                Self::KIND,
                &EmbedJob {
                    collection: self.name(),
                    rows: chunk.to_vec(),
                },
            )?);
        }
        for batch in jobs.chunks(1000) {
            self.queue.enqueue_many(db, batch).await?;
        }
        Ok(())
    }

    /// Enqueues jobs for every row still without an embedding (after a crash between a
    /// write and its enqueue, or for rows written with `upsert` and no embedding).
    pub async fn backfill<C: Route>(&self, db: &C) -> Result<u64> {
        self.check()?;
        let def = self.collection.def();
        let sql = self.collection.sql()?;
        let tenant = match def.partition_by {
            Some(p) => format!(", {}", Ident::new(p)?),
            None => String::new(),
        };
        let select = format!(
            "SELECT \"id\"{tenant}, floor(extract(epoch FROM \"updated_at\") * 1000000)::bigint AS \"version\" \
             FROM {} WHERE \"embedding\" IS NULL",
            sql.table
        );
        let found = db
            .write()
            .query_all_raw(stmt(&select, Vec::new()))
            .await
            .in_facility(def.table)?;
        let mut rows = Vec::with_capacity(found.len());
        for row in &found {
            let tenant = match def.partition_by.and_then(|p| def.field(p)) {
                Some(field) => Some(field.kind.read(row, field.name).in_facility(def.table)?),
                None => None,
            };
            rows.push(EmbedRow {
                id: def.id.read(row, "id").in_facility(def.table)?,
                tenant,
                version: row.try_get("", "version").in_facility(def.table)?,
            });
        }
        let n = rows.len() as u64;
        self.enqueue(db, rows).await?;
        Ok(n)
    }

    /// `json_to_recordset` column definitions and the join condition on the row's key.
    fn key_sql(&self) -> Result<(String, String)> {
        let def = self.collection.def();
        let mut types = vec![format!("\"id\" {}", def.id.sql())];
        let mut on = vec!["t.\"id\" = k.\"id\"".to_string()];
        // The tenant travels in the job's JSON as "tenant".
        if let Some(field) = def.partition_by.and_then(|p| def.field(p)) {
            types.push(format!("\"tenant\" {}", field.kind.sql()));
            on.push(format!("t.{} = k.\"tenant\"", Ident::new(field.name)?));
        }
        types.push("\"version\" bigint".to_string());
        on.push(
            "floor(extract(epoch FROM t.\"updated_at\") * 1000000)::bigint = k.\"version\""
                .to_string(),
        );
        Ok((types.join(", "), on.join(" AND ")))
    }

    fn rows_json(rows: &[EmbedRow], embeddings: Option<&[String]>) -> String {
        let items: Vec<serde_json::Value> = rows
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let mut item = serde_json::json!({ "id": r.id, "version": r.version });
                if let Some(t) = &r.tenant {
                    item["tenant"] = t.clone();
                }
                if let Some(e) = embeddings {
                    item["embedding"] = e[i].clone().into();
                }
                item
            })
            .collect();
        serde_json::Value::Array(items).to_string()
    }

    /// Embeds the job's rows that are still at their version and stores the embeddings;
    /// returns how many were stored.
    pub async fn process<C: Route>(
        &self,
        db: &C,
        embedder: &dyn Embedder,
        job: &EmbedJob,
    ) -> Result<u64> {
        self.check()?;
        let def = self.collection.def();
        if job.collection != self.name() {
            return Err(Error::InvalidArgument {
                facility: def.table.to_string(),
                message: format!(
                    "a job for `{}` reached the pipeline of `{}`",
                    job.collection,
                    self.name()
                ),
            });
        }
        if embedder.dimensions() != def.dimensions {
            return Err(Error::InvalidArgument {
                facility: def.table.to_string(),
                message: format!(
                    "the embedder `{}` returns {} dimensions, the collection stores {}",
                    embedder.name(),
                    embedder.dimensions(),
                    def.dimensions
                ),
            });
        }
        let sql = self.collection.sql()?;
        let (types, on) = self.key_sql()?;
        let tenant_field = def.partition_by.and_then(|p| def.field(p));
        let texts = self
            .text_fields
            .iter()
            .map(|f| Ident::new(f).map(|c| format!("t.{c}")))
            .collect::<Result<Vec<_>>>()?
            .join(", ");
        let select = format!(
            "SELECT k.\"id\", {tenant}k.\"version\", concat_ws(E'\\n\\n', {texts}) AS \"text\" \
             FROM json_to_recordset($1::json) AS k({types}) JOIN {table} t ON {on} ORDER BY k.\"version\"",
            tenant = if tenant_field.is_some() {
                "k.\"tenant\", "
            } else {
                ""
            },
            table = sql.table
        );
        let current = db
            .write()
            .query_all_raw(stmt(&select, vec![Self::rows_json(&job.rows, None).into()]))
            .await
            .in_facility(def.table)?;
        if current.is_empty() {
            return Ok(0);
        }
        let mut rows = Vec::with_capacity(current.len());
        let mut texts = Vec::with_capacity(current.len());
        for row in &current {
            let id = def.id.read(row, "id").in_facility(def.table)?;
            let version: i64 = row.try_get("", "version").in_facility(def.table)?;
            let text: String = row.try_get("", "text").in_facility(def.table)?;
            let tenant = match tenant_field {
                Some(field) => Some(field.kind.read(row, "tenant").in_facility(def.table)?),
                None => None,
            };
            rows.push(EmbedRow {
                id,
                tenant,
                version,
            });
            texts.push(text);
        }
        let vectors = embedder.embed(&texts).await?;
        if vectors.len() != rows.len() {
            return Err(Error::Embedder {
                embedder: embedder.name().to_string(),
                message: format!("asked for {} embeddings, got {}", rows.len(), vectors.len()),
            });
        }
        let mut encoded = Vec::with_capacity(vectors.len());
        for (row, vector) in rows.iter().zip(vectors) {
            let embedding = Embedding::Dense(vector);
            self.collection
                .check_embedding(&embedding, &format!("the embedding of row {}", row.id))?;
            encoded.push(embedding.to_sql_text());
        }
        let update = format!(
            "UPDATE {table} t SET \"embedding\" = k.\"embedding\"::{vtype} \
             FROM json_to_recordset($1::json) AS k({types}, \"embedding\" text) WHERE {on}",
            table = sql.table,
            vtype = sql.vtype,
        );
        let result = db
            .write()
            .execute_raw(stmt(
                &update,
                vec![Self::rows_json(&rows, Some(&encoded)).into()],
            ))
            .await
            .in_facility(def.table)?;
        Ok(result.rows_affected())
    }

    /// Adds the embedding handler to `worker` (which must run the pipeline's queue).
    pub fn register(
        self: Arc<Self>,
        worker: Worker,
        db: DatabaseConnection,
        embedder: Arc<dyn Embedder>,
    ) -> Worker {
        worker.handle_raw(Self::KIND, move |job| {
            let pipeline = self.clone();
            let embedder = embedder.clone();
            let db = db.clone();
            async move {
                let payload: EmbedJob = job.payload.decode()?;
                pipeline.process(&db, embedder.as_ref(), &payload).await?;
                Ok(())
            }
        })
    }
}
