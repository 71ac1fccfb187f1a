//! The project's pseudo-random generator: SplitMix64 (Steele, Lea and Flood, "Fast
//! splittable pseudorandom number generators", OOPSLA 2014), chosen for its fixed,
//! four-line definition, so that a seed means the same sequence on every machine and in
//! every release. Training draws its batches, crops and noise from it; the tests and
//! the synthetic packs their weights.
//!
//! ```
//! use ipc_codec::rng::SplitMix64;
//! let mut rng = SplitMix64(1);
//! let (a, b) = (rng.next_u64(), rng.next_u64());
//! assert_ne!(a, b);
//! assert_eq!(SplitMix64(1).next_u64(), a);
//! assert!((-0.5..0.5).contains(&rng.uniform(0.5)));
//! ```

/// SplitMix64: a small, well-mixed generator with a fixed definition.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale)`, from 24 random bits (exact in f32).
    pub fn uniform(&mut self, scale: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32;
        (2.0 * unit - 1.0) * scale
    }

    /// `n` values from [`Self::uniform`].
    pub fn uniform_vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.uniform(scale)).collect()
    }
}
