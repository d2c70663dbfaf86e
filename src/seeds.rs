//! Per-call seeds for what a decorator draws at random (Retrying's jitter, Chaos's faults): a
//! base and a call counter shared by clones, so a fixed seed gives a fixed sequence of calls
//! without a lock.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub(crate) struct Seeds {
    base: u64,
    next: AtomicU64,
}

impl Seeds {
    pub(crate) fn new(base: u64) -> Self {
        Seeds {
            base,
            next: AtomicU64::new(0),
        }
    }

    /// The seed of the next call: the base and the call's number mixed, so that seed `s` and
    /// seed `s + 1` give unrelated runs (a plain `base + n` made them the same run shifted by
    /// one call).
    pub(crate) fn take(&self) -> u64 {
        splitmix64(splitmix64(self.base) ^ self.next.fetch_add(1, Relaxed))
    }
}

/// SplitMix64's finalizer: a cheap, well-mixed bijection of `u64`.
pub(crate) fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
