//! Cache `{{ cache.name }}` (`[[cache]]` in `{{ spec_file }}`): table `{{ schema }}.{{ cache.name }}`
{%- if cache.durability == "unlogged" %}, UNLOGGED (emptied after a crash or failover, unreadable on replicas){% endif %}.

/// The `{{ cache.name }}` cache{% if cache.value == "jsonb" %}: values are any serde type{% else %}: values are bytes (`*_bytes` methods){% endif %}.
pub static CACHE: ::pgstack::cache::Cache = ::pgstack::cache::Cache::new(::pgstack::cache::CacheDef {
    schema: {{ schema | rust_str }},
    table: {{ cache.name | rust_str }},
    value: ::pgstack::kv::ValueKind::{{ value_kind }},
    default_ttl_ms: {% if default_ttl_ms %}Some({{ default_ttl_ms }}){% else %}None{% endif %},
    max_entries: {% if cache.max_entries %}Some({{ cache.max_entries }}){% else %}None{% endif %},
});

{% include "rust/entity.rs" %}
