//! A process's counters for one cache.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one process's use of a cache.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub hits: u64,
    pub misses: u64,
    /// `get_or_compute` calls answered with an expired value while another caller computed.
    pub stale_hits: u64,
    /// Computations run by `get_or_compute`.
    pub computes: u64,
    /// `get_or_compute` calls that waited for another caller's computation.
    pub waits: u64,
    pub writes: u64,
    /// Entries deleted to keep the cache within `max_entries`.
    pub evicted: u64,
}

pub(super) struct Counters {
    pub(super) hits: AtomicU64,
    pub(super) misses: AtomicU64,
    pub(super) stale_hits: AtomicU64,
    pub(super) computes: AtomicU64,
    pub(super) waits: AtomicU64,
    pub(super) writes: AtomicU64,
    pub(super) evicted: AtomicU64,
}

pub(super) fn bump(counter: &AtomicU64, n: u64) -> u64 {
    counter.fetch_add(n, Ordering::Relaxed) + n
}

impl Counters {
    pub(super) const fn new() -> Counters {
        Counters {
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            stale_hits: AtomicU64::new(0),
            computes: AtomicU64::new(0),
            waits: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            evicted: AtomicU64::new(0),
        }
    }

    pub(super) fn snapshot(&self) -> CacheStats {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        CacheStats {
            hits: get(&self.hits),
            misses: get(&self.misses),
            stale_hits: get(&self.stale_hits),
            computes: get(&self.computes),
            waits: get(&self.waits),
            writes: get(&self.writes),
            evicted: get(&self.evicted),
        }
    }
}
