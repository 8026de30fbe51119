//! The planner: the difference between the recorded schema and the desired one, as ordered
//! DDL steps with their inverses, each change classified as safe or destructive.
//!
//! Order matters and is fixed: changed or orphaned indexes are dropped first, then removed
//! tables; helper functions are created before the tables and columns that call them; columns
//! change before the indexes that cover them are (re)created; removed functions go last.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::GenError;
use crate::schema::{Check, Column, Function, Index, Schema, Table, Trigger, quote};
use crate::templates;

/// One DDL statement. The variant name (snake_case) is the template under `templates/sql/`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    CreateSchema,
    CreateExtension {
        name: String,
        min_version: String,
        min_version_array: String,
        install_hint: String,
    },
    CreateFunction {
        definition: String,
    },
    DropFunction {
        name: String,
        args: String,
    },
    CreateTable {
        table: Table,
    },
    DropTable {
        table: String,
    },
    AddColumn {
        table: String,
        column: Column,
    },
    DropColumn {
        table: String,
        column: String,
    },
    AlterColumnType {
        table: String,
        column: Column,
        using: String,
    },
    SetColumnDefault {
        table: String,
        column: String,
        default: Option<String>,
    },
    SetNotNull {
        table: String,
        column: String,
        not_null: bool,
    },
    AddCheck {
        table: String,
        check: Check,
    },
    DropCheck {
        table: String,
        name: String,
    },
    SetStorage {
        table: String,
        set: BTreeMap<String, String>,
        reset: Vec<String>,
    },
    SetLogged {
        table: String,
        unlogged: bool,
    },
    SetColumnStorage {
        table: String,
        column: String,
        storage: String,
    },
    CreateIndex {
        index: Index,
    },
    DropIndex {
        name: String,
    },
    SetComment {
        table: String,
        comment: Option<String>,
    },
    CreateTrigger {
        trigger: Trigger,
    },
    DropTrigger {
        name: String,
        table: String,
    },
}

impl Step {
    fn template(&self) -> String {
        let value = serde_json::to_value(self).unwrap_or_default();
        let name = value["step"].as_str().unwrap_or_default();
        format!("sql/{name}.sql")
    }

    /// The statement as SQL, in `schema`.
    pub fn render(&self, schema: &str) -> Result<String, GenError> {
        let mut value = serde_json::to_value(self)
            .map_err(|e| GenError::Template(format!("cannot serialize step: {e}")))?;
        if let serde_json::Value::Object(map) = &mut value {
            map.insert("schema".to_string(), schema.into());
        }
        templates::render(&self.template(), &value)
    }
}

/// One logical change: what it does, whether it loses data, and how to undo it.
#[derive(Clone, Debug, PartialEq)]
pub struct Change {
    /// "create table `settings` (kv `settings`)".
    pub summary: String,
    /// The facility it belongs to, for naming the migration; `None` for shared helpers.
    pub facility: Option<String>,
    pub verb: Verb,
    /// Why it is destructive, when it is.
    pub destructive: Option<String>,
    pub up: Vec<Step>,
    pub down: Vec<Step>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verb {
    Create,
    Alter,
    Drop,
}

/// Everything needed to go from one schema to another.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub schema: String,
    /// True when the recorded schema was empty (the first migration).
    pub initial: bool,
    pub changes: Vec<Change>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    /// Descriptions of the destructive changes, for the refusal message.
    pub fn destructive(&self) -> Vec<String> {
        self.changes
            .iter()
            .filter_map(|c| {
                c.destructive
                    .as_ref()
                    .map(|why| format!("{}: {why}", c.summary))
            })
            .collect()
    }

    /// The up statements, grouped by change: `(summary, statements)`.
    pub fn up_sql(&self) -> Result<Vec<(String, Vec<String>)>, GenError> {
        self.changes
            .iter()
            .map(|c| {
                let statements =
                    c.up.iter()
                        .map(|s| s.render(&self.schema))
                        .collect::<Result<Vec<_>, _>>()?;
                Ok((c.summary.clone(), statements))
            })
            .collect()
    }

    /// The down statements: changes in reverse order, each undone.
    pub fn down_sql(&self) -> Result<Vec<(String, Vec<String>)>, GenError> {
        self.changes
            .iter()
            .rev()
            .filter(|c| !c.down.is_empty())
            .map(|c| {
                let statements = c
                    .down
                    .iter()
                    .map(|s| s.render(&self.schema))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((format!("undo: {}", c.summary), statements))
            })
            .collect()
    }

    /// A short snake_case name for the migration: `initial`, `create_settings`,
    /// `alter_user_profiles`, `drop_old_cache`, or the facilities joined.
    pub fn name_hint(&self) -> String {
        if self.initial {
            return "initial".to_string();
        }
        let owned = self.changes.iter().filter(|c| c.facility.is_some());
        let facilities: BTreeSet<&str> = owned
            .clone()
            .filter_map(|c| c.facility.as_deref())
            .collect();
        let verbs: BTreeSet<Verb> = owned.map(|c| c.verb).collect();
        let mut name = match (facilities.len(), verbs.len()) {
            (0, _) => "update_helpers".to_string(),
            (1, 1) => {
                let verb = match verbs.iter().next().copied().unwrap_or(Verb::Alter) {
                    Verb::Create => "create",
                    Verb::Alter => "alter",
                    Verb::Drop => "drop",
                };
                format!(
                    "{verb}_{}",
                    facilities.iter().next().copied().unwrap_or_default()
                )
            }
            (1, _) => format!(
                "alter_{}",
                facilities.iter().next().copied().unwrap_or_default()
            ),
            (n, _) if n <= 3 => format!(
                "update_{}",
                facilities.iter().copied().collect::<Vec<_>>().join("_")
            ),
            (n, _) => format!(
                "update_{}_and_{}_more",
                facilities.iter().next().copied().unwrap_or_default(),
                n - 1
            ),
        };
        if name.len() > 48 {
            name.truncate(48);
            while name.ends_with('_') {
                name.pop();
            }
        }
        name
    }
}

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
        let (summary, down) = match old_function {
            None => (
                format!("create function `{name}`"),
                vec![drop_function(function)],
            ),
            Some(old_function) => (
                format!("replace function `{name}`"),
                vec![Step::CreateFunction {
                    definition: old_function.definition.clone(),
                }],
            ),
        };
        changes.push(Change {
            summary,
            facility: None,
            verb: Verb::Create,
            destructive: None,
            up: vec![Step::CreateFunction {
                definition: function.definition.clone(),
            }],
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
            up: vec![Step::CreateIndex {
                index: index.clone(),
            }],
            down: vec![Step::DropIndex { name: name.clone() }],
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
    })
}

/// Extensions pgstack knows how to require, with the oldest version it works with.
fn extension_step(name: &str) -> Step {
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

fn drop_function(function: &Function) -> Step {
    Step::DropFunction {
        name: function.name.clone(),
        args: function.args.clone(),
    }
}

/// The facility owning `table`; `None` for pgstack's shared helper tables.
fn owner_of(schema: &Schema, table: &str) -> Option<String> {
    schema
        .tables
        .get(table)
        .filter(|t| t.kind != "helpers")
        .map(|t| t.facility.clone())
}

fn find_column<'a>(table: &'a Table, name: &str) -> Option<&'a Column> {
    table.columns.iter().find(|c| c.name == name)
}

/// Generated columns are derived data: any change to one is a drop and re-add.
fn column_needs_rebuild(old: &Column, new: &Column) -> bool {
    (old.generated.is_some() || new.generated.is_some()) && old != new
}

fn alter_table(old: &Table, new: &Table, changes: &mut Vec<Change>) -> Result<(), GenError> {
    let table = &new.name;
    let owner = new.owner();
    let facility = (new.kind != "helpers").then(|| new.facility.clone());
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
                let destructive = if old_col.generated.is_some() {
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
                let destructive = if old_col.generated.is_none() {
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
        if new_col.not_null
            && new_col.default.is_none()
            && new_col.generated.is_none()
            && !new_col.identity
        {
            return Err(GenError::Unsupported(format!(
                "new column `{}` of `{table}` is NOT NULL without a default; existing rows \
                 could not be filled",
                new_col.name
            )));
        }
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
