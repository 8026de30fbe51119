//! What a `[[cache]]` is, and the options its writes take.

use std::time::Duration;

use crate::value::ValueKind;

/// What the generator knows about a `[[cache]]` facility.
#[derive(Clone, Copy, Debug)]
pub struct CacheDef {
    pub schema: &'static str,
    pub table: &'static str,
    pub value: ValueKind,
    /// The spec's `default_ttl`, used by writes with [`Expiry::Default`].
    pub default_ttl_ms: Option<u64>,
    /// The spec's `max_entries`: writes evict the oldest entries beyond it, now and then.
    pub max_entries: Option<u64>,
}

/// How long a write keeps its entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Expiry {
    /// The spec's `default_ttl` (none: kept until evicted).
    #[default]
    Default,
    After(Duration),
    Never,
}

impl From<Duration> for Expiry {
    fn from(ttl: Duration) -> Expiry {
        Expiry::After(ttl)
    }
}

/// Options for [`Cache::get_or_compute`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compute {
    /// The computed value's expiry.
    pub expiry: Expiry,
    /// How long the computing caller holds the key; past it, another caller may compute.
    pub lease: Duration,
    /// Hand waiting callers the expired value, if there is one, instead of waiting.
    pub serve_stale: bool,
}

impl Default for Compute {
    fn default() -> Compute {
        Compute {
            expiry: Expiry::Default,
            lease: Duration::from_secs(30),
            serve_stale: true,
        }
    }
}
