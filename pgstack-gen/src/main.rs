//! The `pgstack-gen` command: generate, plan, check, migrate.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use pgstack_gen::GenError;
use pgstack_gen::project::Project;

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
    },
    /// Print the SQL the next migration would hold; write nothing.
    Plan {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
    },
    /// Check that spec, recorded state and generated files agree (for CI).
    Check {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
    },
    /// Apply pending migrations under an advisory lock (safe from several processes at once).
    Migrate {
        #[arg(long, default_value = "pgstack.toml")]
        spec: PathBuf,
        /// Defaults to $DATABASE_URL.
        #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
        database_url: Option<String>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Generate {
            spec,
            allow_destructive,
        } => generate(&spec, allow_destructive),
        Command::Plan { spec } => plan(&spec),
        Command::Check { spec } => check(&spec),
        Command::Migrate { spec, database_url } => migrate(&spec, database_url),
    };
    match result {
        Ok(code) => code,
        Err(GenError::Spec(errors)) => {
            for error in &errors.errors {
                eprintln!("{error}");
            }
            let n = errors.errors.len();
            eprintln!(
                "pgstack-gen: {n} error{} in the spec; nothing was written",
                if n == 1 { "" } else { "s" }
            );
            ExitCode::from(2)
        }
        Err(error) => {
            eprintln!("pgstack-gen: {error}");
            ExitCode::from(1)
        }
    }
}

fn generate(spec: &std::path::Path, allow_destructive: bool) -> Result<ExitCode, GenError> {
    let project = Project::open(spec)?;
    let generation = project.generation(allow_destructive)?;
    let report = project.write(&generation)?;
    if let Some(name) = &generation.new_migration {
        println!("new migration {name}:");
        for change in &generation.plan.changes {
            println!("  - {}", change.summary);
        }
    }
    for path in &report.written {
        println!("wrote {}", show(&project, path));
    }
    for path in &report.removed {
        println!("removed {}", show(&project, path));
    }
    if report.written.is_empty() && report.removed.is_empty() {
        println!("pgstack-gen: everything is up to date; nothing written");
    }
    for note in &report.notes {
        eprintln!("pgstack-gen: note: {note}");
    }
    Ok(ExitCode::SUCCESS)
}

fn plan(spec: &std::path::Path) -> Result<ExitCode, GenError> {
    let project = Project::open(spec)?;
    let generation = project.generation(true)?;
    if generation.plan.is_empty() {
        println!("-- no changes: the recorded schema matches the spec");
        return Ok(ExitCode::SUCCESS);
    }
    let destructive = generation.plan.destructive();
    if !destructive.is_empty() {
        println!("-- destructive changes; `generate` needs --allow-destructive:");
        for d in &destructive {
            println!("--   {d}");
        }
        println!();
    }
    for (summary, statements) in generation.plan.up_sql()? {
        println!("-- {summary}");
        for statement in statements {
            println!("{statement}");
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

fn check(spec: &std::path::Path) -> Result<ExitCode, GenError> {
    let project = Project::open(spec)?;
    let problems = project.check()?;
    if problems.is_empty() {
        println!(
            "pgstack-gen: {} agrees with its migrations and generated files",
            spec.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for problem in &problems {
        eprintln!("pgstack-gen: {}", problem.message);
        if let Some(diff) = &problem.diff {
            eprintln!("{diff}");
        }
    }
    eprintln!(
        "help: run `pgstack-gen generate --spec {}` and commit the result",
        spec.display()
    );
    Ok(ExitCode::from(1))
}

fn migrate(spec: &std::path::Path, database_url: Option<String>) -> Result<ExitCode, GenError> {
    let project = Project::open(spec)?;
    let migrations = project.migrations()?;
    let Some(url) = database_url else {
        return Err(GenError::Connect(
            "no database given: pass --database-url or set DATABASE_URL".to_string(),
        ));
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| GenError::Connect(format!("cannot start the async runtime: {e}")))?;
    let report = runtime.block_on(async {
        let db = sea_orm::Database::connect(url.as_str())
            .await
            .map_err(|e| GenError::Connect(e.to_string()))?;
        let report = pgstack::migrate::apply(&db, &migrations).await?;
        db.close().await.ok();
        Ok::<_, GenError>(report)
    })?;
    for name in &report.applied {
        println!("applied {name}");
    }
    if report.applied.is_empty() {
        println!(
            "pgstack-gen: nothing to apply; {} migration{} already applied",
            report.already_applied,
            if report.already_applied == 1 { "" } else { "s" }
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A path relative to the working directory, as the user would type it.
fn show(project: &Project, rel: &str) -> String {
    let path = project.root.join(rel);
    path.strip_prefix("./")
        .unwrap_or(&path)
        .display()
        .to_string()
}
