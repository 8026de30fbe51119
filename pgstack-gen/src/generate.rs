//! spec + recorded state -> the files the project should contain. Pure: the CLI reads the
//! inputs and writes the outputs; everything here is a function of its arguments.

use pgstack_spec::Spec;
use serde::Serialize;

use crate::error::GenError;
use crate::facility;
use crate::plan::{Plan, diff};
use crate::schema::Schema;
use crate::state::{RecordedMigration, STATE_FILE, State};
use crate::templates;

/// The first line of a migration that runs outside a transaction, one statement at a time
/// (what both runners look for; `pgstack::migrate` knows it too).
pub const NO_TRANSACTION: &str = "-- pgstack:no-transaction";

/// The `lock_timeout` a generated sea-orm migration sets for its transaction; `pgstack-gen
/// migrate` sets its own (`--lock-timeout`, the same default).
pub const DEFAULT_LOCK_TIMEOUT: &str = "5s";

/// How the CLI must treat a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// Migration SQL: written once, never rewritten; guarded by checksums in the state.
    Migration,
    /// Wholly owned by pgstack-gen (headed `@generated`): rewritten whenever it differs.
    Generated,
    /// Created once when absent, then the user's: the migration crate's Cargo.toml, lib.rs, main.rs.
    Scaffold,
}

/// One file, its path relative to the spec file's folder, with `/` separators.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OutputFile {
    pub path: String,
    pub contents: String,
    pub kind: FileKind,
}

/// What `generate` computed.
#[derive(Debug)]
pub struct Generation {
    /// The changes since the recorded state (empty: nothing to migrate).
    pub plan: Plan,
    /// The migrations this run adds: none, one, or two when the change builds indexes on
    /// existing tables (a transactional migration, then one of concurrent builds).
    pub new_migrations: Vec<String>,
    /// The state after this run.
    pub state: State,
    /// Every file pgstack-gen owns or would create.
    pub files: Vec<OutputFile>,
}

/// Folders that generated files go to, relative to the spec file.
pub struct Layout<'a> {
    /// The spec file's name as headers mention it (`pgstack.toml`).
    pub spec_file: &'a str,
    pub migrations_dir: &'a str,
    pub accessors_dir: &'a str,
}

impl<'a> Layout<'a> {
    pub fn of(spec: &'a Spec, spec_file: &'a str) -> Layout<'a> {
        Layout {
            spec_file,
            migrations_dir: &spec.project.migrations_dir,
            accessors_dir: &spec.project.accessors_dir,
        }
    }

    pub fn state_path(&self) -> String {
        format!("{}/{STATE_FILE}", self.migrations_dir)
    }

    pub fn migration_sql_path(&self, name: &str, direction: &str) -> String {
        format!("{}/sql/{name}.{direction}.sql", self.migrations_dir)
    }

    /// Folders whose `@generated` files pgstack-gen removes when no longer produced.
    pub fn generated_dirs(&self) -> [String; 2] {
        [
            self.accessors_dir.to_string(),
            format!("{}/src/pgstack", self.migrations_dir),
        ]
    }
}

/// What `generate` may do beyond safe changes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Allow {
    /// Changes that lose data (`--allow-destructive`).
    pub destructive: bool,
    /// Steps that rewrite or scan an existing table under a lock blocking reads or writes
    /// (`--allow-blocking`).
    pub blocking: bool,
}

impl Allow {
    pub const NOTHING: Allow = Allow {
        destructive: false,
        blocking: false,
    };
    pub const ALL: Allow = Allow {
        destructive: true,
        blocking: true,
    };
}

/// Computes the next state and every file; refuses destructive and blocking changes unless
/// allowed.
pub fn generate(
    spec: &Spec,
    layout: &Layout<'_>,
    recorded: Option<&State>,
    allow: Allow,
) -> Result<Generation, GenError> {
    let desired = facility::desired_schema(spec)?;
    let empty = State::empty();
    let recorded = recorded.unwrap_or(&empty);
    let mut desired = desired;
    // Derived columns new to existing tables are kept by a trigger, not rewritten under lock.
    crate::plan::keep_new_derived_columns(&recorded.schema, &mut desired)?;
    let plan = diff(&recorded.schema, &desired)?;
    let destructive = plan.destructive();
    if !destructive.is_empty() && !allow.destructive {
        return Err(GenError::Destructive(destructive));
    }
    let blocking = plan.blocking();
    if !blocking.is_empty() && !allow.blocking {
        return Err(GenError::Blocking(blocking));
    }

    let mut state = recorded.clone();
    let mut files = Vec::new();
    let mut new_migrations = Vec::new();
    if !plan.is_empty() {
        let hint = plan.name_hint();
        let (transactional, concurrent) = plan.clone().split_concurrent();
        for (part, transaction) in [(&transactional, true), (&concurrent, false)] {
            if part.is_empty() {
                continue;
            }
            let suffix = if !transaction && !transactional.is_empty() {
                "_indexes"
            } else {
                ""
            };
            let name = format!("pgstack_{:04}_{hint}{suffix}", state.migrations.len() + 1);
            let up = migration_sql(part, &name, layout.spec_file, Direction::Up)?;
            let down = migration_sql(part, &name, layout.spec_file, Direction::Down)?;
            let summary = part.changes.iter().map(|c| c.summary.clone()).collect();
            let mut recorded = RecordedMigration::new(&name, summary, &up, &down);
            recorded.transaction = transaction;
            state.migrations.push(recorded);
            files.push(OutputFile {
                path: layout.migration_sql_path(&name, "up"),
                contents: up,
                kind: FileKind::Migration,
            });
            files.push(OutputFile {
                path: layout.migration_sql_path(&name, "down"),
                contents: down,
                kind: FileKind::Migration,
            });
            new_migrations.push(name);
        }
        state.schema = desired;
    } else if state.schema.schema.is_empty() {
        state.schema = Schema::new(&spec.project.schema);
    }

    files.extend(migration_crate_files(spec, layout, &state)?);
    let migrations: Vec<String> = state.migrations.iter().map(|m| m.name.clone()).collect();
    let modules = facility::accessor_modules(spec, &state.schema, layout.spec_file, &migrations)?;
    for module in modules {
        files.push(OutputFile {
            path: format!("{}/{}", layout.accessors_dir, module.name),
            contents: module.contents,
            kind: FileKind::Generated,
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Generation {
        plan,
        new_migrations,
        state,
        files,
    })
}

#[derive(Clone, Copy)]
enum Direction {
    Up,
    Down,
}

/// The SQL file of one migration.
fn migration_sql(
    plan: &Plan,
    name: &str,
    spec_file: &str,
    direction: Direction,
) -> Result<String, GenError> {
    #[derive(Serialize)]
    struct ChangeCtx {
        summary: String,
        statements: Vec<String>,
    }
    #[derive(Serialize)]
    struct Ctx<'a> {
        header: String,
        name: &'a str,
        direction: &'static str,
        summary: String,
        /// The runners' marker for a migration run outside a transaction.
        no_transaction: Option<&'static str>,
        changes: Vec<ChangeCtx>,
    }
    let (direction, groups) = match direction {
        Direction::Up => ("up", plan.up_sql()?),
        Direction::Down => ("down", plan.down_sql()?),
    };
    let count = plan.changes.len();
    let summary = format!(
        "{count} change{}{}",
        if count == 1 { "" } else { "s" },
        if plan.destructive().is_empty() {
            ""
        } else {
            ", some destructive (generated with --allow-destructive)"
        }
    );
    let text = templates::render(
        "sql/migration.sql",
        &Ctx {
            header: templates::migration_header(spec_file),
            name,
            direction,
            summary,
            no_transaction: plan
                .changes
                .iter()
                .any(|c| c.concurrent())
                .then_some(NO_TRANSACTION),
            changes: groups
                .into_iter()
                .map(|(summary, statements)| ChangeCtx {
                    summary,
                    statements,
                })
                .collect(),
        },
    )?;
    Ok(templates::finish(&text))
}

/// The migration crate: scaffold (created once), per-migration wrappers, `mod.rs`, state.
fn migration_crate_files(
    spec: &Spec,
    layout: &Layout<'_>,
    state: &State,
) -> Result<Vec<OutputFile>, GenError> {
    let dir = layout.migrations_dir;
    let header = templates::header(layout.spec_file);
    let mut files = Vec::new();

    #[derive(Serialize)]
    struct ScaffoldCtx<'a> {
        project: &'a str,
        package: String,
    }
    let project = spec.project.name.as_deref().unwrap_or("this project");
    let scaffold = ScaffoldCtx {
        project,
        package: package_name(spec.project.name.as_deref()),
    };
    for (template, path) in [
        ("scaffold/Cargo.toml", "Cargo.toml"),
        ("scaffold/lib.rs", "src/lib.rs"),
        ("scaffold/main.rs", "src/main.rs"),
    ] {
        files.push(OutputFile {
            path: format!("{dir}/{path}"),
            contents: templates::finish(&templates::render(template, &scaffold)?),
            kind: FileKind::Scaffold,
        });
    }

    #[derive(Serialize)]
    struct MigrationCtx<'a> {
        name: &'a str,
        summary: &'a [String],
        transaction: bool,
        lock_timeout: &'static str,
    }
    for migration in &state.migrations {
        let source = templates::render(
            "rust/migration.rs",
            &MigrationCtx {
                name: &migration.name,
                summary: &migration.summary,
                transaction: migration.transaction,
                lock_timeout: DEFAULT_LOCK_TIMEOUT,
            },
        )?;
        files.push(OutputFile {
            path: format!("{dir}/src/pgstack/{}.rs", migration.name),
            contents: templates::format_rust(&migration.name, &source, &header)?,
            kind: FileKind::Generated,
        });
    }

    #[derive(Serialize)]
    struct ModCtx<'a> {
        migrations: Vec<&'a str>,
        /// Whether a migration runs outside a transaction (it needs `statements()`).
        statements: bool,
    }
    let source = templates::render(
        "rust/migration_mod.rs",
        &ModCtx {
            migrations: state.migrations.iter().map(|m| m.name.as_str()).collect(),
            statements: state.migrations.iter().any(|m| !m.transaction),
        },
    )?;
    files.push(OutputFile {
        path: format!("{dir}/src/pgstack/mod.rs"),
        contents: templates::format_rust("mod.rs", &source, &header)?,
        kind: FileKind::Generated,
    });
    files.push(OutputFile {
        path: layout.state_path(),
        contents: state.to_json()?,
        kind: FileKind::Generated,
    });
    Ok(files)
}

/// `migration`, or `<project>-migration` with the project name made a valid package name.
fn package_name(project: Option<&str>) -> String {
    let Some(project) = project else {
        return "migration".to_string();
    };
    let mut name: String = project
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    name = name.trim_matches('-').to_string();
    if name.is_empty() || !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return "migration".to_string();
    }
    format!("{name}-migration")
}

#[cfg(test)]
mod tests {
    use super::package_name;

    #[test]
    fn package_names() {
        assert_eq!(package_name(None), "migration");
        assert_eq!(package_name(Some("SaaS App")), "saas-app-migration");
        assert_eq!(package_name(Some("42")), "migration");
    }
}
