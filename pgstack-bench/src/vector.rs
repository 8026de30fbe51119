//! `pgstack-bench vector`: index build time, queries per second and recall@10, for pgstack's
//! collection accessors and for `raw_sql` (the same queries written by hand, through the same
//! driver), on generated embedding-like data: 100,000 × 128 and 20,000 × 1536, each searched
//! without a filter and with a 10% filter.
//!
//! `raw_sql` gets every advantage a hand-writer would take: its pool sets `hnsw.ef_search` (and
//! the iterative scan) once per connection, so its queries carry no settings at all. pgstack
//! sets them per statement, inside the statement.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pgstack::vector::{BuildOptions, Collection, Filter, Record, Search, Strategy};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement};

use crate::db::{bench_vec128, bench_vec1536};
use crate::load::{BoxError, WARMUP, closed_loop};
use crate::report::Record as Line;

/// Categories per row: `category < 10` selects 10% of the rows.
const CATEGORIES: i64 = 100;
const QUERIES: usize = 200;
const K: usize = 10;

/// Deterministic pseudo-random numbers (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// Embedding-like data: 100 topics in a 32-dimensional latent space, projected to `dims`
/// dimensions with 2% noise, normalised. Documents and queries come from the same topics.
fn clustered(n: usize, dims: usize, seed: u64) -> Vec<Vec<f32>> {
    let latent = 32.min(dims);
    let mut rng = Rng(0xbe7c4);
    let centres: Vec<Vec<f32>> = (0..100)
        .map(|_| (0..latent).map(|_| rng.unit()).collect())
        .collect();
    let projection: Vec<Vec<f32>> = (0..latent)
        .map(|_| (0..dims).map(|_| rng.unit()).collect())
        .collect();
    let mut rng = Rng(seed);
    (0..n)
        .map(|_| {
            let c = &centres[rng.next() as usize % centres.len()];
            let point: Vec<f32> = c.iter().map(|x| x + 0.5 * rng.unit()).collect();
            let mut v = vec![0f32; dims];
            for (p, row) in point.iter().zip(&projection) {
                for (out, r) in v.iter_mut().zip(row) {
                    *out += p * r;
                }
            }
            for x in v.iter_mut() {
                *x += 0.02 * rng.unit();
            }
            let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
            v.iter().map(|x| x / norm).collect()
        })
        .collect()
}

fn vector_text(v: &[f32]) -> String {
    let parts: Vec<String> = v.iter().map(|x| x.to_string()).collect();
    format!("[{}]", parts.join(","))
}

struct Dataset {
    collection: &'static Collection,
    table: &'static str,
    rows: usize,
    dims: usize,
}

pub async fn run(
    db: &DatabaseConnection,
    raw_url: &str,
    seconds: Duration,
    workers: &[usize],
    dimensions: &[usize],
) -> Result<(), BoxError> {
    let datasets = [
        Dataset {
            collection: &bench_vec128::COLLECTION,
            table: "bench_vec128",
            rows: 100_000,
            dims: 128,
        },
        Dataset {
            collection: &bench_vec1536::COLLECTION,
            table: "bench_vec1536",
            rows: 20_000,
            dims: 1536,
        },
    ];
    for data in datasets.iter().filter(|d| dimensions.contains(&d.dims)) {
        run_dataset(db, raw_url, data, seconds, workers).await?;
    }
    Ok(())
}

async fn run_dataset(
    db: &DatabaseConnection,
    raw_url: &str,
    data: &Dataset,
    seconds: Duration,
    workers: &[usize],
) -> Result<(), BoxError> {
    eprintln!("pgstack-bench: generating {} x {}", data.rows, data.dims);
    let vectors = clustered(data.rows, data.dims, 1);
    let records: Vec<Record> = vectors
        .iter()
        .enumerate()
        .map(|(i, v)| {
            Record::new(i as i64)
                .embedding(v.clone())
                .field("category", i as i64 % CATEGORIES)
        })
        .collect();
    let options = BuildOptions::default();

    // Build: pgstack's bulk load (drop the index, load, build it once) ...
    eprintln!("pgstack-bench: loading {}", data.table);
    let mut bar = pgstack::vector::ProgressBar::stderr(format!("loading {}", data.table));
    let loaded = data
        .collection
        .bulk_load(db, &records, &options, &mut bar)
        .await?;
    build_line("pgstack", data, loaded.index_build).print();

    // ... and the same index built by hand on a copy of the table.
    let raw_table = format!("{}_raw", data.table);
    db.execute_unprepared(&format!(
        "DROP TABLE IF EXISTS {raw_table}; CREATE TABLE {raw_table} (LIKE {t} INCLUDING STORAGE); \
         INSERT INTO {raw_table} SELECT * FROM {t}",
        t = data.table
    ))
    .await?;
    let started = Instant::now();
    db.execute_unprepared(&format!(
        "BEGIN; SET LOCAL maintenance_work_mem = '{}'; SET LOCAL max_parallel_maintenance_workers = {}; \
         CREATE INDEX ON {raw_table} USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64); COMMIT",
        options.maintenance_work_mem, options.parallel_workers
    ))
    .await?;
    build_line("raw_sql", data, started.elapsed()).print();
    db.execute_unprepared(&format!("DROP TABLE {raw_table}"))
        .await?;
    // All-visible pages: the filter probe's count can be an index-only scan.
    db.execute_unprepared(&format!("VACUUM ANALYZE {}", data.table))
        .await?;

    let queries = clustered(QUERIES, data.dims, 2);
    for filter in [None, Some(0.1)] {
        eprintln!(
            "pgstack-bench: exact answers for {} (filter {filter:?})",
            data.table
        );
        let mut truth = Vec::with_capacity(queries.len());
        for q in &queries {
            let hits = data
                .collection
                .search(db, &search(q, filter).strategy(Strategy::Exact))
                .await?;
            truth.push(
                hits.iter()
                    .filter_map(|h| h.item.id.as_i64())
                    .collect::<Vec<i64>>(),
            );
        }
        for &clients in workers {
            // The two implementations alternate in one-second slices (pgstack first in even
            // slices, raw_sql first in odd ones), so drift on the server (caches warming,
            // autovacuum) falls on both alike.
            // Both get a pool of their own, one connection per client, configured alike but
            // for raw_sql's startup settings.
            let raw = raw_pool(raw_url, clients, Some(filter.is_some())).await?;
            let ours = raw_pool(raw_url, clients, None).await?;
            let mut totals = [(0u64, Vec::new(), 0usize), (0u64, Vec::new(), 0usize)];
            let slices = seconds.as_secs().max(1);
            for slice in 0..slices {
                let order = if slice % 2 == 0 { [0, 1] } else { [1, 0] };
                for which in order {
                    let pool = if which == 1 { &raw } else { &ours };
                    let warm = slice < 2;
                    let (ops, samples, found) = measure(
                        pool,
                        which == 1,
                        data,
                        &queries,
                        &truth,
                        filter,
                        clients,
                        Duration::from_secs(1),
                        warm,
                    )
                    .await?;
                    totals[which].0 += ops;
                    totals[which].1.extend(samples);
                    totals[which].2 += found;
                }
            }
            raw.close().await.ok();
            ours.close().await.ok();
            for (which, implementation) in ["pgstack", "raw_sql"].into_iter().enumerate() {
                let (ops, samples, found) = &mut totals[which];
                let recall = *found as f64 / (*ops as f64 * K as f64).max(1.0);
                Line::new("vector", "search", implementation, clients)
                    .rate(*ops, Duration::from_secs(slices))
                    .latencies(samples)
                    .with("recall_at_10", (recall * 1000.0).round() / 1000.0)
                    .with(
                        "filter",
                        match filter {
                            Some(f) => serde_json::json!(f),
                            None => serde_json::json!("none"),
                        },
                    )
                    .with("rows", data.rows as u64)
                    .with("dimensions", data.dims as u64)
                    .print();
            }
        }
    }
    Ok(())
}

fn build_line(implementation: &'static str, data: &Dataset, took: Duration) -> Line {
    Line::new("vector", "build", implementation, 1)
        .rate(data.rows as u64, took)
        .with("seconds", (took.as_secs_f64() * 100.0).round() / 100.0)
        .with("rows", data.rows as u64)
        .with("dimensions", data.dims as u64)
        .with("index", "hnsw m=16 ef_construction=64")
}

fn search(q: &[f32], filter: Option<f64>) -> Search {
    let search = Search::new(q.to_vec()).k(K as u32);
    match filter {
        Some(f) => search.filter(Filter::lt("category", (f * CATEGORIES as f64) as i64)),
        None => search,
    }
}

/// A pool for `raw_sql` whose connections start with the search settings pgstack would use,
/// so its statements carry none.
async fn raw_pool(
    url: &str,
    clients: usize,
    raw_settings: Option<bool>,
) -> Result<DatabaseConnection, BoxError> {
    let mut options = sea_orm::ConnectOptions::new(url.to_string());
    options
        .max_connections(clients as u32)
        .min_connections(0)
        .test_before_acquire(false)
        .sqlx_logging(false)
        .map_sqlx_postgres_opts(move |o| match raw_settings {
            Some(filtered) => {
                let mut settings = vec![("hnsw.ef_search", "100")];
                if filtered {
                    settings.push(("hnsw.iterative_scan", "relaxed_order"));
                }
                o.options(settings)
            }
            None => o,
        });
    Ok(sea_orm::Database::connect(options).await?)
}

/// The hand-written statement for `data`: the index-shaped ORDER BY, and with a filter the
/// re-sort an iterative scan in relaxed order needs.
fn raw_statement(table: &str, dims: usize, q: &[f32], filter: Option<f64>) -> Statement {
    let vtype = format!("vector({dims})");
    let sql = match filter {
        None => format!(
            "SELECT id, category, embedding <=> $1::{vtype} AS distance FROM {t} \
             ORDER BY embedding <=> $1::{vtype} LIMIT {K}",
            t = table
        ),
        Some(_) => format!(
            "SELECT * FROM (SELECT id, category, embedding <=> $1::{vtype} AS distance FROM {t} \
             WHERE category < $2 ORDER BY embedding <=> $1::{vtype} LIMIT {K}) AS hits ORDER BY distance + 0",
            t = table
        ),
    };
    let mut values: Vec<sea_orm::Value> = vec![vector_text(q).into()];
    if let Some(f) = filter {
        values.push(((f * CATEGORIES as f64) as i64).into());
    }
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// Runs queries from `clients` tasks for `duration` after a warm-up; returns the queries run,
/// their latencies and how many true top-10 neighbours they found.
#[allow(clippy::too_many_arguments)]
async fn measure(
    db: &DatabaseConnection,
    is_raw: bool,
    data: &Dataset,
    queries: &[Vec<f32>],
    truth: &[Vec<i64>],
    filter: Option<f64>,
    clients: usize,
    duration: Duration,
    warm_up: bool,
) -> Result<(u64, Vec<Duration>, usize), BoxError> {
    let warmup = if warm_up { WARMUP } else { Duration::ZERO };
    let (queries, truth) = (Arc::new(queries.to_vec()), Arc::new(truth.to_vec()));
    let collection = data.collection;
    let (table, dims) = (data.table, data.dims);
    let measured = closed_loop(
        clients,
        warmup,
        duration,
        |_| std::future::ready(Ok(db.clone())),
        move |db: &mut DatabaseConnection, n| {
            let (db, queries, truth) = (db.clone(), queries.clone(), truth.clone());
            async move {
                let i = n as usize % queries.len();
                let ids: Vec<i64> = if is_raw {
                    let statement = raw_statement(table, dims, &queries[i], filter);
                    let rows = db.query_all_raw(statement).await?;
                    rows.iter()
                        .map(|r| r.try_get::<i64>("", "id"))
                        .collect::<Result<_, _>>()?
                } else {
                    let hits = collection.search(&db, &search(&queries[i], filter)).await?;
                    hits.iter().filter_map(|h| h.item.id.as_i64()).collect()
                };
                Ok(ids.iter().filter(|id| truth[i].contains(id)).count())
            }
        },
    )
    .await?;
    Ok((
        measured.ops(),
        measured.latencies,
        measured.results.iter().sum(),
    ))
}
