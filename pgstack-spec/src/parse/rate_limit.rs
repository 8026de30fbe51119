//! Reading a `[[rate_limit]]`.

use std::ops::Range;

use crate::error::Ctxt;
use crate::model::*;
use crate::reader::Table;

use super::{Names, read_durability, read_name};

/// The keys a `[[rate_limit]]` table may hold: a key read below is listed here.
pub(super) const KEYS: &[&str] = &[
    "name",
    "algorithm",
    "limit",
    "period",
    "burst",
    "durability",
];

pub(super) fn read_rate_limit(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<RateLimit> {
    let name = read_name(cx, table, FacilityKind::RateLimit, names);
    let algorithm = table.choice(
        cx,
        "algorithm",
        &[
            ("gcra", Algorithm::Gcra),
            ("fixed_window", Algorithm::FixedWindow),
            ("sliding_window", Algorithm::SlidingWindow),
            ("token_bucket", Algorithm::TokenBucket),
        ],
        Algorithm::Gcra,
    );
    let max_limit = if algorithm == Algorithm::SlidingWindow {
        10_000
    } else {
        1_000_000_000
    };
    let help = if algorithm == Algorithm::SlidingWindow {
        "a sliding window keeps one timestamp per request, so it takes at most 10000; use gcra for larger limits"
    } else {
        ""
    };
    let limit = if table.get("limit").is_none() {
        cx.error(
            &table.span,
            format!(
                "{} is missing `limit`; say how many requests a `period` allows, e.g. `limit = 100`",
                table.context
            ),
        );
        None
    } else {
        table
            .integer(cx, "limit", (1, max_limit), help)
            .map(|(n, _)| n as u64)
    };
    let period = if table.get("period").is_none() {
        cx.error(
            &table.span,
            format!(
                "{} is missing `period`; say how long `limit` requests take, e.g. `period = \"1h\"`",
                table.context
            ),
        );
        None
    } else {
        table.duration(cx, "period")
    };
    let burst = table
        .integer(cx, "burst", (1, 1_000_000_000), "")
        .map(|(n, _)| n as u64);
    if burst.is_some()
        && !matches!(algorithm, Algorithm::Gcra | Algorithm::TokenBucket)
        && let Some(span) = table.key_span("burst")
    {
        cx.error(
            &span,
            format!(
                "`burst` in {} applies to `gcra` and `token_bucket` only, not `{}`",
                table.context,
                algorithm.name()
            ),
        );
    }
    let durability = read_durability(cx, table);
    Some(RateLimit {
        name: name?,
        algorithm,
        limit: limit?,
        period: period?,
        burst,
        durability,
        span,
    })
}
