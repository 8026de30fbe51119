//! The generator's one error type; `main` maps each variant to an exit status.

use pgstack_spec::SpecErrors;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenError {
    /// The spec is invalid (exit 2). Each line is `path:line:column: message`.
    #[error("{0}")]
    Spec(SpecErrors),
    #[error("cannot read `{path}`: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write `{path}`: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The recorded state file is unreadable or does not match the migrations on disk.
    #[error("{0}")]
    State(String),
    /// The change would lose data and `--allow-destructive` was not given (exit 1).
    #[error(
        "refusing destructive changes; nothing was written:\n{}\nhelp: back up what you need, then run `pgstack-gen generate --allow-destructive`",
        .0.iter().map(|c| format!("  - {c}")).collect::<Vec<_>>().join("\n")
    )]
    Destructive(Vec<String>),
    /// The spec asks for a change pgstack cannot express as a migration.
    #[error("{0}")]
    Unsupported(String),
    /// A bug in a template or in the code feeding it.
    #[error("internal error in pgstack-gen's templates: {0}")]
    Template(String),
    #[error("{0}")]
    Migrate(#[from] pgstack::Error),
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("cannot write output: {0}")]
    Output(#[from] std::io::Error),
}
