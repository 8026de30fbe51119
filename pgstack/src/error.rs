//! The runtime's one error type.
//!
//! Each message is a whole sentence that includes its cause (for a database error,
//! PostgreSQL's message, SQLSTATE, detail and hint), so printing the error prints everything
//! once. The cause is also kept as a field (`cause`) for code that wants to match on it;
//! `std::error::Error::source` returns nothing, so a report that walks the chain does not
//! print the cause a second time.

use sea_orm::DbErr;

/// Everything a pgstack accessor can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The database refused or failed the statement.
    #[error("database error in `{facility}`: {}", describe(cause))]
    Database { facility: String, cause: DbErr },
    /// A value could not be turned into JSON, or JSON read back did not fit the requested type.
    #[error("cannot {direction} the value of `{facility}` {what}: {cause}")]
    Json {
        facility: String,
        direction: &'static str,
        what: String,
        cause: serde_json::Error,
    },
    /// An optimistic-concurrency check failed: someone else changed the row first.
    #[error(
        "version conflict on `{facility}` {what}: expected version {expected}, {}; re-read it and retry",
        match .actual { Some(v) => format!("found {v}"), None => "but it does not exist".to_string() }
    )]
    Conflict {
        facility: String,
        what: String,
        expected: i64,
        actual: Option<i64>,
    },
    /// A unique declared field already holds this value.
    #[error(
        "`{facility}` already has a document with this `{field}`; {}",
        describe(cause)
    )]
    Duplicate {
        facility: String,
        field: String,
        cause: DbErr,
    },
    /// A name that is not a safe SQL identifier reached the runtime.
    #[error(
        "`{0}` is not a valid identifier: use lower-case letters, digits and `_`, at most 63 bytes"
    )]
    InvalidIdentifier(String),
    /// The caller asked for something the facility's spec does not enable.
    #[error("`{facility}` does not support {what}; {help}")]
    Unsupported {
        facility: String,
        what: &'static str,
        help: &'static str,
    },
    /// A facility's table does not exist: its migration has not been applied.
    #[error(
        "table `{table}` of `{facility}` does not exist: the migration that creates it has not \
         been applied; run `pgstack-gen migrate` (or your migration crate's `up`)"
    )]
    NotMigrated { facility: String, table: String },
    /// The start-up check ([`crate::migrate::verify`]) found the database behind the build.
    #[error(
        "the database is behind this build: {}{}{}; run `pgstack-gen migrate` (or your migration crate's `up`) against it",
        if missing_migrations.is_empty() { String::new() } else { format!("{} migration(s) not applied ({})", missing_migrations.len(), missing_migrations.join(", ")) },
        if missing_migrations.is_empty() || missing_tables.is_empty() { "" } else { "; " },
        if missing_tables.is_empty() { String::new() } else { format!("table(s) missing ({})", missing_tables.join(", ")) }
    )]
    Unverified {
        missing_migrations: Vec<String>,
        missing_tables: Vec<String>,
    },
    /// A migration could not be applied; nothing from this run was kept.
    #[error(transparent)]
    Migration(Box<MigrationError>),
    /// A `get_or_compute` computation failed; nothing was stored.
    #[error("computing `{key}` for `{facility}` failed: {cause}")]
    Compute {
        facility: String,
        key: String,
        /// The computation's own error.
        cause: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An embedder failed or returned something unusable.
    #[error("embedder `{embedder}`: {message}")]
    Embedder { embedder: String, message: String },
    /// An argument the caller passed is out of range.
    #[error("invalid argument for `{facility}`: {message}")]
    InvalidArgument { facility: String, message: String },
}

/// Which statement of which migration failed, and why; the whole run was rolled back.
#[derive(Debug, thiserror::Error)]
#[error(
    "migration `{name}` failed and was rolled back: {file}:{line}: `{statement}`: {}",
    describe(cause)
)]
pub struct MigrationError {
    pub name: String,
    /// The migration's SQL file, as given to [`crate::migrate::apply`].
    pub file: String,
    /// The line in `file` where the failing statement starts (or, for a syntax error, the
    /// line PostgreSQL points at).
    pub line: usize,
    /// The failing statement's first line.
    pub statement: String,
    pub cause: DbErr,
}

/// Short alias used throughout the runtime.
pub type Result<T, E = Error> = std::result::Result<T, E>;

pub(crate) trait DbContext<T> {
    /// Attaches the facility name to a database error.
    fn in_facility(self, facility: &str) -> Result<T>;
}

impl<T> DbContext<T> for std::result::Result<T, DbErr> {
    fn in_facility(self, facility: &str) -> Result<T> {
        self.map_err(|cause| Error::Database {
            facility: facility.to_string(),
            cause,
        })
    }
}

/// `lock_not_available`: the statement waited `lock_timeout` for a lock.
pub(crate) fn is_lock_timeout(error: &DbErr) -> bool {
    pg_error(error).is_some_and(|e| e.code() == "55P03")
}

/// PostgreSQL's own error behind a SeaORM error, when there is one.
pub(crate) fn pg_error(error: &DbErr) -> Option<&sea_orm::sqlx::postgres::PgDatabaseError> {
    use sea_orm::sqlx;
    let sqlx_error = match error {
        DbErr::Exec(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Query(sea_orm::RuntimeErr::SqlxError(e))
        | DbErr::Conn(sea_orm::RuntimeErr::SqlxError(e)) => e,
        _ => return None,
    };
    match &**sqlx_error {
        sqlx::Error::Database(e) => e.try_downcast_ref::<sqlx::postgres::PgDatabaseError>(),
        _ => None,
    }
}

/// A database error as a person reads it: PostgreSQL's message, SQLSTATE, detail and hint.
/// (sqlx's own text ends in "at line N", the line of PostgreSQL's C source that raised it,
/// which reads like a line of the caller's SQL.)
pub(crate) fn describe(error: &DbErr) -> String {
    let Some(pg) = pg_error(error) else {
        return error.to_string();
    };
    let mut text = format!("{} (SQLSTATE {})", pg.message(), pg.code());
    if let Some(detail) = pg.detail() {
        text.push_str("; detail: ");
        text.push_str(detail);
    }
    if let Some(hint) = pg.hint() {
        text.push_str("; hint: ");
        text.push_str(hint);
    }
    if pg.message().contains("unlogged relations during recovery") {
        text.push_str(
            "; caches and rate limiters are UNLOGGED tables, which exist only on the primary: \
             pass the primary's connection, or a `pgstack::Cluster`, which sends them there",
        );
    }
    text
}
