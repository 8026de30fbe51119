//! Key-value store `{{ kv.name }}` (`[[kv]]` in `{{ spec_file }}`): table `{{ schema }}.{{ kv.name }}`.

/// The `{{ kv.name }}` store: {% if kv.value == "jsonb" %}values are any serde type{% else %}values are bytes{% endif %}
{%- if kv.expiry %}, with per-key expiry{% else %}, no expiry{% endif %}.
pub static STORE: ::pgstack::kv::{{ store_type }} = ::pgstack::kv::{{ store_type }}::new({{ def }});

{% include "rust/entity.rs" %}
