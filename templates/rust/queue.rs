//! Job queue `{{ queue.name }}` (`[[queue]]` in `{{ spec_file }}`): {{ tables }}.

/// The queue as the spec declares it. `#[derive(Queue)]` builds the same value at compile time.
pub const DEF: ::pgstack::queue::QueueDef = ::pgstack::queue::QueueDef {
    schema: {{ schema | rust_str }},
    table: {{ queue.name | rust_str }},
    payload: ::pgstack::kv::ValueKind::{{ payload_kind }},
    visibility_timeout_ms: {{ visibility_timeout_ms }},
    max_attempts: {{ queue.max_attempts }},
    backoff: ::pgstack::queue::Backoff {
        kind: ::pgstack::queue::BackoffKind::{{ backoff_kind }},
        initial_ms: {{ initial_ms }},
        max_ms: {{ max_ms }},
        jitter: {{ queue.backoff.jitter }},
    },
    dead_letter: {{ queue.dead_letter }},
    priorities: {{ queue.priorities }},
    unique: {{ queue.unique }},
    notify_channel: {% if channel %}Some({{ channel | rust_str }}){% else %}None{% endif %},
    archive: {% if archive %}Some(::pgstack::queue::ArchiveDef {
        retention_ms: {{ archive[0] }},
        partition_ms: {{ archive[1] }},
    }){% else %}None{% endif %},
};

/// The `{{ queue.name }}` queue: enqueue, claim, complete, fail, dead letters, metrics and
/// maintenance, with JSON payloads. Typed jobs come from `#[derive(Queue)]`; run handlers with
/// `pgstack::queue::Worker::new(db, &QUEUE)`.
pub static QUEUE: ::pgstack::queue::Queue = ::pgstack::queue::Queue::new(DEF);
{% for entity in entities %}
{% include "rust/entity.rs" %}
{% endfor %}
