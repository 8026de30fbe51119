//! What a `[[kv]]` is, and what its reads return.

use chrono::{DateTime, Utc};

use crate::limits;
pub use crate::value::ValueKind;

/// What the generator knows about a `[[kv]]` facility.
#[derive(Clone, Copy, Debug)]
pub struct KvDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub value: ValueKind,
    /// The spec's `expiry`: whether the TTL methods are allowed.
    pub expiry: bool,
}

/// One stored key with its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry<V> {
    pub key: String,
    pub value: V,
    /// Starts at 1, grows by one on every write; the token for compare-and-set.
    pub version: i64,
    pub updated_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// One page of a prefix scan.
#[derive(Clone, Debug, PartialEq)]
pub struct Page<V> {
    pub entries: Vec<Entry<V>>,
    /// Pass back as `cursor` to read the next page; `None` once the scan is done.
    pub next_cursor: Option<String>,
}

/// The most rows one page of a scan may ask for ([`limits::MAX_BATCH`]).
pub const MAX_PAGE: u32 = limits::MAX_BATCH as u32;
