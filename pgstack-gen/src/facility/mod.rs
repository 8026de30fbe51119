//! Spec facilities -> the physical schema they need and the accessor modules they get.
//!
//! One module per facility kind, named as in the spec. Each turns its part of the validated
//! spec into [`Schema`] objects (tables, indexes, helper functions) and renders its accessor
//! module. Nothing here touches the disk or a database.

mod cache;
mod document;
mod kv;
mod queue;
mod rate_limit;
mod vector;

use pgstack_spec::{FacilityRef, Spec, ValueType};
use serde::Serialize;

use crate::error::GenError;
use crate::schema::{Column, Function, Schema, Table};
use crate::templates;

/// The schema every facility of `spec` needs, in one PostgreSQL schema.
pub fn desired_schema(spec: &Spec) -> Result<Schema, GenError> {
    let mut schema = Schema::new(&spec.project.schema);
    for kv in &spec.kv {
        kv::add_objects(kv, &mut schema);
    }
    for document in &spec.documents {
        document::add_objects(document, &mut schema)?;
    }
    for queue in &spec.queues {
        queue::add_objects(queue, &mut schema)?;
    }
    for cache in &spec.caches {
        cache::add_objects(cache, &mut schema);
    }
    for limit in &spec.rate_limits {
        rate_limit::add_objects(limit, &mut schema);
    }
    for vector in &spec.vectors {
        vector::add_objects(vector, &mut schema)?;
    }
    Ok(schema)
}

/// A generated accessor module: its file name inside `accessors_dir` and its contents.
pub struct Module {
    pub name: String,
    pub contents: String,
}

/// Every accessor module of `spec`, plus `mod.rs`, formatted; `schema` is
/// [`desired_schema`]`(spec)`, computed once by the caller.
pub fn accessor_modules(
    spec: &Spec,
    schema: &Schema,
    spec_file: &str,
    migrations: &[String],
) -> Result<Vec<Module>, GenError> {
    let header = templates::header(spec_file);
    let mut modules = Vec::new();
    for facility in spec.facilities() {
        let source = match facility {
            FacilityRef::Kv(kv) => kv::render(kv, spec, schema, spec_file)?,
            FacilityRef::Document(document) => document::render(document, spec, schema, spec_file)?,
            FacilityRef::Queue(queue) => queue::render(queue, spec, schema, spec_file)?,
            FacilityRef::Cache(cache) => cache::render(cache, spec, schema, spec_file)?,
            FacilityRef::RateLimit(limit) => rate_limit::render(limit, spec, schema, spec_file)?,
            FacilityRef::Vector(vector) => vector::render(vector, spec, schema, spec_file)?,
        };
        modules.push(Module {
            name: format!("{}.rs", facility.name()),
            contents: templates::format_rust(facility.name(), &source, &header)?,
        });
    }
    let mut names: Vec<&str> = spec.facilities().map(|f| f.name()).collect();
    names.sort();
    #[derive(Serialize)]
    struct ModCtx<'a> {
        spec_file: &'a str,
        modules: Vec<&'a str>,
        /// `db::upkeep()`'s builder calls, e.g. `.cache(&pages::CACHE)`, in module order.
        upkeep: Vec<String>,
        /// `db::verify()`'s expectations: the migrations, and every table, schema-qualified.
        migrations: &'a [String],
        tables: Vec<String>,
    }
    let source = templates::render(
        "rust/accessors_mod.rs",
        &ModCtx {
            spec_file,
            modules: names,
            upkeep: upkeep_calls(spec),
            migrations,
            tables: schema
                .tables
                .keys()
                .map(|t| format!("{}.{t}", schema.schema))
                .collect(),
        },
    )?;
    modules.push(Module {
        name: "mod.rs".to_string(),
        contents: templates::format_rust("mod.rs", &source, &header)?,
    });
    modules.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(modules)
}

/// `db::upkeep()`'s builder calls: every cache, kv store, rate limiter and queue. The runtime's
/// builder keeps those with upkeep to do (kv with `expiry`, queues with an `archive`, ...), so
/// that rule lives in one place (`pgstack::upkeep`).
fn upkeep_calls(spec: &Spec) -> Vec<String> {
    let mut calls: Vec<(String, String)> = spec
        .facilities()
        .filter_map(|facility| {
            let name = facility.name().to_string();
            let call = match facility {
                FacilityRef::Cache(_) => format!(".cache(&{name}::CACHE)"),
                FacilityRef::RateLimit(_) => format!(".rate_limiter(&{name}::LIMITER)"),
                FacilityRef::Kv(kv) => match kv.value {
                    ValueType::Jsonb => format!(".json_kv(&{name}::STORE)"),
                    ValueType::Bytea => format!(".bytes_kv(&{name}::STORE)"),
                },
                FacilityRef::Queue(_) => format!(".queue(&{name}::QUEUE)"),
                _ => return None,
            };
            Some((name, call))
        })
        .collect();
    calls.sort();
    calls.into_iter().map(|(_, call)| call).collect()
}

/// Adds the helper function `pgstack_<function>` rendered from `sql/functions/<function>.sql`.
/// Facilities sharing a helper add the same definition; the schema keeps one.
pub(crate) fn add_function(
    schema: &mut Schema,
    function: &str,
    args: &str,
) -> Result<(), GenError> {
    #[derive(Serialize)]
    struct Ctx<'a> {
        schema: &'a str,
    }
    let definition = templates::render(
        &format!("sql/functions/{function}.sql"),
        &Ctx {
            schema: &schema.schema,
        },
    )?;
    schema.add_function(Function {
        name: format!("pgstack_{function}"),
        args: args.to_string(),
        definition,
    });
    Ok(())
}

/// What the `rust/entity.rs` template needs to write a SeaORM entity for a table.
#[derive(Serialize)]
pub(crate) struct EntityCtx {
    module: String,
    table: String,
    note: Option<String>,
    fields: Vec<EntityField>,
}

#[derive(Serialize)]
struct EntityField {
    name: String,
    rust_type: String,
    attrs: String,
}

impl EntityCtx {
    pub(crate) fn new(table: &Table, note: Option<&str>) -> EntityCtx {
        EntityCtx::named("entity", table, note)
    }

    /// An entity in a module other than `entity` (for facilities with several tables).
    pub(crate) fn named(module: &str, table: &Table, note: Option<&str>) -> EntityCtx {
        let fields = table
            .columns
            .iter()
            .map(|column| entity_field(table, column))
            .collect();
        EntityCtx {
            module: module.to_string(),
            table: table.name.clone(),
            note: note.map(str::to_string),
            fields,
        }
    }
}

fn entity_field(table: &Table, column: &Column) -> EntityField {
    let (rust_type, column_type) = match column.sql_type.as_str() {
        "text" => ("String", Some("Text")),
        "bigint" => ("i64", None),
        "integer" => ("i32", None),
        "smallint" => ("i16", None),
        "bigint[]" => ("Vec<i64>", None),
        "boolean" => ("bool", None),
        "double precision" => ("f64", None),
        "timestamptz" => ("DateTimeWithTimeZone", None),
        "uuid" => ("Uuid", None),
        "jsonb" => ("Json", Some("JsonBinary")),
        "bytea" => ("Vec<u8>", None),
        other => unreachable!("facilities only declare known column types, found `{other}`"),
    };
    let mut attrs = Vec::new();
    if table.primary_key.contains(&column.name) {
        attrs.push("primary_key".to_string());
        if !column.identity {
            attrs.push("auto_increment = false".to_string());
        }
    }
    if let Some(ty) = column_type {
        attrs.push(format!("column_type = \"{ty}\""));
    }
    let rust_type = if column.not_null {
        rust_type.to_string()
    } else {
        format!("Option<{rust_type}>")
    };
    EntityField {
        name: column.name.clone(),
        rust_type,
        attrs: attrs.join(", "),
    }
}
