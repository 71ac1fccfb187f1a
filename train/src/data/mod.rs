//! Training data: photos and speech loaded into memory, random crops and chunks.
//!
//! Pure Rust (no tch types), so it can be tested alone. Everything is deterministic:
//! files are read in name order, the held-out split is a hash of each file name, and
//! batches come from [`SplitMix64`], so a fixed seed gives the same batches.
//!
//! Layouts match the synthesis outputs of `ipc_codec` (`src/synthesis.rs`): an image
//! batch is `[batch, tile_h * tile_w, 3]` with sample `s = y * tile_w + x` and the RGB
//! channels interleaved (channels last); an audio batch is `[batch, chunk_len, 1]`.
//!
//! The data sets themselves are rebuilt from Debian packages by
//! `scripts/fetch-training-data OUT_DIR` (`OUT_DIR/train-images`, `train-speech`,
//! `eval-speech`).

mod audio;
mod images;
mod split;
#[cfg(test)]
mod test_util;

use std::fs;
use std::path::{Path, PathBuf};

use ipc_codec::rng::SplitMix64;

pub use audio::{read_wav, AudioSet, AudioSetOptions, Clip};
pub use images::{Image, ImageSet, ImageSetOptions, IMAGE_EXTENSIONS};
pub use split::{fnv1a64, speaker, HoldoutBy};

/// Errors while loading training data. Each names the file or folder concerned.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A folder or file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The folder or file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// An image could not be decoded.
    #[error("{path}: cannot decode image: {source}")]
    Image {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: image::ImageError,
    },
    /// A WAV file could not be read.
    #[error("{path}: cannot read WAV: {source}")]
    Wav {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: ipc_wav::resample::ReadError,
    },
    /// A WAV file has a sample format or channel layout that is not supported.
    #[error("{path}: unsupported WAV: {reason}")]
    UnsupportedWav {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A folder holds no usable file.
    #[error("{dir}: {reason}")]
    Empty {
        /// The folder.
        dir: PathBuf,
        /// Why nothing could be used.
        reason: String,
    },
    /// An option is out of range.
    #[error("invalid data option: {0}")]
    InvalidOption(String),
}

/// A file that was read but left out, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Skipped {
    /// The file.
    pub path: PathBuf,
    /// Why it was left out.
    pub reason: String,
}

/// Uniform integer in `[0, n)` (`n > 0`), by a 64x64 -> 128-bit multiply.
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    debug_assert!(n > 0);
    ((rng.next_u64() as u128 * n as u128) >> 64) as usize
}

/// Files in `dir` with one of `exts` (case-insensitive), sorted by file name.
fn list_files(dir: &Path, exts: &[&str]) -> Result<Vec<(String, PathBuf)>, DataError> {
    let io = |e| DataError::Io {
        path: dir.to_path_buf(),
        source: e,
    };
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let path = entry.path();
        let ext_ok = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| exts.iter().any(|x| x.eq_ignore_ascii_case(e)));
        if !ext_ok || !path.is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        out.push((name, path));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::test_util::shared_data;
    use super::*;
    use std::time::Instant;

    /// `cargo test -p ipc-train --release data::tests::load_shared -- --ignored --nocapture`
    #[test]
    #[ignore = "reads ../shared/data (or $IPC_DATA_DIR): run by hand"]
    fn load_shared_training_data() {
        if let Some(dir) = shared_data("train-images") {
            for threads in [1, 2] {
                let opts = ImageSetOptions {
                    threads,
                    ..ImageSetOptions::default()
                };
                let t = Instant::now();
                let set = ImageSet::load(&dir, &opts).unwrap();
                let secs = t.elapsed().as_secs_f64();
                let bytes: usize = set
                    .train
                    .iter()
                    .chain(&set.holdout)
                    .map(|i| i.data.len())
                    .sum();
                eprintln!(
                    "train-images ({threads} thread(s)): {} train + {} held out, {} skipped, {:.1} Mpixel, {:.0} MB, {secs:.2} s",
                    set.train.len(),
                    set.holdout.len(),
                    set.skipped.len(),
                    bytes as f64 / 3e6,
                    bytes as f64 / 1e6
                );
                for s in &set.skipped {
                    eprintln!("  skipped {}: {}", s.path.display(), s.reason);
                }
                let held: Vec<&str> = set.holdout.iter().map(|i| i.name.as_str()).collect();
                eprintln!("  held out: {held:?}");
                let mut out = Vec::new();
                let t = Instant::now();
                set.sample_batch(&mut SplitMix64(1), 256, 32, 32, &mut out);
                let tiles = set.holdout_tiles(32, 32, 256);
                eprintln!(
                    "  batch of 256 32x32 crops in {:.1} ms; {} held-out tiles",
                    t.elapsed().as_secs_f64() * 1e3,
                    tiles.len() / (32 * 32 * 3)
                );
            }
        }
        for sub in ["train-speech", "eval-speech"] {
            if let Some(dir) = shared_data(sub) {
                let t = Instant::now();
                let set = AudioSet::load(&dir, &AudioSetOptions::default()).unwrap();
                eprintln!(
                    "{sub}: {} train + {} held-out clips, {:.1} min of training audio, {:.2} s",
                    set.train.len(),
                    set.holdout.len(),
                    set.train_samples() as f64 / 16_000.0 / 60.0,
                    t.elapsed().as_secs_f64()
                );
                let mut out = Vec::new();
                set.sample_batch(&mut SplitMix64(1), 64, 4096, &mut out);
                assert_eq!(out.len(), 64 * 4096);
                eprintln!(
                    "  {} held-out chunks of 4096",
                    set.holdout_chunks(4096, 1000).len() / 4096
                );
            }
        }
    }
}
