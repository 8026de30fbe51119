//! Applying pgstack's SQL migrations, serialised by an advisory lock.
//!
//! sea-orm-migration takes no lock, so two deploys starting at once can both try to apply the
//! same migration. [`apply`] runs every pending migration in **one** transaction that first
//! takes `pg_advisory_xact_lock`: a second runner waits, then finds nothing pending. A failure
//! rolls back the whole run, leaving the database as it was.
//!
//! Applied migrations are recorded in sea-orm-migration's own `seaql_migrations` table, so the
//! generated sea-orm-migration crate and `pgstack-gen migrate` agree on what has run.

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::error::{DbContext, Error, Result};

/// The advisory lock key every pgstack migration runner takes (`"pgstkmig"` in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x7067_7374_6b6d_6967;

/// One migration: its name (the `version` in `seaql_migrations`) and its SQL.
#[derive(Clone, Debug)]
pub struct SqlMigration {
    pub name: String,
    pub up_sql: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Migrations applied by this run, in order.
    pub applied: Vec<String>,
    /// Migrations that were already applied.
    pub already_applied: usize,
}

const CREATE_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS "seaql_migrations" (
    "version" varchar NOT NULL PRIMARY KEY,
    "applied_at" bigint NOT NULL
)"#;

/// Applies every migration of `migrations` not yet in `seaql_migrations`, in order, atomically.
pub async fn apply(db: &DatabaseConnection, migrations: &[SqlMigration]) -> Result<MigrateReport> {
    let ctx = "migrations";
    let txn = db.begin().await.in_facility(ctx)?;
    // Held until commit or rollback; concurrent runners queue here.
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await
    .in_facility(ctx)?;
    txn.execute_unprepared(CREATE_TABLE)
        .await
        .in_facility(ctx)?;
    // Read after taking the lock: in READ COMMITTED this sees every earlier runner's commit.
    let rows = txn
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            r#"SELECT "version" FROM "seaql_migrations""#,
        ))
        .await
        .in_facility(ctx)?;
    let mut done = std::collections::HashSet::new();
    for row in rows {
        done.insert(row.try_get_by_index::<String>(0).in_facility(ctx)?);
    }
    let mut report = MigrateReport::default();
    for migration in migrations {
        if done.contains(&migration.name) {
            report.already_applied += 1;
            continue;
        }
        txn.execute_unprepared(&migration.up_sql)
            .await
            .map_err(|source| Error::Migration {
                name: migration.name.clone(),
                source,
            })?;
        txn.execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            r#"INSERT INTO "seaql_migrations" ("version", "applied_at")
               VALUES ($1, extract(epoch FROM now())::bigint)"#,
            [migration.name.clone().into()],
        ))
        .await
        .in_facility(ctx)?;
        report.applied.push(migration.name.clone());
    }
    txn.commit().await.in_facility(ctx)?;
    Ok(report)
}

/// Names of the migrations recorded as applied, for status displays.
pub async fn applied<C: ConnectionTrait>(db: &C) -> Result<Vec<String>> {
    let ctx = "migrations";
    let exists = db
        .query_one_raw(Statement::from_string(
            DbBackend::Postgres,
            "SELECT to_regclass('seaql_migrations') IS NOT NULL",
        ))
        .await
        .in_facility(ctx)?;
    let exists = match exists {
        Some(row) => row.try_get_by_index::<bool>(0).in_facility(ctx)?,
        None => false,
    };
    if !exists {
        return Ok(Vec::new());
    }
    let rows = db
        .query_all_raw(Statement::from_string(
            DbBackend::Postgres,
            r#"SELECT "version" FROM "seaql_migrations" ORDER BY "applied_at", "version""#,
        ))
        .await
        .in_facility(ctx)?;
    rows.into_iter()
        .map(|row| row.try_get_by_index::<String>(0).in_facility(ctx))
        .collect()
}
