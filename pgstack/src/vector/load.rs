//! Writing rows: upserts in `json_to_recordset` chunks, and bulk loads that build the ANN
//! index once at the end.

use std::collections::{BTreeSet, HashMap};

use sea_orm::{ConnectionTrait, QueryResult};

use super::{Collection, Progress, Record};
use crate::cluster::Route;
use crate::error::{DbContext, Error, Result};
use crate::sql::stmt;

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

impl Collection {
    /// Writes one chunk (a JSON array) and returns the written keys with their versions.
    pub(super) async fn write_chunk<C: Route>(
        &self,
        db: &C,
        json: String,
        tenants: &[String],
    ) -> Result<Vec<QueryResult>> {
        self.ensure_partitions(db, tenants).await?;
        let sql = &self.sql()?.upsert;
        // Kept for a retry only where one can happen.
        let retry = self.def.partition_by.is_some().then(|| json.clone());
        match self
            .handle
            .traced(
                "upsert",
                db.write().query_all_raw(stmt(sql, vec![json.into()])),
            )
            .await
        {
            Ok(rows) => Ok(rows),
            // A partition this process created was rolled back or dropped: create it again.
            Err(e) if e.to_string().contains("no partition of relation") => match retry {
                Some(json) => {
                    self.forget_partitions();
                    self.ensure_partitions(db, tenants).await?;
                    self.handle
                        .traced(
                            "upsert",
                            db.write().query_all_raw(stmt(sql, vec![json.into()])),
                        )
                        .await
                        .in_facility(self.facility())
                }
                None => Err(Error::Database {
                    facility: self.facility().to_string(),
                    cause: e,
                }),
            },
            Err(e) => Err(Error::Database {
                facility: self.facility().to_string(),
                cause: e,
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
        let rows = self
            .handle
            .traced(
                "ann_indexes",
                db.primary()
                    .query_all_raw(stmt(sql, vec![self.sql()?.table.clone().into()])),
            )
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
