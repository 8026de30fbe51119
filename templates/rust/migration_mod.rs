//! pgstack's migrations, oldest first. The crate's `Migrator` lists them; `pgstack-gen migrate`
//! applies the same SQL files under an advisory lock.
use sea_orm_migration::MigrationTrait;
{% for name in migrations %}
mod {{ name }};
{%- endfor %}

/// Every pgstack migration, in the order they run.
pub fn migrations() -> Vec<Box<dyn MigrationTrait>> {
    vec![{% for name in migrations %}Box::new({{ name }}::Migration){% if not loop.last %}, {% endif %}{% endfor %}]
}
