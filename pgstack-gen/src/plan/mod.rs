//! The planner: the difference between the recorded schema and the desired one, as ordered
//! DDL steps with their inverses, each change classified as safe or destructive.
//!
//! Order matters and is fixed: changed or orphaned indexes are dropped first, then removed
//! tables; helper functions are created before the tables and columns that call them; columns
//! change before the indexes that cover them are (re)created; removed functions go last.
//!
//! `mod.rs` holds what a plan is (steps, changes, rendering to SQL); `diff.rs` computes one
//! from two schemas; `columns.rs` the column-level part of altering a table.

mod columns;
mod diff;
mod lock;
mod online;

pub use diff::diff;
pub use lock::{Effect, LockNote, lock_of};
pub use online::keep_new_derived_columns;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::error::GenError;
use crate::schema::{Check, Column, Index, Table, Trigger};
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
    /// Fills a kept column (`Column::kept`) of rows written before its trigger existed, in
    /// batches along the primary key, each committed (outside a transaction).
    Backfill {
        table: String,
        column: String,
        expr: String,
        key: String,
        key_type: String,
        batch: u32,
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
    /// An index on a table that already holds rows: built without blocking writes, outside
    /// the migration's transaction (a migration of its own). A leftover INVALID index of the
    /// same name (a build that failed) is dropped first.
    CreateIndexConcurrently {
        index: Index,
    },
    DropIndex {
        name: String,
    },
    DropIndexConcurrently {
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

impl Change {
    /// Whether its steps run outside a transaction (concurrent index builds).
    pub fn concurrent(&self) -> bool {
        self.up.iter().any(|s| {
            matches!(
                s,
                Step::CreateIndexConcurrently { .. }
                    | Step::DropIndexConcurrently { .. }
                    | Step::Backfill { .. }
            )
        })
    }
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
    /// Tables of the recorded schema: they may hold rows, so locks on them matter.
    pub existing_tables: BTreeSet<String>,
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

    /// The lock each up step of `change` takes.
    pub fn locks(&self, change: &Change) -> Vec<LockNote> {
        let existing = |table: &str| self.existing_tables.contains(table);
        change.up.iter().map(|s| lock_of(s, &existing)).collect()
    }

    /// The blocking steps on existing tables, for the refusal message: what each does and
    /// the safe alternative.
    pub fn blocking(&self) -> Vec<String> {
        self.changes
            .iter()
            .flat_map(|c| {
                self.locks(c)
                    .into_iter()
                    .filter(LockNote::blocking)
                    .map(|note| {
                        format!(
                            "{}: {}\n    instead: {}",
                            c.summary,
                            note.comment().trim_start_matches("-- lock: "),
                            note.alternative.unwrap_or("run it when writes can wait")
                        )
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// The plan split in two: the changes that run in the migration's transaction, and those
    /// that run outside one (concurrent index builds), which go in a migration of their own
    /// after it. Either may be empty.
    pub fn split_concurrent(self) -> (Plan, Plan) {
        let (concurrent, transactional): (Vec<Change>, Vec<Change>) =
            self.changes.into_iter().partition(Change::concurrent);
        let part = |changes| Plan {
            schema: self.schema.clone(),
            initial: self.initial,
            changes,
            existing_tables: self.existing_tables.clone(),
        };
        (part(transactional), part(concurrent))
    }

    /// The up statements, grouped by change: `(summary, statements)`, each statement headed
    /// by the lock it takes.
    pub fn up_sql(&self) -> Result<Vec<(String, Vec<String>)>, GenError> {
        self.changes
            .iter()
            .map(|c| {
                let statements = c
                    .up
                    .iter()
                    .zip(self.locks(c))
                    .map(|(s, lock)| Ok(format!("{}\n{}", lock.comment(), s.render(&self.schema)?)))
                    .collect::<Result<Vec<_>, GenError>>()?;
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
