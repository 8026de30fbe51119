//! The statements of a `[[document]]`, from `pgstack/sql/document.sql`.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use super::def::DocumentDef;
use crate::error::Result;
use crate::ident::{Ident, TableName};
use crate::sql::SqlFile;

pub(super) struct DocSql {
    pub(super) insert: String,
    pub(super) get: String,
    pub(super) replace: String,
    pub(super) patch_merge: String,
    pub(super) patch_set: String,
    pub(super) delete: String,
    pub(super) find_containing: String,
    pub(super) list: String,
    /// `DocFindByField` per declared field.
    pub(super) find_by: BTreeMap<&'static str, String>,
}

pub(super) fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../../sql/document.sql")))
}

impl DocSql {
    pub(super) fn new(def: &DocumentDef) -> Result<DocSql> {
        let table = TableName::new(def.schema, def.table)?;
        let table_sql = table.to_string();
        let schema_sql = table.schema.to_string();
        let vars = [
            ("table", table_sql.as_str()),
            ("schema", schema_sql.as_str()),
        ];
        let file = sql_file();
        let get = |name: &str| file.get(name, &vars);
        let mut find_by = BTreeMap::new();
        for field in def.fields {
            let column = Ident::new(field.name)?.to_string();
            let vars = [("table", table_sql.as_str()), ("column", column.as_str())];
            find_by.insert(field.name, file.get("DocFindByField", &vars));
        }
        Ok(DocSql {
            insert: get("DocInsert"),
            get: get("DocGet"),
            replace: get("DocReplace"),
            patch_merge: get("DocPatchMerge"),
            patch_set: get("DocPatchSet"),
            delete: get("DocDelete"),
            find_containing: get("DocFindContaining"),
            list: get("DocList"),
            find_by,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::document::FieldDef;

    #[test]
    fn every_statement_renders() {
        let sql = DocSql::new(&DocumentDef {
            schema: "app",
            table: "user_profiles",
            fields: &[FieldDef {
                name: "email",
                unique: true,
                index_name: Some("user_profiles_email_key"),
            }],
        })
        .unwrap();
        assert!(
            sql.patch_merge
                .contains("\"app\".pgstack_jsonb_merge_patch(doc, $2)")
        );
        assert!(sql.find_by["email"].contains("WHERE \"email\" = $1"));
        assert!(!sql.insert.contains('{'));
    }
}
