//! The statements of a `[[cache]]`, from `pgstack/sql/cache.sql`.

use std::sync::OnceLock;

use super::def::CacheDef;
use crate::error::Result;
use crate::ident::TableName;
use crate::sql::SqlFile;
use crate::value::ValueKind;

pub(super) struct CacheSql {
    pub(super) get: String,
    pub(super) get_many: String,
    pub(super) get_many_text: String,
    pub(super) get_for_compute: String,
    pub(super) set: String,
    pub(super) set_many: String,
    pub(super) set_if_absent: String,
    pub(super) replace: String,
    pub(super) touch: String,
    pub(super) delete: String,
    pub(super) delete_prefix: String,
    pub(super) delete_from: String,
    pub(super) incr: String,
    pub(super) lease: String,
    pub(super) lease_release: String,
    pub(super) sweep: String,
    pub(super) evict: String,
}

pub(super) fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../../sql/cache.sql")))
}

impl CacheSql {
    pub(super) fn new(def: &CacheDef) -> Result<CacheSql> {
        let table = TableName::new(def.schema, def.table)?.to_string();
        let vars = [("table", table.as_str()), ("value_type", def.value.sql())];
        let file = sql_file();
        let get = |name: &str| file.get(name, &vars);
        Ok(CacheSql {
            get: get("CacheGet"),
            get_many: get("CacheGetMany"),
            get_many_text: get("CacheGetManyText"),
            get_for_compute: get("CacheGetForCompute"),
            set: get("CacheSet"),
            set_many: get("CacheSetMany"),
            set_if_absent: get("CacheSetIfAbsent"),
            replace: get("CacheReplace"),
            touch: get("CacheTouch"),
            delete: get("CacheDelete"),
            delete_prefix: get("CacheDeletePrefix"),
            delete_from: get("CacheDeleteFrom"),
            incr: get(match def.value {
                ValueKind::Jsonb => "CacheIncrJsonb",
                ValueKind::Bytea => "CacheIncrBytea",
            }),
            lease: get("CacheLease"),
            lease_release: get("CacheLeaseRelease"),
            sweep: get("CacheSweep"),
            evict: get("CacheEvict"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_renders() {
        let sql = CacheSql::new(&CacheDef {
            schema: "public",
            table: "pages",
            value: ValueKind::Bytea,
            default_ttl_ms: Some(1000),
            max_entries: Some(10),
        })
        .unwrap();
        assert!(sql.incr.contains("convert_from"));
        assert!(sql.set_many.contains("$2::bytea[]"));
        assert!(!sql.evict.contains('{'));
    }
}
