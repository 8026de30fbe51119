//! What every facility handle shares: its name, its statements (built once, on first use,
//! from the facility's `.sql` file and its checked table name), the checks and errors every
//! accessor makes, and the tracing span and metrics of every statement it runs
//! ([`Handle::traced`]). `JsonKv`, `DocumentStore`, `Queue`, `Cache`, `RateLimiter` and
//! `Collection` each hold one `Handle`, so a rule written here holds for all six.

use std::future::Future;
use std::sync::OnceLock;
use std::time::Instant;

use sea_orm::DbErr;
use tracing::Instrument;

use crate::error::{Error, Result, describe};

/// The shared core of a facility handle; `S` is the facility's statements.
pub(crate) struct Handle<S> {
    /// The facility's kind, as spans and metrics label it: `kv`, `document`, `queue`, ...
    kind: &'static str,
    /// The facility's name: its table, and how errors name it.
    name: &'static str,
    /// The statements, or the identifier that could not be quoted (kept, so every call
    /// reports the real bad name, not just the table's).
    sql: OnceLock<std::result::Result<S, String>>,
}

impl<S> Handle<S> {
    pub(crate) const fn new(kind: &'static str, name: &'static str) -> Handle<S> {
        Handle {
            kind,
            name,
            sql: OnceLock::new(),
        }
    }

    /// The facility's name (its table), as errors show it.
    pub(crate) fn name(&self) -> &'static str {
        self.name
    }

    /// The statements, built by `build` on first use. Building fails only on a name that is
    /// not a valid identifier, which every later call reports too.
    pub(crate) fn sql(&self, build: impl FnOnce() -> Result<S>) -> Result<&S> {
        self.sql
            .get_or_init(|| {
                build().map_err(|e| match e {
                    Error::InvalidIdentifier(name) => name,
                    other => other.to_string(),
                })
            })
            .as_ref()
            .map_err(|name| Error::InvalidIdentifier(name.clone()))
    }

    /// Runs one statement of accessor `op` inside a `pgstack` span (`facility`, `table`,
    /// `op`; DEBUG level), counting it and timing it in the metrics. A failure is logged at
    /// DEBUG: the accessor returns it to its caller, whose job it is to decide how bad it is.
    pub(crate) fn traced<T, F>(
        &self,
        op: &'static str,
        statement: F,
    ) -> impl Future<Output = std::result::Result<T, DbErr>> + Send
    where
        F: Future<Output = std::result::Result<T, DbErr>> + Send,
        T: Send,
    {
        let (kind, name) = (self.kind, self.name);
        let span = tracing::debug_span!("pgstack", facility = kind, table = name, op);
        async move {
            let started = Instant::now();
            let result = statement.await;
            crate::metrics::statement(kind, name, op, started.elapsed(), result.is_ok());
            if let Err(e) = &result {
                tracing::debug!(error = %describe(e), "statement failed");
            }
            result
        }
        .instrument(span)
    }

    /// An argument out of range, naming this facility.
    pub(crate) fn invalid(&self, message: impl Into<String>) -> Error {
        Error::InvalidArgument {
            facility: self.name.to_string(),
            message: message.into(),
        }
    }

    /// Something the spec does not enable for this facility, and the key that would.
    pub(crate) fn unsupported(&self, what: &'static str, help: &'static str) -> Error {
        Error::Unsupported {
            facility: self.name.to_string(),
            what,
            help,
        }
    }

    /// A key (or job kind, or unique key): non-empty text without NUL, which PostgreSQL's
    /// `text` cannot hold.
    pub(crate) fn check_key(&self, what: &str, key: &str) -> Result<()> {
        if key.is_empty() || key.contains('\0') {
            return Err(self.invalid(format!(
                "{what} {key:?} must be non-empty text without NUL characters"
            )));
        }
        Ok(())
    }

    /// A statement that should return a row returned none: a bug, reported, never a panic.
    pub(crate) fn no_row(&self, statement: &str) -> Error {
        Error::Database {
            facility: self.name.to_string(),
            cause: sea_orm::DbErr::RecordNotFound(format!("{statement} returned no row")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ident::Ident;

    #[test]
    fn a_bad_name_is_reported_as_itself_on_every_call() {
        let handle: Handle<String> = Handle::new("queue", "jobs");
        let build = || {
            Ident::new(
                "jobs_dead_letters_with_a_name_far_longer_than_the_sixty_three_bytes_allowed",
            )
            .map(|i| i.to_string())
        };
        for _ in 0..2 {
            match handle.sql(build) {
                Err(Error::InvalidIdentifier(name)) => {
                    assert!(name.starts_with("jobs_dead_letters"), "{name}")
                }
                other => panic!("{other:?}"),
            }
        }
        let message = handle.check_key("key", "").unwrap_err().to_string();
        assert_eq!(
            message,
            "invalid argument for `jobs`: key \"\" must be non-empty text without NUL characters"
        );
    }
}
