//! `[[rate_limit]]`: one row of state per key, UNLOGGED by default, shaped by the algorithm.
//! Every check is one statement on the database clock (see `pgstack/sql/rate_limit.sql`).

use std::collections::BTreeMap;

use pgstack_spec::{Algorithm, Durability, RateLimit, Spec};
use serde::Serialize;

use super::EntityCtx;
use crate::error::GenError;
use crate::schema::{Column, Schema, Table};
use crate::templates;

/// The state columns of each algorithm, all in microseconds since the Unix epoch.
fn state_columns(algorithm: Algorithm) -> Vec<Column> {
    match algorithm {
        // Theoretical arrival time: when the bucket is next empty.
        Algorithm::Gcra => vec![Column::new("tat", "bigint", true)],
        Algorithm::TokenBucket => vec![
            Column::new("tokens", "double precision", true),
            Column::new("updated_us", "bigint", true),
        ],
        Algorithm::FixedWindow => vec![
            Column::new("window_start", "bigint", true),
            Column::new("count", "bigint", true),
        ],
        // One timestamp per admitted request of the last period.
        Algorithm::SlidingWindow => vec![Column::new("hits", "bigint[]", true)],
    }
}

pub(super) fn add_objects(limit: &RateLimit, schema: &mut Schema) {
    let mut columns = vec![Column::new("key", "text", true).collate("C")];
    columns.extend(state_columns(limit.algorithm));
    schema.add_table(Table {
        name: limit.name.clone(),
        kind: "rate_limit".to_string(),
        facility: limit.name.clone(),
        columns,
        primary_key: vec!["key".to_string()],
        checks: Vec::new(),
        unlogged: limit.durability == Durability::Unlogged,
        // Every check updates its row in place: room on the page keeps those updates HOT.
        storage: BTreeMap::from([
            ("fillfactor".to_string(), "70".to_string()),
            ("autovacuum_vacuum_cost_delay".to_string(), "0".to_string()),
        ]),
        partition_by: None,
        partition_of: None,
        comment: Some(format!(
            "pgstack rate_limit `{}`: algorithm={} limit={} period={} burst={}",
            limit.name,
            limit.algorithm.name(),
            limit.limit,
            limit.period,
            limit.burst.map_or("none".to_string(), |b| b.to_string())
        )),
    });
}

#[derive(Serialize)]
struct RateLimitCtx<'a> {
    spec_file: &'a str,
    schema: &'a str,
    limit: &'a RateLimit,
    /// The `RateLimitDef` expression (`pgstack_spec::defs`).
    def: String,
    entity: EntityCtx,
}

pub(super) fn render(
    limit: &RateLimit,
    spec: &Spec,
    schema: &Schema,
    spec_file: &str,
) -> Result<String, GenError> {
    templates::render(
        "rust/rate_limit.rs",
        &RateLimitCtx {
            spec_file,
            schema: &spec.project.schema,
            limit,
            def: pgstack_spec::defs::rate_limit_def(&spec.project.schema, limit).to_string(),
            entity: EntityCtx::new(&schema.tables[&limit.name], None),
        },
    )
}
