//! Altering one table: columns added, dropped, retyped, re-defaulted; checks and storage.

use std::collections::BTreeMap;

use super::{Change, Step, Verb};
use crate::error::GenError;
use crate::schema::{Column, Table, quote};

pub(super) fn find_column<'a>(table: &'a Table, name: &str) -> Option<&'a Column> {
    table.columns.iter().find(|c| c.name == name)
}

/// Generated and kept columns are derived data: any change to one is a drop and re-add.
pub(super) fn column_needs_rebuild(old: &Column, new: &Column) -> bool {
    (derived(old) || derived(new)) && old != new
}

fn derived(column: &Column) -> bool {
    column.generated.is_some() || column.kept.is_some()
}

/// For a kept column (`Column::kept`) added to `table`: the change that fills it, run outside
/// a transaction after its trigger exists.
fn backfill(table: &Table, column: &Column) -> Option<Change> {
    let expr = column.kept.clone()?;
    let [key] = table.primary_key.as_slice() else {
        return None;
    };
    let key_type = table
        .columns
        .iter()
        .find(|c| &c.name == key)?
        .sql_type
        .clone();
    Some(Change {
        summary: format!(
            "fill `{}.{}` in batches of 5,000 rows ({})",
            table.name,
            column.name,
            table.owner()
        ),
        facility: (table.kind != "helpers").then(|| table.facility.clone()),
        verb: Verb::Alter,
        destructive: None,
        up: vec![Step::Backfill {
            table: table.name.clone(),
            column: column.name.clone(),
            expr,
            key: key.clone(),
            key_type,
            batch: 5_000,
        }],
        down: Vec::new(),
    })
}

pub(super) fn alter_table(
    old: &Table,
    new: &Table,
    changes: &mut Vec<Change>,
) -> Result<(), GenError> {
    let table = &new.name;
    let owner = new.owner();
    let facility = (new.kind != "helpers").then(|| new.facility.clone());
    // Backfills of kept columns, after the table's other changes.
    let mut fills = Vec::new();
    let mut push =
        |summary: String, destructive: Option<String>, up: Vec<Step>, down: Vec<Step>| {
            changes.push(Change {
                summary,
                facility: facility.clone(),
                verb: Verb::Alter,
                destructive,
                up,
                down,
            })
        };

    if old.partition_by != new.partition_by || old.partition_of != new.partition_of {
        return Err(GenError::Unsupported(format!(
            "how `{table}` ({owner}) is partitioned would change; pgstack-gen cannot migrate \
             that\nhelp: declare a new facility and move the data"
        )));
    }
    if old.primary_key != new.primary_key {
        return Err(GenError::Unsupported(format!(
            "the primary key of `{table}` ({owner}) would change from ({}) to ({}); \
             pgstack-gen cannot migrate that\nhelp: declare a new facility and move the data",
            old.primary_key.join(", "),
            new.primary_key.join(", ")
        )));
    }

    for old_check in &old.checks {
        if !new.checks.contains(old_check) {
            push(
                format!("drop check `{}` on `{table}`", old_check.name),
                None,
                vec![Step::DropCheck {
                    table: table.clone(),
                    name: old_check.name.clone(),
                }],
                vec![Step::AddCheck {
                    table: table.clone(),
                    check: old_check.clone(),
                }],
            );
        }
    }

    for old_col in &old.columns {
        let col = &old_col.name;
        match find_column(new, col) {
            None => {
                let destructive = if derived(old_col) {
                    None
                } else {
                    Some("the column's data is lost".to_string())
                };
                push(
                    format!("drop column `{col}` from `{table}` ({owner})"),
                    destructive,
                    vec![Step::DropColumn {
                        table: table.clone(),
                        column: col.clone(),
                    }],
                    vec![Step::AddColumn {
                        table: table.clone(),
                        column: old_col.clone(),
                    }],
                );
            }
            Some(new_col) if column_needs_rebuild(old_col, new_col) => {
                fills.extend(backfill(new, new_col));
                let destructive = if !derived(old_col) {
                    Some("the column's stored data is replaced by a generated value".to_string())
                } else {
                    None
                };
                push(
                    format!("rebuild generated column `{col}` of `{table}` ({owner})"),
                    destructive,
                    vec![
                        Step::DropColumn {
                            table: table.clone(),
                            column: col.clone(),
                        },
                        Step::AddColumn {
                            table: table.clone(),
                            column: new_col.clone(),
                        },
                    ],
                    vec![
                        Step::DropColumn {
                            table: table.clone(),
                            column: col.clone(),
                        },
                        Step::AddColumn {
                            table: table.clone(),
                            column: old_col.clone(),
                        },
                    ],
                );
            }
            Some(new_col) => {
                if old_col.identity != new_col.identity {
                    return Err(GenError::Unsupported(format!(
                        "column `{col}` of `{table}` would change identity; pgstack-gen cannot \
                         migrate that"
                    )));
                }
                if old_col.sql_type != new_col.sql_type || old_col.collation != new_col.collation {
                    push(
                        format!(
                            "change type of `{table}.{col}` from {} to {} ({owner})",
                            old_col.sql_type, new_col.sql_type
                        ),
                        Some(
                            "existing values are converted and may fail or lose information"
                                .to_string(),
                        ),
                        vec![Step::AlterColumnType {
                            table: table.clone(),
                            column: new_col.clone(),
                            using: conversion(col, &old_col.sql_type, &new_col.sql_type),
                        }],
                        vec![Step::AlterColumnType {
                            table: table.clone(),
                            column: old_col.clone(),
                            using: conversion(col, &new_col.sql_type, &old_col.sql_type),
                        }],
                    );
                }
                if old_col.storage != new_col.storage {
                    let storage = |c: &Column| {
                        c.storage
                            .clone()
                            .unwrap_or_else(|| default_storage(&c.sql_type))
                    };
                    push(
                        format!("change storage of `{table}.{col}` ({owner})"),
                        None,
                        vec![Step::SetColumnStorage {
                            table: table.clone(),
                            column: col.clone(),
                            storage: storage(new_col),
                        }],
                        vec![Step::SetColumnStorage {
                            table: table.clone(),
                            column: col.clone(),
                            storage: storage(old_col),
                        }],
                    );
                }
                if old_col.default != new_col.default {
                    push(
                        format!("change default of `{table}.{col}`"),
                        None,
                        vec![Step::SetColumnDefault {
                            table: table.clone(),
                            column: col.clone(),
                            default: new_col.default.clone(),
                        }],
                        vec![Step::SetColumnDefault {
                            table: table.clone(),
                            column: col.clone(),
                            default: old_col.default.clone(),
                        }],
                    );
                }
                if old_col.not_null != new_col.not_null {
                    push(
                        format!(
                            "{} NOT NULL on `{table}.{col}`",
                            if new_col.not_null { "set" } else { "drop" }
                        ),
                        None,
                        vec![Step::SetNotNull {
                            table: table.clone(),
                            column: col.clone(),
                            not_null: new_col.not_null,
                        }],
                        vec![Step::SetNotNull {
                            table: table.clone(),
                            column: col.clone(),
                            not_null: old_col.not_null,
                        }],
                    );
                }
            }
        }
    }

    for new_col in &new.columns {
        if find_column(old, &new_col.name).is_some() {
            continue;
        }
        if new_col.not_null && new_col.default.is_none() && !derived(new_col) && !new_col.identity {
            return Err(GenError::Unsupported(format!(
                "new column `{}` of `{table}` is NOT NULL without a default; existing rows \
                 could not be filled",
                new_col.name
            )));
        }
        fills.extend(backfill(new, new_col));
        push(
            format!("add column `{}` to `{table}` ({owner})", new_col.name),
            None,
            vec![Step::AddColumn {
                table: table.clone(),
                column: new_col.clone(),
            }],
            vec![Step::DropColumn {
                table: table.clone(),
                column: new_col.name.clone(),
            }],
        );
    }

    for new_check in &new.checks {
        if !old.checks.contains(new_check) {
            push(
                format!("add check `{}` on `{table}`", new_check.name),
                None,
                vec![Step::AddCheck {
                    table: table.clone(),
                    check: new_check.clone(),
                }],
                vec![Step::DropCheck {
                    table: table.clone(),
                    name: new_check.name.clone(),
                }],
            );
        }
    }

    if old.storage != new.storage {
        let changed =
            |from: &BTreeMap<String, String>, to: &BTreeMap<String, String>| Step::SetStorage {
                table: table.clone(),
                set: to
                    .iter()
                    .filter(|(k, v)| from.get(*k) != Some(*v))
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                reset: from
                    .keys()
                    .filter(|k| !to.contains_key(*k))
                    .cloned()
                    .collect(),
            };
        push(
            format!("change storage parameters of `{table}`"),
            None,
            vec![changed(&old.storage, &new.storage)],
            vec![changed(&new.storage, &old.storage)],
        );
    }

    if old.comment != new.comment {
        push(
            format!("update the comment on `{table}` ({owner})"),
            None,
            vec![Step::SetComment {
                table: table.clone(),
                comment: new.comment.clone(),
            }],
            vec![Step::SetComment {
                table: table.clone(),
                comment: old.comment.clone(),
            }],
        );
    }

    if old.unlogged != new.unlogged {
        let destructive = new.unlogged.then(|| {
            "an UNLOGGED table is emptied after a crash and is not replicated".to_string()
        });
        push(
            format!(
                "make `{table}` {} ({owner})",
                if new.unlogged { "UNLOGGED" } else { "LOGGED" }
            ),
            destructive,
            vec![Step::SetLogged {
                table: table.clone(),
                unlogged: new.unlogged,
            }],
            vec![Step::SetLogged {
                table: table.clone(),
                unlogged: old.unlogged,
            }],
        );
    }
    changes.extend(fills);
    Ok(())
}

/// The storage a column of `sql_type` gets when none is set: pgvector's types are EXTERNAL,
/// variable-length built-ins EXTENDED, fixed-length ones PLAIN.
fn default_storage(sql_type: &str) -> String {
    let base = sql_type.split('(').next().unwrap_or(sql_type);
    match base {
        "vector" | "halfvec" | "sparsevec" => "EXTERNAL",
        "bigint" | "integer" | "smallint" | "boolean" | "double precision" | "timestamptz"
        | "uuid" => "PLAIN",
        _ => "EXTENDED",
    }
    .to_string()
}

/// The `USING` expression converting a column between types.
fn conversion(column: &str, from: &str, to: &str) -> String {
    let col = quote(column);
    match (from, to) {
        ("jsonb", "bytea") => format!("convert_to({col}::text, 'UTF8')"),
        ("bytea", "jsonb") => format!("convert_from({col}, 'UTF8')::jsonb"),
        _ => format!("{col}::{to}"),
    }
}
