//! [`FastHash`]: the hasher of the registry's tables.
//!
//! Kept by hand, not rustc-hash 2: that hashes a `PciPath`'s 16 hop bytes with 16 multiplies
//! where this packs them into 2, and its lookups were 1.4-2.1 times slower (bench 5).

use std::hash::{BuildHasher, Hasher};
use std::sync::OnceLock;

/// Builds the hasher of the registry's tables (and of the waiters' table, keyed by
/// `PciPath` too, which the listener looks up for every change): FxHash's rotate-xor-multiply (as rustc's
/// `rustc-hash` 2 does it) over the written bytes packed eight at a time, from a seed drawn
/// once per process.
///
/// Why not std's SipHash: a [`PciPath`] hashes as 20 small writes (the root's two fields, the
/// hop array's length and its 16 slots, the hop count), and SipHash over those cost more than
/// the rest of a lookup on the listener's path (BENCHMARKS.md, bench 1). Packing the writes
/// makes it 4 multiplies instead of 20. Hash flooding needs an adversary who chooses the
/// keys; these come from the kernel (the socket believes only port 0) or from sysfs, and the
/// per-process seed keeps a crafted recording from colliding everywhere.
#[derive(Clone, Copy, Debug)]
pub(crate) struct FastHash {
    seed: u64,
}

impl Default for FastHash {
    fn default() -> Self {
        static SEED: OnceLock<u64> = OnceLock::new();
        FastHash {
            seed: *SEED
                .get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u64)),
        }
    }
}

impl BuildHasher for FastHash {
    type Hasher = FxHasher;
    fn build_hasher(&self) -> FxHasher {
        FxHasher {
            hash: self.seed,
            pending: 0,
            filled: 0,
        }
    }
}

/// See [`FastHash`].
pub(crate) struct FxHasher {
    hash: u64,
    /// Bytes written and not yet mixed in, the first one lowest.
    pending: u64,
    /// How many bytes `pending` holds, 0 to 7.
    filled: u32,
}

impl FxHasher {
    fn mix(&mut self, word: u64) {
        self.hash = (self.hash.rotate_left(5) ^ word).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }

    /// Mixes in the pending bytes, if any, with their count.
    fn flush(&mut self) {
        if self.filled > 0 {
            self.mix(self.pending ^ (u64::from(self.filled) << 59));
            (self.pending, self.filled) = (0, 0);
        }
    }

    /// Mixes in a whole word, after what is pending.
    fn word(&mut self, n: u64) {
        self.flush();
        self.mix(n);
    }
}

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u8(b);
        }
    }
    // A path's 16 hop slots come one byte at a time: collected eight to a word, so that the
    // multiply runs once per word.
    fn write_u8(&mut self, n: u8) {
        // The first byte lowest: a multiply carries low bits up through the whole word, and
        // high ones only off its top.
        self.pending |= u64::from(n) << (8 * self.filled);
        self.filled += 1;
        if self.filled == 8 {
            self.mix(self.pending);
            (self.pending, self.filled) = (0, 0);
        }
    }
    fn write_u16(&mut self, n: u16) {
        self.word(u64::from(n));
    }
    fn write_u32(&mut self, n: u32) {
        self.word(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.word(n);
    }
    fn write_usize(&mut self, n: usize) {
        self.word(n as u64);
    }
    fn finish(&self) -> u64 {
        let mut h = FxHasher { ..*self };
        h.flush();
        // The multiply leaves its best bits at the top; tables index with the bottom ones.
        h.hash.rotate_left(26)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::{Hop, PciPath};

    #[test]
    fn the_fast_hash_spreads_paths_over_the_low_bits_tables_index_with() {
        let build = FastHash::default();
        let mut paths = Vec::new();
        for a in 0..32u8 {
            for b in 0..32u8 {
                for f in [0u8, 3] {
                    let hops = [Hop::new(a, 0).unwrap(), Hop::new(b, f).unwrap()];
                    paths.push(PciPath::new(Default::default(), &hops).unwrap());
                }
            }
        }
        // 2,048 paths into 4,096 buckets: a good hash leaves about 1,600 buckets used.
        let mut used = std::collections::HashSet::new();
        for p in &paths {
            used.insert(build.hash_one(p) & 4095);
        }
        assert!(used.len() > 1400, "{} buckets used", used.len());
        assert_eq!(build.hash_one(paths[7]), build.hash_one(paths[7]));
        assert_ne!(build.hash_one("vda"), build.hash_one("vdb"));
    }
}
