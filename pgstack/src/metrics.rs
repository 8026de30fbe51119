//! Metrics: what pgstack counts and measures, through the [`metrics`](https://docs.rs/metrics)
//! facade.
//!
//! The runtime only records; the application chooses where the numbers go by installing a
//! recorder (none installed: every record is a no-op costing a few nanoseconds). With the
//! `prometheus` cargo feature, [`prometheus::install`] installs a Prometheus recorder and
//! returns a handle whose `render()` is the text an application serves at `/metrics` from its
//! own router, and [`prometheus::serve`] serves it on an address of its own.
//!
//! | metric | type | labels | what |
//! | --- | --- | --- | --- |
//! | `pgstack_statements_total` | counter | `facility`, `table`, `op`, `outcome` (`ok`/`error`) | every statement an accessor runs |
//! | `pgstack_statement_seconds` | histogram | `facility`, `table`, `op` | its duration, client side |
//! | `pgstack_queue_jobs` | gauge | `queue`, `state` (`ready`, `running`, `scheduled`, `dead`) | queue depth, from [`sample_queue`] or a running worker (capped counts over partial indexes, never a `count(*)` of the table) |
//! | `pgstack_queue_oldest_ready_seconds` | gauge | `queue` | how long the oldest claimable job has waited |
//! | `pgstack_queue_claimed_total`, `_completed_total`, `_failed_total`, `_retried_total`, `_dead_lettered_total`, `_released_total`, `_snoozed_total`, `_lost_leases_total` | counter | `queue` | worker outcomes |
//! | `pgstack_queue_claim_seconds` | histogram | `queue` | one claim statement |
//! | `pgstack_queue_job_seconds` | histogram | `queue`, `kind` | a handler's run, claim to outcome |
//! | `pgstack_queue_worker_errors_total` | counter | `queue`, `during` | database errors a worker retried |
//! | `pgstack_cache_hits_total`, `_misses_total`, `_evicted_total` | counter | `cache` | reads and the size bound's evictions |
//! | `pgstack_cache_entries`, `pgstack_cache_max_entries` | gauge | `cache` | size (planner estimate) against the bound, from [`sample_cache`] |
//! | `pgstack_rate_limit_checks_total` | counter | `limiter`, `decision` (`allowed`/`denied`) | every check |
//! | `pgstack_vector_search_seconds` | histogram | `collection`, `kind` (`search`/`hybrid`) | one search |
//! | `pgstack_vector_search_rows` | histogram | `collection`, `kind` | rows it returned |
//! | `pgstack_upkeep_rows_total` | counter | `facility`, `table`, `task` | rows the maintenance runner removed (partitions it changed) |
//! | `pgstack_upkeep_pass_seconds` | histogram | | one pass of the maintenance runner |
//!
//! Why the facade rather than `prometheus-client`: a library should not choose the
//! application's metrics backend. The facade lets the same counters reach Prometheus, StatsD or
//! OpenTelemetry through whichever recorder the application installs, and records nothing
//! when it installs none.

use std::time::Duration;

use sea_orm::ConnectionTrait;

use crate::cache::Cache;
use crate::cluster::Route;
use crate::error::{DbContext, Result};
use crate::queue::Queue;
use crate::sql::stmt;

pub(crate) fn statement(
    kind: &'static str,
    table: &'static str,
    op: &'static str,
    took: Duration,
    ok: bool,
) {
    let outcome = if ok { "ok" } else { "error" };
    ::metrics::counter!("pgstack_statements_total", "facility" => kind, "table" => table, "op" => op, "outcome" => outcome)
        .increment(1);
    ::metrics::histogram!("pgstack_statement_seconds", "facility" => kind, "table" => table, "op" => op)
        .record(took.as_secs_f64());
}

/// Counts `n` for a queue's worker outcome (`completed`, `failed`, ...).
pub(crate) fn queue_count(queue: &'static str, what: &'static str, n: u64) {
    if n == 0 {
        return;
    }
    let name = match what {
        "claimed" => "pgstack_queue_claimed_total",
        "completed" => "pgstack_queue_completed_total",
        "failed" => "pgstack_queue_failed_total",
        "retried" => "pgstack_queue_retried_total",
        "dead" => "pgstack_queue_dead_lettered_total",
        "released" => "pgstack_queue_released_total",
        "snoozed" => "pgstack_queue_snoozed_total",
        "lost_leases" => "pgstack_queue_lost_leases_total",
        _ => "pgstack_queue_other_total",
    };
    ::metrics::counter!(name, "queue" => queue).increment(n);
}

/// `pgstack_queue_schedule_ticks_total{queue, schedule, outcome}`: `enqueued`, or `skipped`
/// (missed ticks dropped by `catch_up`).
pub(crate) fn queue_schedule_ticks(
    queue: &'static str,
    schedule: &'static str,
    outcome: &'static str,
    n: u64,
) {
    ::metrics::counter!(
        "pgstack_queue_schedule_ticks_total",
        "queue" => queue,
        "schedule" => schedule,
        "outcome" => outcome
    )
    .increment(n);
}

pub(crate) fn queue_claim(queue: &'static str, took: Duration) {
    ::metrics::histogram!("pgstack_queue_claim_seconds", "queue" => queue)
        .record(took.as_secs_f64());
}

pub(crate) fn queue_job(queue: &'static str, kind: &str, took: Duration) {
    ::metrics::histogram!("pgstack_queue_job_seconds", "queue" => queue, "kind" => kind.to_string())
        .record(took.as_secs_f64());
}

pub(crate) fn queue_worker_error(queue: &'static str, during: &str) {
    ::metrics::counter!("pgstack_queue_worker_errors_total", "queue" => queue, "during" => during.to_string())
        .increment(1);
}

pub(crate) fn cache_lookups(cache: &'static str, hits: u64, misses: u64) {
    if hits > 0 {
        ::metrics::counter!("pgstack_cache_hits_total", "cache" => cache).increment(hits);
    }
    if misses > 0 {
        ::metrics::counter!("pgstack_cache_misses_total", "cache" => cache).increment(misses);
    }
}

pub(crate) fn cache_evicted(cache: &'static str, n: u64) {
    if n > 0 {
        ::metrics::counter!("pgstack_cache_evicted_total", "cache" => cache).increment(n);
    }
}

pub(crate) fn rate_check(limiter: &'static str, allowed: bool) {
    let decision = if allowed { "allowed" } else { "denied" };
    ::metrics::counter!("pgstack_rate_limit_checks_total", "limiter" => limiter, "decision" => decision)
        .increment(1);
}

pub(crate) fn vector_search(
    collection: &'static str,
    kind: &'static str,
    took: Duration,
    rows: usize,
) {
    ::metrics::histogram!("pgstack_vector_search_seconds", "collection" => collection, "kind" => kind)
        .record(took.as_secs_f64());
    ::metrics::histogram!("pgstack_vector_search_rows", "collection" => collection, "kind" => kind)
        .record(rows as f64);
}

/// Rows (or partitions) one upkeep task handled in a pass.
pub(crate) fn upkeep_rows(facility: &'static str, table: &'static str, task: &'static str, n: u64) {
    if n > 0 {
        ::metrics::counter!("pgstack_upkeep_rows_total", "facility" => facility, "table" => table, "task" => task)
            .increment(n);
    }
}

/// One pass of the maintenance runner.
pub(crate) fn upkeep_pass(took: Duration) {
    ::metrics::histogram!("pgstack_upkeep_pass_seconds").record(took.as_secs_f64());
}

/// Reads a queue's depth and oldest waiting job ([`Queue::metrics`]: capped counts over its
/// partial indexes) and sets the `pgstack_queue_jobs` and `pgstack_queue_oldest_ready_seconds`
/// gauges. A running worker does this every few seconds; call it from a periodic task to
/// watch a queue no worker of this process runs.
pub async fn sample_queue<C: Route>(db: &C, queue: &'static Queue, cap: u64) -> Result<()> {
    let metrics = queue.metrics(db, cap).await?;
    let table = queue.def().table;
    for (state, n) in [
        ("ready", metrics.ready),
        ("running", metrics.running),
        ("scheduled", metrics.scheduled),
        ("dead", metrics.dead),
    ] {
        ::metrics::gauge!("pgstack_queue_jobs", "queue" => table, "state" => state).set(n as f64);
    }
    ::metrics::gauge!("pgstack_queue_oldest_ready_seconds", "queue" => table)
        .set(metrics.oldest_ready_age.map_or(0.0, |d| d.as_secs_f64()));
    Ok(())
}

/// Sets `pgstack_cache_entries` from PostgreSQL's estimate of the cache's rows (`reltuples`,
/// kept by autovacuum and ANALYZE: no scan) and `pgstack_cache_max_entries` from the spec.
pub async fn sample_cache<C: Route>(db: &C, cache: &'static Cache) -> Result<()> {
    let def = cache.def();
    let row = db
        .primary()
        .query_one_raw(stmt(
            "SELECT coalesce(sum(greatest(c.reltuples, 0)), 0)::float8 \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND (c.relname = $2 OR c.relname LIKE $2 || '\\_p%') \
               AND c.relkind = 'r'",
            [def.schema.into(), def.table.into()],
        ))
        .await
        .in_facility(def.table)?;
    let entries: f64 = match row {
        Some(row) => row.try_get_by_index(0).in_facility(def.table)?,
        None => 0.0,
    };
    ::metrics::gauge!("pgstack_cache_entries", "cache" => def.table).set(entries);
    if let Some(max) = def.max_entries {
        ::metrics::gauge!("pgstack_cache_max_entries", "cache" => def.table).set(max as f64);
    }
    Ok(())
}

/// A Prometheus recorder for pgstack's (and the application's) metrics.
#[cfg(feature = "prometheus")]
pub mod prometheus {
    use std::net::SocketAddr;

    pub use metrics_exporter_prometheus::PrometheusHandle;
    use metrics_exporter_prometheus::{BuildError, PrometheusBuilder};

    /// Installs a Prometheus recorder as the process's recorder and returns its handle:
    /// `handle.render()` is the text format, to serve at `/metrics` from the application's own
    /// HTTP router. Fails if another recorder is already installed.
    pub fn install() -> Result<PrometheusHandle, BuildError> {
        PrometheusBuilder::new().install_recorder()
    }

    /// Installs a Prometheus recorder and serves its text format at `http://addr/` (any path)
    /// from a task of its own on the current tokio runtime. Fails if another recorder is
    /// installed or the address cannot be bound.
    pub fn serve(addr: SocketAddr) -> Result<(), BuildError> {
        PrometheusBuilder::new().with_http_listener(addr).install()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn recording_without_a_recorder_is_a_no_op() {
        super::statement(
            "kv",
            "settings",
            "get",
            std::time::Duration::from_millis(1),
            true,
        );
        super::rate_check("api", false);
    }
}
