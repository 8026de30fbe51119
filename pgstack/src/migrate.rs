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
        // One statement at a time, so a failure names the statement and its line.
        for statement in split_statements(&migration.up_sql) {
            txn.execute_unprepared(statement.sql)
                .await
                .map_err(|source| {
                    let line = statement.line + error_line_offset(statement.sql, &source);
                    Error::Migration(Box::new(MigrationError {
                        name: migration.name.clone(),
                        file: migration.file.clone(),
                        line,
                        statement: statement.first_line().to_string(),
                        cause: source,
                    }))
                })?;
        }
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
    fn empty_and_comment_only_files_have_no_statements() {
        assert!(split_statements("").is_empty());
        assert!(split_statements("-- only a comment\n/* and another */\n").is_empty());
    }
}
