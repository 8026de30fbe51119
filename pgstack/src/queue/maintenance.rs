//! Archive partition upkeep, without pg_partman: partitions are created ahead of time and
//! dropped (not deleted row by row) once wholly past retention.
//!
//! The archive is `PARTITION BY RANGE (finished_at)` with a `DEFAULT` partition created by the
//! migration, so a completion never fails for want of a partition. [`maintain`] runs in one
//! transaction under an advisory lock per queue:
//!
//! 1. creates the partitions for the current period and the next [`AHEAD`] ones, plus any past
//!    period (within retention) whose rows sit in the default partition, moving those rows in;
//! 2. drops partitions whose upper bound is older than `now - retention`;
//! 3. deletes rows older than retention from the default partition.
//!
//! Partitions are named `<queue>_archive_p<YYYYMMDD>` (day-sized) or `..._p<YYYYMMDDHH>`, with
//! bounds aligned to the Unix epoch in UTC.

use chrono::{DateTime, TimeZone, Utc};
use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionSession, TransactionTrait};

use super::Queue;
use crate::error::{DbContext, Result};
use crate::ident::Ident;

/// Partitions created ahead of the current one.
pub const AHEAD: i64 = 3;

/// What one maintenance run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MaintenanceReport {
    /// Partitions created, by name.
    pub created: Vec<String>,
    /// Partitions dropped, by name.
    pub dropped: Vec<String>,
    /// Rows moved out of the default partition into a new dated one.
    pub moved_from_default: u64,
    /// Rows past retention deleted from the default partition.
    pub purged_from_default: u64,
}

const DAY_MS: i64 = 86_400_000;

fn partition_name(table: &str, start: DateTime<Utc>, partition_ms: i64) -> String {
    if partition_ms % DAY_MS == 0 {
        format!("{table}_archive_p{}", start.format("%Y%m%d"))
    } else {
        format!("{table}_archive_p{}", start.format("%Y%m%d%H"))
    }
}

fn literal(t: DateTime<Utc>) -> String {
    format!("'{}'", t.format("%Y-%m-%d %H:%M:%S+00"))
}

fn at(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

/// The upper bound from `FOR VALUES FROM ('...') TO ('...')`, printed in UTC and ISO style.
fn upper_bound(expr: &str) -> Option<DateTime<Utc>> {
    let to = expr.split(" TO (").nth(1)?;
    let text = to.trim_start_matches('\'').split('\'').next()?;
    DateTime::parse_from_str(&format!("{text}00"), "%Y-%m-%d %H:%M:%S%z")
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub(super) async fn maintain<C: ConnectionTrait + TransactionTrait>(
    queue: &Queue,
    db: &C,
    now: DateTime<Utc>,
) -> Result<MaintenanceReport> {
    let def = queue.def;
    let mut report = MaintenanceReport::default();
    let Some(archive_def) = def.archive else {
        return Ok(report);
    };
    let f = def.table;
    let schema = Ident::new(def.schema)?;
    let archive_name = format!("{}_archive", def.table);
    let archive = Ident::new(&archive_name)?;
    let default = Ident::new(&format!("{archive_name}_default"))?;
    let partition_ms = i64::try_from(archive_def.partition_ms)
        .unwrap_or(DAY_MS)
        .max(1);
    let retention_ms = i64::try_from(archive_def.retention_ms).unwrap_or(i64::MAX / 4);
    let now_ms = now.timestamp_millis();
    let cutoff = at(now_ms.saturating_sub(retention_ms));

    let txn = db.begin().await.in_facility(f)?;
    // Bounds print in UTC, ISO style, whatever the server's settings.
    txn.execute_unprepared("SET LOCAL timezone = 'UTC'; SET LOCAL datestyle = 'ISO, YMD'")
        .await
        .in_facility(f)?;
    txn.execute_raw(Statement::from_sql_and_values(
        DbBackend::Postgres,
        "SELECT pg_advisory_xact_lock(hashtext($1))",
        [format!("pgstack.maintain.{}.{}", def.schema, def.table).into()],
    ))
    .await
    .in_facility(f)?;

    let children = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            "SELECT c.relname::text, pg_get_expr(c.relpartbound, c.oid)
             FROM pg_inherits i
             JOIN pg_class c ON c.oid = i.inhrelid
             JOIN pg_class p ON p.oid = i.inhparent
             JOIN pg_namespace n ON n.oid = p.relnamespace
             WHERE n.nspname = $1 AND p.relname = $2",
            [def.schema.into(), archive_name.clone().into()],
        ))
        .await
        .in_facility(f)?;
    let mut existing = std::collections::BTreeMap::new();
    for row in &children {
        let name: String = row.try_get_by_index(0).in_facility(f)?;
        let bound: String = row.try_get_by_index(1).in_facility(f)?;
        existing.insert(name, bound);
    }

    // Periods to have a partition for: now and AHEAD more, plus past ones holding rows in the
    // default partition (maintenance did not run for a while).
    let current = now_ms.div_euclid(partition_ms) * partition_ms;
    let mut starts: Vec<i64> = (0..=AHEAD).map(|k| current + k * partition_ms).collect();
    let stray = txn
        .query_all_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!(
                "SELECT DISTINCT (floor(extract(epoch FROM finished_at) * 1000 / $1) * $1)::bigint
                 FROM {schema}.{default} WHERE finished_at >= $2"
            ),
            [partition_ms.into(), cutoff.into()],
        ))
        .await
        .in_facility(f)?;
    for row in &stray {
        let start: i64 = row.try_get_by_index(0).in_facility(f)?;
        if !starts.contains(&start) {
            starts.push(start);
        }
    }
    starts.sort_unstable();

    for start_ms in starts {
        let start = at(start_ms);
        let end = at(start_ms + partition_ms);
        if end <= cutoff {
            continue;
        }
        let name = partition_name(def.table, start, partition_ms);
        if existing.contains_key(&name) {
            continue;
        }
        let part = Ident::new(&name)?;
        let (from, to) = (literal(start), literal(end));
        let stray_rows = txn
            .query_one_raw(Statement::from_string(
                DbBackend::Postgres,
                format!(
                    "SELECT 1 FROM {schema}.{default} \
                     WHERE finished_at >= {from} AND finished_at < {to} LIMIT 1"
                ),
            ))
            .await
            .in_facility(f)?;
        if stray_rows.is_none() {
            txn.execute_unprepared(&format!(
                "CREATE TABLE {schema}.{part} PARTITION OF {schema}.{archive} FOR VALUES FROM ({from}) TO ({to})"
            ))
            .await
            .in_facility(f)?;
        } else {
            // Rows for this period landed in the default partition: move them into the new
            // partition before attaching it (attaching checks the default holds none).
            let result = txn
                .execute_unprepared(&format!(
                    "CREATE TABLE {schema}.{part} (LIKE {schema}.{archive} INCLUDING DEFAULTS);
                     WITH moved AS (
                         DELETE FROM {schema}.{default}
                         WHERE finished_at >= {from} AND finished_at < {to}
                         RETURNING *)
                     INSERT INTO {schema}.{part} SELECT * FROM moved;"
                ))
                .await
                .in_facility(f)?;
            report.moved_from_default += result.rows_affected();
            txn.execute_unprepared(&format!(
                "ALTER TABLE {schema}.{archive} ATTACH PARTITION {schema}.{part} FOR VALUES FROM ({from}) TO ({to})"
            ))
            .await
            .in_facility(f)?;
        }
        report.created.push(name);
    }

    for (name, bound) in &existing {
        if bound == "DEFAULT" {
            continue;
        }
        let Some(upper) = upper_bound(bound) else {
            continue;
        };
        if upper <= cutoff && name.starts_with(&format!("{archive_name}_p")) {
            let part = Ident::new(name)?;
            txn.execute_unprepared(&format!("DROP TABLE {schema}.{part}"))
                .await
                .in_facility(f)?;
            report.dropped.push(name.clone());
        }
    }

    let purged = txn
        .execute_raw(Statement::from_sql_and_values(
            DbBackend::Postgres,
            format!("DELETE FROM {schema}.{default} WHERE finished_at < $1"),
            [cutoff.into()],
        ))
        .await
        .in_facility(f)?;
    report.purged_from_default = purged.rows_affected();
    txn.commit().await.in_facility(f)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_bounds() {
        let t = at(1_764_201_600_000); // 2025-11-27 00:00 UTC
        assert_eq!(
            partition_name("emails", t, DAY_MS),
            "emails_archive_p20251127"
        );
        assert_eq!(
            partition_name(
                "emails",
                at(t.timestamp_millis() + 3_600_000 * 13),
                3_600_000
            ),
            "emails_archive_p2025112713"
        );
        assert_eq!(literal(t), "'2025-11-27 00:00:00+00'");
        let bound = "FOR VALUES FROM ('2025-11-27 00:00:00+00') TO ('2025-11-28 00:00:00+00')";
        assert_eq!(upper_bound(bound), Some(at(t.timestamp_millis() + DAY_MS)));
        assert_eq!(upper_bound("DEFAULT"), None);
    }
}
