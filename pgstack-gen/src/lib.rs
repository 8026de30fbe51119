//! pgstack-gen: `pgstack.toml` -> migrations, SeaORM entities and typed accessors.
//!
//! The pipeline is pure until the last step:
//!
//! 1. [`pgstack_spec::Spec`]: TOML read and validated, every error collected.
//! 2. [`facility::desired_schema`]: each facility's tables, indexes and helper functions.
//! 3. [`plan::diff`]: the recorded schema (from `pgstack-state.json`) vs the desired one, as
//!    ordered DDL steps with inverses, destructive ones flagged.
//! 4. [`generate::generate`]: steps rendered to SQL and Rust through the tera templates under
//!    `templates/`, giving a list of [`generate::OutputFile`]s.
//! 5. [`project::Project`]: the only code that touches the disk, writing or checking files.
//!
//! ```no_run
//! use pgstack_gen::project::Project;
//!
//! let project = Project::open("pgstack.toml".as_ref())?;
//! let generation = project.generation(pgstack_gen::generate::Allow::NOTHING)?;
//! let report = project.write(&generation)?;
//! for path in report.written {
//!     println!("wrote {path}");
//! }
//! # Ok::<(), pgstack_gen::GenError>(())
//! ```

pub mod checksum;
pub mod cli;
pub mod doctor;
pub mod drift;
mod error;
pub mod facility;
pub mod generate;
pub mod plan;
pub mod project;
pub mod schema;
pub mod state;
pub mod templates;

pub use error::GenError;
