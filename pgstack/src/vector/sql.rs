//! The fixed statements of a `[[vector]]` collection, from `pgstack/sql/vector.sql`, with the
//! collection's column lists filled in. Searches are built per call (`search.rs`): their
//! filters, strategy and per-statement settings differ from call to call.

use std::sync::OnceLock;

use super::def::CollectionDef;
use crate::error::Result;
use crate::ident::{Ident, TableName};
use crate::sql::SqlFile;

/// The statements of one collection, built once from its definition.
pub(super) struct CollectionSql {
    pub(super) table: String,
    /// `vector(1536)`: the cast every bound embedding gets.
    pub(super) vtype: String,
    /// `"id", "content", "title"`: what a row reads as (no embedding).
    pub(super) columns: String,
    pub(super) upsert: String,
    pub(super) get: String,
    pub(super) delete: String,
    pub(super) count: String,
    /// Empty unless the collection is partitioned.
    pub(super) count_tenant: String,
    pub(super) set_embedding: String,
    pub(super) ensure_partition: String,
}

fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../../sql/vector.sql")))
}

impl CollectionSql {
    pub(super) fn new(def: &CollectionDef) -> Result<CollectionSql> {
        let table = TableName::new(def.schema, def.table)?;
        let id = Ident::new("id")?;
        let mut names = vec![id.clone()];
        for field in def.fields {
            names.push(Ident::new(field.name)?);
        }
        let tenant = def.partition_by.map(Ident::new).transpose()?;
        // The text search configuration is written into hybrid statements: same rules.
        if let Some(language) = def.full_text {
            Ident::new(language)?;
        }
        let vtype = format!("{}({})", def.element.name(), def.dimensions);
        let columns = names
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ");
        let (key_where, conflict, returning) = match &tenant {
            Some(t) => (
                format!("{id} = $1 AND {t} = $2"),
                format!("{t}, {id}"),
                format!("{id}, {t}"),
            ),
            None => (format!("{id} = $1"), id.to_string(), id.to_string()),
        };
        // Insert columns: id, embedding, every field; the recordset declares their types.
        let mut record_types = vec![
            format!("{id} {}", def.id.sql()),
            "\"embedding\" text".to_string(),
        ];
        let mut select = vec![format!("r.{id}"), format!("r.\"embedding\"::{vtype}")];
        let mut insert = vec![id.to_string(), "\"embedding\"".to_string()];
        let mut update = vec!["\"embedding\" = EXCLUDED.\"embedding\"".to_string()];
        for field in def.fields {
            let col = Ident::new(field.name)?;
            record_types.push(format!("{col} {}", field.kind.sql()));
            select.push(format!("r.{col}"));
            insert.push(col.to_string());
            if def.partition_by != Some(field.name) {
                update.push(format!("{col} = EXCLUDED.{col}"));
            }
        }
        update.push("\"updated_at\" = now()".to_string());
        let table_sql = table.to_string();
        let schema_sql = table.schema.to_string();
        let tenant_sql = tenant.as_ref().map(ToString::to_string).unwrap_or_default();
        let (insert, select, record_types, update) = (
            insert.join(", "),
            select.join(", "),
            record_types.join(", "),
            update.join(", "),
        );
        let vars = [
            ("table", table_sql.as_str()),
            ("schema", schema_sql.as_str()),
            ("columns", columns.as_str()),
            ("key_where", key_where.as_str()),
            ("vtype", vtype.as_str()),
            ("tenant", tenant_sql.as_str()),
            (
                "embedding_param",
                if tenant.is_some() { "$3" } else { "$2" },
            ),
            ("insert", insert.as_str()),
            ("select", select.as_str()),
            ("record_types", record_types.as_str()),
            ("conflict", conflict.as_str()),
            ("update", update.as_str()),
            ("returning", returning.as_str()),
        ];
        let file = sql_file();
        let get = |name: &str| file.get(name, &vars);
        Ok(CollectionSql {
            upsert: get("VectorUpsert"),
            get: get("VectorGet"),
            delete: get("VectorDelete"),
            count: get("VectorCount"),
            count_tenant: if tenant.is_some() {
                get("VectorCountTenant")
            } else {
                String::new()
            },
            set_embedding: get("VectorSetEmbedding"),
            ensure_partition: get("VectorEnsurePartition"),
            table: table_sql,
            vtype,
            columns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vector::{Distance, Element, FieldDef, FieldKind, IndexDef};

    #[test]
    fn every_statement_renders() {
        for partition_by in [None, Some("tenant_id")] {
            let sql = CollectionSql::new(&CollectionDef {
                schema: "public",
                table: "docs",
                dimensions: 3,
                element: Element::Vector,
                distance: Distance::Cosine,
                index: IndexDef::Hnsw { ef_search: 40 },
                id: FieldKind::Bigint,
                fields: &[
                    FieldDef {
                        name: "tenant_id",
                        kind: FieldKind::Bigint,
                        indexed: false,
                    },
                    FieldDef {
                        name: "title",
                        kind: FieldKind::Text,
                        indexed: false,
                    },
                ],
                full_text: None,
                text_fields: &[],
                partition_by,
            })
            .unwrap();
            let mut statements = vec![
                &sql.upsert,
                &sql.get,
                &sql.delete,
                &sql.count,
                &sql.set_embedding,
                &sql.ensure_partition,
            ];
            if partition_by.is_some() {
                statements.push(&sql.count_tenant);
                assert!(sql.set_embedding.contains("$3::vector(3)"));
                assert!(sql.upsert.contains("ON CONFLICT (\"tenant_id\", \"id\")"));
            } else {
                assert!(sql.count_tenant.is_empty());
                assert!(sql.get.contains("WHERE \"id\" = $1"));
            }
            for statement in statements {
                assert!(
                    statement.contains("\"public\".") && !statement.contains('{'),
                    "{statement}"
                );
            }
        }
    }
}
