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
{%- if statements %}

/// A migration file run outside a transaction, as its statements, each to be sent on its own
/// (several in one message would run as one transaction, where neither a concurrent index
/// build nor a backfill's COMMIT may run). A statement ends a line with `;`, outside a
/// `$backfill$` body.
fn statements(sql: &str) -> Vec<String> {
    let (mut out, mut current, mut in_body) = (Vec::new(), String::new(), false);
    for line in sql.lines() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with("--")) {
            continue;
        }
        current.push_str(line);
        current.push('\n');
        if line.matches("$backfill$").count() % 2 == 1 {
            in_body = !in_body;
        }
        if !in_body && line.trim_end().ends_with(';') {
            out.push(std::mem::take(&mut current));
        }
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}
{%- endif %}
