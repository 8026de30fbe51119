/// SeaORM entity for `{{ schema }}.{{ entity.table }}`, for queries the accessors do not cover.
{%- if entity.note %}
///
/// {{ entity.note }}
{%- endif %}
pub mod {{ entity.module }} {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(schema_name = {{ schema | rust_str }}, table_name = {{ entity.table | rust_str }})]
    pub struct Model {
{%- for field in entity.fields %}
{%- if field.attrs %}
        #[sea_orm({{ field.attrs }})]
{%- endif %}
        pub {{ field.name }}: {{ field.rust_type }},
{%- endfor %}
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
