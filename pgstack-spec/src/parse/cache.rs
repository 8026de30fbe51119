//! Reading a `[[cache]]`.

use std::ops::Range;

use crate::error::Ctxt;
use crate::model::*;
use crate::reader::Table;

use super::{Names, read_durability, read_name};

/// The keys a `[[cache]]` table may hold: a key read below is listed here.
pub(super) const KEYS: &[&str] = &[
    "name",
    "default_ttl",
    "durability",
    "partitions",
    "max_entries",
    "value",
];

pub(super) fn read_cache(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Cache> {
    let name = read_name(cx, table, FacilityKind::Cache, names);
    let default_ttl = table.duration(cx, "default_ttl");
    let durability = read_durability(cx, table);
    let partitions = table
        .integer(cx, "partitions", (1, 64), "1 is a plain table")
        .map_or(1, |(n, _)| n as u32);
    let max_entries = table
        .integer(cx, "max_entries", (1, 1_000_000_000), "")
        .map(|(n, _)| n as u64);
    let value = table.choice(
        cx,
        "value",
        &[("jsonb", ValueType::Jsonb), ("bytea", ValueType::Bytea)],
        ValueType::Jsonb,
    );
    Some(Cache {
        name: name?,
        default_ttl,
        durability,
        partitions,
        max_entries,
        value,
        span,
    })
}
