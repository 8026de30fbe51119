//! TOML text -> validated [`Spec`], collecting every error.
//!
//! This file reads `[project]` and the facility arrays and holds what several facilities share
//! (names, declared fields, durability); each facility's reader, with the keys it allows, is in
//! its own file (`kv.rs`, `queue.rs`, ...).

mod cache;
mod document;
mod kv;
mod queue;
mod rate_limit;
mod schedule;
mod vector;

pub use queue::queue_tables;

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::error::{Ctxt, SpecErrors};
use crate::model::*;
use crate::names::{is_facility_name, is_rust_keyword, is_sql_name};
use crate::reader::{Table, Value, list, type_name};

const TOP_LEVEL_KEYS: &[&str] = &[
    "project",
    "kv",
    "document",
    "queue",
    "cache",
    "rate_limit",
    "vector",
];

/// Columns every document table has; declared fields may not reuse them.
pub const DOCUMENT_COLUMNS: &[&str] = &["id", "doc", "version", "created_at", "updated_at"];

/// Columns every vector collection has; declared fields may not reuse them.
pub const VECTOR_COLUMNS: &[&str] = &["id", "embedding", "fts", "created_at", "updated_at"];

pub(crate) fn parse(path: &str, source: &str) -> Result<Spec, SpecErrors> {
    let mut cx = Ctxt::new(path, source);
    let root = match DeTable::parse(source) {
        Ok(root) => root,
        Err(e) => {
            let span = e.span().unwrap_or(0..0);
            cx.error(&span, format!("invalid TOML: {}", e.message().trim_end()));
            return Err(cx.into_errors());
        }
    };
    let root_value: Value<'_> = toml::Spanned::new(root.span(), DeValue::Table(root.into_inner()));
    let Some(top) = Table::open(&mut cx, &root_value, "the spec", TOP_LEVEL_KEYS) else {
        return Err(cx.into_errors());
    };

    let project = read_project(&mut cx, &top);
    let mut names = Names::default();
    let mut kv = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Kv, kv::KEYS) {
        if let Some(f) = kv::read_kv(&mut cx, &table, span, &mut names) {
            kv.push(f);
        }
    }
    let mut documents = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Document, document::KEYS) {
        if let Some(f) = document::read_document(&mut cx, &table, span, &mut names) {
            documents.push(f);
        }
    }
    let mut queues = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Queue, queue::KEYS) {
        if let Some(f) = queue::read_queue(&mut cx, &table, span, &mut names) {
            queues.push(f);
        }
    }
    let mut caches = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Cache, cache::KEYS) {
        if let Some(f) = cache::read_cache(&mut cx, &table, span, &mut names) {
            caches.push(f);
        }
    }
    let mut rate_limits = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::RateLimit, rate_limit::KEYS) {
        if let Some(f) = rate_limit::read_rate_limit(&mut cx, &table, span, &mut names) {
            rate_limits.push(f);
        }
    }
    let mut vectors = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Vector, vector::KEYS) {
        if let Some(f) = vector::read_vector(&mut cx, &table, span, &mut names) {
            vectors.push(f);
        }
    }
    check_table_names(
        &mut cx,
        &kv,
        &documents,
        &queues,
        &caches,
        &rate_limits,
        &vectors,
    );

    cx.finish()?;
    kv.sort_by(|a, b| a.name.cmp(&b.name));
    documents.sort_by(|a, b| a.name.cmp(&b.name));
    queues.sort_by(|a, b| a.name.cmp(&b.name));
    caches.sort_by(|a, b| a.name.cmp(&b.name));
    rate_limits.sort_by(|a, b| a.name.cmp(&b.name));
    vectors.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Spec {
        project,
        kv,
        documents,
        queues,
        caches,
        rate_limits,
        vectors,
    })
}

fn read_project(cx: &mut Ctxt<'_>, top: &Table<'_, '_>) -> Project {
    let mut project = Project {
        name: None,
        schema: "public".to_string(),
        migrations_dir: "migration".to_string(),
        accessors_dir: "src/pgstack".to_string(),
    };
    let Some(value) = top.get("project") else {
        return project;
    };
    let allowed = ["name", "schema", "migrations_dir", "accessors_dir"];
    let Some(table) = Table::open(cx, value, "[project]", &allowed) else {
        return project;
    };
    if let Some((name, span)) = table.string(cx, "name") {
        if name.chars().any(|c| c.is_control()) || name.len() > 100 {
            cx.error(
                &span,
                "`name` in [project] must be at most 100 characters with no control characters",
            );
        } else {
            project.name = Some(name.to_string());
        }
    }
    if let Some((schema, span)) = table.string(cx, "schema") {
        if is_sql_name(schema) {
            project.schema = schema.to_string();
        } else {
            cx.error(
                &span,
                format!(
                    "`schema` in [project] must match `^[a-z_][a-z0-9_]*$`, be at most 63 bytes \
                     and not start with `pg_`, found `{schema}`"
                ),
            );
        }
    }
    for key in ["migrations_dir", "accessors_dir"] {
        if let Some((dir, span)) = table.string(cx, key) {
            match check_relative_dir(dir) {
                Ok(dir) => {
                    if key == "migrations_dir" {
                        project.migrations_dir = dir;
                    } else {
                        project.accessors_dir = dir;
                    }
                }
                Err(why) => cx.error(&span, format!("`{key}` in [project] {why}, found `{dir}`")),
            }
        }
    }
    if project.migrations_dir == project.accessors_dir {
        let span = table
            .key_span("accessors_dir")
            .unwrap_or(table.span.clone());
        cx.error(
            &span,
            "`accessors_dir` and `migrations_dir` in [project] must be different folders",
        );
    }
    project
}

/// Paths in the spec are relative to it; generated files must not depend on where it lives.
fn check_relative_dir(dir: &str) -> Result<String, &'static str> {
    let trimmed = dir.trim_end_matches('/');
    if trimmed.is_empty() || trimmed == "." {
        return Err("must name a folder below the spec file");
    }
    if trimmed.starts_with('/') || trimmed.contains('\\') || trimmed.contains(':') {
        return Err("must be a relative path with `/` separators");
    }
    if trimmed
        .split('/')
        .any(|part| part.is_empty() || part == "." || part == "..")
    {
        return Err("must be a folder below the spec file, without empty, `.` or `..` segments");
    }
    Ok(trimmed.to_string())
}

/// The `[[kind]]` array's tables, each with the span of its header.
fn facility_tables<'a, 'i>(
    cx: &mut Ctxt<'_>,
    top: &Table<'a, 'i>,
    kind: FacilityKind,
    allowed: &[&str],
) -> Vec<(Table<'a, 'i>, Range<usize>)> {
    let key = kind.key();
    let Some(value) = top.get(key) else {
        return Vec::new();
    };
    let DeValue::Array(items) = value.get_ref() else {
        cx.error(
            &value.span(),
            format!(
                "`{key}` must be an array of tables (write `[[{key}]]`), found {}",
                type_name(value)
            ),
        );
        return Vec::new();
    };
    let mut out = Vec::new();
    for item in items.iter() {
        let name = match item.get_ref() {
            DeValue::Table(t) => t.get("name").and_then(|n| match n.get_ref() {
                DeValue::String(s) => Some(s.to_string()),
                _ => None,
            }),
            _ => None,
        };
        let context = match &name {
            Some(n) => format!("[[{key}]] `{n}`"),
            None => format!("[[{key}]]"),
        };
        if let Some(table) = Table::open(cx, item, context, allowed) {
            let span = item.span();
            out.push((table, span));
        }
    }
    out
}

/// Facility names seen so far, to report duplicates across kinds.
#[derive(Default)]
pub(super) struct Names {
    seen: BTreeMap<String, (FacilityKind, usize)>,
}

pub(super) fn read_name(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    kind: FacilityKind,
    names: &mut Names,
) -> Option<String> {
    let (name, span) = table.required_string(
        cx,
        "name",
        "every facility needs a `name` matching `^[a-z][a-z0-9_]{0,39}$`",
    )?;
    if !is_facility_name(name) {
        cx.error(
            &span,
            format!(
                "facility name `{name}` in [[{}]] must match `^[a-z][a-z0-9_]{{0,39}}$`: \
                 a lower-case letter, then up to 39 lower-case letters, digits or `_`",
                kind.key()
            ),
        );
        return None;
    }
    if name.starts_with("pgstack_") {
        cx.error(
            &span,
            format!(
                "facility name `{name}` starts with `pgstack_`, which pgstack keeps for its own \
                 tables; choose another name"
            ),
        );
        return None;
    }
    if let Some((other_kind, other_offset)) = names.seen.get(name) {
        let (line, _) = crate::error::line_column(cx.source(), *other_offset);
        cx.error(
            &span,
            format!(
                "facility name `{name}` is already used by the [[{}]] on line {line}; \
                 names are unique across the whole spec",
                other_kind.key()
            ),
        );
        return None;
    }
    names.seen.insert(name.to_string(), (kind, span.start));
    Some(name.to_string())
}

/// A facility's `fields` table, each entry read by `read` with the table's context. Field names
/// are user-chosen keys, so the table allows any key; `read` checks each. `None` (reported)
/// when `fields` is not a table.
pub(super) fn read_fields<T>(
    cx: &mut Ctxt<'_>,
    facility: &Table<'_, '_>,
    read: impl Fn(&mut Ctxt<'_>, &str, &toml::Spanned<toml::de::DeString<'_>>, &Value<'_>) -> Option<T>,
) -> Option<Vec<T>> {
    let Some(value) = facility.get("fields") else {
        return Some(Vec::new());
    };
    let context = format!("{}.fields", facility.context);
    let DeValue::Table(entries) = value.get_ref() else {
        cx.error(
            &value.span(),
            format!("{context} must be a table, found {}", type_name(value)),
        );
        return None;
    };
    Some(
        entries
            .iter()
            .filter_map(|(key, field)| read(cx, &context, key, field))
            .collect(),
    )
}

/// Checks a declared field's name: an SQL and Rust identifier of at most 40 bytes, not one of
/// the columns every table of the kind has (`reserved`: what the table is, its columns).
pub(super) fn check_field_name(
    cx: &mut Ctxt<'_>,
    key: &toml::Spanned<toml::de::DeString<'_>>,
    context: &str,
    (table_kind, reserved): (&str, &[&str]),
    advice: &str,
) -> bool {
    let name = key.get_ref().as_ref();
    if !is_sql_name(name) || name.len() > 40 || is_rust_keyword(name) {
        cx.error(
            &key.span(),
            format!(
                "field name `{name}` in {context} must match `^[a-z_][a-z0-9_]{{0,39}}$` and not \
                 be a Rust keyword; {advice}"
            ),
        );
        return false;
    }
    if reserved.contains(&name) {
        cx.error(
            &key.span(),
            format!(
                "field name `{name}` in {context} is a column every {table_kind} already has \
                 ({}); {advice}",
                list(reserved)
            ),
        );
        return false;
    }
    true
}

pub(super) fn field_type(cx: &mut Ctxt<'_>, value: &Value<'_>, context: &str) -> Option<FieldType> {
    let names: Vec<&str> = FieldType::ALL.iter().map(|(n, _)| *n).collect();
    match value.get_ref() {
        DeValue::String(s) => match FieldType::ALL.iter().find(|(n, _)| *n == s.as_ref()) {
            Some((_, t)) => Some(*t),
            None => {
                cx.error(
                    &value.span(),
                    format!(
                        "type of {context} must be one of {}, found `{s}`",
                        list(&names)
                    ),
                );
                None
            }
        },
        _ => {
            cx.error(
                &value.span(),
                format!(
                    "type of {context} must be a string, one of {}, found {}",
                    list(&names),
                    type_name(value)
                ),
            );
            None
        }
    }
}

/// Tables each facility creates, by name; two facilities must not claim the same one.
fn check_table_names(
    cx: &mut Ctxt<'_>,
    kv: &[Kv],
    documents: &[Document],
    queues: &[Queue],
    caches: &[Cache],
    rate_limits: &[RateLimit],
    vectors: &[Vector],
) {
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let mut claims: Vec<(String, String, Range<usize>)> = Vec::new();
    for f in kv {
        claims.push((
            f.name.clone(),
            format!("[[kv]] `{}`", f.name),
            f.span.clone(),
        ));
    }
    for f in documents {
        claims.push((
            f.name.clone(),
            format!("[[document]] `{}`", f.name),
            f.span.clone(),
        ));
    }
    for q in queues {
        let owner = format!("[[queue]] `{}`", q.name);
        for table in queue_tables(q) {
            claims.push((table, owner.clone(), q.span.clone()));
        }
    }
    for c in caches {
        let owner = format!("[[cache]] `{}`", c.name);
        for table in std::iter::once(c.name.clone()).chain(c.partition_names()) {
            claims.push((table, owner.clone(), c.span.clone()));
        }
    }
    for r in rate_limits {
        claims.push((
            r.name.clone(),
            format!("[[rate_limit]] `{}`", r.name),
            r.span.clone(),
        ));
    }
    for v in vectors {
        claims.push((
            v.name.clone(),
            format!("[[vector]] `{}`", v.name),
            v.span.clone(),
        ));
    }
    claims.sort_by_key(|(_, _, span)| span.start);
    for (table, owner, span) in claims {
        if let Some(first) = owners.get(&table) {
            if first != &owner {
                cx.error(
                    &span,
                    format!(
                        "{owner} needs a table named `{table}`, which {first} already uses; \
                         rename one of them"
                    ),
                );
            }
        } else {
            owners.insert(table, owner);
        }
    }
}

pub(super) fn read_durability(cx: &mut Ctxt<'_>, table: &Table<'_, '_>) -> Durability {
    table.choice(
        cx,
        "durability",
        &[
            ("unlogged", Durability::Unlogged),
            ("logged", Durability::Logged),
        ],
        Durability::Unlogged,
    )
}
