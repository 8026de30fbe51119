//! Rate limiter `{{ limit.name }}` (`[[rate_limit]]` in `{{ spec_file }}`): {{ limit.algorithm }},
//! {{ limit.limit }} per {{ limit.period }}{% if limit.burst %}, burst {{ limit.burst }}{% endif %}; table `{{ schema }}.{{ limit.name }}`.

/// The `{{ limit.name }}` limiter: one statement per check, on the database clock.
pub static LIMITER: ::pgstack::rate_limit::RateLimiter = ::pgstack::rate_limit::RateLimiter::new(::pgstack::rate_limit::RateLimitDef {
    schema: {{ schema | rust_str }},
    table: {{ limit.name | rust_str }},
    algorithm: ::pgstack::rate_limit::Algorithm::{{ algorithm }},
    limit: {{ limit.limit }},
    period_ms: {{ period_ms }},
    burst: {% if limit.burst %}Some({{ limit.burst }}){% else %}None{% endif %},
});

{% include "rust/entity.rs" %}
