//! The value column of key-value stores, caches and queues.

/// How a facility stores its values (the spec's `value` or `payload`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ValueKind {
    /// `jsonb`: any serde value.
    Jsonb,
    /// `bytea`: bytes.
    Bytea,
}

impl ValueKind {
    /// The column type: `jsonb` or `bytea`.
    pub fn sql(self) -> &'static str {
        match self {
            ValueKind::Jsonb => "jsonb",
            ValueKind::Bytea => "bytea",
        }
    }
}
