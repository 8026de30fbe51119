//! Typed accessors for the facilities declared in `{{ spec_file }}`, one module per facility.
//!
//! Each module holds a `STORE` handle whose methods take any SeaORM connection or transaction,
//! and an `entity` module with the SeaORM entity of the facility's table.

// A program rarely uses every accessor and entity generated for it.
#![allow(dead_code)]
{% for module in modules %}
pub mod {{ module }};
{%- endfor %}
{% if upkeep %}
/// The upkeep `{{ spec_file }}` implies (expired rows, size bounds, archive partitions; the
/// builder keeps the facilities that have some): `upkeep().start(&db)?` runs it in the
/// background, `upkeep().run_once(&db)` runs one pass. See `pgstack::upkeep`.
pub fn upkeep() -> ::pgstack::upkeep::Upkeep {
    ::pgstack::upkeep::Upkeep::new()
    {%- for call in upkeep %}
        {{ call }}
    {%- endfor %}
}
{%- endif %}

/// The migrations these accessors were generated with, oldest first.
pub const MIGRATIONS: &[&str] = &[
{%- for m in migrations %}
    {{ m | rust_str }},
{%- endfor %}
];

/// Every table of the spec's facilities, schema-qualified.
pub const TABLES: &[&str] = &[
{%- for t in tables %}
    {{ t | rust_str }},
{%- endfor %}
];

/// The start-up self-check: the database has every migration these accessors were generated
/// with, and every table they use, or the error names what is missing and what to run. Two
/// catalog lookups; cheap enough for every start.
pub async fn verify<C: ::pgstack::sea_orm::ConnectionTrait>(db: &C) -> ::pgstack::Result<()> {
    ::pgstack::migrate::verify(db, MIGRATIONS, TABLES).await
}
