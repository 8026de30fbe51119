//! Migration `{{ name }}`.
{%- for line in summary %}
//! - {{ line }}
{%- endfor %}
{%- if not transaction %}
//!
//! Runs outside a transaction, one statement at a time: it fills new derived columns of
//! tables that already hold rows in committed batches, and builds indexes on them with
//! `CREATE INDEX CONCURRENTLY`; reads and writes do not wait for either. A build that failed
//! leaves an INVALID index, which the statement before each build drops, so running the
//! migration again repairs it; a backfill run again refills.
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
        for statement in super::statements(sql) {
            manager.get_connection().execute_unprepared(&statement).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = include_str!({{ ("../../sql/" ~ name ~ ".down.sql") | rust_str }});
        for statement in super::statements(sql) {
            manager.get_connection().execute_unprepared(&statement).await?;
        }
        Ok(())
    }
{%- endif %}
}
