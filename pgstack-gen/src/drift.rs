//! Live drift detection (`pgstack-gen check --database-url URL`): the database's catalog
//! against the schema the recorded migrations produce (`pgstack-state.json`).
//!
//! Compared, in the project's PostgreSQL schema: pgstack's tables (missing; unknown ones named
//! `pgstack_*`), their persistence (LOGGED or UNLOGGED) and storage parameters, their columns
//! (missing, extra, type, NOT NULL, generated or not), CHECK constraints, indexes (missing,
//! extra, INVALID, or built with another definition), triggers, helper functions, and the
//! applied migrations against the migration files. Tables the application owns beside
//! pgstack's, and the archive partitions queue maintenance creates, are not pgstack's to judge.
//!
//! Index definitions are compared as PostgreSQL prints them (`pg_get_indexdef`) against the
//! recorded index rendered as pgstack creates it, both with quotes, parentheses, white space,
//! the schema and the default `USING btree` taken out.

use std::collections::{BTreeMap, BTreeSet};

use sea_orm::DatabaseConnection;
use serde::Serialize;

use crate::GenError;
use crate::doctor::{Db, get};
use crate::plan::Step;
use crate::schema::Schema;

/// One way the live database differs from what the migrations should have made.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Drift {
    /// `table`, `column`, `index`, `check`, `trigger`, `function`, `migration`.
    pub kind: &'static str,
    /// The object, e.g. `jobs.kind` or `jobs_ready_idx`.
    pub object: String,
    pub message: String,
}

impl std::fmt::Display for Drift {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} `{}`: {}", self.kind, self.object, self.message)
    }
}

/// Everything in which the database at `conn` differs from `schema` (the recorded one) and
/// `migrations` (the migration files, oldest first).
pub async fn detect(
    conn: &DatabaseConnection,
    schema: &Schema,
    migrations: &[String],
) -> Result<Vec<Drift>, GenError> {
    let db = Db { conn };
    let ns = schema.schema.as_str();
    let mut out = Vec::new();
    let mut drift = |kind: &'static str, object: String, message: String| {
        out.push(Drift {
            kind,
            object,
            message,
        })
    };

    // Tables: persistence, storage parameters, partition parents.
    let rows = db
        .rows(
            "SELECT c.relname::text, c.relpersistence = 'u', coalesce(c.reloptions, '{}')::text[], \
                    c.relispartition, coalesce(obj_description(c.oid, 'pg_class'), '') \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind IN ('r', 'p')",
            vec![ns.into()],
        )
        .await?;
    let mut live_tables: BTreeMap<String, (bool, BTreeMap<String, String>)> = BTreeMap::new();
    for row in &rows {
        let (name, unlogged, options, partition, comment): (
            String,
            bool,
            Vec<String>,
            bool,
            String,
        ) = (
            get(row, 0)?,
            get(row, 1)?,
            get(row, 2)?,
            get(row, 3)?,
            get(row, 4)?,
        );
        let options = options
            .iter()
            .filter_map(|o| o.split_once('='))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let ours = name.starts_with("pgstack_") || comment.starts_with("pgstack");
        if !schema.tables.contains_key(&name) && ours && !partition {
            drift(
                "table",
                name.clone(),
                "exists, but no migration creates it (made by hand, or left by a facility \
                 removed outside pgstack)"
                    .to_string(),
            );
        }
        live_tables.insert(name, (unlogged, options));
    }
    let present: Vec<String> = schema
        .tables
        .keys()
        .filter(|t| live_tables.contains_key(*t))
        .cloned()
        .collect();
    for (name, table) in &schema.tables {
        let Some((unlogged, options)) = live_tables.get(name) else {
            drift(
                "table",
                name.clone(),
                format!(
                    "is missing ({}); run `pgstack-gen migrate`, or restore it",
                    table.owner()
                ),
            );
            continue;
        };
        if *unlogged != table.unlogged {
            let word = |u: bool| if u { "UNLOGGED" } else { "LOGGED" };
            drift(
                "table",
                name.clone(),
                format!(
                    "is {}, the migrations make it {}",
                    word(*unlogged),
                    word(table.unlogged)
                ),
            );
        }
        let keys: BTreeSet<&String> = options.keys().chain(table.storage.keys()).collect();
        for key in keys {
            let (live, recorded) = (options.get(key), table.storage.get(key));
            if live == recorded {
                continue;
            }
            let show = |v: Option<&String>| v.map_or("unset".to_string(), |v| format!("{key}={v}"));
            drift(
                "table",
                name.clone(),
                format!(
                    "has storage parameter {}, the migrations set {}",
                    show(live),
                    show(recorded)
                ),
            );
        }
    }

    // Columns of the tables present (a partition's come from its parent).
    let types: Vec<String> = schema
        .tables
        .values()
        .flat_map(|t| t.columns.iter().map(|c| c.sql_type.clone()))
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let mut normal: BTreeMap<String, String> = BTreeMap::new();
    for row in db
        .rows(
            "SELECT t, coalesce(format_type(to_regtype(t), NULL), t) FROM unnest($1::text[]) AS t",
            vec![types.into()],
        )
        .await?
    {
        normal.insert(get(&row, 0)?, get(&row, 1)?);
    }
    let mut live_columns: BTreeMap<(String, String), (String, bool, bool)> = BTreeMap::new();
    for row in db
        .rows(
            "SELECT c.relname::text, a.attname::text, format_type(a.atttypid, NULL), a.attnotnull, \
                    a.attgenerated <> '' \
             FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND a.attnum > 0 \
               AND NOT a.attisdropped",
            vec![ns.into(), present.clone().into()],
        )
        .await?
    {
        live_columns.insert(
            (get(&row, 0)?, get(&row, 1)?),
            (get(&row, 2)?, get(&row, 3)?, get(&row, 4)?),
        );
    }
    for table in schema.tables.values() {
        if table.partition_of.is_some() || !live_tables.contains_key(&table.name) {
            continue;
        }
        for column in &table.columns {
            let key = (table.name.clone(), column.name.clone());
            let object = format!("{}.{}", table.name, column.name);
            let Some((ty, not_null, generated)) = live_columns.get(&key) else {
                drift("column", object, "is missing".to_string());
                continue;
            };
            let expected = normal
                .get(&column.sql_type)
                .cloned()
                .unwrap_or_else(|| column.sql_type.clone());
            if *ty != expected {
                drift(
                    "column",
                    object.clone(),
                    format!("is {ty}, the migrations make it {expected}"),
                );
            }
            // Primary key columns are NOT NULL whatever the column says.
            let expect_not_null = column.not_null || table.primary_key.contains(&column.name);
            if *not_null != expect_not_null {
                let word = |n: bool| if n { "NOT NULL" } else { "nullable" };
                drift(
                    "column",
                    object.clone(),
                    format!(
                        "is {}, the migrations make it {}",
                        word(*not_null),
                        word(expect_not_null)
                    ),
                );
            }
            if *generated != column.generated.is_some() {
                let word = |g: bool| {
                    if g {
                        "a generated column"
                    } else {
                        "a stored column"
                    }
                };
                drift(
                    "column",
                    object,
                    format!(
                        "is {}, the migrations make it {}",
                        word(*generated),
                        word(column.generated.is_some())
                    ),
                );
            }
        }
        for ((t, c), _) in live_columns.range((table.name.clone(), String::new())..) {
            if *t != table.name {
                break;
            }
            if !table.columns.iter().any(|col| &col.name == c) {
                drift(
                    "column",
                    format!("{t}.{c}"),
                    "exists, but no migration adds it".to_string(),
                );
            }
        }
    }

    // CHECK constraints.
    let mut live_checks = BTreeSet::new();
    for row in db
        .rows(
            "SELECT c.relname::text, k.conname::text FROM pg_constraint k \
             JOIN pg_class c ON c.oid = k.conrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND k.contype = 'c' \
               AND NOT c.relispartition",
            vec![ns.into(), present.clone().into()],
        )
        .await?
    {
        live_checks.insert((get::<String>(&row, 0)?, get::<String>(&row, 1)?));
    }
    let mut recorded_checks = BTreeSet::new();
    for table in schema.tables.values() {
        if !live_tables.contains_key(&table.name) {
            continue;
        }
        for check in &table.checks {
            recorded_checks.insert((table.name.clone(), check.name.clone()));
        }
    }
    for (table, name) in recorded_checks.difference(&live_checks) {
        drift("check", format!("{table}.{name}"), "is missing".to_string());
    }
    for (table, name) in live_checks.difference(&recorded_checks) {
        drift(
            "check",
            format!("{table}.{name}"),
            "exists, but no migration adds it".to_string(),
        );
    }

    // Indexes (not those behind constraints, nor a partition's copies of its parent's).
    let mut live_indexes: BTreeMap<String, (String, String, bool)> = BTreeMap::new();
    for row in db
        .rows(
            "SELECT i.relname::text, t.relname::text, pg_get_indexdef(i.oid), x.indisvalid \
             FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid JOIN pg_namespace n ON n.oid = t.relnamespace \
             WHERE n.nspname = $1 AND t.relname = ANY($2::text[]) AND NOT i.relispartition \
               AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.oid)",
            vec![ns.into(), present.clone().into()],
        )
        .await?
    {
        live_indexes.insert(get(&row, 0)?, (get(&row, 1)?, get(&row, 2)?, get(&row, 3)?));
    }
    for (name, index) in &schema.indexes {
        if !live_tables.contains_key(&index.table) {
            continue;
        }
        let Some((_, definition, valid)) = live_indexes.get(name) else {
            drift(
                "index",
                name.clone(),
                format!("on `{}` is missing", index.table),
            );
            continue;
        };
        if !valid {
            drift(
                "index",
                name.clone(),
                format!(
                    "is INVALID (a build that failed, or one still running): queries do not \
                     use it; rebuild it with `REINDEX INDEX CONCURRENTLY \"{ns}\".\"{name}\"`"
                ),
            );
        }
        let expected = Step::CreateIndex {
            index: index.clone(),
        }
        .render(ns)?;
        if normalize(definition, ns) != normalize(&expected, ns) {
            drift(
                "index",
                name.clone(),
                format!(
                    "is `{definition}`, the migrations build `{}`",
                    expected
                        .split_whitespace()
                        .collect::<Vec<_>>()
                        .join(" ")
                        .trim_end_matches(';')
                ),
            );
        }
    }
    for (name, (table, definition, _)) in &live_indexes {
        if !schema.indexes.contains_key(name) {
            drift(
                "index",
                name.clone(),
                format!("on `{table}` exists, but no migration creates it: `{definition}`"),
            );
        }
    }

    // Triggers.
    let mut live_triggers = BTreeSet::new();
    for row in db
        .rows(
            "SELECT g.tgname::text, c.relname::text FROM pg_trigger g \
             JOIN pg_class c ON c.oid = g.tgrelid JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND NOT g.tgisinternal",
            vec![ns.into(), present.clone().into()],
        )
        .await?
    {
        live_triggers.insert((get::<String>(&row, 0)?, get::<String>(&row, 1)?));
    }
    let recorded_triggers: BTreeSet<(String, String)> = schema
        .triggers
        .values()
        .filter(|t| live_tables.contains_key(&t.table))
        .map(|t| (t.name.clone(), t.table.clone()))
        .collect();
    for (name, table) in recorded_triggers.difference(&live_triggers) {
        drift("trigger", name.clone(), format!("on `{table}` is missing"));
    }
    for (name, table) in live_triggers.difference(&recorded_triggers) {
        drift(
            "trigger",
            name.clone(),
            format!("on `{table}` exists, but no migration creates it"),
        );
    }

    // Helper functions, by signature.
    let signatures: Vec<String> = schema
        .functions
        .values()
        .map(|f| format!("{}({})", f.name, f.args))
        .collect();
    for row in db
        .rows(
            "SELECT s FROM unnest($2::text[]) AS s \
             WHERE to_regprocedure(quote_ident($1) || '.' || s) IS NULL",
            vec![ns.into(), signatures.into()],
        )
        .await?
    {
        drift("function", get(&row, 0)?, "is missing".to_string());
    }

    // Applied migrations against the files.
    let recorded = db
        .one("SELECT to_regclass('seaql_migrations') IS NOT NULL", vec![])
        .await?
        .map(|row| get::<bool>(&row, 0))
        .transpose()?
        .unwrap_or(false);
    let applied: BTreeSet<String> = if recorded {
        let mut applied = BTreeSet::new();
        for row in db
            .rows(r#"SELECT "version"::text FROM "seaql_migrations""#, vec![])
            .await?
        {
            applied.insert(get(&row, 0)?);
        }
        applied
    } else {
        BTreeSet::new()
    };
    for name in migrations {
        if !applied.contains(name) {
            drift(
                "migration",
                name.clone(),
                "is not applied; run `pgstack-gen migrate`".to_string(),
            );
        }
    }
    for name in &applied {
        if name.starts_with("pgstack_") && !migrations.contains(name) {
            drift(
                "migration",
                name.clone(),
                "is applied, but no migration file here has that name (applied by a newer \
                 build, or its file was deleted)"
                    .to_string(),
            );
        }
    }
    out.sort();
    Ok(out)
}

/// An index definition with what does not change its meaning taken out.
fn normalize(definition: &str, schema: &str) -> String {
    let text = definition
        .to_lowercase()
        .replace(['"', '\''], "")
        .replace(&format!("{}.", schema.to_lowercase()), "")
        .replace(" on only ", " on ")
        .replace(" using btree", "");
    text.chars()
        .filter(|c| !c.is_whitespace() && !matches!(c, '(' | ')' | ';'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::normalize;

    #[test]
    fn index_definitions_compare_as_printed_by_postgresql() {
        let printed = "CREATE INDEX jobs_ready_idx ON public.jobs USING btree (priority, visible_at) WHERE (claimed_at IS NULL)";
        let ours = "CREATE INDEX \"jobs_ready_idx\"\n    ON \"public\".\"jobs\" (\"priority\", \"visible_at\")\n    WHERE \"claimed_at\" IS NULL;";
        assert_eq!(normalize(printed, "public"), normalize(ours, "public"));
        let other = "CREATE INDEX jobs_ready_idx ON public.jobs USING btree (visible_at) WHERE (claimed_at IS NULL)";
        assert_ne!(normalize(other, "public"), normalize(ours, "public"));
        let hnsw = "CREATE INDEX e ON public.d USING hnsw (embedding vector_cosine_ops) WITH (ef_construction='64', m='16')";
        let ours = "CREATE INDEX \"e\"\n    ON \"public\".\"d\" USING hnsw (\"embedding\" vector_cosine_ops)\n    WITH (ef_construction = 64, m = 16);";
        assert_eq!(normalize(hnsw, "public"), normalize(ours, "public"));
    }
}
