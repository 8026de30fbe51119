//! Cache `{{ cache.name }}` (`[[cache]]` in `{{ spec_file }}`): table `{{ schema }}.{{ cache.name }}`
{%- if cache.durability == "unlogged" %}, UNLOGGED (emptied after a crash or failover, unreadable on replicas){% endif %}.

/// The `{{ cache.name }}` cache{% if cache.value == "jsonb" %}: values are any serde type{% else %}: values are bytes (`*_bytes` methods){% endif %}.
pub static CACHE: ::pgstack::cache::Cache = ::pgstack::cache::Cache::new({{ def }});

{% include "rust/entity.rs" %}
