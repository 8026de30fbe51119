//! Reading a `[[document]]`: JSONB documents with declared fields.

use std::ops::Range;

use toml::de::DeValue;

use crate::error::Ctxt;
use crate::model::*;
use crate::names::is_path_segment;
use crate::reader::{Table, Value, type_name};

use super::{DOCUMENT_COLUMNS, Names, check_field_name, field_type, read_fields, read_name};

/// The keys a `[[document]]` table may hold: a key read below is listed here.
pub(super) const KEYS: &[&str] = &["name", "gin", "fields"];

pub(super) fn read_document(
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

pub(super) fn read_doc_field(
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
