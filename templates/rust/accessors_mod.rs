//! Typed accessors for the facilities declared in `{{ spec_file }}`, one module per facility.
//!
//! Each module holds a `STORE` handle whose methods take any SeaORM connection or transaction,
//! and an `entity` module with the SeaORM entity of the facility's table.

// A program rarely uses every accessor and entity generated for it.
#![allow(dead_code)]
{% for module in modules %}
pub mod {{ module }};
{%- endfor %}
