//! Helpers shared by the data tests.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ImageSetOptions;

/// A temporary folder removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "ipc-train-data-{}-{}-{}",
            std::process::id(),
            tag,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// An 8-bit RGB gradient: R = x, G = y, B = (x + y) % 256.
pub fn gradient(w: u32, h: u32) -> image::RgbImage {
    image::RgbImage::from_fn(w, h, |x, y| {
        image::Rgb([x as u8, y as u8, ((x + y) % 256) as u8])
    })
}

pub fn write_wav(path: &Path, spec: hound::WavSpec, samples: &[f64]) {
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for &s in samples {
        match spec.sample_format {
            hound::SampleFormat::Float => w.write_sample(s as f32).unwrap(),
            hound::SampleFormat::Int => {
                let max = (1i64 << (spec.bits_per_sample - 1)) as f64;
                let v = (s * max).round().clamp(-max, max - 1.0) as i32;
                match spec.bits_per_sample {
                    8 => w.write_sample(v as i8).unwrap(),
                    16 => w.write_sample(v as i16).unwrap(),
                    _ => w.write_sample(v).unwrap(),
                }
            }
        }
    }
    w.finalize().unwrap();
}

pub fn spec(channels: u16, rate: u32, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}

pub fn no_holdout_opts() -> ImageSetOptions {
    ImageSetOptions {
        max_short_side: 0,
        min_height: 1,
        min_width: 1,
        threads: 1,
        ..ImageSetOptions::default()
    }
}

/// `../shared/data/SUB` (or `$IPC_DATA_DIR/SUB`) when it exists.
pub fn shared_data(sub: &str) -> Option<PathBuf> {
    let base = std::env::var_os("IPC_DATA_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/data"));
    let dir = base.join(sub);
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("{} not found (set IPC_DATA_DIR); skipped", dir.display());
        None
    }
}
