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

/// The hash of a speaker as a number in `[0, 1)`: FNV-1a followed by SplitMix64's
/// finaliser. FNV-1a alone barely moves its top bits when names differ only in their
/// last byte (`voice1`, `voice2`), which short speaker names often do; file names keep
/// [`name_unit`] so that the file split of existing data does not change.
fn group_unit(group: &str) -> f64 {
    let mut z = fnv1a64(group.as_bytes());
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Whether each name is held out: those whose hash unit is below `fraction`, then at
/// least one held out and at least one kept for training when there are two or more.
pub(super) fn holdout_flags(names: &[String], fraction: f64) -> Vec<bool> {
    let units: Vec<f64> = names.iter().map(|n| name_unit(n)).collect();
    flags_of_units(&units, fraction)
}

/// The flags of [`holdout_flags`] from each item's hash unit.
fn flags_of_units(units: &[f64], fraction: f64) -> Vec<bool> {
    let mut flags: Vec<bool> = units.iter().map(|&u| u < fraction).collect();
    if units.len() >= 2 {
        let by_unit = |a: &usize, b: &usize| units[*a].total_cmp(&units[*b]).then(a.cmp(b));
        if !flags.iter().any(|&f| f) {
            let i = (0..units.len()).min_by(by_unit).unwrap_or(0);
            flags[i] = true;
        }
        if flags.iter().all(|&f| f) {
            let i = (0..units.len()).max_by(by_unit).unwrap_or(0);
            flags[i] = false;
        }
    } else {
        flags.iter_mut().for_each(|f| *f = false);
    }
    flags
}

/// What the held-out split draws (`data.holdout_by` in a training config).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HoldoutBy {
    /// Single files, by a hash of each file's name.
    #[default]
    File,
    /// Whole speakers (audio), by a hash of each file's speaker, [`speaker`]: no voice
    /// is both trained on and held out.
    Speaker,
}

/// The speaker of an audio file: its name up to the first `__` (what
/// `scripts/fetch-training-data --more-speech` writes: the voice, language or game
/// level), or the whole name when it has none.
pub fn speaker(name: &str) -> &str {
    name.split_once("__").map_or(name, |(group, _)| group)
}

/// [`holdout_flags`] drawn over groups: every name whose group (`group_of`) is held
/// out, with the same guarantees counted in groups.
pub(super) fn holdout_flags_by_group(
    names: &[String],
    group_of: impl Fn(&str) -> &str,
    fraction: f64,
) -> Vec<bool> {
    let mut groups: Vec<String> = names.iter().map(|n| group_of(n).to_string()).collect();
    groups.sort();
    groups.dedup();
    let units: Vec<f64> = groups.iter().map(|g| group_unit(g)).collect();
    let held = flags_of_units(&units, fraction);
    names
        .iter()
        .map(|n| {
            let g = group_of(n);
            groups
                .binary_search_by(|x| x.as_str().cmp(g))
                .is_ok_and(|i| held[i])
        })
        .collect()
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

    #[test]
    fn speaker_split_keeps_every_voice_on_one_side() {
        let names: Vec<String> = (0..40)
            .flat_map(|v| (0..5).map(move |c| format!("voice{v}__clip{c}.wav")))
            .chain(["loose.wav".to_string()])
            .collect();
        let flags = holdout_flags_by_group(&names, speaker, 0.2);
        for v in 0..40 {
            let prefix = format!("voice{v}__");
            let side: Vec<bool> = names
                .iter()
                .zip(&flags)
                .filter(|(n, _)| n.starts_with(&prefix))
                .map(|(_, &f)| f)
                .collect();
            assert!(
                side.iter().all(|&f| f == side[0]),
                "voice{v} split: {side:?}"
            );
        }
        let held_voices = (0..40)
            .filter(|v| {
                let first = names
                    .iter()
                    .position(|n| n.starts_with(&format!("voice{v}__")));
                flags[first.unwrap()]
            })
            .count();
        assert!((2..=16).contains(&held_voices), "{held_voices}");
        assert_eq!(speaker("asterisk-en_US__hello.wav"), "asterisk-en_US");
        assert_eq!(speaker("plain.wav"), "plain.wav");
    }
}
