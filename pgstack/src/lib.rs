//! pgstack runtime: the typed accessors that `pgstack-gen` wires to your spec.
//!
//! Each facility has a module here (`kv`, `document`, ...) holding the logic and the SQL;
//! generated code only declares a `static` handle describing the facility's tables and calls
//! into these modules. Every accessor takes any SeaORM connection, so it can run inside the
//! caller's transaction.

pub mod cache;
pub mod cluster;
mod coalesce;
pub mod document;
pub mod error;
mod handle;
pub mod ident;
mod json;
pub mod kv;
pub mod limits;
pub mod metrics;
pub mod migrate;
pub mod queue;
pub mod rate_limit;
mod sql;
pub mod upkeep;
mod value;
pub mod vector;

pub use cluster::{Cluster, Route};
pub use error::{Error, Result};
pub use value::ValueKind;

/// The derives: bind a type to a facility in `pgstack.toml`, checked at compile time.
pub use pgstack_derive::{Cached, Embedded, Queue};

/// Paths the derives expand to; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::cache::{Cache, CacheDef, Cached, Expiry};
    pub use crate::kv::ValueKind;
    pub use crate::queue::{ArchiveDef, Backoff, BackoffKind, Job, Queue, QueueDef};
    pub use crate::vector::{Collection, Embedded, EmbeddingField, Record};
}

/// Re-exported so generated code and users agree on versions.
pub use chrono;
pub use sea_orm;
pub use serde_json;
