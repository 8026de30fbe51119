//! The statements of a `[[rate_limit]]`, from `pgstack/sql/rate_limit.sql`: one check, one
//! batched check, one peek and one sweep per algorithm.

use std::sync::OnceLock;

use super::def::{Algorithm, RateLimitDef};
use crate::error::Result;
use crate::ident::TableName;
use crate::sql::SqlFile;

pub(super) struct LimitSql {
    pub(super) check: String,
    pub(super) check_many: String,
    pub(super) peek: String,
    pub(super) reset: String,
    pub(super) sweep: String,
}

fn sql_file() -> &'static SqlFile {
    static FILE: OnceLock<SqlFile> = OnceLock::new();
    FILE.get_or_init(|| SqlFile::parse(include_str!("../../sql/rate_limit.sql")))
}

impl LimitSql {
    /// The statements of `def`'s algorithm; `{now_us}` is the database clock in microseconds.
    pub(super) fn new(def: &RateLimitDef) -> Result<LimitSql> {
        let table = TableName::new(def.schema, def.table)?.to_string();
        let vars = [
            ("table", table.as_str()),
            (
                "now_us",
                "(extract(epoch FROM statement_timestamp()) * 1000000)::bigint",
            ),
        ];
        let suffix = match def.algorithm {
            Algorithm::Gcra => "Gcra",
            Algorithm::FixedWindow => "FixedWindow",
            Algorithm::SlidingWindow => "SlidingWindow",
            Algorithm::TokenBucket => "TokenBucket",
        };
        let file = sql_file();
        Ok(LimitSql {
            check: file.get(&format!("Rate{suffix}"), &vars),
            check_many: file.get(&format!("Rate{suffix}Many"), &vars),
            peek: file.get(&format!("RatePeek{suffix}"), &vars),
            reset: file.get("RateReset", &vars),
            sweep: file.get(&format!("RateSweep{suffix}"), &vars),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_statement_renders() {
        for algorithm in [
            Algorithm::Gcra,
            Algorithm::FixedWindow,
            Algorithm::SlidingWindow,
            Algorithm::TokenBucket,
        ] {
            let sql = LimitSql::new(&RateLimitDef {
                schema: "public",
                table: "api",
                algorithm,
                limit: 10,
                period_ms: 1000,
                burst: None,
            })
            .unwrap();
            for statement in [
                &sql.check,
                &sql.check_many,
                &sql.peek,
                &sql.reset,
                &sql.sweep,
            ] {
                assert!(
                    statement.contains("\"public\".\"api\"") && !statement.contains('{'),
                    "{algorithm:?}: {statement}"
                );
            }
        }
        for name in sql_file().names() {
            assert!(!sql_file().get(name, &[]).is_empty());
        }
    }
}
