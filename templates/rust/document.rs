//! Document collection `{{ document.name }}` (`[[document]]` in `{{ spec_file }}`): table
//! `{{ schema }}.{{ document.name }}`.

/// The `{{ document.name }}` collection; documents are any serde type that serializes to a JSON object.
pub static STORE: ::pgstack::document::DocumentStore = ::pgstack::document::DocumentStore::new({{ def }});

/// Declared fields (generated columns), for `STORE.find_by` and `STORE.get_by`.
pub mod fields {
{%- for field in fields %}
    /// `{{ field.name }}`: `{{ field.type }}` read from `{{ field.path }}`{% if field.unique %}, unique{% elif field.index %}, indexed{% endif %}.
    pub const {{ field.const_name }}: ::pgstack::document::Field<{{ field.field_type }}> = ::pgstack::document::Field::new({{ field.name | rust_str }});
{%- endfor %}
}

{% include "rust/entity.rs" %}
