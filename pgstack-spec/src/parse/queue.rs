//! Reading a `[[queue]]`.

use std::ops::Range;

use crate::duration::SpecDuration;
use crate::error::Ctxt;
use crate::model::*;
use crate::reader::Table;

use super::{Names, read_name};

/// The keys a `[[queue]]` table may hold: a key read below is listed here.
pub(super) const KEYS: &[&str] = &[
    "name",
    "visibility_timeout",
    "max_attempts",
    "backoff",
    "dead_letter",
    "priorities",
    "unique",
    "groups",
    "notify",
    "archive",
    "payload",
    "schedules",
];

pub(super) fn read_queue(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Queue> {
    let name = read_name(cx, table, FacilityKind::Queue, names);
    let visibility_timeout = table
        .duration(cx, "visibility_timeout")
        .unwrap_or(SpecDuration::from_millis(30_000));
    if visibility_timeout.as_millis() < 1_000
        && let Some(span) = table.key_span("visibility_timeout")
    {
        cx.error(
            &span,
            format!(
                "`visibility_timeout` in {} must be at least 1s, found `{visibility_timeout}`",
                table.context
            ),
        );
    }
    let max_attempts = table
        .integer(cx, "max_attempts", (1, 1000), "")
        .map_or(5, |(n, _)| n as u32);
    let backoff = read_backoff(cx, table);
    let archive = read_archive(cx, table);
    let payload = table.choice(
        cx,
        "payload",
        &[("jsonb", ValueType::Jsonb), ("bytea", ValueType::Bytea)],
        ValueType::Jsonb,
    );
    let priorities = table.bool(cx, "priorities", false);
    let schedules = super::schedule::read_schedules(cx, table, payload, priorities);
    Some(Queue {
        name: name?,
        visibility_timeout,
        max_attempts,
        backoff,
        dead_letter: table.bool(cx, "dead_letter", true),
        priorities,
        unique: table.bool(cx, "unique", false),
        groups: table.bool(cx, "groups", false),
        notify: table.bool(cx, "notify", true),
        archive,
        payload,
        schedules,
        span,
    })
}

pub(super) fn read_backoff(cx: &mut Ctxt<'_>, queue: &Table<'_, '_>) -> Backoff {
    let mut backoff = Backoff {
        kind: BackoffKind::Exponential,
        initial: SpecDuration::from_millis(1_000),
        max: SpecDuration::from_millis(600_000),
        jitter: true,
    };
    let Some(value) = queue.get("backoff") else {
        return backoff;
    };
    let context = format!("`backoff` of {}", queue.context);
    let Some(table) = Table::open(cx, value, context, &["kind", "initial", "max", "jitter"]) else {
        return backoff;
    };
    backoff.kind = table.choice(
        cx,
        "kind",
        &[
            ("exponential", BackoffKind::Exponential),
            ("linear", BackoffKind::Linear),
            ("fixed", BackoffKind::Fixed),
        ],
        BackoffKind::Exponential,
    );
    if let Some(d) = table.duration(cx, "initial") {
        backoff.initial = d;
    }
    if let Some(d) = table.duration(cx, "max") {
        backoff.max = d;
    }
    backoff.jitter = table.bool(cx, "jitter", true);
    if backoff.max < backoff.initial {
        let span = table.key_span("max").unwrap_or(table.span.clone());
        cx.error(
            &span,
            format!(
                "`max` ({}) in {} must not be shorter than `initial` ({})",
                backoff.max, table.context, backoff.initial
            ),
        );
    }
    backoff
}

/// Partition sizes maintenance can name and align: whole hours dividing a day, or whole days.
pub(super) fn valid_partition(d: SpecDuration) -> bool {
    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;
    let ms = d.as_millis();
    ((HOUR..DAY).contains(&ms) && ms.is_multiple_of(HOUR) && DAY.is_multiple_of(ms))
        || (ms >= DAY && ms.is_multiple_of(DAY))
}

pub(super) fn read_archive(cx: &mut Ctxt<'_>, queue: &Table<'_, '_>) -> Option<Archive> {
    let value = queue.get("archive")?;
    let context = format!("`archive` of {}", queue.context);
    let table = Table::open(cx, value, context, &["retention", "partition"])?;
    let partition = table
        .duration(cx, "partition")
        .unwrap_or(SpecDuration::from_millis(86_400_000));
    let retention = match table.duration(cx, "retention") {
        Some(r) => r,
        None => {
            if table.get("retention").is_none() {
                cx.error(
                    &table.span,
                    format!(
                        "{} is missing `retention`; say how long finished jobs are kept, e.g. `\"7d\"`",
                        table.context
                    ),
                );
            }
            return None;
        }
    };
    if !valid_partition(partition) {
        let span = table.key_span("partition").unwrap_or(table.span.clone());
        cx.error(
            &span,
            format!(
                "`partition` in {} must be whole hours dividing a day (`1h`, `2h`, `3h`, `4h`, \
                 `6h`, `8h`, `12h`) or whole days (`1d`, `7d`), found `{partition}`",
                table.context
            ),
        );
    }
    if retention < partition {
        let span = table.key_span("retention").unwrap_or(table.span.clone());
        cx.error(
            &span,
            format!(
                "`retention` ({retention}) in {} must be at least one `partition` ({partition})",
                table.context
            ),
        );
    }
    Some(Archive {
        retention,
        partition,
    })
}

/// The tables a queue owns.
pub fn queue_tables(queue: &Queue) -> Vec<String> {
    let mut tables = vec![queue.name.clone()];
    if queue.dead_letter {
        tables.push(format!("{}_dead", queue.name));
    }
    if queue.archive.is_some() {
        tables.push(format!("{}_archive", queue.name));
        tables.push(format!("{}_archive_default", queue.name));
    }
    tables
}
