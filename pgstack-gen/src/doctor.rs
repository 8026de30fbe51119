//! `pgstack-gen doctor`: a live database's health, for the facilities the spec declares.
//!
//! Per facility table: size, live and dead rows, last (auto)vacuum, estimated bloat (the share
//! of dead rows), unused and invalid indexes. Across the server: what holds vacuum back (long
//! transactions, sessions idle in a transaction, replication slots, prepared transactions),
//! queue depth and oldest job age, cache rows against `max_entries`, UNLOGGED tables on a
//! server with standbys, the slowest statements on pgstack's tables (from
//! `pg_stat_statements` when installed), and headroom against the seed article's "when to
//! graduate" thresholds: 100,000 jobs a minute, 10 million vectors in a collection, a 500 GB
//! database. Everything is read from catalogs and statistics views, plus capped counts over
//! the queues' partial indexes: nothing scans a table.
//!
//! Every finding has a severity; any `critical` one makes the command exit 1, so it can run
//! from cron or CI.

use std::collections::BTreeSet;
use std::time::Duration;

use sea_orm::{ConnectionTrait, DatabaseConnection, DbBackend, QueryResult, Statement, Value};
use serde::Serialize;

use crate::GenError;
use crate::schema::Schema;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Info,
    Warning,
    Critical,
}

impl Severity {
    fn label(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Critical => "CRITICAL",
        }
    }
}

/// One thing the doctor found.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// What was checked: `bloat`, `unused_index`, `idle_in_transaction`, ...
    pub check: &'static str,
    /// The table, index, session or slot concerned.
    pub object: String,
    pub message: String,
}

/// One facility table's figures.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TableHealth {
    pub table: String,
    pub facility: String,
    pub kind: String,
    pub size_bytes: i64,
    pub live_rows: i64,
    pub dead_rows: i64,
    /// Dead rows as a share of all rows: the bloat vacuum has yet to reclaim.
    pub dead_ratio: f64,
    pub last_vacuum: Option<String>,
    pub last_autovacuum: Option<String>,
    pub unlogged: bool,
}

/// Thresholds of the checks; the defaults suit production, tests make them small.
#[derive(Clone, Debug)]
pub struct Thresholds {
    pub idle_in_transaction: Duration,
    pub transaction_age: Duration,
    pub prepared_age: Duration,
    pub queue_age: Duration,
    /// Dead-row share that is a warning (twice it: critical), for tables of at least
    /// `bloat_min_rows` dead rows.
    pub bloat_ratio: f64,
    pub bloat_min_rows: i64,
}

impl Default for Thresholds {
    fn default() -> Thresholds {
        Thresholds {
            idle_in_transaction: Duration::from_secs(60),
            transaction_age: Duration::from_secs(600),
            prepared_age: Duration::from_secs(300),
            queue_age: Duration::from_secs(300),
            bloat_ratio: 0.2,
            bloat_min_rows: 10_000,
        }
    }
}

/// The whole report.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Report {
    pub database_bytes: i64,
    pub tables: Vec<TableHealth>,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn worst(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }

    /// The human form.
    pub fn render(&self) -> String {
        let mut out = format!("database size: {}\n\n", bytes(self.database_bytes));
        out.push_str("facility tables:\n");
        for t in &self.tables {
            out.push_str(&format!(
                "  {:<32} {:<10} {:>10}  {:>10} live  {:>8} dead ({:.0}%)  {}{}\n",
                t.table,
                t.kind,
                bytes(t.size_bytes),
                t.live_rows,
                t.dead_rows,
                t.dead_ratio * 100.0,
                match (&t.last_autovacuum, &t.last_vacuum) {
                    (Some(a), _) => format!("autovacuumed {a}"),
                    (None, Some(v)) => format!("vacuumed {v}"),
                    (None, None) => "never vacuumed".to_string(),
                },
                if t.unlogged { ", UNLOGGED" } else { "" },
            ));
        }
        out.push('\n');
        if self.findings.is_empty() {
            out.push_str("no findings\n");
        }
        for f in &self.findings {
            out.push_str(&format!(
                "{:<8} {:<22} {}: {}\n",
                f.severity.label(),
                f.check,
                f.object,
                f.message
            ));
        }
        out
    }
}

fn bytes(n: i64) -> String {
    let n = n.max(0) as f64;
    match n {
        n if n >= 1e9 => format!("{:.1} GB", n / 1e9),
        n if n >= 1e6 => format!("{:.1} MB", n / 1e6),
        n if n >= 1e3 => format!("{:.1} kB", n / 1e3),
        n => format!("{n} B"),
    }
}

/// The seed article's "when to graduate" thresholds.
const GRADUATE_JOBS_PER_MINUTE: f64 = 100_000.0;
const GRADUATE_VECTORS: f64 = 10_000_000.0;
const GRADUATE_DATABASE_BYTES: f64 = 500e9;

/// Catalog queries, their errors as `GenError` (shared with `drift.rs`).
pub(crate) struct Db<'a> {
    pub(crate) conn: &'a DatabaseConnection,
}

impl Db<'_> {
    pub(crate) async fn rows(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Vec<QueryResult>, GenError> {
        self.conn
            .query_all_raw(Statement::from_sql_and_values(
                DbBackend::Postgres,
                sql,
                values,
            ))
            .await
            .map_err(|e| GenError::Connect(format!("a catalog query failed: {e}")))
    }

    pub(crate) async fn one(
        &self,
        sql: &str,
        values: Vec<Value>,
    ) -> Result<Option<QueryResult>, GenError> {
        Ok(self.rows(sql, values).await?.into_iter().next())
    }
}

pub(crate) fn get<T: sea_orm::TryGetable>(row: &QueryResult, i: usize) -> Result<T, GenError> {
    row.try_get_by_index(i)
        .map_err(|e| GenError::Connect(format!("unexpected result of a catalog query: {e}")))
}

/// Examines `conn` for the facilities of `schema` (the spec's desired schema).
pub async fn examine(
    conn: &DatabaseConnection,
    schema: &Schema,
    spec: &pgstack_spec::Spec,
    limits: &Thresholds,
) -> Result<Report, GenError> {
    let db = Db { conn };
    let mut findings = Vec::new();
    let ns = &schema.schema;
    let facility_tables: Vec<&crate::schema::Table> = schema
        .tables
        .values()
        .filter(|t| !t.facility.is_empty() && t.partition_by.is_none())
        .collect();
    let names: Vec<String> = facility_tables.iter().map(|t| t.name.clone()).collect();

    // Tables: size, rows, vacuum, persistence; partitions counted with their parents' names.
    let rows = db
        .rows(
            "SELECT c.relname, pg_total_relation_size(c.oid), coalesce(s.n_live_tup, 0), \
                    coalesce(s.n_dead_tup, 0), s.last_vacuum::text, s.last_autovacuum::text, \
                    c.relpersistence = 'u' \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid \
             WHERE n.nspname = $1 AND c.relkind = 'r' AND c.relname = ANY($2) \
             ORDER BY c.relname",
            vec![ns.clone().into(), names.clone().into()],
        )
        .await?;
    let mut tables = Vec::new();
    let mut seen = BTreeSet::new();
    for row in &rows {
        let name: String = get(row, 0)?;
        seen.insert(name.clone());
        let Some(def) = facility_tables.iter().find(|t| t.name == name) else {
            continue;
        };
        let (live, dead): (i64, i64) = (get(row, 2)?, get(row, 3)?);
        let ratio = if live + dead > 0 {
            dead as f64 / (live + dead) as f64
        } else {
            0.0
        };
        if dead >= limits.bloat_min_rows && ratio >= limits.bloat_ratio {
            findings.push(Finding {
                severity: if ratio >= limits.bloat_ratio * 2.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                check: "bloat",
                object: name.clone(),
                message: format!(
                    "{dead} dead rows, {:.0}% of the table, not yet reclaimed by vacuum; look at \
                     what holds vacuum back (below), or run VACUUM {ns}.{name}",
                    ratio * 100.0
                ),
            });
        }
        tables.push(TableHealth {
            table: name,
            facility: def.facility.clone(),
            kind: def.kind.clone(),
            size_bytes: get(row, 1)?,
            live_rows: live,
            dead_rows: dead,
            dead_ratio: ratio,
            last_vacuum: get(row, 4)?,
            last_autovacuum: get(row, 5)?,
            unlogged: get(row, 6)?,
        });
    }
    for name in &names {
        if !seen.contains(name) {
            findings.push(Finding {
                severity: Severity::Critical,
                check: "missing_table",
                object: format!("{ns}.{name}"),
                message: "the spec declares it but the database has no such table; run \
                          `pgstack-gen migrate`"
                    .to_string(),
            });
        }
    }

    // Indexes on pgstack's tables: invalid ones (a failed CONCURRENTLY build), never-used ones.
    let rows = db
        .rows(
            "SELECT i.relname, t.relname, x.indisvalid, coalesce(s.idx_scan, 0), \
                    x.indisunique OR x.indisprimary, pg_relation_size(i.oid), \
                    coalesce(st.n_live_tup, 0) \
             FROM pg_index x \
             JOIN pg_class i ON i.oid = x.indexrelid \
             JOIN pg_class t ON t.oid = x.indrelid \
             JOIN pg_namespace n ON n.oid = t.relnamespace \
             LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = x.indexrelid \
             LEFT JOIN pg_stat_user_tables st ON st.relid = t.oid \
             WHERE n.nspname = $1 AND t.relname = ANY($2) \
             ORDER BY i.relname",
            vec![ns.clone().into(), names.clone().into()],
        )
        .await?;
    for row in &rows {
        let (index, table): (String, String) = (get(row, 0)?, get(row, 1)?);
        let (valid, scans, unique): (bool, i64, bool) = (get(row, 2)?, get(row, 3)?, get(row, 4)?);
        let (size, live): (i64, i64) = (get(row, 5)?, get(row, 6)?);
        if !valid {
            findings.push(Finding {
                severity: Severity::Critical,
                check: "invalid_index",
                object: index.clone(),
                message: format!(
                    "the index on `{table}` is INVALID (a concurrent build failed): queries \
                     cannot use it but writes maintain it; run DROP INDEX CONCURRENTLY \
                     {ns}.{index}, then `pgstack-gen migrate` to build it again"
                ),
            });
        } else if scans == 0 && !unique {
            findings.push(Finding {
                severity: if live >= 100_000 {
                    Severity::Warning
                } else {
                    Severity::Info
                },
                check: "unused_index",
                object: index,
                message: format!(
                    "never scanned since statistics were reset ({}); every write to `{table}` \
                     still maintains it. If it stays unused under real traffic and it serves a \
                     declared field, drop that field's `index = true`",
                    bytes(size)
                ),
            });
        }
    }

    // What holds vacuum back, server-wide.
    let rows = db
        .rows(
            "SELECT pid, usename, datname, state, \
                    extract(epoch FROM now() - xact_start)::float8, \
                    extract(epoch FROM now() - state_change)::float8, left(query, 80) \
             FROM pg_stat_activity \
             WHERE xact_start IS NOT NULL AND pid <> pg_backend_pid() \
               AND backend_type = 'client backend' \
             ORDER BY xact_start",
            vec![],
        )
        .await?;
    for row in &rows {
        let pid: i32 = get(row, 0)?;
        let user: Option<String> = get(row, 1)?;
        let database: Option<String> = get(row, 2)?;
        let state: Option<String> = get(row, 3)?;
        let xact_age: f64 = get(row, 4)?;
        let idle_for: f64 = get::<Option<f64>>(row, 5)?.unwrap_or(0.0);
        let query: Option<String> = get(row, 6)?;
        let who = format!(
            "pid {pid} ({}@{})",
            user.unwrap_or_default(),
            database.unwrap_or_default()
        );
        if state.as_deref() == Some("idle in transaction")
            && idle_for >= limits.idle_in_transaction.as_secs_f64()
        {
            findings.push(Finding {
                severity: if idle_for >= limits.idle_in_transaction.as_secs_f64() * 10.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                check: "idle_in_transaction",
                object: who,
                message: format!(
                    "idle in a transaction for {idle_for:.0}s: vacuum cannot remove rows \
                     changed since it began, so queue and cache tables bloat; last query: {}; \
                     end it with SELECT pg_terminate_backend({pid}), and set \
                     idle_in_transaction_session_timeout",
                    query.unwrap_or_default()
                ),
            });
        } else if xact_age >= limits.transaction_age.as_secs_f64() {
            findings.push(Finding {
                severity: if xact_age >= limits.transaction_age.as_secs_f64() * 6.0 {
                    Severity::Critical
                } else {
                    Severity::Warning
                },
                check: "long_transaction",
                object: who,
                message: format!(
                    "a transaction open for {xact_age:.0}s holds vacuum back; last query: {}",
                    query.unwrap_or_default()
                ),
            });
        }
    }
    let rows = db
        .rows(
            "SELECT slot_name, slot_type, active, age(coalesce(xmin, catalog_xmin))::bigint \
             FROM pg_replication_slots ORDER BY slot_name",
            vec![],
        )
        .await?;
    for row in &rows {
        let (slot, kind, active): (String, String, bool) =
            (get(row, 0)?, get(row, 1)?, get(row, 2)?);
        let age: Option<i64> = get(row, 3)?;
        if !active {
            findings.push(Finding {
                severity: Severity::Warning,
                check: "inactive_replication_slot",
                object: slot.clone(),
                message: format!(
                    "an inactive {kind} slot keeps WAL{} from being removed; if its consumer is \
                     gone, SELECT pg_drop_replication_slot('{slot}')",
                    match age {
                        Some(a) => format!(" and holds vacuum back by {a} transactions"),
                        None => String::new(),
                    }
                ),
            });
        }
    }
    let rows = db
        .rows(
            "SELECT gid, extract(epoch FROM now() - prepared)::float8 FROM pg_prepared_xacts",
            vec![],
        )
        .await?;
    for row in &rows {
        let (gid, age): (String, f64) = (get(row, 0)?, get(row, 1)?);
        if age >= limits.prepared_age.as_secs_f64() {
            findings.push(Finding {
                severity: Severity::Critical,
                check: "prepared_transaction",
                object: gid.clone(),
                message: format!(
                    "a prepared transaction {age:.0}s old holds vacuum back; COMMIT PREPARED or \
                     ROLLBACK PREPARED '{gid}'"
                ),
            });
        }
    }

    // Queues: depth and the oldest waiting job, through their partial indexes, capped.
    let mut jobs_per_minute = 0.0;
    for queue in &spec.queues {
        let row = db
            .one(
                &format!(
                    "SELECT (SELECT count(*) FROM (SELECT 1 FROM {t} WHERE claimed_at IS NULL \
                       AND visible_at <= now() LIMIT 1000000) AS r)::bigint, \
                     (SELECT extract(epoch FROM now() - min(visible_at)) FROM {t} \
                       WHERE claimed_at IS NULL AND visible_at <= now())::float8",
                    t = format_args!("\"{ns}\".\"{}\"", queue.name)
                ),
                vec![],
            )
            .await;
        let Ok(Some(row)) = row else { continue };
        let (ready, oldest): (i64, Option<f64>) = (get(&row, 0)?, get(&row, 1)?);
        if let Some(age) = oldest
            && age >= limits.queue_age.as_secs_f64()
        {
            findings.push(Finding {
                severity: Severity::Warning,
                check: "queue_backlog",
                object: queue.name.clone(),
                message: format!(
                    "{ready} jobs ready, the oldest waiting {age:.0}s: workers are not keeping up, \
                     or none is running, or the queue is paused"
                ),
            });
        } else {
            findings.push(Finding {
                severity: Severity::Info,
                check: "queue_depth",
                object: queue.name.clone(),
                message: format!(
                    "{ready} jobs ready{}",
                    oldest.map_or(String::new(), |a| format!(", the oldest waiting {a:.0}s"))
                ),
            });
        }
        // Jobs a minute: rows inserted into the hot table since statistics were reset.
        let row = db
            .one(
                "SELECT coalesce(s.n_tup_ins, 0)::float8, \
                        extract(epoch FROM now() - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8 \
                 FROM pg_stat_user_tables s, pg_stat_database d \
                 WHERE s.schemaname = $1 AND s.relname = $2 AND d.datname = current_database()",
                vec![ns.clone().into(), queue.name.clone().into()],
            )
            .await?;
        if let Some(row) = row {
            let (inserted, seconds): (f64, f64) = (get(&row, 0)?, get(&row, 1)?);
            if seconds > 0.0 {
                jobs_per_minute += inserted / seconds * 60.0;
            }
        }
    }
    graduation(
        &mut findings,
        "jobs_per_minute",
        "all queues",
        jobs_per_minute,
        GRADUATE_JOBS_PER_MINUTE,
        "jobs a minute (average since statistics were reset)",
    );

    // Caches: rows (planner estimate) against max_entries.
    for cache in &spec.caches {
        let Some(max) = cache.max_entries else {
            continue;
        };
        let estimate: f64 = tables
            .iter()
            .filter(|t| t.facility == cache.name)
            .map(|t| t.live_rows as f64)
            .sum();
        if estimate > max as f64 * 1.1 {
            findings.push(Finding {
                severity: Severity::Warning,
                check: "cache_over_bound",
                object: cache.name.clone(),
                message: format!(
                    "about {estimate:.0} entries against max_entries = {max}: evictions run on \
                     writes; with no writes, call `evict` (or let the maintenance runner)"
                ),
            });
        }
    }

    // Vectors per collection.
    for vector in &spec.vectors {
        // Live rows of the table and, when partitioned per tenant, of every partition.
        let rows: f64 = db
            .one(
                "SELECT coalesce(sum(s.n_live_tup), 0)::float8 FROM pg_stat_user_tables s \
                 WHERE s.relid = to_regclass(format('%I.%I', $1::text, $2::text)) \
                    OR s.relid IN (SELECT inhrelid FROM pg_inherits \
                                   WHERE inhparent = to_regclass(format('%I.%I', $1::text, $2::text)))",
                vec![ns.clone().into(), vector.name.clone().into()],
            )
            .await?
            .map(|row| get::<f64>(&row, 0))
            .transpose()?
            .unwrap_or(0.0)
            .max(0.0);
        graduation(
            &mut findings,
            "vectors",
            &vector.name,
            rows,
            GRADUATE_VECTORS,
            "vectors in the collection",
        );
    }

    // UNLOGGED tables on a server with standbys.
    let standbys: i64 = db
        .one("SELECT count(*) FROM pg_stat_replication", vec![])
        .await?
        .map(|row| get(&row, 0))
        .transpose()?
        .unwrap_or(0);
    if standbys > 0 {
        for t in tables.iter().filter(|t| t.unlogged) {
            findings.push(Finding {
                severity: Severity::Warning,
                check: "unlogged_with_standbys",
                object: t.table.clone(),
                message: format!(
                    "UNLOGGED on a server with {standbys} standby(s): its rows are not \
                     replicated, a standby cannot read it, and a failover empties it; declare \
                     `durability = \"logged\"` if that is not acceptable"
                ),
            });
        }
    }

    // The slowest statements on pgstack's tables.
    let has_statements: bool = db
        .one(
            "SELECT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements')",
            vec![],
        )
        .await?
        .map(|row| get(&row, 0))
        .transpose()?
        .unwrap_or(false);
    if has_statements {
        let patterns: Vec<String> = names.iter().map(|n| format!("%\"{n}\"%")).collect();
        let rows = db
            .rows(
                "SELECT mean_exec_time, calls, left(regexp_replace(query, '\\s+', ' ', 'g'), 100) \
                 FROM pg_stat_statements \
                 WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) \
                   AND query LIKE ANY($1) \
                 ORDER BY mean_exec_time DESC LIMIT 5",
                vec![patterns.into()],
            )
            .await;
        if let Ok(rows) = rows {
            for row in &rows {
                let (mean, calls, query): (f64, i64, String) =
                    (get(row, 0)?, get(row, 1)?, get(row, 2)?);
                findings.push(Finding {
                    severity: Severity::Info,
                    check: "slow_statement",
                    object: format!("{mean:.2} ms mean over {calls} calls"),
                    message: query,
                });
            }
        }
    }

    let database_bytes: i64 = db
        .one("SELECT pg_database_size(current_database())", vec![])
        .await?
        .map(|row| get(&row, 0))
        .transpose()?
        .unwrap_or(0);
    graduation(
        &mut findings,
        "database_size",
        "database",
        database_bytes as f64,
        GRADUATE_DATABASE_BYTES,
        "bytes",
    );
    findings.sort_by(|a, b| b.severity.cmp(&a.severity).then(a.check.cmp(b.check)));
    Ok(Report {
        database_bytes,
        tables,
        findings,
    })
}

/// Headroom against one of the article's thresholds: info below half, warning from half,
/// critical at or past it.
fn graduation(
    findings: &mut Vec<Finding>,
    check: &'static str,
    object: &str,
    value: f64,
    limit: f64,
    unit: &str,
) {
    let share = value / limit;
    let severity = match share {
        s if s >= 1.0 => Severity::Critical,
        s if s >= 0.5 => Severity::Warning,
        _ => Severity::Info,
    };
    findings.push(Finding {
        severity,
        check,
        object: object.to_string(),
        message: format!(
            "{value:.0} {unit}: {:.1}% of the point where the seed article says to graduate \
             to a dedicated system ({limit:.0})",
            share * 100.0
        ),
    });
}
