//! `#[pgstack(key = "value", flag, ...)]` on containers and fields.

use proc_macro2::Span;
use syn::{Attribute, LitStr};

use super::ctxt::Ctxt;

/// One `key = "value"` or bare `flag` with its span.
pub struct Entry {
    pub key: String,
    pub value: Option<LitStr>,
    pub span: Span,
}

/// Every `#[pgstack(...)]` entry in `attrs`, checking keys against `allowed`.
pub fn entries(cx: &mut Ctxt, attrs: &[Attribute], allowed: &[&str], what: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for attr in attrs.iter().filter(|a| a.path().is_ident("pgstack")) {
        let result = attr.parse_nested_meta(|meta| {
            let key = meta
                .path
                .get_ident()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let span = meta
                .path
                .get_ident()
                .map_or_else(Span::call_site, |i| i.span());
            let value = if meta.input.peek(syn::Token![=]) {
                Some(meta.value()?.parse::<LitStr>()?)
            } else {
                None
            };
            if !allowed.contains(&key.as_str()) {
                let list = allowed
                    .iter()
                    .map(|k| format!("`{k}`"))
                    .collect::<Vec<_>>()
                    .join(", ");
                cx.error_at(
                    span,
                    format!(
                        "unknown `{key}` in #[pgstack(...)] on {what}{}; expected one of {list}",
                        pgstack_spec::did_you_mean(&key, allowed)
                    ),
                );
            } else if out.iter().any(|e| e.key == key) {
                cx.error_at(span, format!("`{key}` is given twice"));
            } else {
                out.push(Entry { key, value, span });
            }
            Ok(())
        });
        if let Err(e) = result {
            cx.push(e);
        }
    }
    out
}

/// The string value of `key`, reporting a bare flag where a value is needed.
pub fn string<'a>(cx: &mut Ctxt, entries: &'a [Entry], key: &str) -> Option<&'a LitStr> {
    let entry = entries.iter().find(|e| e.key == key)?;
    match &entry.value {
        Some(lit) => Some(lit),
        None => {
            cx.error_at(
                entry.span,
                format!("`{key}` needs a value: `{key} = \"...\"`"),
            );
            None
        }
    }
}
