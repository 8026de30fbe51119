//! The recorded state: `pgstack-state.json` in the migrations folder, committed with them.
//!
//! It holds the schema the committed migrations produce (what the next `generate` diffs the
//! spec against) and, per migration, a checksum of its SQL, so an edited migration is caught.

use serde::{Deserialize, Serialize};

use crate::checksum::checksum;
use crate::error::GenError;
use crate::schema::Schema;

/// The file name, inside `migrations_dir`.
pub const STATE_FILE: &str = "pgstack-state.json";

/// Bumped only when the file's shape changes incompatibly.
pub const FORMAT: u32 = 1;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    /// Oldest first; the order migrations run in.
    pub migrations: Vec<RecordedMigration>,
    /// The schema after the last migration.
    pub schema: Schema,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordedMigration {
    pub name: String,
    /// One line per change, shown in the migration's Rust docs.
    pub summary: Vec<String>,
    /// Checksums of `sql/<name>.up.sql` and `.down.sql`.
    pub up: String,
    pub down: String,
    /// False for a migration of concurrent index builds, run outside a transaction.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub transaction: bool,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

impl RecordedMigration {
    pub fn new(name: &str, summary: Vec<String>, up_sql: &str, down_sql: &str) -> Self {
        RecordedMigration {
            name: name.to_string(),
            summary,
            up: checksum(up_sql),
            down: checksum(down_sql),
            transaction: true,
        }
    }
}

impl State {
    pub fn empty() -> State {
        State {
            format: FORMAT,
            migrations: Vec::new(),
            schema: Schema::default(),
        }
    }

    pub fn parse(path: &str, text: &str) -> Result<State, GenError> {
        let state: State = serde_json::from_str(text).map_err(|e| {
            GenError::State(format!(
                "`{path}` is not a valid pgstack state file: {e}\nhelp: restore it from version \
                 control; it must match the committed migrations"
            ))
        })?;
        if state.format != FORMAT {
            return Err(GenError::State(format!(
                "`{path}` has format {}, this pgstack-gen reads format {FORMAT}",
                state.format
            )));
        }
        Ok(state)
    }

    /// Pretty JSON, keys in a fixed order, one trailing newline.
    pub fn to_json(&self) -> Result<String, GenError> {
        let mut text = serde_json::to_string_pretty(self)
            .map_err(|e| GenError::Template(format!("cannot write the state file: {e}")))?;
        text.push('\n');
        Ok(text)
    }
}
