//! The generator's one error type; `main` maps each variant to an exit status.
//!
//! As in the runtime, each message includes its cause, and `source()` returns nothing, so a
//! report prints every cause once. Nothing here depends on the runtime crate: `migrate`'s
//! errors arrive boxed from `cli.rs`, the one module that calls into it.

use pgstack_spec::SpecErrors;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// The spec is invalid (exit 2). Each line is `path:line:column: message`.
    #[error("{0}")]
    Spec(SpecErrors),
    #[error("cannot read `{path}`: {cause}")]
    Read { path: String, cause: std::io::Error },
    #[error("cannot write `{path}`: {cause}")]
    Write { path: String, cause: std::io::Error },
    /// The recorded state file is unreadable or does not match the migrations on disk.
    #[error("{0}")]
    State(String),
    /// The change would lose data and `--allow-destructive` was not given (exit 1).
    #[error(
        "refusing destructive changes; nothing was written:\n{}\nhelp: back up what you need, then run `pgstack-gen generate --allow-destructive`",
        .0.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n")
    )]
    Destructive(Vec<String>),
    /// A step would rewrite or scan an existing table under a lock that blocks reads or
    /// writes, and `--allow-blocking` was not given (exit 1).
    #[error(
        "refusing changes that block an existing table while they run; nothing was written:\n{}\nhelp: take the alternative named, or, when the tables are small or writes can wait, run `pgstack-gen generate --allow-blocking`",
        .0.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n")
    )]
    Blocking(Vec<String>),
    /// The spec asks for a change pgstack cannot express as a migration.
    #[error("{0}")]
    Unsupported(String),
    /// A bug in a template or in the code feeding it.
    #[error("internal error in pgstack-gen's templates: {0}")]
    Template(String),
    /// Applying migrations failed (the runtime's error, as `cli.rs` got it).
    #[error("{0}")]
    Migrate(Box<dyn std::error::Error + Send + Sync>),
    /// `migrate` was given no database.
    #[error("no database given: pass --database-url or set DATABASE_URL")]
    NoDatabaseUrl,
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    /// The async runtime `migrate` needs could not start.
    #[error("cannot start the async runtime: {0}")]
    Runtime(std::io::Error),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}
