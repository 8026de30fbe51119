//! The `pgstack-gen` command line: generate, plan, check, migrate, doctor.
//!
//! [`run`] takes the arguments and two writers and returns the exit status, so tests drive the
//! real commands in-process.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::GenError;
use crate::generate::Allow;
use crate::project::{Fix, MigrationFile, Project};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "pgstack-gen",
    version,
    about = "Generate PostgreSQL migrations and typed Rust accessors from pgstack.toml"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a new migration holding only the change since the last one, and the accessors.
    Generate {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
        /// Allow changes that lose data (dropping a facility or field, changing a type).
        #[arg(long)]
        allow_destructive: bool,
        /// Allow steps that rewrite or scan an existing table under a lock that blocks its
        /// reads or writes (`plan` marks each step's lock).
        #[arg(long)]
        allow_blocking: bool,
    },
    /// Print the SQL the next migration would hold; write nothing.
    Plan {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
    },
    /// Check that spec, recorded state and generated files agree (for CI); with
    /// --database-url, also that the live database matches what the migrations make.
    Check {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
        /// Compare this database's catalog with the recorded schema (live drift).
        #[arg(long)]
        database_url: Option<String>,
    },
    /// Apply pending migrations under an advisory lock (safe from several processes at once).
    Migrate {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
        /// Defaults to $DATABASE_URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// How long a DDL statement waits for its table's lock before the attempt fails
        /// (queries on that table wait behind it meanwhile).
        #[arg(long, default_value = "5s", value_parser = duration)]
        lock_timeout: std::time::Duration,
        /// How many times a migration that timed out waiting for a lock is tried again.
        #[arg(long, default_value_t = 5)]
        lock_retries: u32,
    },
    /// Report a live database's health for the spec's facilities (exit 1 on a critical finding).
    Doctor {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
        /// Defaults to $DATABASE_URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// A session idle in a transaction this long is a finding (ten times: critical).
        #[arg(long, default_value = "60s", value_parser = duration)]
        idle_in_transaction: std::time::Duration,
        /// A transaction open this long is a finding (six times: critical).
        #[arg(long, default_value = "10m", value_parser = duration)]
        transaction_age: std::time::Duration,
        /// A queue whose oldest ready job waited this long is a finding.
        #[arg(long, default_value = "5m", value_parser = duration)]
        queue_age: std::time::Duration,
        /// Dead rows a table needs before its bloat is a finding.
        #[arg(long, default_value_t = 10_000)]
        bloat_min_rows: i64,
    },
}

fn duration(text: &str) -> Result<std::time::Duration, String> {
    pgstack_spec::SpecDuration::parse(text).map(|d| std::time::Duration::from_millis(d.as_millis()))
}

/// Exit status: success.
pub const OK: u8 = 0;
/// Exit status: a command failed, `check` found a mismatch, or a destructive change was refused.
pub const FAILURE: u8 = 1;
/// Exit status: the spec is invalid.
pub const BAD_SPEC: u8 = 2;

/// Runs one command. `args` includes the program name, as `std::env::args_os` does.
pub fn run<I, T>(args: I, out: &mut dyn Write, err: &mut dyn Write) -> u8
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { FAILURE } else { OK };
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                write!(err, "{text}")
            } else {
                write!(out, "{text}")
            };
            return code;
        }
    };
    let result = match cli.command {
        Command::Generate {
            spec,
            allow_destructive,
            allow_blocking,
        } => {
            let allow = Allow {
                destructive: allow_destructive,
                blocking: allow_blocking,
            };
            generate(&spec, allow, out, err)
        }
        Command::Plan { spec } => plan(&spec, out),
        Command::Check { spec, database_url } => {
            let files = check(&spec, out, err);
            match (files, database_url) {
                (Ok(code), Some(url)) => drift(&spec, &url, out, err).map(|d| d.max(code)),
                (files, _) => files,
            }
        }
        Command::Migrate {
            spec,
            database_url,
            lock_timeout,
            lock_retries,
        } => {
            let options = pgstack::migrate::MigrateOptions {
                lock_timeout,
                lock_retries,
                ..Default::default()
            };
            migrate(&spec, database_url, &options, out)
        }
        Command::Doctor {
            spec,
            database_url,
            json,
            idle_in_transaction,
            transaction_age,
            queue_age,
            bloat_min_rows,
        } => {
            let limits = crate::doctor::Thresholds {
                idle_in_transaction,
                transaction_age,
                queue_age,
                bloat_min_rows,
                ..Default::default()
            };
            doctor(&spec, database_url, json, &limits, out)
        }
    };
    match result {
        Ok(code) => code,
        Err(GenError::Spec(errors)) => {
            for error in &errors.errors {
                let _ = writeln!(err, "{error}");
            }
            let n = errors.errors.len();
            let _ = writeln!(
                err,
                "pgstack-gen: {n} error{} in the spec; nothing was written",
                if n == 1 { "" } else { "s" }
            );
            BAD_SPEC
        }
        Err(error) => {
            let _ = writeln!(err, "pgstack-gen: {error}");
            FAILURE
        }
    }
}

fn generate(
    spec: &Path,
    allow: Allow,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> Result<u8, GenError> {
    let project = Project::open(spec)?;
    let generation = project.generation(allow)?;
    let report = project.write(&generation)?;
    if !generation.new_migrations.is_empty() {
        writeln!(
            out,
            "new migration {}:",
            generation.new_migrations.join(" and ")
        )?;
        for change in &generation.plan.changes {
            writeln!(out, "  - {}", change.summary)?;
        }
    }
    for path in &report.written {
        writeln!(out, "wrote {}", show(&project, path))?;
    }
    for path in &report.removed {
        writeln!(out, "removed {}", show(&project, path))?;
    }
    if report.written.is_empty() && report.removed.is_empty() {
        writeln!(
            out,
            "pgstack-gen: everything is up to date; nothing written"
        )?;
    }
    for note in &report.notes {
        writeln!(err, "pgstack-gen: note: {note}")?;
    }
    Ok(OK)
}

fn plan(spec: &Path, out: &mut dyn Write) -> Result<u8, GenError> {
    let project = Project::open(spec)?;
    let generation = project.generation(Allow::ALL)?;
    if generation.plan.is_empty() {
        writeln!(out, "-- no changes: the recorded schema matches the spec")?;
        return Ok(OK);
    }
    let blocking = generation.plan.blocking();
    if !blocking.is_empty() {
        writeln!(
            out,
            "-- blocking steps on existing tables; `generate` needs --allow-blocking:"
        )?;
        for b in &blocking {
            for line in b.lines() {
                writeln!(out, "--   {line}")?;
            }
        }
        writeln!(out)?;
    }
    let (_, concurrent) = generation.plan.clone().split_concurrent();
    if !concurrent.is_empty() {
        writeln!(
            out,
            "-- index builds on existing tables run CONCURRENTLY, in a migration of their own \
             outside a transaction:"
        )?;
        for change in &concurrent.changes {
            writeln!(out, "--   {}", change.summary)?;
        }
        writeln!(out)?;
    }
    let destructive = generation.plan.destructive();
    if !destructive.is_empty() {
        writeln!(
            out,
            "-- destructive changes; `generate` needs --allow-destructive:"
        )?;
        for d in &destructive {
            writeln!(out, "--   {d}")?;
        }
        writeln!(out)?;
    }
    for (summary, statements) in generation.plan.up_sql()? {
        writeln!(out, "-- {summary}")?;
        for statement in statements {
            writeln!(out, "{statement}")?;
        }
        writeln!(out)?;
    }
    Ok(OK)
}

fn check(spec: &Path, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, GenError> {
    let project = Project::open(spec)?;
    let problems = project.check()?;
    if problems.is_empty() {
        writeln!(
            out,
            "pgstack-gen: {} agrees with its migrations and generated files",
            spec.display()
        )?;
        return Ok(OK);
    }
    for problem in &problems {
        writeln!(err, "pgstack-gen: {}", problem.message)?;
        if let Some(diff) = &problem.diff {
            writeln!(err, "{diff}")?;
        }
    }
    let fixes = |fix: Fix| problems.iter().any(|p| p.fix == fix);
    if fixes(Fix::RestoreMigration) {
        let files: Vec<String> = problems
            .iter()
            .filter(|p| p.fix == Fix::RestoreMigration)
            .filter_map(|p| p.file.as_deref())
            .map(|rel| show(&project, rel))
            .collect();
        writeln!(
            err,
            "help: restore the migration files from version control (`git checkout -- {}`); \
             `generate` never rewrites a migration. To change the schema, edit {} and run \
             `pgstack-gen generate`, which adds a new migration",
            files.join(" "),
            spec.display()
        )?;
    }
    if fixes(Fix::Generate) {
        writeln!(
            err,
            "help: run `pgstack-gen generate --spec {}` and commit the result",
            spec.display()
        )?;
    }
    Ok(FAILURE)
}

/// `check --database-url`: the live catalog against the recorded schema.
fn drift(spec: &Path, url: &str, out: &mut dyn Write, err: &mut dyn Write) -> Result<u8, GenError> {
    let project = Project::open(spec)?;
    let Some(state) = &project.state else {
        writeln!(
            out,
            "pgstack-gen: no migrations recorded yet; nothing to compare the database with"
        )?;
        return Ok(OK);
    };
    let migrations: Vec<String> = state.migrations.iter().map(|m| m.name.clone()).collect();
    let found = on_database(url, 1, |db| async move {
        crate::drift::detect(&db, &state.schema, &migrations).await
    })?;
    if found.is_empty() {
        writeln!(
            out,
            "pgstack-gen: the database matches what {}'s migrations make",
            spec.display()
        )?;
        return Ok(OK);
    }
    writeln!(
        err,
        "pgstack-gen: the database has drifted from what {}'s migrations make ({} difference{}):",
        spec.display(),
        found.len(),
        if found.len() == 1 { "" } else { "s" }
    )?;
    for d in &found {
        writeln!(err, "  - {d}")?;
    }
    writeln!(
        err,
        "help: a change made by hand belongs in the spec (then `pgstack-gen generate`); to \
         restore what the migrations make, undo it, or run `pgstack-gen migrate` for what is \
         not applied"
    )?;
    Ok(FAILURE)
}

fn migrate(
    spec: &Path,
    database_url: Option<String>,
    options: &pgstack::migrate::MigrateOptions,
    out: &mut dyn Write,
) -> Result<u8, GenError> {
    let project = Project::open(spec)?;
    let migrations = project.migrations()?;
    let Some(url) = database_url else {
        return Err(GenError::NoDatabaseUrl);
    };
    let migrations = sql_migrations(migrations);
    // Two connections: one holds the migration lock while the other builds indexes
    // concurrently, outside a transaction.
    let report = on_database(&url, 2, |db| async move {
        pgstack::migrate::apply_with(&db, &migrations, options)
            .await
            .map_err(|e| GenError::Migrate(Box::new(e)))
    })?;
    for name in &report.applied {
        writeln!(out, "applied {name}")?;
    }
    if report.lock_retries > 0 {
        writeln!(
            out,
            "pgstack-gen: note: waited for a lock and tried again {} time{} (--lock-timeout {}ms)",
            report.lock_retries,
            if report.lock_retries == 1 { "" } else { "s" },
            options.lock_timeout.as_millis()
        )?;
    }
    if report.applied.is_empty() {
        writeln!(
            out,
            "pgstack-gen: nothing to apply; {} migration{} already applied",
            report.already_applied,
            if report.already_applied == 1 { "" } else { "s" }
        )?;
    }
    Ok(OK)
}

/// Runs `work` on a pool of `connections` to `url`, on a runtime of its own, and closes the
/// pool afterwards.
fn on_database<T, F, Fut>(url: &str, connections: u32, work: F) -> Result<T, GenError>
where
    F: FnOnce(sea_orm::DatabaseConnection) -> Fut,
    Fut: std::future::Future<Output = Result<T, GenError>>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(GenError::Runtime)?;
    runtime.block_on(async {
        let db = sea_orm::Database::connect(connect_options(url, connections))
            .await
            .map_err(|e| GenError::Connect(e.to_string()))?;
        let result = work(db.clone()).await;
        db.close().await.ok();
        result
    })
}

fn connect_options(url: &str, connections: u32) -> sea_orm::ConnectOptions {
    let mut options = sea_orm::ConnectOptions::new(url);
    options
        .max_connections(connections)
        .connect_timeout(std::time::Duration::from_secs(10))
        .acquire_timeout(std::time::Duration::from_secs(10))
        .sqlx_logging(false);
    options
}

fn doctor(
    spec: &Path,
    database_url: Option<String>,
    json: bool,
    limits: &crate::doctor::Thresholds,
    out: &mut dyn Write,
) -> Result<u8, GenError> {
    let project = Project::open(spec)?;
    let schema = crate::facility::desired_schema(&project.spec)?;
    let Some(url) = database_url else {
        return Err(GenError::NoDatabaseUrl);
    };
    let spec = &project.spec;
    let report = on_database(&url, 1, |db| async move {
        crate::doctor::examine(&db, &schema, spec, limits).await
    })?;
    if json {
        let text = serde_json::to_string_pretty(&report)
            .map_err(|e| GenError::Template(format!("cannot print the report: {e}")))?;
        writeln!(out, "{text}")?;
    } else {
        write!(out, "{}", report.render())?;
    }
    Ok(match report.worst() {
        Some(crate::doctor::Severity::Critical) => FAILURE,
        _ => OK,
    })
}

/// Migration files as the runtime applies them (`pgstack::migrate::apply`). This module is
/// the generator's one link to the runtime.
pub fn sql_migrations(files: Vec<MigrationFile>) -> Vec<pgstack::migrate::SqlMigration> {
    files
        .into_iter()
        .map(|m| pgstack::migrate::SqlMigration {
            name: m.name,
            file: m.file,
            up_sql: m.up_sql,
        })
        .collect()
}

/// A path relative to the working directory, as the user would type it.
fn show(project: &Project, rel: &str) -> String {
    let path = project.root.join(rel);
    path.strip_prefix("./")
        .unwrap_or(&path)
        .display()
        .to_string()
}
