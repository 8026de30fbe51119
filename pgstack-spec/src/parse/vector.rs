//! Reading a `[[vector]]`: a pgvector collection.

use std::ops::Range;

use toml::de::DeValue;

use crate::error::Ctxt;
use crate::model::*;
use crate::names::is_sql_name;
use crate::reader::{Table, Value, list, type_name};

use super::{Names, VECTOR_COLUMNS, check_field_name, field_type, read_fields, read_name};

/// The keys a `[[vector]]` table may hold: a key read below is listed here.
pub(super) const KEYS: &[&str] = &[
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
];

pub(super) fn read_vector(
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

pub(super) fn read_vector_index(
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

pub(super) fn read_vector_field(
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

pub(super) fn read_full_text(
    cx: &mut Ctxt<'_>,
    table: &Table<'_, '_>,
    fields: &[VectorField],
) -> Vec<String> {
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
