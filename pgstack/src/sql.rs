//! Named SQL statements loaded from `pgstack/sql/*.sql`.
//!
//! A file holds statements headed `-- name: NounVerb`. Per-facility files use `{table}` (and a
//! few other documented placeholders) where a checked identifier goes; values are always `$n`
//! parameters. Placeholders are filled once per facility handle, never per call.
//!
//! **Arrays behind sub-selects.** A statement that takes a batch as an array parameter reads
//! it as `(SELECT $1::text[])` (in `unnest(...)`, or `= ANY((SELECT $1::text[])::text[])`).
//! Given the array itself, PostgreSQL sizes the batch exactly when planning, so a fresh
//! ("custom") plan always looks cheaper than the cached generic one and every execution is
//! planned again: for a small batched read, planning took twice as long as the read. Behind a
//! sub-select the size is unknown at planning time, both plans cost the same, and after five
//! executions the cached generic plan serves every batch. Large batch inserts, where planning
//! is noise, pass arrays directly.

use std::collections::BTreeMap;

use sea_orm::{DbBackend, Statement, Value};

/// A PostgreSQL statement with its bound values: the runtime's one way of running SQL.
pub(crate) fn stmt(sql: &str, values: impl IntoIterator<Item = Value>) -> Statement {
    Statement::from_sql_and_values(DbBackend::Postgres, sql, values)
}

/// The statements of one `.sql` file, by name.
#[derive(Clone, Debug)]
pub(crate) struct SqlFile {
    statements: BTreeMap<&'static str, &'static str>,
}

impl SqlFile {
    /// Splits `text` at `-- name: X` lines. Comments above a statement stay with it.
    pub(crate) fn parse(text: &'static str) -> SqlFile {
        let mut statements = BTreeMap::new();
        let mut current: Option<(&'static str, usize)> = None;
        let mut offset = 0;
        for line in text.split_inclusive('\n') {
            if let Some(name) = line.trim().strip_prefix("-- name:") {
                if let Some((prev, start)) = current.take() {
                    statements.insert(prev, text[start..offset].trim());
                }
                current = Some((name.trim(), offset + line.len()));
            }
            offset += line.len();
        }
        if let Some((prev, start)) = current {
            statements.insert(prev, text[start..].trim());
        }
        SqlFile { statements }
    }

    /// The statement `name` with each `{key}` replaced. Panics only on a missing name, which is
    /// a bug in pgstack itself (every name used is covered by the runtime's tests).
    pub(crate) fn get(&self, name: &str, vars: &[(&str, &str)]) -> String {
        let Some(text) = self.statements.get(name) else {
            panic!("pgstack bug: no SQL statement named `{name}`")
        };
        let mut sql = text.to_string();
        for (key, value) in vars {
            sql = sql.replace(&format!("{{{key}}}"), value);
        }
        sql
    }

    #[cfg(test)]
    pub(crate) fn names(&self) -> impl Iterator<Item = &&'static str> {
        self.statements.keys()
    }
}

#[cfg(test)]
mod tests {
    use super::SqlFile;

    #[test]
    fn splits_named_statements() {
        let file = SqlFile::parse(
            "-- name: A\n-- the first\nSELECT 1 FROM {table};\n\n-- name: B\nSELECT 2;\n",
        );
        assert_eq!(
            file.get("A", &[("table", "\"t\"")]),
            "-- the first\nSELECT 1 FROM \"t\";"
        );
        assert_eq!(file.get("B", &[]), "SELECT 2;");
        assert_eq!(file.names().count(), 2);
    }
}
