//! Vector collection `{{ vector.name }}` (`[[vector]]` in `{{ spec_file }}`): table `{{ schema }}.{{ vector.name }}`,
//! `{{ embedding_type }}` embeddings, {{ vector.distance }} distance
{%- if vector.full_text %}, full-text search over {% for f in vector.full_text %}`{{ f }}`{% if not loop.last %}, {% endif %}{% endfor %}{% endif %}
{%- if vector.partition_by %}, one partition per `{{ vector.partition_by }}`{% endif %}.

/// The `{{ vector.name }}` collection: upsert, get, delete, nearest-neighbour{% if vector.full_text %} and hybrid{% endif %} search.
/// `#[derive(Embedded)]` types read and write the same table through their own handle.
pub static COLLECTION: ::pgstack::vector::Collection = ::pgstack::vector::Collection::new({{ def }});

/// Declared fields, for search filters such as `fields::NAME.eq(value)`.
pub mod fields {
{%- for field in fields %}
    /// `{{ field.name }}`: `{{ field.type }}`{% if field.name == vector.partition_by %}, the partition key{% elif field.index %}, indexed{% endif %}.
    pub const {{ field.const_name }}: ::pgstack::vector::Field<{{ field.value_type }}> = ::pgstack::vector::Field::new({{ field.name | rust_str }});
{%- endfor %}
}

{% include "rust/entity.rs" %}
