//! Job queue `{{ queue.name }}` (`[[queue]]` in `{{ spec_file }}`): {{ tables }}.

/// The queue as the spec declares it. `#[derive(Queue)]` builds the same value at compile time.
pub const DEF: ::pgstack::queue::QueueDef = {{ def }};

/// The `{{ queue.name }}` queue: enqueue, claim, complete, fail, dead letters, metrics and
/// maintenance, with JSON payloads. Typed jobs come from `#[derive(Queue)]`; run handlers with
/// `pgstack::queue::Worker::new(db, &QUEUE)`.
pub static QUEUE: ::pgstack::queue::Queue = ::pgstack::queue::Queue::new(DEF);
{% for entity in entities %}
{% include "rust/entity.rs" %}
{% endfor %}
