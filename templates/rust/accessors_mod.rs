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
