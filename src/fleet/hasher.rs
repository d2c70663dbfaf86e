//! The hasher that names serve-stale answers alike on every replica of a fleet.

use std::hash::BuildHasher;

/// A `BuildHasher` of SipHash keyed with (half of) a fleet's naming key, so that every replica
/// names an answer the same way (std's `RandomState` draws its keys per process).
#[derive(Clone, Debug)]
pub(crate) struct StaleHasher(u64, u64);

impl StaleHasher {
    /// A pair of independent hashers (a 128-bit name) from a fleet's naming key.
    pub(crate) fn pair([a, b, c, d]: [u64; 4]) -> (StaleHasher, StaleHasher) {
        (StaleHasher(a, b), StaleHasher(c, d))
    }
}

impl BuildHasher for StaleHasher {
    // std's keyed SipHash (2-4) is deprecated only in favour of crates that offer the same
    // thing; it is stable, keyed, and already in every binary. SipHash is a PRF, so names
    // made with a secret key reveal nothing of what they name.
    #[allow(deprecated)]
    type Hasher = std::hash::SipHasher;

    #[inline]
    fn build_hasher(&self) -> Self::Hasher {
        #[allow(deprecated)]
        std::hash::SipHasher::new_with_keys(self.0, self.1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyed_pairs_agree_across_instances_and_keys_and_halves_differ() {
        let key = [1, 2, 3, 4];
        let (a, b) = (StaleHasher::pair(key), StaleHasher::pair(key));
        assert_eq!(a.0.hash_one("x"), b.0.hash_one("x"));
        assert_eq!(a.1.hash_one("x"), b.1.hash_one("x"));
        assert_ne!(a.0.hash_one("x"), a.1.hash_one("x"));
        let other = StaleHasher::pair([9, 2, 3, 4]);
        assert_ne!(a.0.hash_one("x"), other.0.hash_one("x"));
    }
}
