//! Spec errors: every problem found in a `pgstack.toml`, each pointing at `path:line:column`.

use std::fmt;
use std::ops::Range;

/// One problem in a spec file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecError {
    /// The spec path as the user gave it (shown, never opened).
    pub path: String,
    /// 1-based line of the offending key or value.
    pub line: usize,
    /// 1-based column, counted in characters.
    pub column: usize,
    /// Lower-case, names the key and what is allowed.
    pub message: String,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.path, self.line, self.column, self.message
        )
    }
}

impl std::error::Error for SpecError {}

/// All the problems found in one spec, in source order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpecErrors {
    pub errors: Vec<SpecError>,
}

impl fmt::Display for SpecErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SpecErrors {}

/// Collects errors while a spec is read; turns byte spans into line and column.
pub(crate) struct Ctxt<'s> {
    path: String,
    source: &'s str,
    errors: Vec<(usize, String)>,
}

impl<'s> Ctxt<'s> {
    pub(crate) fn new(path: &str, source: &'s str) -> Self {
        Ctxt {
            path: path.to_string(),
            source,
            errors: Vec::new(),
        }
    }

    /// Records an error at the start of `span`.
    pub(crate) fn error(&mut self, span: &Range<usize>, message: impl Into<String>) {
        self.errors.push((span.start, message.into()));
    }

    pub(crate) fn source(&self) -> &'s str {
        self.source
    }

    pub(crate) fn finish(self) -> Result<(), SpecErrors> {
        if self.errors.is_empty() {
            return Ok(());
        }
        Err(self.into_errors())
    }

    pub(crate) fn into_errors(self) -> SpecErrors {
        let mut errors: Vec<SpecError> = self
            .errors
            .iter()
            .map(|(offset, message)| {
                let (line, column) = line_column(self.source, *offset);
                SpecError {
                    path: self.path.clone(),
                    line,
                    column,
                    message: message.clone(),
                }
            })
            .collect();
        errors.sort_by_key(|e| (e.line, e.column));
        errors.dedup();
        SpecErrors { errors }
    }
}

/// 1-based line and character column of a byte offset.
pub fn line_column(source: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(source.len());
    let before = source.get(..offset).unwrap_or(source);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn line_column_counts_from_one() {
        let src = "a = 1\nbé = 2\n";
        assert_eq!(line_column(src, 0), (1, 1));
        assert_eq!(line_column(src, 6), (2, 1));
        // `=` after a two-byte character is the fourth character of line 2.
        assert_eq!(line_column(src, 10), (2, 4));
    }
}
