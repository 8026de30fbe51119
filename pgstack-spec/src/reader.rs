//! The boundary: typed reads out of toml's spanned tree, each mistake recorded with its span.
//!
//! Every table is opened with the list of keys it allows, so an unknown key is reported where it
//! stands, with the allowed keys named. Reads never stop at the first error: a wrong value is
//! recorded and the caller receives `None` (or the default), so the rest of the spec is still
//! checked.

use std::ops::Range;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::duration::SpecDuration;
use crate::error::Ctxt;

pub(crate) type Value<'i> = Spanned<DeValue<'i>>;

/// A TOML table being read, with the keys it allows.
pub(crate) struct Table<'a, 'i> {
    table: &'a DeTable<'i>,
    pub(crate) span: Range<usize>,
    /// How messages name this table, e.g. "[[kv]] `settings`".
    pub(crate) context: String,
}

impl<'a, 'i> Table<'a, 'i> {
    /// Opens `value` as a table, reporting every key not in `allowed`.
    pub(crate) fn open(
        cx: &mut Ctxt<'_>,
        value: &'a Value<'i>,
        context: impl Into<String>,
        allowed: &[&str],
    ) -> Option<Self> {
        let context = context.into();
        let DeValue::Table(table) = value.get_ref() else {
            cx.error(
                &value.span(),
                format!("{context} must be a table, found {}", type_name(value)),
            );
            return None;
        };
        for (key, _) in table.iter() {
            if !allowed.contains(&key.get_ref().as_ref()) {
                cx.error(
                    &key.span(),
                    format!(
                        "unknown key `{}` in {context}{}; allowed keys: {}",
                        key.get_ref(),
                        did_you_mean(key.get_ref(), allowed),
                        list(allowed)
                    ),
                );
            }
        }
        Some(Table {
            table,
            span: value.span(),
            context,
        })
    }

    pub(crate) fn get(&self, key: &str) -> Option<&'a Value<'i>> {
        self.table.get(key)
    }

    /// Span of the key itself (better than the value's for "this key is wrong" errors).
    pub(crate) fn key_span(&self, key: &str) -> Option<Range<usize>> {
        self.table.get_key_value(key).map(|(k, _)| k.span())
    }

    pub(crate) fn string(&self, cx: &mut Ctxt<'_>, key: &str) -> Option<(&'a str, Range<usize>)> {
        let value = self.get(key)?;
        match value.get_ref() {
            DeValue::String(s) => Some((s.as_ref(), value.span())),
            _ => {
                cx.error(
                    &value.span(),
                    format!(
                        "`{key}` in {} must be a string, found {}",
                        self.context,
                        type_name(value)
                    ),
                );
                None
            }
        }
    }

    pub(crate) fn required_string(
        &self,
        cx: &mut Ctxt<'_>,
        key: &str,
        help: &str,
    ) -> Option<(&'a str, Range<usize>)> {
        if self.get(key).is_none() {
            cx.error(
                &self.span,
                format!("{} is missing `{key}`; {help}", self.context),
            );
            return None;
        }
        self.string(cx, key)
    }

    pub(crate) fn bool(&self, cx: &mut Ctxt<'_>, key: &str, default: bool) -> bool {
        let Some(value) = self.get(key) else {
            return default;
        };
        match value.get_ref() {
            DeValue::Boolean(b) => *b,
            _ => {
                cx.error(
                    &value.span(),
                    format!(
                        "`{key}` in {} must be `true` or `false`, found {}",
                        self.context,
                        type_name(value)
                    ),
                );
                default
            }
        }
    }

    /// An integer within `range`, inclusive; out-of-range values name the range.
    pub(crate) fn integer(
        &self,
        cx: &mut Ctxt<'_>,
        key: &str,
        range: (i64, i64),
        help: &str,
    ) -> Option<(i64, Range<usize>)> {
        let value = self.get(key)?;
        let DeValue::Integer(int) = value.get_ref() else {
            cx.error(
                &value.span(),
                format!(
                    "`{key}` in {} must be a whole number, found {}",
                    self.context,
                    type_name(value)
                ),
            );
            return None;
        };
        match integer_value(int) {
            Some(n) if n >= range.0 && n <= range.1 => Some((n, value.span())),
            _ => {
                cx.error(
                    &value.span(),
                    format!(
                        "`{key}` in {} must be between {} and {}, found `{}`{}",
                        self.context,
                        range.0,
                        range.1,
                        int.as_str(),
                        help_suffix(help)
                    ),
                );
                None
            }
        }
    }

    /// A string that must be one of `options`; `default` when absent or wrong.
    pub(crate) fn choice<T: Copy>(
        &self,
        cx: &mut Ctxt<'_>,
        key: &str,
        options: &[(&str, T)],
        default: T,
    ) -> T {
        let Some((text, span)) = self.string(cx, key) else {
            return default;
        };
        match options.iter().find(|(name, _)| *name == text) {
            Some((_, v)) => *v,
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                cx.error(
                    &span,
                    format!(
                        "`{key}` in {} must be one of {}, found `{text}`",
                        self.context,
                        list(&names)
                    ),
                );
                default
            }
        }
    }

    pub(crate) fn duration(&self, cx: &mut Ctxt<'_>, key: &str) -> Option<SpecDuration> {
        let (text, span) = self.string(cx, key)?;
        match SpecDuration::parse(text) {
            Ok(d) if d.as_millis() > 0 => Some(d),
            Ok(_) => {
                cx.error(
                    &span,
                    format!("`{key}` in {} must be longer than zero", self.context),
                );
                None
            }
            Err(message) => {
                cx.error(&span, format!("`{key}` in {}: {message}", self.context));
                None
            }
        }
    }
}

/// A TOML integer's value (`1_000`, `0x1f`, `-5`), or `None` beyond `i64`.
pub(crate) fn integer_value(int: &toml::de::DeInteger<'_>) -> Option<i64> {
    let digits: String = int.as_str().chars().filter(|c| *c != '_').collect();
    let digits = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0o"))
        .or_else(|| digits.strip_prefix("0b"))
        .unwrap_or(&digits);
    i64::from_str_radix(digits, int.radix()).ok()
}

/// A value's TOML type, for "found ..." in messages.
pub(crate) fn type_name(value: &Value<'_>) -> &'static str {
    match value.get_ref() {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a datetime",
        DeValue::Array(_) => "an array",
        DeValue::Table(_) => "a table",
    }
}

/// The allowed word nearest `word`, if it is near enough to be what was meant.
/// Near enough: at most one edit (a transposition counts as one) per three characters of the
/// allowed word, and always one.
pub fn suggest<'a>(word: &str, allowed: &[&'a str]) -> Option<&'a str> {
    allowed
        .iter()
        .map(|candidate| (strsim::damerau_levenshtein(word, candidate), *candidate))
        .filter(|(edits, candidate)| *edits <= (candidate.len() / 3).max(1))
        .min_by_key(|(edits, _)| *edits)
        .map(|(_, candidate)| candidate)
}

/// " (did you mean `backoff`?)" when some allowed word is near `word`, else nothing.
pub fn did_you_mean(word: &str, allowed: &[&str]) -> String {
    suggest(word, allowed).map_or(String::new(), |s| format!(" (did you mean `{s}`?)"))
}

/// "`a`, `b` or `c`".
pub(crate) fn list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|i| format!("`{i}`")).collect();
    match quoted.len() {
        0 => String::new(),
        1 => quoted[0].clone(),
        n => format!("{} or {}", quoted[..n - 1].join(", "), quoted[n - 1]),
    }
}

fn help_suffix(help: &str) -> String {
    if help.is_empty() {
        String::new()
    } else {
        format!("; {help}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggestions_catch_typos_and_nothing_else() {
        let queue = ["name", "visibility_timeout", "backoff", "unique", "notify"];
        assert_eq!(suggest("bakoff", &queue), Some("backoff"));
        assert_eq!(suggest("uniq", &queue), Some("unique"));
        assert_eq!(
            suggest("visibilty_timeout", &queue),
            Some("visibility_timeout")
        );
        assert_eq!(suggest("kye", &["cache", "key", "ttl"]), Some("key"));
        assert_eq!(suggest("colour", &queue), None);
        assert_eq!(did_you_mean("colour", &queue), "");
    }
}
