//! The held-out split: which files are kept out of training, decided by a hash of each
//! file's name alone, so that adding a file never moves another across the split.

/// 64-bit FNV-1a of `bytes`.
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// The hash of a file name as a number in `[0, 1)` (53 bits).
fn name_unit(name: &str) -> f64 {
    (fnv1a64(name.as_bytes()) >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether each name is held out: those whose hash unit is below `fraction`, then at
/// least one held out and at least one kept for training when there are two or more.
pub(super) fn holdout_flags(names: &[String], fraction: f64) -> Vec<bool> {
    let units: Vec<f64> = names.iter().map(|n| name_unit(n)).collect();
    let mut flags: Vec<bool> = units.iter().map(|&u| u < fraction).collect();
    if names.len() >= 2 {
        let by_unit = |a: &usize, b: &usize| units[*a].total_cmp(&units[*b]).then(a.cmp(b));
        if !flags.iter().any(|&f| f) {
            let i = (0..names.len()).min_by(by_unit).unwrap_or(0);
            flags[i] = true;
        }
        if flags.iter().all(|&f| f) {
            let i = (0..names.len()).max_by(by_unit).unwrap_or(0);
            flags[i] = false;
        }
    } else {
        flags.iter_mut().for_each(|f| *f = false);
    }
    flags
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a_reference_values() {
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
