//! The statements of a `[[kv]]`, from `pgstack/sql/kv.sql`.

use std::sync::OnceLock;

use super::def::KvDef;
use crate::error::Result;
use crate::ident::TableName;
use crate::sql::SqlFile;

pub(super) struct KvSql {
    pub(super) get: String,
    pub(super) get_many: String,
    pub(super) exists: String,
    pub(super) set: String,
    pub(super) set_if_absent: String,
    pub(super) compare_and_set: String,
    pub(super) delete: String,
    pub(super) set_many: String,
    pub(super) scan_prefix: String,
    pub(super) scan_from: String,
    pub(super) expire: String,
    pub(super) sweep: String,
}

pub(super) fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../../sql/kv.sql")))
}

impl KvSql {
    pub(super) fn new(def: &KvDef) -> Result<KvSql> {
        let table = TableName::new(def.schema, def.table)?.to_string();
        let vars = [("table", table.as_str()), ("value_type", def.value.sql())];
        let file = sql_file();
        let get = |name: &str| file.get(name, &vars);
        Ok(KvSql {
            get: get("KvGet"),
            get_many: get("KvGetMany"),
            exists: get("KvExists"),
            set: get("KvSet"),
            set_if_absent: get("KvSetIfAbsent"),
            compare_and_set: get("KvCompareAndSet"),
            delete: get("KvDelete"),
            set_many: get("KvSetMany"),
            scan_prefix: get("KvScanPrefix"),
            scan_from: get("KvScanFrom"),
            expire: get("KvExpire"),
            sweep: get("KvSweep"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::ValueKind;

    #[test]
    fn every_statement_renders() {
        let sql = KvSql::new(&KvDef {
            schema: "public",
            table: "settings",
            value: ValueKind::Bytea,
            expiry: true,
        })
        .unwrap();
        assert!(sql.set_many.contains("$2::bytea[]"));
        assert!(sql.get.contains("FROM \"public\".\"settings\""));
        for name in sql_file().names() {
            assert!(!sql_file().get(name, &[]).is_empty());
        }
    }
}
