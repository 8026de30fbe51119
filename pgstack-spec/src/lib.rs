//! The pgstack spec model, shared by `pgstack-gen` and `pgstack-derive`.
//!
//! ```
//! let spec = pgstack_spec::Spec::parse(
//!     "pgstack.toml",
//!     r#"
//!     [[kv]]
//!     name = "settings"
//!     "#,
//! )?;
//! assert_eq!(spec.kv[0].name, "settings");
//! assert_eq!(spec.project.schema, "public");
//! # Ok::<(), pgstack_spec::SpecErrors>(())
//! ```
//!
//! Reading is a pure function of the text: TOML is parsed into toml's spanned tree (the
//! boundary), then every table is read with the keys it allows, defaults applied and names
//! checked. Errors are collected, never returned early, and each carries `path:line:column`.

pub mod defs;
mod duration;
mod error;
mod model;
pub mod names;
mod parse;
mod reader;

pub use duration::SpecDuration;
pub use error::{SpecError, SpecErrors, line_column};
pub use model::*;
pub use parse::{DOCUMENT_COLUMNS, VECTOR_COLUMNS, queue_tables};
pub use reader::{did_you_mean, suggest};

use std::path::Path;

impl Spec {
    /// Parses and validates spec text. `path` is only used in messages.
    pub fn parse(path: &str, source: &str) -> Result<Spec, SpecErrors> {
        parse::parse(path, source)
    }

    /// Reads and validates the spec file at `path`.
    pub fn load(path: &Path) -> Result<Spec, LoadError> {
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Spec::parse(&path.display().to_string(), &text).map_err(LoadError::Invalid)
    }
}

/// A spec that could not be read or is not valid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    #[error("cannot read spec `{path}`: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(SpecErrors),
}
