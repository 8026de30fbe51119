//! `[[cache]]`: one table keyed by `text COLLATE "C"`, UNLOGGED by default, optionally split
//! into hash partitions (each marked UNLOGGED itself: PostgreSQL 18 refuses an UNLOGGED
//! partitioned parent).
//!
//! No B-tree covers a column that writes change (`value`, `expires_at`, `lease_until`), so
//! overwrites and touches stay HOT. `created_at` is only set on insert; its index, present when
//! `max_entries` is set, orders eviction oldest first.

use std::collections::BTreeMap;

use pgstack_spec::{Cache, Durability, Spec};
use serde::Serialize;

use super::EntityCtx;
use crate::error::GenError;
use crate::schema::{Column, Index, PartitionOf, Schema, Table, object_name, quote};
use crate::templates;

fn storage() -> BTreeMap<String, String> {
    [
        ("fillfactor", "80"),
        ("autovacuum_vacuum_scale_factor", "0.05"),
        ("autovacuum_vacuum_cost_delay", "0"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .into()
}

fn comment(cache: &Cache) -> String {
    format!(
        "pgstack cache `{}`: default_ttl={} max_entries={}",
        cache.name,
        cache
            .default_ttl
            .map_or("none".to_string(), |d| d.to_string()),
        cache
            .max_entries
            .map_or("none".to_string(), |n| n.to_string()),
    )
}

pub(super) fn add_objects(cache: &Cache, schema: &mut Schema) {
    let name = &cache.name;
    let unlogged = cache.durability == Durability::Unlogged;
    let partitioned = cache.partitions > 1;
    let mut table = Table {
        name: name.clone(),
        kind: "cache".to_string(),
        facility: name.clone(),
        columns: vec![
            Column::new("key", "text", true).collate("C"),
            // NULL while the key is only a placeholder for a get_or_compute lease.
            Column::new("value", cache.value.sql(), false),
            Column::new("expires_at", "timestamptz", false),
            Column::new("created_at", "timestamptz", true).default("now()"),
            Column::new("lease_until", "timestamptz", false),
        ],
        primary_key: vec!["key".to_string()],
        checks: Vec::new(),
        unlogged: unlogged && !partitioned,
        storage: if partitioned {
            BTreeMap::new()
        } else {
            storage()
        },
        partition_by: partitioned.then(|| format!("HASH ({})", quote("key"))),
        partition_of: None,
        comment: Some(comment(cache)),
    };
    if partitioned {
        table.comment = Some(format!(
            "{}; {} hash partitions",
            comment(cache),
            cache.partitions
        ));
    }
    schema.add_table(table);
    for (i, partition) in cache.partition_names().into_iter().enumerate() {
        schema.add_table(Table {
            name: partition,
            kind: "cache".to_string(),
            facility: name.clone(),
            columns: Vec::new(),
            primary_key: Vec::new(),
            checks: Vec::new(),
            unlogged,
            storage: storage(),
            partition_by: None,
            partition_of: Some(PartitionOf {
                parent: name.clone(),
                bound: format!(
                    "FOR VALUES WITH (MODULUS {}, REMAINDER {i})",
                    cache.partitions
                ),
            }),
            comment: None,
        });
    }
    if cache.max_entries.is_some() {
        schema.add_index(Index {
            name: object_name(name, "created_at_idx"),
            table: name.clone(),
            unique: false,
            method: None,
            keys: quote("created_at"),
            predicate: None,
            with: Default::default(),
        });
    }
}

#[derive(Serialize)]
struct CacheCtx<'a> {
    spec_file: &'a str,
    schema: &'a str,
    cache: &'a Cache,
    /// The `CacheDef` expression (`pgstack_spec::defs`).
    def: String,
    entity: EntityCtx,
}

pub(super) fn render(
    cache: &Cache,
    spec: &Spec,
    schema: &Schema,
    spec_file: &str,
) -> Result<String, GenError> {
    templates::render(
        "rust/cache.rs",
        &CacheCtx {
            spec_file,
            schema: &spec.project.schema,
            cache,
            def: pgstack_spec::defs::cache_def(&spec.project.schema, cache).to_string(),
            entity: EntityCtx::new(
                &schema.tables[&cache.name],
                Some("A NULL `value` is a placeholder holding a get_or_compute lease."),
            ),
        },
    )
}
