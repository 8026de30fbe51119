//! Derived columns added to tables that already hold rows, without a rewrite under lock.
//!
//! A stored generated column (a document field, a vector collection's `fts`) added with
//! `ALTER TABLE ... ADD COLUMN ... GENERATED ALWAYS AS (...) STORED` computes every row while
//! holding ACCESS EXCLUSIVE: reads and writes of the table stop until it is done. Instead, a
//! derived column added to (or rebuilt on) an existing table becomes a plain column
//! ([`Column::kept`]) that a `BEFORE INSERT OR UPDATE OF <its source columns>` trigger sets
//! from the same expression,
//! filled by a batched backfill that commits every few thousand rows, then indexed
//! concurrently:
//!
//! 1. (the transactional migration) `ADD COLUMN` without a default (a catalog change), the
//!    trigger function (re)written for every kept column of the table, the trigger;
//! 2. (the migration run outside a transaction) the backfill (`Step::Backfill`), then the
//!    indexes, `CREATE INDEX CONCURRENTLY`.
//!
//! A column once kept stays kept; columns created with their table stay generated. The
//! rewrite happens here, on the desired schema, before the diff: the recorded state then
//! says which columns the trigger keeps, so dropping one rewrites the function without it,
//! and dropping the last drops function and trigger.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::error::GenError;
use crate::schema::{Function, Schema, Trigger, object_name, quote};
use crate::templates;

/// Turns each derived column that `desired` adds to a table of `recorded` (or changes) into
/// a kept one, with its table's trigger and function.
pub fn keep_new_derived_columns(recorded: &Schema, desired: &mut Schema) -> Result<(), GenError> {
    let ns = desired.schema.clone();
    let mut functions = Vec::new();
    let mut triggers = Vec::new();
    for (name, table) in desired.tables.iter_mut() {
        let Some(old) = recorded.tables.get(name) else {
            continue;
        };
        // The backfill's batches walk a one-column primary key.
        if table.primary_key.len() != 1
            || table.partition_by.is_some()
            || table.partition_of.is_some()
        {
            continue;
        }
        let columns: Vec<String> = table.columns.iter().map(|c| c.name.clone()).collect();
        let mut kept = Vec::new();
        // The columns the kept ones are computed from: the trigger fires when one is written
        // (an UPDATE that sets only a kept column, as the backfill does, fires nothing).
        let mut sources = BTreeSet::new();
        for column in table.columns.iter_mut() {
            let Some(expr) = column.generated.clone() else {
                continue;
            };
            let keep = match old.columns.iter().find(|c| c.name == column.name) {
                None => true,
                Some(o) => o.kept.is_some() || o.generated.as_ref() != Some(&expr),
            };
            if keep {
                column.generated = None;
                column.kept = Some(expr.clone());
                kept.push(KeptCtx {
                    column: column.name.clone(),
                    expr: on_new_row(&expr, &columns, &mut sources),
                });
            }
        }
        if kept.is_empty() {
            continue;
        }
        let function = object_name(name, "keep_fields");
        #[derive(Serialize)]
        struct Ctx<'a> {
            schema: &'a str,
            table: &'a str,
            function: &'a str,
            columns: &'a [KeptCtx],
        }
        let definition = templates::render(
            "sql/functions/keep_fields.sql",
            &Ctx {
                schema: &ns,
                table: name,
                function: &function,
                columns: &kept,
            },
        )?;
        functions.push(Function {
            name: function.clone(),
            args: String::new(),
            definition,
        });
        triggers.push(Trigger {
            name: function.clone(),
            table: name.clone(),
            definition: format!(
                "BEFORE INSERT OR UPDATE OF {} ON {}.{} FOR EACH ROW EXECUTE FUNCTION {}.{}()",
                sources
                    .iter()
                    .map(|c| quote(c))
                    .collect::<Vec<_>>()
                    .join(", "),
                quote(&ns),
                quote(name),
                quote(&ns),
                quote(&function)
            ),
        });
    }
    for function in functions {
        desired.add_function(function);
    }
    for trigger in triggers {
        desired.add_trigger(trigger);
    }
    Ok(())
}

#[derive(Serialize)]
struct KeptCtx {
    column: String,
    /// The expression with the row's columns read from `NEW`.
    expr: String,
}

/// `expr` with each quoted column of the table (`"doc"`) read from the new row (`NEW."doc"`);
/// the columns read are added to `sources`.
fn on_new_row(expr: &str, columns: &[String], sources: &mut BTreeSet<String>) -> String {
    let mut out = String::with_capacity(expr.len() + 16);
    let mut rest = expr;
    while let Some(start) = rest.find('"') {
        let Some(len) = rest[start + 1..].find('"') else {
            break;
        };
        let ident = &rest[start + 1..start + 1 + len];
        out.push_str(&rest[..start]);
        let preceded_by_dot = rest[..start].ends_with('.');
        if !preceded_by_dot && columns.iter().any(|c| c == ident) {
            out.push_str("NEW.");
            sources.insert(ident.to_string());
        }
        out.push_str(&rest[start..start + len + 2]);
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::on_new_row;

    #[test]
    fn column_references_read_the_new_row() {
        let columns = ["doc".to_string(), "title".to_string()];
        let mut sources = BTreeSet::new();
        let mut read = |expr: &str| on_new_row(expr, &columns, &mut sources);
        assert_eq!(
            read("(\"doc\" #>> '{a,b}')::bigint"),
            "(NEW.\"doc\" #>> '{a,b}')::bigint"
        );
        assert_eq!(
            read("\"public\".\"pgstack_iso_timestamptz\"(\"doc\" ->> 'at')"),
            "\"public\".\"pgstack_iso_timestamptz\"(NEW.\"doc\" ->> 'at')"
        );
        assert_eq!(
            read("to_tsvector('english', coalesce(\"title\", ''))"),
            "to_tsvector('english', coalesce(NEW.\"title\", ''))"
        );
        assert_eq!(
            sources.into_iter().collect::<Vec<_>>(),
            ["doc", "title"],
            "what the trigger fires on"
        );
    }
}
