//! `[[kv]]`: one table keyed by `text COLLATE "C"`.

use std::collections::BTreeMap;

use pgstack_spec::{Kv, Spec, ValueType};
use serde::Serialize;

use super::EntityCtx;
use crate::error::GenError;
use crate::schema::{Column, Index, Schema, Table, object_name, quote};
use crate::templates;

pub(super) fn add_objects(kv: &Kv, schema: &mut Schema) {
    let table = Table {
        name: kv.name.clone(),
        kind: "kv".to_string(),
        facility: kv.name.clone(),
        columns: vec![
            // "C" collation: bytewise order, so a prefix scan is a primary-key range.
            Column::new("key", "text", true).collate("C"),
            Column::new("value", kv.value.sql(), true),
            Column::new("version", "bigint", true).default("1"),
            Column::new("updated_at", "timestamptz", true).default("now()"),
            // Present on every kv table; only `expiry = true` stores allow setting it.
            Column::new("expires_at", "timestamptz", false),
        ],
        primary_key: vec!["key".to_string()],
        checks: Vec::new(),
        unlogged: false,
        // Updates rewrite `value` in place; free space on the page lets them stay HOT.
        storage: BTreeMap::from([("fillfactor".to_string(), "90".to_string())]),
        partition_by: None,
        partition_of: None,
        comment: None,
    };
    schema.add_table(table);
    if kv.expiry {
        // Serves the sweep of expired keys; partial, so keys without expiry cost nothing.
        schema.add_index(Index {
            name: object_name(&kv.name, "expires_at_idx"),
            table: kv.name.clone(),
            unique: false,
            method: None,
            keys: quote("expires_at"),
            predicate: Some(format!("{} IS NOT NULL", quote("expires_at"))),
            with: Default::default(),
        });
    }
}

#[derive(Serialize)]
struct KvCtx<'a> {
    spec_file: &'a str,
    schema: &'a str,
    kv: &'a Kv,
    store_type: &'static str,
    /// The `KvDef` expression (`pgstack_spec::defs`).
    def: String,
    entity: EntityCtx,
}

pub(super) fn render(
    kv: &Kv,
    spec: &Spec,
    schema: &Schema,
    spec_file: &str,
) -> Result<String, GenError> {
    let store_type = match kv.value {
        ValueType::Jsonb => "JsonKv",
        ValueType::Bytea => "BytesKv",
    };
    let table = &schema.tables[&kv.name];
    templates::render(
        "rust/kv.rs",
        &KvCtx {
            spec_file,
            schema: &spec.project.schema,
            kv,
            store_type,
            def: pgstack_spec::defs::kv_def(&spec.project.schema, kv).to_string(),
            entity: EntityCtx::new(table, None),
        },
    )
}
