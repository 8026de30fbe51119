//! The lock lint: what each step does to a table that already holds rows, and which steps
//! block reads or writes for longer than a catalog change.
//!
//! PostgreSQL's table locks, weakest first, as far as a migration meets them: `SHARE UPDATE
//! EXCLUSIVE` (concurrent index builds, storage parameters: reads and writes go on), `SHARE
//! ROW EXCLUSIVE` (creating a trigger: writes wait), `SHARE` (a plain index build: writes wait
//! for the whole build), `ACCESS EXCLUSIVE` (most `ALTER TABLE`: everything waits). An `ACCESS
//! EXCLUSIVE` lock held for a catalog change is over in milliseconds once granted; the danger
//! is the wait for it behind a long transaction, with every later query queued behind the
//! migration: that is what `lock_timeout` (and `migrate`'s retries) bound. A step that
//! rewrites or scans the table holds its lock for as long as that takes: those are
//! *blocking*, and `generate` refuses them on existing tables unless `--allow-blocking`.

use super::Step;

/// What a step does to an existing table's data while it holds its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Effect {
    /// No table of the old schema is touched (a new table, a function, an extension).
    NoExistingTable,
    /// A catalog change: the lock is held for milliseconds once granted.
    Catalog,
    /// Every row is read (validating a constraint) under the lock.
    Scan,
    /// The table is rewritten (a stored generated column, a type change, SET LOGGED).
    Rewrite,
    /// Built without blocking reads or writes, outside the migration's transaction.
    Concurrent,
}

/// The lock one step takes and what it does under it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LockNote {
    /// The table locked, when it is an existing one.
    pub table: Option<String>,
    /// `ACCESS EXCLUSIVE`, `SHARE UPDATE EXCLUSIVE`, ...; empty when no existing table is
    /// locked.
    pub mode: &'static str,
    pub effect: Effect,
    /// For a blocking step: what to do instead.
    pub alternative: Option<&'static str>,
}

impl LockNote {
    /// Whether the step holds a lock that stops reads or writes of an existing table for
    /// longer than a catalog change.
    pub fn blocking(&self) -> bool {
        matches!(self.effect, Effect::Scan | Effect::Rewrite)
    }

    /// The comment `plan` and migrations print above the step.
    pub fn comment(&self) -> String {
        let table = self
            .table
            .as_deref()
            .map_or("the index's table".to_string(), |t| format!("`{t}`"));
        match self.effect {
            Effect::NoExistingTable => "-- lock: no existing table".to_string(),
            Effect::Catalog => format!(
                "-- lock: {} on {table}, catalog only (brief; waits at most lock_timeout)",
                self.mode
            ),
            Effect::Concurrent => format!(
                "-- lock: {} on {table} (reads and writes go on; outside a transaction)",
                self.mode
            ),
            Effect::Scan => format!(
                "-- lock: {} on {table}, BLOCKING: scans every row under the lock",
                self.mode
            ),
            Effect::Rewrite => format!(
                "-- lock: {} on {table}, BLOCKING: rewrites the table under the lock",
                self.mode
            ),
        }
    }
}

const ACCESS_EXCLUSIVE: &str = "ACCESS EXCLUSIVE";

/// The lock `step` takes; `existing(table)` says whether a table holds rows from before.
pub fn lock_of(step: &Step, existing: &dyn Fn(&str) -> bool) -> LockNote {
    let on = |table: &str, mode: &'static str, effect: Effect| {
        if existing(table) {
            LockNote {
                table: Some(table.to_string()),
                mode,
                effect,
                alternative: None,
            }
        } else {
            none()
        }
    };
    let blocking = |table: &str, mode: &'static str, effect: Effect, alternative: &'static str| {
        let mut note = on(table, mode, effect);
        if note.blocking() {
            note.alternative = Some(alternative);
        }
        note
    };
    match step {
        Step::CreateSchema
        | Step::CreateExtension { .. }
        | Step::CreateFunction { .. }
        | Step::DropFunction { .. }
        | Step::CreateTable { .. } => none(),
        Step::DropTable { table } => on(table, ACCESS_EXCLUSIVE, Effect::Catalog),
        Step::AddColumn { table, column } => {
            if column.generated.is_some() || column.identity {
                blocking(
                    table,
                    ACCESS_EXCLUSIVE,
                    Effect::Rewrite,
                    "a stored generated column is computed for every row under the lock; \
                     pgstack-gen adds derived columns to existing tables as trigger-kept columns \
                     filled by a batched backfill, except on a table without a one-column \
                     primary key: declare the field in a new facility",
                )
            } else {
                on(table, ACCESS_EXCLUSIVE, Effect::Catalog)
            }
        }
        Step::DropColumn { table, .. }
        | Step::SetColumnDefault { table, .. }
        | Step::DropCheck { table, .. }
        | Step::SetColumnStorage { table, .. }
        | Step::SetComment { table, .. }
        | Step::DropTrigger { table, .. } => on(table, ACCESS_EXCLUSIVE, Effect::Catalog),
        Step::AlterColumnType { table, .. } => blocking(
            table,
            ACCESS_EXCLUSIVE,
            Effect::Rewrite,
            "a type change rewrites the table; add a field with the new type beside the old \
             one, move readers to it, then drop the old one",
        ),
        Step::SetNotNull {
            table, not_null, ..
        } => {
            if *not_null {
                blocking(
                    table,
                    ACCESS_EXCLUSIVE,
                    Effect::Scan,
                    "SET NOT NULL reads every row under the lock; on a large table add a \
                     `CHECK (col IS NOT NULL) NOT VALID` constraint and VALIDATE it in a later \
                     migration (VALIDATE takes SHARE UPDATE EXCLUSIVE)",
                )
            } else {
                on(table, ACCESS_EXCLUSIVE, Effect::Catalog)
            }
        }
        Step::AddCheck { table, .. } => blocking(
            table,
            ACCESS_EXCLUSIVE,
            Effect::Scan,
            "a new CHECK reads every row under the lock; add it NOT VALID and VALIDATE it in \
             a later migration (VALIDATE takes SHARE UPDATE EXCLUSIVE)",
        ),
        Step::SetStorage { table, .. } => on(table, "SHARE UPDATE EXCLUSIVE", Effect::Catalog),
        Step::SetLogged { table, .. } => blocking(
            table,
            ACCESS_EXCLUSIVE,
            Effect::Rewrite,
            "SET LOGGED / UNLOGGED rewrites the table (and writes it all to the WAL); declare \
             a new facility with the other setting and move the data",
        ),
        Step::CreateIndex { index } => blocking(
            &index.table,
            "SHARE",
            Effect::Scan,
            "a plain CREATE INDEX blocks writes for the whole build; pgstack-gen builds \
             indexes on existing tables CONCURRENTLY",
        ),
        Step::Backfill { table, .. } => on(table, "ROW EXCLUSIVE", Effect::Concurrent),
        Step::CreateIndexConcurrently { index } => {
            on(&index.table, "SHARE UPDATE EXCLUSIVE", Effect::Concurrent)
        }
        Step::DropIndex { name: _ } => LockNote {
            table: None,
            mode: ACCESS_EXCLUSIVE,
            effect: Effect::Catalog,
            alternative: None,
        },
        Step::DropIndexConcurrently { .. } => LockNote {
            table: None,
            mode: "SHARE UPDATE EXCLUSIVE",
            effect: Effect::Concurrent,
            alternative: None,
        },
        Step::CreateTrigger { trigger } => {
            on(&trigger.table, "SHARE ROW EXCLUSIVE", Effect::Catalog)
        }
    }
}

fn none() -> LockNote {
    LockNote {
        table: None,
        mode: "",
        effect: Effect::NoExistingTable,
        alternative: None,
    }
}
