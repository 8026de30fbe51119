//! `[[document]]`: a `jsonb` column with a GIN index, declared fields as generated columns.

use pgstack_spec::{DocField, Document, FieldType, GinOps, Spec};
use serde::Serialize;

use super::{EntityCtx, add_function};
use crate::error::GenError;
use crate::schema::{Check, Column, Index, Schema, Table, literal, object_name, quote};
use crate::templates;

pub(super) fn add_objects(document: &Document, schema: &mut Schema) -> Result<(), GenError> {
    let name = &document.name;
    let mut columns = vec![
        Column::new("id", "bigint", true).identity(),
        Column::new("doc", "jsonb", true),
        Column::new("version", "bigint", true).default("1"),
        Column::new("created_at", "timestamptz", true).default("now()"),
        Column::new("updated_at", "timestamptz", true).default("now()"),
    ];
    for field in &document.fields {
        columns.push(
            Column::new(&field.name, field.ty.sql(), false)
                .generated(field_expression(&schema.schema, field)),
        );
    }
    schema.add_table(Table {
        name: name.clone(),
        kind: "document".to_string(),
        facility: name.clone(),
        columns,
        primary_key: vec!["id".to_string()],
        checks: vec![Check {
            name: object_name(name, "doc_is_object"),
            expr: format!("jsonb_typeof({}) = 'object'", quote("doc")),
        }],
        unlogged: false,
        storage: Default::default(),
        partition_by: None,
        partition_of: None,
        comment: None,
    });
    let gin_keys = match document.gin {
        GinOps::JsonbPathOps => Some(format!("{} jsonb_path_ops", quote("doc"))),
        GinOps::JsonbOps => Some(quote("doc")),
        GinOps::None => None,
    };
    if let Some(keys) = gin_keys {
        schema.add_index(Index {
            name: object_name(name, "doc_idx"),
            table: name.clone(),
            unique: false,
            method: Some("gin".to_string()),
            keys,
            predicate: None,
            with: Default::default(),
        });
    }
    for field in &document.fields {
        if let Some(index_name) = field_index_name(name, field) {
            schema.add_index(Index {
                name: index_name,
                table: name.clone(),
                unique: field.unique,
                method: None,
                keys: quote(&field.name),
                predicate: None,
                with: Default::default(),
            });
        }
    }
    for (function, args) in [
        ("jsonb_merge_patch", "jsonb, jsonb"),
        ("jsonb_set_path", "jsonb, text[], jsonb"),
    ] {
        add_function(schema, function, args)?;
    }
    if document
        .fields
        .iter()
        .any(|f| f.ty == FieldType::Timestamptz)
    {
        add_function(schema, "iso_timestamptz", "text")?;
    }
    Ok(())
}

/// `unique` gives `<table>_<field>_key`, `index` gives `<table>_<field>_idx`.
fn field_index_name(table: &str, field: &DocField) -> Option<String> {
    pgstack_spec::names::document_field_index(table, field)
}

/// The generated column's expression: the text at the path, cast to the field's type.
fn field_expression(schema: &str, field: &DocField) -> String {
    let doc = quote("doc");
    let (text_op, json_op, key) = if field.path.len() == 1 {
        ("->>", "->", literal(&field.path[0]))
    } else {
        (
            "#>>",
            "#>",
            literal(&format!("{{{}}}", field.path.join(","))),
        )
    };
    let text = format!("{doc} {text_op} {key}");
    match field.ty {
        FieldType::Text => text,
        FieldType::Jsonb => format!("{doc} {json_op} {key}"),
        // A plain cast to timestamptz is not immutable; see templates/sql/functions.
        FieldType::Timestamptz => format!(
            "{}.{}({text})",
            quote(schema),
            quote("pgstack_iso_timestamptz")
        ),
        other => format!("({text})::{}", other.sql()),
    }
}

#[derive(Serialize)]
struct FieldCtx<'a> {
    name: &'a str,
    path: String,
    #[serde(rename = "type")]
    ty: &'static str,
    unique: bool,
    index: bool,
    const_name: String,
    /// What `Field<V>` binds (`pgstack_spec::defs::field_value_type`).
    field_type: String,
}

#[derive(Serialize)]
struct DocumentCtx<'a> {
    spec_file: &'a str,
    schema: &'a str,
    document: &'a Document,
    /// The `DocumentDef` expression (`pgstack_spec::defs`).
    def: String,
    fields: Vec<FieldCtx<'a>>,
    entity: EntityCtx,
}

pub(super) fn render(
    document: &Document,
    spec: &Spec,
    schema: &Schema,
    spec_file: &str,
) -> Result<String, GenError> {
    let fields = document
        .fields
        .iter()
        .map(|field| FieldCtx {
            name: &field.name,
            path: field.path.join("."),
            ty: field.ty.name(),
            unique: field.unique,
            index: field.index,
            const_name: field.name.to_uppercase(),
            field_type: pgstack_spec::defs::field_value_type(field.ty).to_string(),
        })
        .collect();
    let table = &schema.tables[&document.name];
    templates::render(
        "rust/document.rs",
        &DocumentCtx {
            spec_file,
            schema: &spec.project.schema,
            document,
            def: pgstack_spec::defs::document_def(&spec.project.schema, document).to_string(),
            fields,
            entity: EntityCtx::new(
                table,
                Some(
                    "Declared fields are generated columns: read them, but leave them `NotSet` \
                     when inserting or updating through the entity.",
                ),
            ),
        },
    )
}
