//! Migration `{{ name }}`.
{%- for line in summary %}
//! - {{ line }}
{%- endfor %}
use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        {{ name | rust_str }}
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = include_str!({{ ("../../sql/" ~ name ~ ".up.sql") | rust_str }});
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let sql = include_str!({{ ("../../sql/" ~ name ~ ".down.sql") | rust_str }});
        manager.get_connection().execute_unprepared(sql).await?;
        Ok(())
    }
}
