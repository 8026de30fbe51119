//! Applying pgstack's SQL migrations, serialised by an advisory lock.
//!
//! sea-orm-migration takes no lock, so two deploys starting at once can both try to apply the
//! same migration. [`apply`] runs every pending migration in **one** transaction that first
//! takes `pg_advisory_xact_lock`: a second runner waits, then finds nothing pending. A failure
//! rolls back the whole run, leaving the database as it was.
//!
//! Applied migrations are recorded in sea-orm-migration's own `seaql_migrations` table, so the
//! generated sea-orm-migration crate and `pgstack-gen migrate` agree on what has run.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, Statement, TransactionTrait};

use crate::error::{DbContext, Error, MigrationError, Result, pg_error};

/// The advisory lock key every pgstack migration runner takes (`"pgstkmig"` in ASCII).
pub const MIGRATION_LOCK_KEY: i64 = 0x7067_7374_6b6d_6967;

/// One migration: its name (the `version` in `seaql_migrations`), the file its SQL came from
/// (as errors show it) and the SQL.
#[derive(Clone, Debug)]
pub struct SqlMigration {
    pub name: String,
    pub file: String,
    pub up_sql: String,
}

/// What a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MigrateReport {
    /// Migrations applied by this run, in order.
    pub applied: Vec<String>,
    /// Migrations that were already applied.
    pub already_applied: usize,
    /// Attempts that gave up waiting for a table lock (`lock_timeout`) and were tried again.
    pub lock_retries: u32,
}

/// How a run waits for locks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateOptions {
    /// How long one DDL statement waits for its table's lock (`SET LOCAL lock_timeout`).
    /// Queries on that table queue behind a waiting `ALTER TABLE`, so the wait is kept short
    /// and the attempt fails instead (default 5s).
    pub lock_timeout: Duration,
    /// How many times an attempt that timed out waiting for a lock is made again, after 1s,
    /// 2s, 4s, ... (default 5).
    pub lock_retries: u32,
    /// The first wait before a retry, doubled each time (default 1s).
    pub retry_delay: Duration,
}

impl Default for MigrateOptions {
    fn default() -> Self {
        MigrateOptions {
            lock_timeout: Duration::from_secs(5),
            lock_retries: 5,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// The first line (after the header) of a migration that runs outside a transaction, one
/// statement at a time: `pgstack-gen` writes its concurrent index builds so.
pub const NO_TRANSACTION: &str = "-- pgstack:no-transaction";

impl SqlMigration {
    /// Whether it runs outside a transaction (concurrent index builds).
    pub fn transactional(&self) -> bool {
        !self
            .up_sql
            .lines()
            .any(|line| line.starts_with(NO_TRANSACTION))
    }
}

const CREATE_TABLE: &str = r#"CREATE TABLE IF NOT EXISTS "seaql_migrations" (
    "version" varchar NOT NULL PRIMARY KEY,
    "applied_at" bigint NOT NULL
)"#;

const RECORD: &str = r#"INSERT INTO "seaql_migrations" ("version", "applied_at")
               VALUES ($1, extract(epoch FROM now())::bigint)"#;

/// Applies every migration of `migrations` not yet in `seaql_migrations`, in order, with
/// the default [`MigrateOptions`].
pub async fn apply(db: &DatabaseConnection, migrations: &[SqlMigration]) -> Result<MigrateReport> {
    apply_with(db, migrations, &MigrateOptions::default()).await
}

/// Applies every migration of `migrations` not yet in `seaql_migrations`, in order, under the
/// migration lock, so concurrent runners apply each once.
///
/// When every pending migration is transactional, they run in **one** transaction: a failure
/// rolls the whole run back. A migration of concurrent index builds runs outside any
/// transaction; then each migration commits on its own, in order, while a second connection
/// holds the lock, and a failure leaves the migrations before it applied and the failed one as
/// it was (an index build that failed is dropped again). An attempt that times out waiting
/// for a table lock is rolled back and made again, up to `options.lock_retries` times.
pub async fn apply_with(
    db: &DatabaseConnection,
    migrations: &[SqlMigration],
    options: &MigrateOptions,
) -> Result<MigrateReport> {
    let mut retries = 0;
    loop {
        let attempt = if migrations.iter().all(SqlMigration::transactional) {
            apply_in_one_transaction(db, migrations, options).await
        } else {
            apply_one_by_one(db, migrations, options).await
        };
        match attempt {
            Err(e) if is_lock_timeout(&e) && retries < options.lock_retries => {
                let delay = options.retry_delay * 2u32.saturating_pow(retries);
                tracing::warn!(
                    target: "pgstack::migrate",
                    error = %e,
                    retry_in_ms = delay.as_millis() as u64,
                    "pgstack migrate: a statement gave up waiting for its table's lock (a long transaction holds it); trying again"
                );
                retries += 1;
                tokio::time::sleep(delay).await;
            }
            Err(e) => return Err(e),
            Ok(mut report) => {
                report.lock_retries = retries;
                return Ok(report);
            }
        }
    }
}

/// `lock_not_available`: a statement waited `lock_timeout` for a lock.
fn is_lock_timeout(error: &Error) -> bool {
    let cause = match error {
        Error::Migration(m) => &m.cause,
        Error::Database { cause, .. } => cause,
        _ => return false,
    };
    crate::error::is_lock_timeout(cause)
}

fn lock_timeout_sql(options: &MigrateOptions) -> String {
    format!(
        "SET LOCAL lock_timeout = '{}ms'",
        options.lock_timeout.as_millis().max(1)
    )
}

async fn take_lock<C: ConnectionTrait>(c: &C) -> Result<()> {
    c.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock($1)",
        [MIGRATION_LOCK_KEY.into()],
    ))
    .await
    .in_facility("migrations")?;
    Ok(())
}

async fn applied_set<C: ConnectionTrait>(c: &C) -> Result<std::collections::HashSet<String>> {
    let ctx = "migrations";
    let rows = c
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
    Ok(done)
}

async fn record<C: ConnectionTrait>(c: &C, migration: &SqlMigration) -> Result<()> {
    c.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        RECORD,
        [migration.name.clone().into()],
    ))
    .await
    .in_facility("migrations")?;
    Ok(())
}

/// Runs `migration`'s statements on `c`, one at a time, so a failure names the statement and
/// its line.
async fn run_statements<C: ConnectionTrait>(c: &C, migration: &SqlMigration) -> Result<()> {
    for statement in split_statements(&migration.up_sql) {
        if let Err(source) = c.execute_unprepared(statement.sql).await {
            let line = statement.line + error_line_offset(statement.sql, &source);
            if !migration.transactional()
                && let Some(index) = concurrent_index(statement.sql)
            {
                drop_failed_index(c, migration, index).await;
            }
            return Err(Error::Migration(Box::new(MigrationError {
                name: migration.name.clone(),
                file: migration.file.clone(),
                line,
                statement: statement.first_line().to_string(),
                cause: source,
            })));
        }
    }
    Ok(())
}

/// Every pending migration in one transaction that first takes the migration lock.
async fn apply_in_one_transaction(
    db: &DatabaseConnection,
    migrations: &[SqlMigration],
    options: &MigrateOptions,
) -> Result<MigrateReport> {
    let ctx = "migrations";
    let txn = db.begin().await.in_facility(ctx)?;
    // Held until commit or rollback; concurrent runners queue here.
    take_lock(&txn).await?;
    txn.execute_unprepared(&lock_timeout_sql(options))
        .await
        .in_facility(ctx)?;
    txn.execute_unprepared(CREATE_TABLE)
        .await
        .in_facility(ctx)?;
    // Read after taking the lock: in READ COMMITTED this sees every earlier runner's commit.
    let done = applied_set(&txn).await?;
    let mut report = MigrateReport::default();
    for migration in migrations {
        if done.contains(&migration.name) {
            report.already_applied += 1;
            continue;
        }
        run_statements(&txn, migration).await?;
        record(&txn, migration).await?;
        report.applied.push(migration.name.clone());
    }
    txn.commit().await.in_facility(ctx)?;
    Ok(report)
}

/// Each pending migration committed on its own, in order, while a transaction on another
/// connection holds the migration lock. That transaction only takes the lock: it holds no
/// snapshot and no table lock, so `CREATE INDEX CONCURRENTLY` does not wait for it.
async fn apply_one_by_one(
    db: &DatabaseConnection,
    migrations: &[SqlMigration],
    options: &MigrateOptions,
) -> Result<MigrateReport> {
    let ctx = "migrations";
    // (The pool accessor panics on a connection that is not PostgreSQL's: checked first.)
    if db.get_database_backend() == DbBackend::Postgres
        && db
            .get_postgres_connection_pool()
            .options()
            .get_max_connections()
            < 2
    {
        return Err(Error::InvalidArgument {
            facility: ctx.to_string(),
            message: "a migration builds indexes concurrently: one connection holds the \
                      migration lock while another builds them, so the pool needs at least 2 \
                      connections (`ConnectOptions::max_connections(2)`)"
                .to_string(),
        });
    }
    let holder = hold_lock(db).await?;
    // Under the lock (concurrent CREATE TABLE IF NOT EXISTS can collide), and not in the
    // holder's transaction, which must hold no locks the other connection needs.
    db.execute_unprepared(CREATE_TABLE).await.in_facility(ctx)?;
    let done = applied_set(db).await?;
    let mut report = MigrateReport::default();
    for migration in migrations {
        if done.contains(&migration.name) {
            report.already_applied += 1;
            continue;
        }
        if migration.transactional() {
            let txn = db.begin().await.in_facility(ctx)?;
            txn.execute_unprepared(&lock_timeout_sql(options))
                .await
                .in_facility(ctx)?;
            run_statements(&txn, migration).await?;
            record(&txn, migration).await?;
            txn.commit().await.in_facility(ctx)?;
        } else {
            run_statements(db, migration).await?;
            record(db, migration).await?;
        }
        report.applied.push(migration.name.clone());
    }
    holder.commit().await.in_facility(ctx)?;
    Ok(report)
}

/// A transaction holding the migration lock. The lock is tried, not waited for: a session
/// waiting in `pg_advisory_xact_lock` holds a snapshot, and the holder's `CREATE INDEX
/// CONCURRENTLY` waits for every transaction with an older snapshot to end, so two runners
/// would wait for each other for ever. Between tries this runner holds nothing.
async fn hold_lock(db: &DatabaseConnection) -> Result<sea_orm::DatabaseTransaction> {
    let ctx = "migrations";
    loop {
        let holder = db.begin().await.in_facility(ctx)?;
        let row = holder
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                "SELECT pg_try_advisory_xact_lock($1)",
                [MIGRATION_LOCK_KEY.into()],
            ))
            .await
            .in_facility(ctx)?;
        let taken = match row {
            Some(row) => row.try_get_by_index::<bool>(0).in_facility(ctx)?,
            None => false,
        };
        if taken {
            return Ok(holder);
        }
        holder.rollback().await.in_facility(ctx)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The index a `CREATE [UNIQUE] INDEX CONCURRENTLY "name" ON "schema"."table"` statement (as
/// `pgstack-gen` writes them) builds: `(schema, name)`.
fn concurrent_index(sql: &str) -> Option<(&str, &str)> {
    if !sql.starts_with("CREATE") {
        return None;
    }
    let (name, rest) = quoted(sql.split_once("INDEX CONCURRENTLY ")?.1)?;
    let (schema, _) = quoted(rest.trim_start().strip_prefix("ON")?)?;
    Some((schema, name))
}

/// The quoted identifier `text` starts with, and what follows it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    text.trim_start().strip_prefix('"')?.split_once('"')
}

/// A failed concurrent build leaves an INVALID index behind; drop it so the database is as it
/// was. What cannot be done is logged with the statement to run.
async fn drop_failed_index<C: ConnectionTrait>(
    c: &C,
    migration: &SqlMigration,
    (schema, index): (&str, &str),
) {
    let drop = format!("DROP INDEX CONCURRENTLY IF EXISTS \"{schema}\".\"{index}\"");
    let invalid = c
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT NOT x.indisvalid FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_namespace n ON n.oid = i.relnamespace WHERE n.nspname = $1 AND i.relname = $2",
            [schema.into(), index.into()],
        ))
        .await
        .map(|row| row.and_then(|r| r.try_get_by_index::<bool>(0).ok()));
    let result = match invalid {
        // No index, or a valid one (another runner's): nothing to undo.
        Ok(None | Some(false)) => return,
        Ok(Some(true)) => c.execute_unprepared(&drop).await.map(|_| ()),
        Err(e) => Err(e),
    };
    if let Err(e) = result {
        tracing::error!(
            target: "pgstack::migrate",
            migration = %migration.name,
            index,
            error = %e,
            "pgstack migrate: a failed concurrent index build may have left an INVALID index that could not be dropped; run `{drop}` before migrating again"
        );
    }
}

/// The start-up self-check: every one of `migrations` is recorded in `seaql_migrations` and
/// every one of `tables` (schema-qualified) exists; else [`Error::Unverified`] naming what is
/// missing. Migrations applied beyond `migrations` are fine (a newer build migrated first).
/// Generated accessors call it as `db::verify(&db)`.
pub async fn verify<C: ConnectionTrait>(
    db: &C,
    migrations: &[&str],
    tables: &[&str],
) -> Result<()> {
    let ctx = "migrations";
    let names = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<Vec<String>>();
    let row = db
        .query_one_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT to_regclass('seaql_migrations') IS NOT NULL, \
                    array(SELECT t FROM unnest($1::text[]) AS t WHERE to_regclass(t) IS NULL)",
            [names(tables).into()],
        ))
        .await
        .in_facility(ctx)?;
    let (recorded, missing_tables): (bool, Vec<String>) = match row {
        Some(row) => (
            row.try_get_by_index(0).in_facility(ctx)?,
            row.try_get_by_index(1).in_facility(ctx)?,
        ),
        None => (false, names(tables)),
    };
    let missing_migrations: Vec<String> = if recorded {
        let row = db
            .query_one_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                r#"SELECT array(SELECT m FROM unnest($1::text[]) WITH ORDINALITY AS u(m, n)
                   WHERE NOT EXISTS (SELECT 1 FROM "seaql_migrations" WHERE "version" = m)
                   ORDER BY n)"#,
                [names(migrations).into()],
            ))
            .await
            .in_facility(ctx)?;
        match row {
            Some(row) => row.try_get_by_index(0).in_facility(ctx)?,
            None => names(migrations),
        }
    } else {
        names(migrations)
    };
    if missing_migrations.is_empty() && missing_tables.is_empty() {
        return Ok(());
    }
    Err(Error::Unverified {
        missing_migrations,
        missing_tables,
    })
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

/// One statement of a migration file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SqlStatement<'a> {
    /// The 1-based line of the file where the statement's first token is.
    pub line: usize,
    /// From its first token to its closing `;` (or the end of the file).
    pub sql: &'a str,
}

impl<'a> SqlStatement<'a> {
    /// The statement's first line, as errors quote it.
    pub fn first_line(&self) -> &'a str {
        self.sql.lines().next().unwrap_or("").trim_end()
    }
}

/// Splits a file of SQL into statements at the `;` that end them, skipping comments, and not
/// splitting inside quoted strings, quoted identifiers, dollar-quoted bodies (`$$ ... $$`,
/// `$fn$ ... $fn$`) or comments (block comments nest, as in PostgreSQL).
pub(crate) fn split_statements(sql: &str) -> Vec<SqlStatement<'_>> {
    let bytes = sql.as_bytes();
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let next = bytes.get(i + 1).copied();
        match c {
            b'-' if next == Some(b'-') => {
                i = sql[i..].find('\n').map_or(bytes.len(), |n| i + n);
                continue;
            }
            b'/' if next == Some(b'*') => {
                let mut depth = 0usize;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
                continue;
            }
            _ if c.is_ascii_whitespace() => {
                i += 1;
                continue;
            }
            _ => {}
        }
        let begun = *start.get_or_insert(i);
        match c {
            b';' => {
                out.push(statement(sql, begun, i + 1));
                start = None;
                i += 1;
            }
            b'\'' | b'"' => {
                // A doubled quote inside is an escaped quote: skipping both is the same.
                i += 1;
                while i < bytes.len() && bytes[i] != c {
                    i += 1;
                }
                i += 1;
            }
            b'$' => match dollar_tag(&sql[i..]) {
                Some(tag) => {
                    let body = i + tag.len();
                    i = sql[body..]
                        .find(tag)
                        .map_or(bytes.len(), |end| body + end + tag.len());
                }
                None => i += 1,
            },
            _ => i += 1,
        }
    }
    if let Some(begun) = start {
        out.push(statement(sql, begun, bytes.len()));
    }
    out
}

fn statement(sql: &str, start: usize, end: usize) -> SqlStatement<'_> {
    SqlStatement {
        line: 1 + sql[..start].matches('\n').count(),
        sql: sql[start..end].trim_end(),
    }
}

/// The opening `$tag$` at the start of `text`, if it is one (`$1` is a parameter, not a tag).
fn dollar_tag(text: &str) -> Option<&str> {
    let rest = &text[1..];
    let end = rest.find('$')?;
    let tag = &rest[..end];
    let valid = tag
        .chars()
        .enumerate()
        .all(|(n, c)| c == '_' || c.is_alphabetic() || (n > 0 && c.is_ascii_digit()));
    valid.then(|| &text[..end + 2])
}

/// Lines from a statement's first line to where PostgreSQL says the error is (a syntax error
/// carries a character position in the statement); 0 when it gives none.
fn error_line_offset(statement: &str, error: &sea_orm::DbErr) -> usize {
    let Some(position) = pg_error(error).and_then(|e| match e.position() {
        Some(sea_orm::sqlx::postgres::PgErrorPosition::Original(p)) => Some(p),
        _ => None,
    }) else {
        return 0;
    };
    statement
        .chars()
        .take(position.saturating_sub(1))
        .filter(|c| *c == '\n')
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_at_semicolons_outside_quotes_and_bodies() {
        let sql = "-- header; not a statement\n\
                   CREATE TABLE \"a;b\" (x text DEFAULT 'it''s; fine');\n\
                   \n\
                   /* a /* nested; */ comment */\n\
                   CREATE FUNCTION f() RETURNS trigger AS $fn$\n\
                   BEGIN NEW.x := 'a;b'; RETURN NEW; END\n\
                   $fn$ LANGUAGE plpgsql;\n\
                   SELECT $1, $$;$$;\n\
                   COMMENT ON TABLE a IS 'last' -- no semicolon\n";
        let statements = split_statements(sql);
        let lines: Vec<(usize, &str)> = statements
            .iter()
            .map(|s| (s.line, s.first_line()))
            .collect();
        assert_eq!(
            lines,
            [
                (2, "CREATE TABLE \"a;b\" (x text DEFAULT 'it''s; fine');"),
                (5, "CREATE FUNCTION f() RETURNS trigger AS $fn$"),
                (8, "SELECT $1, $$;$$;"),
                (9, "COMMENT ON TABLE a IS 'last' -- no semicolon"),
            ]
        );
        assert!(statements[1].sql.ends_with("$fn$ LANGUAGE plpgsql;"));
    }

    #[test]
    fn concurrent_builds_name_their_index() {
        let sql = "CREATE UNIQUE INDEX CONCURRENTLY \"profiles_email_key\"\n    ON \"app\".\"profiles\" (\"email\");";
        assert_eq!(concurrent_index(sql), Some(("app", "profiles_email_key")));
        assert_eq!(
            concurrent_index("DROP INDEX CONCURRENTLY IF EXISTS \"a\".\"b\";"),
            None
        );
        assert_eq!(
            concurrent_index("CREATE INDEX \"x\" ON \"a\".\"t\" (c);"),
            None
        );
    }

    #[test]
    fn empty_and_comment_only_files_have_no_statements() {
        assert!(split_statements("").is_empty());
        assert!(split_statements("-- only a comment\n/* and another */\n").is_empty());
    }
}
