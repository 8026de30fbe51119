//! Rate limiter `{{ limit.name }}` (`[[rate_limit]]` in `{{ spec_file }}`): {{ limit.algorithm }},
//! {{ limit.limit }} per {{ limit.period }}{% if limit.burst %}, burst {{ limit.burst }}{% endif %}; table `{{ schema }}.{{ limit.name }}`.

/// The `{{ limit.name }}` limiter: one statement per check, on the database clock.
pub static LIMITER: ::pgstack::rate_limit::RateLimiter = ::pgstack::rate_limit::RateLimiter::new({{ def }});

{% include "rust/entity.rs" %}
