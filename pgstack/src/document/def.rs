//! What a `[[document]]` is, and what its reads return.

use std::marker::PhantomData;

use chrono::{DateTime, Utc};

use crate::limits;

/// A declared field as the runtime needs it.
#[derive(Clone, Copy, Debug)]
pub struct FieldDef {
    /// The generated column's name (the spec's field name).
    pub name: &'static str,
    pub unique: bool,
    /// The index on the column, used to name the field in duplicate-value errors.
    pub index_name: Option<&'static str>,
}

/// What the generator knows about a `[[document]]` facility.
#[derive(Clone, Copy, Debug)]
pub struct DocumentDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub fields: &'static [FieldDef],
}

/// A declared field, typed by the Rust type of its column, for [`DocumentStore::find_by`].
pub struct Field<V> {
    name: &'static str,
    _value: PhantomData<fn() -> V>,
}

impl<V> Field<V> {
    pub const fn new(name: &'static str) -> Self {
        Field {
            name,
            _value: PhantomData,
        }
    }

    pub const fn name(&self) -> &'static str {
        self.name
    }
}

impl<V> Clone for Field<V> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<V> Copy for Field<V> {}

/// A stored document with its metadata.
#[derive(Clone, Debug, PartialEq)]
pub struct Doc<T> {
    pub id: i64,
    /// Starts at 1 and grows by one on every change; pass it to [`DocumentStore::replace`].
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub doc: T,
}

/// What an insert returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DocMeta {
    pub id: i64,
    pub version: i64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// One page of a listing or query, in id order.
#[derive(Clone, Debug, PartialEq)]
pub struct DocPage<T> {
    pub docs: Vec<Doc<T>>,
    /// Pass back as `after` for the next page; `None` once there is no more.
    pub next_cursor: Option<i64>,
}

/// The most documents one page may ask for.
pub const MAX_PAGE: u32 = limits::MAX_BATCH as u32;
