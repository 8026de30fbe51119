//! pgstack runtime: the typed accessors that `pgstack-gen` wires to your spec.
//!
//! Each facility has a module here (`kv`, `document`, ...) holding the logic and the SQL;
//! generated code only declares a `static` handle describing the facility's tables and calls
//! into these modules. Every accessor takes any SeaORM connection, so it can run inside the
//! caller's transaction.

pub mod document;
pub mod error;
pub mod ident;
pub mod kv;
pub mod migrate;
mod sql;

pub use error::{Error, Result};

/// Re-exported so generated code and users agree on versions.
pub use chrono;
pub use sea_orm;
pub use serde_json;
