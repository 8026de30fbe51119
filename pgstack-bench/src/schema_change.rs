//! `schema_change`: adding an indexed field to a document collection that holds `--rows`
//! documents (default 1,000,000) while a writer and a reader keep working on it.
//!
//! - `pgstack`: the migrations `pgstack-gen generate` writes for the new field (a plain
//!   column and its trigger; a batched backfill and `CREATE INDEX CONCURRENTLY` outside a
//!   transaction), applied by `pgstack::migrate`.
//! - `rewrite` (the same-run baseline): what pgstack-gen wrote before, on a copy of the table:
//!   `ADD COLUMN ... GENERATED ALWAYS AS (...) STORED` and a plain `CREATE INDEX`.
//!
//! Each record gives the writer's and the reader's longest single wait while the migration
//! ran (client side), their p50 and p99, the migration's duration, and how many rows the new
//! field's index finds afterwards (it must be all of them).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pgstack_gen::generate::Allow;
use pgstack_gen::project::Project;
use sea_orm::{ConnectionTrait, DatabaseConnection};

use crate::load::{BoxError, stmt};
use crate::report::Record;

const V1: &str = r#"
[project]
migrations_dir = "migration"
accessors_dir = "src/db"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text" }
"#;

const V2: &str = r#"
[project]
migrations_dir = "migration"
accessors_dir = "src/db"

[[document]]
name = "profiles"
[document.fields]
email = { path = "email", type = "text" }
country = { path = "address.country", type = "text", index = true }
"#;

/// The longest waits and the latencies of one client while the change ran.
struct Waits {
    latencies: Vec<Duration>,
}

impl Waits {
    fn longest(&self) -> Duration {
        self.latencies.iter().copied().max().unwrap_or_default()
    }
}

/// The database of this case, apart from `pgstack_bench` (its migrations are the scratch
/// spec's, not the bench crate's).
const DATABASE: &str = "pgstack_bench_schema";

pub async fn run(admin_url: &str, rows: u64) -> Result<(), BoxError> {
    let admin = crate::connect(admin_url, 1).await?;
    admin
        .execute_unprepared(&format!(
            "DROP DATABASE IF EXISTS \"{DATABASE}\" WITH (FORCE)"
        ))
        .await?;
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{DATABASE}\""))
        .await?;
    admin.close().await.ok();
    let url = crate::replace_database(admin_url, DATABASE);
    let db = crate::connect(&url, 4).await?;
    let result = measure(&db, &url, rows).await;
    db.close().await.ok();
    result
}

async fn measure(db: &DatabaseConnection, url: &str, rows: u64) -> Result<(), BoxError> {
    let dir = std::env::temp_dir().join(format!("pgstack-bench-schema-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let spec = dir.join("pgstack.toml");
    std::fs::write(&spec, V1)?;
    let project = Project::open(&spec)?;
    project.write(&project.generation(Allow::NOTHING)?)?;
    migrate(db, &spec).await?;

    eprintln!("pgstack-bench: loading {rows} documents");
    let chunk = 100_000u64;
    let mut from = 1u64;
    while from <= rows {
        let to = (from + chunk - 1).min(rows);
        db.execute_raw(stmt(
            "INSERT INTO profiles (doc) SELECT jsonb_build_object('email', 'u' || g || '@example.com', \
             'address', jsonb_build_object('country', (ARRAY['NO', 'SE', 'DK'])[1 + g % 3], 'city', 'c' || g % 1000), \
             'bio', repeat('x', 200)) FROM generate_series($1::bigint, $2::bigint) AS g",
            vec![(from as i64).into(), (to as i64).into()],
        ))
        .await?;
        from = to + 1;
    }
    // The baseline's copy, with the same rows.
    db.execute_unprepared("CREATE TABLE profiles_rewrite (LIKE profiles INCLUDING ALL)")
        .await?;
    db.execute_unprepared(
        "INSERT INTO profiles_rewrite (id, doc, version, created_at, updated_at) \
         SELECT id, doc, version, created_at, updated_at FROM profiles",
    )
    .await?;
    db.execute_unprepared("VACUUM ANALYZE profiles").await?;
    db.execute_unprepared("VACUUM ANALYZE profiles_rewrite")
        .await?;

    // pgstack: generate the change (refused if it blocked), then apply it under load.
    std::fs::write(&spec, V2)?;
    let project = Project::open(&spec)?;
    let generation = project.generation(Allow::NOTHING)?;
    project.write(&generation)?;
    eprintln!(
        "pgstack-bench: applying {} under load",
        generation.new_migrations.join(" and ")
    );
    let (took, writer, reader) = under_load(url, "profiles", rows, migrate(db, &spec)).await?;
    let found = indexed_rows(db, "profiles").await?;
    record("pgstack", rows, took, &writer, &reader, found);

    eprintln!("pgstack-bench: the baseline's rewrite under load");
    let rewrite = async {
        db.execute_unprepared(
            "ALTER TABLE profiles_rewrite ADD COLUMN country text \
             GENERATED ALWAYS AS (doc #>> '{address,country}') STORED",
        )
        .await?;
        db.execute_unprepared(
            "CREATE INDEX profiles_rewrite_country_idx ON profiles_rewrite (country)",
        )
        .await?;
        Ok::<(), BoxError>(())
    };
    let (took, writer, reader) = under_load(url, "profiles_rewrite", rows, rewrite).await?;
    let found = indexed_rows(db, "profiles_rewrite").await?;
    record("rewrite", rows, took, &writer, &reader, found);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

async fn migrate(db: &DatabaseConnection, spec: &std::path::Path) -> Result<(), BoxError> {
    let project = Project::open(spec)?;
    let migrations = pgstack_gen::cli::sql_migrations(project.migrations()?);
    pgstack::migrate::apply(db, &migrations).await?;
    Ok(())
}

/// Runs `change` while a writer (updates of random documents) and a reader (reads of random
/// documents) work on `table`, each on its own connection, one statement at a time.
async fn under_load<F: std::future::Future<Output = Result<(), BoxError>>>(
    url: &str,
    table: &'static str,
    rows: u64,
    change: F,
) -> Result<(Duration, Waits, Waits), BoxError> {
    let stop = Arc::new(AtomicBool::new(false));
    let client = |write: bool| {
        let (stop, url) = (stop.clone(), url.to_string());
        tokio::spawn(async move {
            let db = crate::connect(&url, 1).await?;
            let sql = if write {
                format!(
                    "UPDATE {table} SET doc = jsonb_set(doc, '{{address,city}}', to_jsonb($1::text)), \
                     updated_at = now() WHERE id = $2"
                )
            } else {
                format!("SELECT doc FROM {table} WHERE id = $1")
            };
            let mut latencies = Vec::new();
            let mut n: u64 = 0;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                // A spread of ids without a random number generator.
                let id = (n.wrapping_mul(2_654_435_761) % rows + 1) as i64;
                let values = if write {
                    vec![format!("w{n}").into(), id.into()]
                } else {
                    vec![id.into()]
                };
                let started = Instant::now();
                db.execute_raw(stmt(&sql, values)).await?;
                latencies.push(started.elapsed());
            }
            db.close().await.ok();
            Ok::<Waits, BoxError>(Waits { latencies })
        })
    };
    let (writer, reader) = (client(true), client(false));
    // Let both clients settle before the change starts.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let started = Instant::now();
    let result = change.await;
    let took = started.elapsed();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    let writer = writer.await??;
    let reader = reader.await??;
    result?;
    Ok((took, writer, reader))
}

/// Rows the new field's index finds: every document has a country.
async fn indexed_rows(db: &DatabaseConnection, table: &str) -> Result<i64, BoxError> {
    let row = db
        .query_one_raw(stmt(
            &format!("SELECT count(*) FROM {table} WHERE country IN ('NO', 'SE', 'DK')"),
            vec![],
        ))
        .await?
        .ok_or("count(*) returned no row")?;
    Ok(row.try_get_by_index(0)?)
}

fn record(
    implementation: &'static str,
    rows: u64,
    took: Duration,
    writer: &Waits,
    reader: &Waits,
    found: i64,
) {
    let mut latencies = writer.latencies.clone();
    let ops = latencies.len() as u64;
    let ms = |d: Duration| (d.as_secs_f64() * 1000.0 * 10.0).round() / 10.0;
    let mut reads = reader.latencies.clone();
    reads.sort_unstable();
    Record::new("schema_change", "add_indexed_field", implementation, 2)
        .rate(ops, took)
        .latencies(&mut latencies)
        .with("rows", rows)
        .with("migration_s", (took.as_secs_f64() * 10.0).round() / 10.0)
        .with("longest_write_wait_ms", ms(writer.longest()))
        .with("longest_read_wait_ms", ms(reader.longest()))
        .with("read_p99_ms", crate::report::percentile(&reads, 0.99))
        .with("reads", reads.len() as u64)
        .with("indexed_rows", found)
        .print();
}
