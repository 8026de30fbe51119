//! Checked SQL identifiers: the only way a table or column name reaches SQL text.

use std::fmt;

use crate::error::{Error, Result};

/// A lower-case SQL identifier (`^[a-z_][a-z0-9_]*$`, at most 63 bytes), always printed quoted.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ident(String);

impl Ident {
    pub fn new(name: &str) -> Result<Ident> {
        let mut chars = name.chars();
        let ok = matches!(chars.next(), Some('a'..='z' | '_'))
            && name.len() <= 63
            && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'));
        if ok {
            Ok(Ident(name.to_string()))
        } else {
            Err(Error::InvalidIdentifier(name.to_string()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Ident {
    /// Quoted, so reserved words (`user`, `order`) are safe as names.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{}\"", self.0)
    }
}

/// `"schema"."table"`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TableName {
    pub schema: Ident,
    pub table: Ident,
}

impl TableName {
    pub fn new(schema: &str, table: &str) -> Result<TableName> {
        Ok(TableName {
            schema: Ident::new(schema)?,
            table: Ident::new(table)?,
        })
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_valid_names_and_refuses_others() {
        assert_eq!(Ident::new("user").unwrap().to_string(), "\"user\"");
        assert_eq!(
            TableName::new("public", "settings").unwrap().to_string(),
            "\"public\".\"settings\""
        );
        for bad in ["", "Users", "a\"b", "a;drop", "1a", "a b", &"x".repeat(64)] {
            assert!(Ident::new(bad).is_err(), "{bad:?} should be refused");
        }
    }
}
