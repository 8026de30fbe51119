//! Reading a `[[kv]]`: a key-value store.

use std::ops::Range;

use crate::error::Ctxt;
use crate::model::*;
use crate::reader::Table;

use super::{Names, read_name};

/// The keys a `[[kv]]` table may hold: a key read below is listed here.
pub(super) const KEYS: &[&str] = &["name", "value", "expiry"];

pub(super) fn read_kv(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Kv> {
    let name = read_name(cx, table, FacilityKind::Kv, names);
    let value = table.choice(
        cx,
        "value",
        &[("jsonb", ValueType::Jsonb), ("bytea", ValueType::Bytea)],
        ValueType::Jsonb,
    );
    let expiry = table.bool(cx, "expiry", false);
    Some(Kv {
        name: name?,
        value,
        expiry,
        span,
    })
}
