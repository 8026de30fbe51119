//! `[[vector]]`: a pgvector collection. One table holds the id, the embedding, typed metadata
//! fields and, with `full_text`, a generated `tsvector`; the ANN index is raw SQL because its
//! parameters (`WITH (m = 16, ...)`) are beyond sea-query.
//!
//! With `partition_by`, the table is LIST-partitioned and each tenant's partition is created on
//! its first write (`pgstack_ensure_list_partition`), so every tenant has its own ANN index.

use std::collections::BTreeMap;

use pgstack_spec::{Element, Spec, Vector, VectorIndex};
use serde::Serialize;

use super::{EntityCtx, add_function};
use crate::error::GenError;
use crate::schema::{Column, Index, Schema, Table, literal, object_name, quote};
use crate::templates;

/// Embeddings up to this many bytes are stored inline (`STORAGE PLAIN`): a TOASTed embedding
/// makes exact scans about three times slower, and 1536 four-byte floats (6,152 bytes) still
/// leave room in an 8 KB page for the row's other columns.
const PLAIN_STORAGE_MAX_BYTES: u64 = 6_200;

/// The `embedding` column's type: `vector(1536)`.
pub fn embedding_type(vector: &Vector) -> String {
    format!("{}({})", vector.element.name(), vector.dimensions)
}

fn embedding_bytes(vector: &Vector) -> Option<u64> {
    let dims = u64::from(vector.dimensions);
    match vector.element {
        Element::Vector => Some(4 * dims + 8),
        Element::Halfvec => Some(2 * dims + 8),
        Element::Bit | Element::Sparsevec => None,
    }
}

/// The generated `tsvector`: each listed field weighted by its position (A, B, C, then D).
fn fts_expression(vector: &Vector) -> String {
    let config = format!("{}::regconfig", literal(&vector.language));
    vector
        .full_text
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let weight = ["A", "B", "C", "D"][i.min(3)];
            format!(
                "setweight(to_tsvector({config}, coalesce({}, '')), '{weight}')",
                quote(field)
            )
        })
        .collect::<Vec<_>>()
        .join(" || ")
}

fn comment(vector: &Vector) -> String {
    let index = match vector.index {
        VectorIndex::Hnsw {
            m,
            ef_construction,
            ef_search,
        } => format!(
            "hnsw m={m} ef_construction={ef_construction}, searched with ef_search={ef_search}"
        ),
        VectorIndex::Ivfflat { lists, probes } => {
            format!("ivfflat lists={lists}, searched with probes={probes}")
        }
        VectorIndex::None => "no ANN index (exact search)".to_string(),
    };
    let mut text = format!(
        "pgstack vector `{}`: {} {} distance, {index}",
        vector.name,
        embedding_type(vector),
        vector.distance.name()
    );
    if let Some(field) = &vector.partition_by {
        text.push_str(&format!("; one LIST partition per `{field}`"));
    }
    text
}

pub(super) fn add_objects(vector: &Vector, schema: &mut Schema) -> Result<(), GenError> {
    let name = &vector.name;
    schema.extensions.insert("vector".to_string());
    let mut columns = vec![Column::new("id", vector.id.field_type().sql(), true)];
    let mut embedding = Column::new("embedding", &embedding_type(vector), false);
    if embedding_bytes(vector).is_some_and(|b| b <= PLAIN_STORAGE_MAX_BYTES) {
        embedding = embedding.storage("PLAIN");
    }
    columns.push(embedding);
    for field in &vector.fields {
        let not_null = vector.partition_by.as_deref() == Some(field.name.as_str());
        columns.push(Column::new(&field.name, field.ty.sql(), not_null));
    }
    if !vector.full_text.is_empty() {
        columns.push(Column::new("fts", "tsvector", false).generated(fts_expression(vector)));
    }
    columns.push(Column::new("created_at", "timestamptz", true).default("now()"));
    columns.push(Column::new("updated_at", "timestamptz", true).default("now()"));
    let primary_key = match &vector.partition_by {
        Some(field) => vec![field.clone(), "id".to_string()],
        None => vec!["id".to_string()],
    };
    schema.add_table(Table {
        name: name.clone(),
        kind: "vector".to_string(),
        facility: name.clone(),
        columns,
        primary_key,
        checks: Vec::new(),
        unlogged: false,
        storage: BTreeMap::new(),
        partition_by: vector
            .partition_by
            .as_ref()
            .map(|f| format!("LIST ({})", quote(f))),
        partition_of: None,
        comment: Some(comment(vector)),
    });

    let opclass = format!(
        "{}_{}",
        vector.element.name(),
        vector.distance.opclass_suffix()
    );
    let ann = match vector.index {
        VectorIndex::Hnsw {
            m, ef_construction, ..
        } => Some((
            "hnsw",
            BTreeMap::from([
                ("m".to_string(), m.to_string()),
                ("ef_construction".to_string(), ef_construction.to_string()),
            ]),
        )),
        VectorIndex::Ivfflat { lists, .. } => Some((
            "ivfflat",
            BTreeMap::from([("lists".to_string(), lists.to_string())]),
        )),
        VectorIndex::None => None,
    };
    if let Some((method, with)) = ann {
        schema.add_index(Index {
            name: object_name(name, "embedding_idx"),
            table: name.clone(),
            unique: false,
            method: Some(method.to_string()),
            keys: format!("{} {opclass}", quote("embedding")),
            predicate: None,
            with,
        });
    }
    if !vector.full_text.is_empty() {
        schema.add_index(Index {
            name: object_name(name, "fts_idx"),
            table: name.clone(),
            unique: false,
            method: Some("gin".to_string()),
            keys: quote("fts"),
            predicate: None,
            with: BTreeMap::new(),
        });
    }
    for field in vector.fields.iter().filter(|f| f.index) {
        if vector.partition_by.as_deref() == Some(field.name.as_str()) {
            // Each partition holds one value: partition pruning is the index.
            continue;
        }
        schema.add_index(Index {
            name: object_name(name, &format!("{}_idx", field.name)),
            table: name.clone(),
            unique: false,
            method: None,
            keys: quote(&field.name),
            predicate: None,
            with: BTreeMap::new(),
        });
    }
    if vector.partition_by.is_some() {
        add_function(schema, "ensure_list_partition", "text, text")?;
    }
    Ok(())
}

#[derive(Serialize)]
struct FieldCtx<'a> {
    name: &'a str,
    #[serde(rename = "type")]
    ty: &'static str,
    index: bool,
    const_name: String,
    value_type: String,
}

#[derive(Serialize)]
struct VectorCtx<'a> {
    spec_file: &'a str,
    schema: &'a str,
    vector: &'a Vector,
    embedding_type: String,
    def: String,
    fields: Vec<FieldCtx<'a>>,
    entity: EntityCtx,
}

pub(super) fn render(
    vector: &Vector,
    spec: &Spec,
    schema: &Schema,
    spec_file: &str,
) -> Result<String, GenError> {
    // The entity covers the columns SeaORM can type; the embedding and the tsvector are read
    // and written through COLLECTION.
    let mut table = schema.tables[&vector.name].clone();
    table
        .columns
        .retain(|c| c.name != "embedding" && c.name != "fts");
    let fields = vector
        .fields
        .iter()
        .map(|f| FieldCtx {
            name: &f.name,
            ty: f.ty.name(),
            index: f.index,
            const_name: f.name.to_uppercase(),
            value_type: pgstack_spec::defs::field_value_type(f.ty).to_string(),
        })
        .collect();
    templates::render(
        "rust/vector.rs",
        &VectorCtx {
            spec_file,
            schema: &spec.project.schema,
            vector,
            embedding_type: embedding_type(vector),
            def: pgstack_spec::defs::collection_def(&spec.project.schema, vector).to_string(),
            fields,
            entity: EntityCtx::new(
                &table,
                Some(
                    "The `embedding` and `fts` columns are left out: read and write them through \
                     `COLLECTION`, which checks dimensions and keeps searches index-shaped.",
                ),
            ),
        },
    )
}
