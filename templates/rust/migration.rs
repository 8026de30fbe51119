//! Migration `{{ name }}`.
{%- for line in summary %}
//! - {{ line }}
{%- endfor %}
{%- if not transaction %}
//!
//! Runs outside a transaction, one statement at a time: it builds indexes on tables that
//! already hold rows with `CREATE INDEX CONCURRENTLY`, which reads and writes do not wait for.
//! A build that failed leaves an INVALID index, which the statement before each build drops,
//! so running the migration again repairs it.
{%- endif %}
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        {{ name | rust_str }}
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
{%- if transaction %}
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = include_str!({{ ("../../sql/" ~ name ~ ".up.sql") | rust_str }});
        // A DDL statement queued behind a long transaction fails after this instead of
        // holding up every query on its table (sea-orm runs the migration in a transaction).
        manager
            .get_connection()
            .execute_unprepared({{ ("SET LOCAL lock_timeout = '" ~ lock_timeout ~ "'") | rust_str }})
            .await?;
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = include_str!({{ ("../../sql/" ~ name ~ ".down.sql") | rust_str }});
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }
{%- else %}
    fn use_transaction(&self) -> Option<bool> {
        Some(false)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = include_str!({{ ("../../sql/" ~ name ~ ".up.sql") | rust_str }});
        for statement in statements(sql) {
            manager.get_connection().execute_unprepared(statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = include_str!({{ ("../../sql/" ~ name ~ ".down.sql") | rust_str }});
        for statement in statements(sql) {
            manager.get_connection().execute_unprepared(statement).await?;
        }
        Ok(())
    }
{%- endif %}
}
{%- if not transaction %}

/// The file's statements, each sent on its own (several in one message would run as one
/// transaction). Index statements hold no `;` inside, so each ends a line with one.
fn statements(sql: &str) -> impl Iterator<Item = &str> {
    sql.split_inclusive(";\n")
        .map(str::trim)
        .filter(|s| s.lines().any(|line| !line.trim().is_empty() && !line.trim_start().starts_with("--")))
}
{%- endif %}
