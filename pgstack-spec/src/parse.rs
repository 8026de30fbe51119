//! TOML text -> validated [`Spec`], collecting every error.

use std::collections::BTreeMap;
use std::ops::Range;

use toml::de::{DeTable, DeValue};

use crate::duration::SpecDuration;
use crate::error::{Ctxt, SpecErrors};
use crate::model::*;
use crate::names::{is_facility_name, is_path_segment, is_rust_keyword, is_sql_name};
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
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Kv) {
        if let Some(f) = read_kv(&mut cx, &table, span, &mut names) {
            kv.push(f);
        }
    }
    let mut documents = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Document) {
        if let Some(f) = read_document(&mut cx, &table, span, &mut names) {
            documents.push(f);
        }
    }
    let mut queues = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Queue) {
        if let Some(f) = read_queue(&mut cx, &table, span, &mut names) {
            queues.push(f);
        }
    }
    let mut caches = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Cache) {
        if let Some(f) = read_cache(&mut cx, &table, span, &mut names) {
            caches.push(f);
        }
    }
    let mut rate_limits = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::RateLimit) {
        if let Some(f) = read_rate_limit(&mut cx, &table, span, &mut names) {
            rate_limits.push(f);
        }
    }
    let mut vectors = Vec::new();
    for (table, span) in facility_tables(&mut cx, &top, FacilityKind::Vector) {
        if let Some(f) = read_vector(&mut cx, &table, span, &mut names) {
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
    let allowed = allowed_keys(kind);
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

fn allowed_keys(kind: FacilityKind) -> &'static [&'static str] {
    match kind {
        FacilityKind::Kv => &["name", "value", "expiry"],
        FacilityKind::Document => &["name", "gin", "fields"],
        FacilityKind::Queue => &[
            "name",
            "visibility_timeout",
            "max_attempts",
            "backoff",
            "dead_letter",
            "priorities",
            "unique",
            "notify",
            "archive",
            "payload",
        ],
        FacilityKind::Cache => &[
            "name",
            "default_ttl",
            "durability",
            "partitions",
            "max_entries",
            "value",
        ],
        FacilityKind::RateLimit => &[
            "name",
            "algorithm",
            "limit",
            "period",
            "burst",
            "durability",
        ],
        FacilityKind::Vector => &[
            "name",
            "dimensions",
            "element",
            "distance",
            "index",
            "full_text",
            "language",
            "partition_by",
            "id",
            "fields",
        ],
    }
}

/// Facility names seen so far, to report duplicates across kinds.
#[derive(Default)]
struct Names {
    seen: BTreeMap<String, (FacilityKind, usize)>,
}

fn read_name(
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

fn read_kv(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Kv> {
    let name = read_name(cx, table, FacilityKind::Kv, names);
    let value = table.choice(
        cx,
        "value",
        &[("jsonb", ValueType::Jsonb), ("bytea", ValueType::Bytea)],
        ValueType::Jsonb,
    );
    let expiry = table.bool(cx, "expiry", false);
    Some(Kv {
        name: name?,
        value,
        expiry,
        span,
    })
}

fn read_document(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Document> {
    let name = read_name(cx, table, FacilityKind::Document, names);
    let gin = table.choice(
        cx,
        "gin",
        &[
            ("jsonb_path_ops", GinOps::JsonbPathOps),
            ("jsonb_ops", GinOps::JsonbOps),
            ("none", GinOps::None),
        ],
        GinOps::JsonbPathOps,
    );
    let mut fields = read_fields(cx, table, read_doc_field)?;
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    Some(Document {
        name: name?,
        gin,
        fields,
        span,
    })
}

/// A facility's `fields` table, each entry read by `read` with the table's context. Field names
/// are user-chosen keys, so the table allows any key; `read` checks each. `None` (reported)
/// when `fields` is not a table.
fn read_fields<T>(
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
fn check_field_name(
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

fn read_doc_field(
    cx: &mut Ctxt<'_>,
    context: &str,
    key: &toml::Spanned<toml::de::DeString<'_>>,
    value: &Value<'_>,
) -> Option<DocField> {
    let name = key.get_ref().as_ref();
    let mut ok = check_field_name(
        cx,
        key,
        context,
        ("document table", DOCUMENT_COLUMNS),
        "give the field another name and keep the JSON key in `path`",
    );
    let field_context = format!("{context}.{name}");
    let (path_text, path_span, ty, unique, index) = match value.get_ref() {
        // Shorthand: `email = "text"`.
        DeValue::String(_) => {
            let ty = field_type(cx, value, &field_context)?;
            (name.to_string(), key.span(), ty, false, false)
        }
        DeValue::Table(_) => {
            let table = Table::open(
                cx,
                value,
                field_context.clone(),
                &["path", "type", "unique", "index"],
            )?;
            let (path, path_span) = match table.string(cx, "path") {
                Some((p, s)) => (p.to_string(), s),
                None => (name.to_string(), key.span()),
            };
            let ty = match table.get("type") {
                Some(v) => field_type(cx, v, &field_context)?,
                None => FieldType::Text,
            };
            let unique = table.bool(cx, "unique", false);
            let index = table.bool(cx, "index", false);
            (path, path_span, ty, unique, index)
        }
        _ => {
            cx.error(
                &value.span(),
                format!(
                    "{field_context} must be a type name such as `\"text\"` or a table like \
                     `{{ path = \"a.b\", type = \"text\", index = true }}`, found {}",
                    type_name(value)
                ),
            );
            return None;
        }
    };
    let path: Vec<String> = path_text.split('.').map(str::to_string).collect();
    if path.iter().any(|s| !is_path_segment(s)) {
        cx.error(
            &path_span,
            format!(
                "`path` of {field_context} must be dot-separated keys of letters, digits, `_` or \
                 `-`, found `{path_text}`"
            ),
        );
        ok = false;
    }
    if !ok {
        return None;
    }
    Some(DocField {
        name: name.to_string(),
        path,
        ty,
        unique,
        index,
    })
}

fn field_type(cx: &mut Ctxt<'_>, value: &Value<'_>, context: &str) -> Option<FieldType> {
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

fn read_queue(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Queue> {
    let name = read_name(cx, table, FacilityKind::Queue, names);
    let visibility_timeout = table
        .duration(cx, "visibility_timeout")
        .unwrap_or(SpecDuration::from_millis(30_000));
    if visibility_timeout.as_millis() < 1_000
        && let Some(span) = table.key_span("visibility_timeout")
    {
        cx.error(
            &span,
            format!(
                "`visibility_timeout` in {} must be at least 1s, found `{visibility_timeout}`",
                table.context
            ),
        );
    }
    let max_attempts = table
        .integer(cx, "max_attempts", (1, 1000), "")
        .map_or(5, |(n, _)| n as u32);
    let backoff = read_backoff(cx, table);
    let archive = read_archive(cx, table);
    Some(Queue {
        name: name?,
        visibility_timeout,
        max_attempts,
        backoff,
        dead_letter: table.bool(cx, "dead_letter", true),
        priorities: table.bool(cx, "priorities", false),
        unique: table.bool(cx, "unique", false),
        notify: table.bool(cx, "notify", true),
        archive,
        payload: table.choice(
            cx,
            "payload",
            &[("jsonb", ValueType::Jsonb), ("bytea", ValueType::Bytea)],
            ValueType::Jsonb,
        ),
        span,
    })
}

fn read_backoff(cx: &mut Ctxt<'_>, queue: &Table<'_, '_>) -> Backoff {
    let mut backoff = Backoff {
        kind: BackoffKind::Exponential,
        initial: SpecDuration::from_millis(1_000),
        max: SpecDuration::from_millis(600_000),
        jitter: true,
    };
    let Some(value) = queue.get("backoff") else {
        return backoff;
    };
    let context = format!("`backoff` of {}", queue.context);
    let Some(table) = Table::open(cx, value, context, &["kind", "initial", "max", "jitter"]) else {
        return backoff;
    };
    backoff.kind = table.choice(
        cx,
        "kind",
        &[
            ("exponential", BackoffKind::Exponential),
            ("linear", BackoffKind::Linear),
            ("fixed", BackoffKind::Fixed),
        ],
        BackoffKind::Exponential,
    );
    if let Some(d) = table.duration(cx, "initial") {
        backoff.initial = d;
    }
    if let Some(d) = table.duration(cx, "max") {
        backoff.max = d;
    }
    backoff.jitter = table.bool(cx, "jitter", true);
    if backoff.max < backoff.initial {
        let span = table.key_span("max").unwrap_or(table.span.clone());
        cx.error(
            &span,
            format!(
                "`max` ({}) in {} must not be shorter than `initial` ({})",
                backoff.max, table.context, backoff.initial
            ),
        );
    }
    backoff
}

/// Partition sizes maintenance can name and align: whole hours dividing a day, or whole days.
fn valid_partition(d: SpecDuration) -> bool {
    const HOUR: u64 = 3_600_000;
    const DAY: u64 = 24 * HOUR;
    let ms = d.as_millis();
    ((HOUR..DAY).contains(&ms) && ms.is_multiple_of(HOUR) && DAY.is_multiple_of(ms))
        || (ms >= DAY && ms.is_multiple_of(DAY))
}

fn read_archive(cx: &mut Ctxt<'_>, queue: &Table<'_, '_>) -> Option<Archive> {
    let value = queue.get("archive")?;
    let context = format!("`archive` of {}", queue.context);
    let table = Table::open(cx, value, context, &["retention", "partition"])?;
    let partition = table
        .duration(cx, "partition")
        .unwrap_or(SpecDuration::from_millis(86_400_000));
    let retention = match table.duration(cx, "retention") {
        Some(r) => r,
        None => {
            if table.get("retention").is_none() {
                cx.error(
                    &table.span,
                    format!(
                        "{} is missing `retention`; say how long finished jobs are kept, e.g. `\"7d\"`",
                        table.context
                    ),
                );
            }
            return None;
        }
    };
    if !valid_partition(partition) {
        let span = table.key_span("partition").unwrap_or(table.span.clone());
        cx.error(
            &span,
            format!(
                "`partition` in {} must be whole hours dividing a day (`1h`, `2h`, `3h`, `4h`, \
                 `6h`, `8h`, `12h`) or whole days (`1d`, `7d`), found `{partition}`",
                table.context
            ),
        );
    }
    if retention < partition {
        let span = table.key_span("retention").unwrap_or(table.span.clone());
        cx.error(
            &span,
            format!(
                "`retention` ({retention}) in {} must be at least one `partition` ({partition})",
                table.context
            ),
        );
    }
    Some(Archive {
        retention,
        partition,
    })
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

/// The tables a queue owns.
pub fn queue_tables(queue: &Queue) -> Vec<String> {
    let mut tables = vec![queue.name.clone()];
    if queue.dead_letter {
        tables.push(format!("{}_dead", queue.name));
    }
    if queue.archive.is_some() {
        tables.push(format!("{}_archive", queue.name));
        tables.push(format!("{}_archive_default", queue.name));
    }
    tables
}

fn read_durability(cx: &mut Ctxt<'_>, table: &Table<'_, '_>) -> Durability {
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

fn read_cache(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Cache> {
    let name = read_name(cx, table, FacilityKind::Cache, names);
    let default_ttl = table.duration(cx, "default_ttl");
    let durability = read_durability(cx, table);
    let partitions = table
        .integer(cx, "partitions", (1, 64), "1 is a plain table")
        .map_or(1, |(n, _)| n as u32);
    let max_entries = table
        .integer(cx, "max_entries", (1, 1_000_000_000), "")
        .map(|(n, _)| n as u64);
    let value = table.choice(
        cx,
        "value",
        &[("jsonb", ValueType::Jsonb), ("bytea", ValueType::Bytea)],
        ValueType::Jsonb,
    );
    Some(Cache {
        name: name?,
        default_ttl,
        durability,
        partitions,
        max_entries,
        value,
        span,
    })
}

fn read_rate_limit(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<RateLimit> {
    let name = read_name(cx, table, FacilityKind::RateLimit, names);
    let algorithm = table.choice(
        cx,
        "algorithm",
        &[
            ("gcra", Algorithm::Gcra),
            ("fixed_window", Algorithm::FixedWindow),
            ("sliding_window", Algorithm::SlidingWindow),
            ("token_bucket", Algorithm::TokenBucket),
        ],
        Algorithm::Gcra,
    );
    let max_limit = if algorithm == Algorithm::SlidingWindow {
        10_000
    } else {
        1_000_000_000
    };
    let help = if algorithm == Algorithm::SlidingWindow {
        "a sliding window keeps one timestamp per request, so it takes at most 10000; use gcra for larger limits"
    } else {
        ""
    };
    let limit = if table.get("limit").is_none() {
        cx.error(
            &table.span,
            format!(
                "{} is missing `limit`; say how many requests a `period` allows, e.g. `limit = 100`",
                table.context
            ),
        );
        None
    } else {
        table
            .integer(cx, "limit", (1, max_limit), help)
            .map(|(n, _)| n as u64)
    };
    let period = if table.get("period").is_none() {
        cx.error(
            &table.span,
            format!(
                "{} is missing `period`; say how long `limit` requests take, e.g. `period = \"1h\"`",
                table.context
            ),
        );
        None
    } else {
        table.duration(cx, "period")
    };
    let burst = table
        .integer(cx, "burst", (1, 1_000_000_000), "")
        .map(|(n, _)| n as u64);
    if burst.is_some()
        && !matches!(algorithm, Algorithm::Gcra | Algorithm::TokenBucket)
        && let Some(span) = table.key_span("burst")
    {
        cx.error(
            &span,
            format!(
                "`burst` in {} applies to `gcra` and `token_bucket` only, not `{}`",
                table.context,
                algorithm.name()
            ),
        );
    }
    let durability = read_durability(cx, table);
    Some(RateLimit {
        name: name?,
        algorithm,
        limit: limit?,
        period: period?,
        burst,
        durability,
        span,
    })
}

fn read_vector(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    span: Range<usize>,
    names: &mut Names,
) -> Option<Vector> {
    let name = read_name(cx, table, FacilityKind::Vector, names);
    let context = table.context.clone();
    let element = table.choice(cx, "element", &Element::ALL, Element::Vector);
    let dimensions = if table.get("dimensions").is_none() {
        cx.error(
            &table.span,
            format!(
                "{context} is missing `dimensions`; give the length of the embeddings, e.g. \
                 `dimensions = 1536` for text-embedding-3-small"
            ),
        );
        None
    } else {
        let max = i64::from(element.max_dimensions());
        let help = format!(
            "pgvector stores at most {max} dimensions in a `{}` column",
            element.name()
        );
        table
            .integer(cx, "dimensions", (1, max), &help)
            .map(|(n, span)| (n as u32, span))
    };

    let default_distance = if element == Element::Bit {
        Distance::Hamming
    } else {
        Distance::Cosine
    };
    let distance = table.choice(cx, "distance", &Distance::ALL, default_distance);
    if !distance.fits(element)
        && let Some(span) = table.key_span("distance")
    {
        let allowed: &[&str] = if element == Element::Bit {
            &["hamming", "jaccard"]
        } else {
            &["cosine", "l2", "inner_product", "l1"]
        };
        cx.error(
            &span,
            format!(
                "`distance = \"{}\"` in {context} does not apply to `{}` embeddings; use {}",
                distance.name(),
                element.name(),
                list(allowed)
            ),
        );
    }

    let index = read_vector_index(cx, table, element, distance);
    if let (Some((dims, dims_span)), Some(index)) = (&dimensions, index)
        && index != VectorIndex::None
        && let Some(max) = element.max_indexed_dimensions()
        && *dims > max
    {
        let help = match element {
            Element::Vector if *dims <= 4_000 => {
                "; store them as `element = \"halfvec\"` (indexable up to 4000), or set `index = { method = \"none\" }` for exact search only"
            }
            _ => {
                "; reduce the dimensions (many models can shorten their output), or set `index = { method = \"none\" }` for exact search only"
            }
        };
        cx.error(
            dims_span,
            format!(
                "`dimensions = {dims}` in {context} is more than pgvector can index for `{}` \
                 embeddings (at most {max}){help}",
                element.name()
            ),
        );
    }

    let id = table.choice(
        cx,
        "id",
        &[
            ("bigint", IdType::Bigint),
            ("text", IdType::Text),
            ("uuid", IdType::Uuid),
        ],
        IdType::Bigint,
    );
    let language = match table.string(cx, "language") {
        Some((lang, span)) => {
            if is_sql_name(lang) && lang.len() <= 40 {
                lang.to_string()
            } else {
                cx.error(
                    &span,
                    format!(
                        "`language` in {context} must name a text search configuration such as \
                         `english` or `simple` (lower-case letters and `_`), found `{lang}`"
                    ),
                );
                "english".to_string()
            }
        }
        None => "english".to_string(),
    };

    let mut fields = read_fields(cx, table, read_vector_field).unwrap_or_default();
    fields.sort_by(|a, b| a.name.cmp(&b.name));

    let full_text = read_full_text(cx, table, &fields);
    let partition_by = match table.string(cx, "partition_by") {
        Some((field, span)) => match fields.iter().find(|f| f.name == field) {
            Some(f)
                if matches!(
                    f.ty,
                    FieldType::Bigint | FieldType::Integer | FieldType::Text | FieldType::Uuid
                ) =>
            {
                if matches!(index, Some(VectorIndex::Ivfflat { .. })) {
                    cx.error(
                        &span,
                        format!(
                            "`partition_by` in {context} needs an `hnsw` index: each tenant's \
                             partition is created empty, and IVFFlat computes its lists from the \
                             rows present when it is built"
                        ),
                    );
                }
                Some(field.to_string())
            }
            Some(f) => {
                cx.error(
                    &span,
                    format!(
                        "`partition_by` in {context} names `{field}`, a `{}` field; partition by \
                         a `bigint`, `integer`, `text` or `uuid` field",
                        f.ty.name()
                    ),
                );
                None
            }
            None => {
                cx.error(
                    &span,
                    format!(
                        "`partition_by` in {context} names `{field}`, which is not in \
                         [vector.fields]; declare it there, e.g. `{field} = \"bigint\"`"
                    ),
                );
                None
            }
        },
        None => None,
    };

    Some(Vector {
        name: name?,
        dimensions: dimensions?.0,
        element,
        distance,
        index: index?,
        id,
        fields,
        full_text,
        language,
        partition_by,
        span,
    })
}

fn read_vector_index(
    cx: &mut Ctxt<'_>,
    collection: &Table<'_, '_>,
    element: Element,
    distance: Distance,
) -> Option<VectorIndex> {
    let default = VectorIndex::Hnsw {
        m: 16,
        ef_construction: 64,
        ef_search: 100,
    };
    let Some(value) = collection.get("index") else {
        return Some(default);
    };
    let context = format!("`index` of {}", collection.context);
    let table = Table::open(
        cx,
        value,
        context.clone(),
        &[
            "method",
            "m",
            "ef_construction",
            "ef_search",
            "lists",
            "probes",
        ],
    )?;
    #[derive(Clone, Copy, PartialEq)]
    enum Method {
        Hnsw,
        Ivfflat,
        None,
    }
    if table.get("method").is_none() {
        cx.error(
            &table.span,
            format!("{context} is missing `method`; use `\"hnsw\"`, `\"ivfflat\"` or `\"none\"`"),
        );
        return None;
    }
    let method = table.choice(
        cx,
        "method",
        &[
            ("hnsw", Method::Hnsw),
            ("ivfflat", Method::Ivfflat),
            ("none", Method::None),
        ],
        Method::Hnsw,
    );
    let own_keys: &[&str] = match method {
        Method::Hnsw => &["m", "ef_construction", "ef_search"],
        Method::Ivfflat => &["lists", "probes"],
        Method::None => &[],
    };
    for key in ["m", "ef_construction", "ef_search", "lists", "probes"] {
        if !own_keys.contains(&key)
            && let Some(span) = table.key_span(key)
        {
            cx.error(
                &span,
                format!(
                    "`{key}` in {context} does not apply to method `{}`",
                    match method {
                        Method::Hnsw => "hnsw",
                        Method::Ivfflat => "ivfflat",
                        Method::None => "none",
                    }
                ),
            );
        }
    }
    match method {
        Method::Hnsw => {
            let m = table
                .integer(
                    cx,
                    "m",
                    (2, 100),
                    "pgvector's HNSW takes 2 to 100 links per node",
                )
                .map_or(16, |(n, _)| n as u32);
            let ef_construction = table
                .integer(cx, "ef_construction", (4, 1000), "")
                .map(|(n, span)| (n as u32, span));
            if let Some((ef, span)) = &ef_construction
                && *ef < 2 * m
            {
                cx.error(
                    span,
                    format!(
                        "`ef_construction = {ef}` in {context} must be at least twice `m` \
                         ({}), as pgvector requires",
                        2 * m
                    ),
                );
            }
            let ef_search = table
                .integer(
                    cx,
                    "ef_search",
                    (1, 1000),
                    "the candidate list each search keeps; higher finds more true neighbours",
                )
                .map_or(100, |(n, _)| n as u32);
            Some(VectorIndex::Hnsw {
                m,
                ef_construction: ef_construction.map_or(64.max(2 * m), |(n, _)| n),
                ef_search,
            })
        }
        Method::Ivfflat => {
            let span = table.key_span("method").unwrap_or(table.span.clone());
            if element == Element::Sparsevec {
                cx.error(
                    &span,
                    format!(
                        "{context}: pgvector has no IVFFlat index for `sparsevec`; use `method = \"hnsw\"`"
                    ),
                );
            } else if matches!(distance, Distance::L1 | Distance::Jaccard) {
                cx.error(
                    &span,
                    format!(
                        "{context}: pgvector's IVFFlat does not support `{}` distance; use \
                         `method = \"hnsw\"`",
                        distance.name()
                    ),
                );
            }
            let lists = table
                .integer(
                    cx,
                    "lists",
                    (1, 32_768),
                    "start with rows / 1000 up to a million rows, sqrt(rows) above",
                )
                .map_or(100, |(n, _)| n as u32);
            let probes = table
                .integer(cx, "probes", (1, i64::from(lists)), "at most `lists`")
                .map_or(lists.div_ceil(10), |(n, _)| n as u32);
            Some(VectorIndex::Ivfflat { lists, probes })
        }
        Method::None => Some(VectorIndex::None),
    }
}

fn read_vector_field(
    cx: &mut Ctxt<'_>,
    context: &str,
    key: &toml::Spanned<toml::de::DeString<'_>>,
    value: &Value<'_>,
) -> Option<VectorField> {
    let name = key.get_ref().as_ref();
    let ok = check_field_name(
        cx,
        key,
        context,
        ("vector collection", VECTOR_COLUMNS),
        "choose another name",
    );
    let field_context = format!("{context}.{name}");
    let (ty, index) = match value.get_ref() {
        DeValue::String(_) => (field_type(cx, value, &field_context)?, false),
        DeValue::Table(_) => {
            let table = Table::open(cx, value, field_context.clone(), &["type", "index"])?;
            let ty = match table.get("type") {
                Some(v) => field_type(cx, v, &field_context)?,
                None => FieldType::Text,
            };
            (ty, table.bool(cx, "index", false))
        }
        _ => {
            cx.error(
                &value.span(),
                format!(
                    "{field_context} must be a type name such as `\"text\"` or a table like \
                     `{{ type = \"bigint\", index = true }}`, found {}",
                    type_name(value)
                ),
            );
            return None;
        }
    };
    ok.then(|| VectorField {
        name: name.to_string(),
        ty,
        index,
    })
}

fn read_full_text(cx: &mut Ctxt<'_>, table: &Table<'_, '_>, fields: &[VectorField]) -> Vec<String> {
    let Some(value) = table.get("full_text") else {
        return Vec::new();
    };
    let context = &table.context;
    let DeValue::Array(items) = value.get_ref() else {
        cx.error(
            &value.span(),
            format!(
                "`full_text` in {context} must be a list of text fields, e.g. `[\"title\", \
                 \"content\"]`, found {}",
                type_name(value)
            ),
        );
        return Vec::new();
    };
    if items.is_empty() {
        cx.error(
            &value.span(),
            format!("`full_text` in {context} is empty; list text fields or remove the key"),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for item in items.iter() {
        let DeValue::String(name) = item.get_ref() else {
            cx.error(
                &item.span(),
                format!(
                    "`full_text` in {context} lists field names as strings, found {}",
                    type_name(item)
                ),
            );
            continue;
        };
        let name = name.as_ref();
        match fields.iter().find(|f| f.name == name) {
            Some(f) if f.ty == FieldType::Text => {
                if out.iter().any(|o| o == name) {
                    cx.error(
                        &item.span(),
                        format!("`full_text` in {context} lists `{name}` twice"),
                    );
                } else {
                    out.push(name.to_string());
                }
            }
            Some(f) => cx.error(
                &item.span(),
                format!(
                    "`full_text` in {context} lists `{name}`, a `{}` field; only `text` fields \
                     can be searched as text",
                    f.ty.name()
                ),
            ),
            None => cx.error(
                &item.span(),
                format!(
                    "`full_text` in {context} lists `{name}`, which is not in [vector.fields]; \
                     declare it there as `{name} = \"text\"`"
                ),
            ),
        }
    }
    out
}
