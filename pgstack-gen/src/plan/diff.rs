//! The difference between two schemas, as an ordered [`Plan`].

use std::collections::{BTreeMap, BTreeSet};

use super::columns::{alter_table, column_needs_rebuild, find_column};
use super::{Change, Plan, Step, Verb};
use crate::error::GenError;
use crate::schema::{Function, Index, Schema, Table, quote};

/// Plans the changes from `old` (the recorded state) to `new` (the spec).
pub fn diff(old: &Schema, new: &Schema) -> Result<Plan, GenError> {
    if !old.is_empty() && old.schema != new.schema {
        return Err(GenError::Unsupported(format!(
            "`schema` in [project] changed from `{}` to `{}`, but migrations already create \
             tables in `{}`; pgstack-gen does not move tables between schemas\nhelp: change it \
             back, or move the tables by hand (ALTER TABLE ... SET SCHEMA) and start a new state",
            old.schema, new.schema, old.schema
        )));
    }
    let mut changes = Vec::new();
    if !new.is_empty() && old.is_empty() && new.schema != "public" {
        changes.push(Change {
            summary: format!("create schema `{}` if it does not exist", new.schema),
            facility: None,
            verb: Verb::Create,
            destructive: None,
            up: vec![Step::CreateSchema],
            // The schema may hold other things; undoing pgstack's objects leaves it in place.
            down: Vec::new(),
        });
    }

    // Extensions the new objects need, before anything uses their types. Never dropped: other
    // objects in the database may use them too.
    for name in new.extensions.difference(&old.extensions) {
        changes.push(Change {
            summary: format!("require extension `{name}`"),
            facility: None,
            verb: Verb::Create,
            destructive: None,
            up: vec![extension_step(name)],
            down: Vec::new(),
        });
    }

    // Columns that disappear or are recreated, per table: indexes on them must be rebuilt.
    let mut rebuilt_columns: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (name, new_table) in &new.tables {
        let Some(old_table) = old.tables.get(name) else {
            continue;
        };
        for old_col in &old_table.columns {
            match find_column(new_table, &old_col.name) {
                None => {
                    rebuilt_columns
                        .entry(name)
                        .or_default()
                        .insert(&old_col.name);
                }
                Some(new_col) if column_needs_rebuild(old_col, new_col) => {
                    rebuilt_columns
                        .entry(name)
                        .or_default()
                        .insert(&old_col.name);
                }
                Some(_) => {}
            }
        }
    }
    let index_affected = |index: &Index| {
        rebuilt_columns
            .get(index.table.as_str())
            .is_some_and(|cols| {
                cols.iter().any(|c| {
                    let q = quote(c);
                    index.keys.contains(&q)
                        || index.predicate.as_deref().is_some_and(|p| p.contains(&q))
                })
            })
    };

    // A. Triggers and indexes that go away or change, unless their table is dropped anyway.
    for (name, old_trigger) in &old.triggers {
        if !new.tables.contains_key(&old_trigger.table)
            || new.triggers.get(name) == Some(old_trigger)
        {
            continue;
        }
        changes.push(Change {
            summary: format!("drop trigger `{name}` on `{}`", old_trigger.table),
            facility: owner_of(new, &old_trigger.table),
            verb: Verb::Alter,
            destructive: None,
            up: vec![Step::DropTrigger {
                name: name.clone(),
                table: old_trigger.table.clone(),
            }],
            down: vec![Step::CreateTrigger {
                trigger: old_trigger.clone(),
            }],
        });
    }
    for (name, old_index) in &old.indexes {
        if !new.tables.contains_key(&old_index.table) {
            continue;
        }
        let reason = match new.indexes.get(name) {
            None => "no longer declared",
            Some(new_index) if new_index != old_index => "definition changed",
            Some(_) if index_affected(old_index) => "its column is rebuilt",
            Some(_) => continue,
        };
        changes.push(Change {
            summary: format!("drop index `{name}` ({reason})"),
            facility: owner_of(new, &old_index.table),
            verb: Verb::Alter,
            destructive: None,
            up: vec![Step::DropIndex { name: name.clone() }],
            down: vec![Step::CreateIndex {
                index: old_index.clone(),
            }],
        });
    }

    // B. Tables that go away. Dropping a partitioned parent drops its partitions with it.
    for (name, old_table) in &old.tables {
        if new.tables.contains_key(name) {
            continue;
        }
        let parent_dropped = old_table
            .partition_of
            .as_ref()
            .is_some_and(|p| !new.tables.contains_key(&p.parent));
        if parent_dropped {
            continue;
        }
        let mut down = vec![Step::CreateTable {
            table: old_table.clone(),
        }];
        down.extend(
            old.tables
                .values()
                .filter(|t| t.partition_of.as_ref().is_some_and(|p| &p.parent == name))
                .map(|t| Step::CreateTable { table: t.clone() }),
        );
        down.extend(
            old.indexes
                .values()
                .filter(|i| &i.table == name)
                .map(|i| Step::CreateIndex { index: i.clone() }),
        );
        down.extend(
            old.triggers
                .values()
                .filter(|t| &t.table == name)
                .map(|t| Step::CreateTrigger { trigger: t.clone() }),
        );
        changes.push(Change {
            summary: format!("drop table `{name}` ({} removed)", old_table.owner()),
            facility: owner_of(old, name),
            verb: Verb::Drop,
            destructive: Some("every row in the table is lost".to_string()),
            up: vec![Step::DropTable {
                table: name.clone(),
            }],
            down,
        });
    }

    // C. Helper functions, before anything that calls them.
    for (name, function) in &new.functions {
        let old_function = old.functions.get(name);
        if old_function == Some(function) {
            continue;
        }
        let create = |f: &Function| Step::CreateFunction {
            definition: f.definition.clone(),
        };
        let (summary, up, down) = match old_function {
            None => (
                format!("create function `{name}`"),
                vec![create(function)],
                vec![drop_function(function)],
            ),
            // Same arguments: CREATE OR REPLACE swaps the body (and defaults) in place.
            Some(old_function) if old_function.args == function.args => (
                format!("replace function `{name}`"),
                vec![create(function)],
                vec![create(old_function)],
            ),
            // Other arguments would make CREATE OR REPLACE add an overload beside the old one.
            Some(old_function) => (
                format!("replace function `{name}` (new arguments)"),
                vec![drop_function(old_function), create(function)],
                vec![drop_function(function), create(old_function)],
            ),
        };
        changes.push(Change {
            summary,
            facility: None,
            verb: Verb::Create,
            destructive: None,
            up,
            down,
        });
    }

    // D. New tables, parents before their partitions.
    let mut new_tables: Vec<(&String, &Table)> = new
        .tables
        .iter()
        .filter(|(name, _)| !old.tables.contains_key(*name))
        .collect();
    new_tables.sort_by_key(|(name, table)| (table.partition_of.is_some(), (*name).clone()));
    for (name, table) in new_tables {
        changes.push(Change {
            summary: format!("create table `{name}` ({})", table.owner()),
            facility: owner_of(new, name),
            verb: Verb::Create,
            destructive: None,
            up: vec![Step::CreateTable {
                table: table.clone(),
            }],
            down: vec![Step::DropTable {
                table: name.clone(),
            }],
        });
    }

    // E. Tables that stay but change.
    for (name, new_table) in &new.tables {
        if let Some(old_table) = old.tables.get(name) {
            alter_table(old_table, new_table, &mut changes)?;
        }
    }

    // F. Indexes that are new, changed or rebuilt.
    for (name, index) in &new.indexes {
        let reason = match old.indexes.get(name) {
            None => "",
            Some(old_index) if old_index != index => " (definition changed)",
            Some(old_index) if index_affected(old_index) => " (its column was rebuilt)",
            Some(_) => continue,
        };
        // On a table that may hold rows, built without blocking writes.
        let (create, drop) = if old.tables.contains_key(&index.table) {
            (
                Step::CreateIndexConcurrently {
                    index: index.clone(),
                },
                Step::DropIndexConcurrently { name: name.clone() },
            )
        } else {
            (
                Step::CreateIndex {
                    index: index.clone(),
                },
                Step::DropIndex { name: name.clone() },
            )
        };
        changes.push(Change {
            summary: format!("create index `{name}` on `{}`{reason}", index.table),
            facility: owner_of(new, &index.table),
            verb: if new.tables.contains_key(&index.table) && !old.tables.contains_key(&index.table)
            {
                Verb::Create
            } else {
                Verb::Alter
            },
            destructive: None,
            up: vec![create],
            down: vec![drop],
        });
    }

    // G. Triggers that are new or changed, once their tables and functions exist.
    for (name, trigger) in &new.triggers {
        if old.triggers.get(name) == Some(trigger) && old.tables.contains_key(&trigger.table) {
            continue;
        }
        changes.push(Change {
            summary: format!("create trigger `{name}` on `{}`", trigger.table),
            facility: owner_of(new, &trigger.table),
            verb: if old.tables.contains_key(&trigger.table) {
                Verb::Alter
            } else {
                Verb::Create
            },
            destructive: None,
            up: vec![Step::CreateTrigger {
                trigger: trigger.clone(),
            }],
            down: vec![Step::DropTrigger {
                name: name.clone(),
                table: trigger.table.clone(),
            }],
        });
    }

    // H. Helper functions no longer needed, once nothing uses them.
    for (name, function) in &old.functions {
        if new.functions.contains_key(name) {
            continue;
        }
        changes.push(Change {
            summary: format!("drop function `{name}` (no longer used)"),
            facility: None,
            verb: Verb::Drop,
            destructive: None,
            up: vec![drop_function(function)],
            down: vec![Step::CreateFunction {
                definition: function.definition.clone(),
            }],
        });
    }

    Ok(Plan {
        schema: new.schema.clone(),
        initial: old.is_empty(),
        changes,
        existing_tables: old.tables.keys().cloned().collect(),
    })
}

/// Extensions pgstack knows how to require, with the oldest version it works with.
pub(super) fn extension_step(name: &str) -> Step {
    let (min_version, install_hint) = match name {
        "vector" => (
            "0.7.0",
            "install pgvector 0.7 or later on the database server (Debian/Ubuntu with the PGDG \
             repository: apt install postgresql-<major>-pgvector; or build it from \
             https://github.com/pgvector/pgvector), then migrate again",
        ),
        _ => (
            "0",
            "install the extension on the database server, then migrate again",
        ),
    };
    Step::CreateExtension {
        name: name.to_string(),
        min_version: min_version.to_string(),
        min_version_array: format!("{{{}}}", min_version.replace('.', ",")),
        install_hint: install_hint.to_string(),
    }
}

pub(super) fn drop_function(function: &Function) -> Step {
    Step::DropFunction {
        name: function.name.clone(),
        args: function.args.clone(),
    }
}

/// The facility owning `table`; `None` for pgstack's shared helper tables.
pub(super) fn owner_of(schema: &Schema, table: &str) -> Option<String> {
    schema
        .tables
        .get(table)
        .filter(|t| t.kind != "helpers")
        .map(|t| t.facility.clone())
}
