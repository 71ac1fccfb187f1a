//! Speech: WAV clips loaded and split once, then random chunks for training batches
//! and fixed chunks for held-out evaluation.

use std::fs;
use std::path::Path;

use ipc_codec::rng::SplitMix64;

use ipc_wav::resample::ReadError;

use super::split::{holdout_flags, holdout_flags_by_group, speaker, HoldoutBy};
use super::{below, list_files, DataError};

/// How [`AudioSet::load`] reads WAV files.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioSetOptions {
    /// The rate of the clips; a file at another rate is resampled to it with the
    /// project's resampler (`ipc_wav::resample`) (default 16000).
    pub sample_rate: u32,
    /// Fraction held out for evaluation, by a hash of the file name or of the speaker
    /// (at least one held out and one kept when there are two or more).
    pub holdout_fraction: f64,
    /// What the held-out split draws: single files, or whole speakers.
    pub holdout_by: HoldoutBy,
}

impl Default for AudioSetOptions {
    fn default() -> Self {
        AudioSetOptions {
            sample_rate: 16_000,
            holdout_fraction: 0.05,
            holdout_by: HoldoutBy::File,
        }
    }
}

/// One sound file, mono, in `[-1, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clip {
    /// File name.
    pub name: String,
    /// The samples (stereo mixed down to mono).
    pub samples: Vec<f32>,
}

/// Sound files for training and their held-out split.
#[derive(Debug, Clone)]
pub struct AudioSet {
    /// Training clips, in file-name order.
    pub train: Vec<Clip>,
    /// Held-out clips, in file-name order.
    pub holdout: Vec<Clip>,
    /// Sample rate of every clip.
    pub sample_rate: u32,
}

/// Reads a WAV file as mono f32 in `[-1, 1]` at `sample_rate` (every format `ipc_wav`
/// reads, mono or stereo, stereo averaged; another rate is resampled with
/// `ipc_wav::resample`), at most [`ipc_codec::Limits`]'s default sample count. A file
/// without audio gives no samples.
pub fn read_wav(path: &Path, sample_rate: u32) -> Result<Vec<f32>, DataError> {
    let file = fs::File::open(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let read = ipc_wav::resample::read_resampled(
        std::io::BufReader::new(file),
        ipc_codec::Limits::default().max_samples,
        2,
        Some(sample_rate),
    );
    let audio = match read {
        Ok(audio) => audio,
        Err(ReadError::NoAudio) => return Ok(Vec::new()),
        Err(ReadError::TooManyChannels { channels, .. }) => {
            return Err(DataError::UnsupportedWav {
                path: path.to_path_buf(),
                reason: format!("{channels} channels (mono or stereo only)"),
            })
        }
        Err(source) => {
            return Err(DataError::Wav {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    let interleaved = audio.samples;
    Ok(if audio.format.channels == 2 {
        interleaved
            .chunks_exact(2)
            .map(|p| 0.5 * (p[0] + p[1]))
            .collect()
    } else {
        interleaved
    })
}

impl AudioSet {
    /// Reads every `.wav` file in `dir` (not its subfolders) in file-name order,
    /// resampled to the options' rate. A file that cannot be read is an error that
    /// names it; empty files are skipped; a folder with no usable file is an error.
    pub fn load(dir: &Path, opts: &AudioSetOptions) -> Result<AudioSet, DataError> {
        if !(0.0..1.0).contains(&opts.holdout_fraction) {
            return Err(DataError::InvalidOption(format!(
                "holdout_fraction {} is not in [0, 1)",
                opts.holdout_fraction
            )));
        }
        if opts.sample_rate == 0 {
            return Err(DataError::InvalidOption("sample_rate 0".into()));
        }
        let files = list_files(dir, &["wav"])?;
        let mut clips = Vec::with_capacity(files.len());
        for (name, path) in &files {
            let samples = read_wav(path, opts.sample_rate)?;
            if !samples.is_empty() {
                clips.push(Clip {
                    name: name.clone(),
                    samples,
                });
            }
        }
        if clips.is_empty() {
            return Err(DataError::Empty {
                dir: dir.to_path_buf(),
                reason: if files.is_empty() {
                    "no .wav files".into()
                } else {
                    format!("all {} .wav files are empty", files.len())
                },
            });
        }
        Ok(AudioSet::from_clips(clips, opts))
    }

    /// Builds a set from clips already in memory (split as [`Self::load`] does).
    pub fn from_clips(clips: Vec<Clip>, opts: &AudioSetOptions) -> AudioSet {
        let names: Vec<String> = clips.iter().map(|c| c.name.clone()).collect();
        let flags = match opts.holdout_by {
            HoldoutBy::File => holdout_flags(&names, opts.holdout_fraction),
            HoldoutBy::Speaker => holdout_flags_by_group(&names, speaker, opts.holdout_fraction),
        };
        let (mut train, mut holdout) = (Vec::new(), Vec::new());
        for (clip, held) in clips.into_iter().zip(flags) {
            if held {
                holdout.push(clip);
            } else {
                train.push(clip);
            }
        }
        AudioSet {
            train,
            holdout,
            sample_rate: opts.sample_rate,
        }
    }

    /// Total training samples.
    pub fn train_samples(&self) -> usize {
        self.train.iter().map(|c| c.samples.len()).sum()
    }

    /// Fills `out` with `batch` random chunks of `chunk_len` samples, layout
    /// `[batch, chunk_len, 1]`. A clip is drawn with probability proportional to its
    /// number of chunk positions (so every sample of the set is about equally likely),
    /// then a uniform position; a clip shorter than the chunk fills its start and the
    /// rest is zero.
    ///
    /// Panics if the set has no training clip (never after [`Self::load`]).
    pub fn sample_batch(
        &self,
        rng: &mut SplitMix64,
        batch: usize,
        chunk_len: usize,
        out: &mut Vec<f32>,
    ) {
        out.clear();
        out.resize(batch * chunk_len, 0.0);
        if batch == 0 || chunk_len == 0 {
            return;
        }
        assert!(
            !self.train.is_empty(),
            "AudioSet::sample_batch: no training clip"
        );
        let positions = |c: &Clip| c.samples.len().saturating_sub(chunk_len) + 1;
        let mut cumulative = Vec::with_capacity(self.train.len());
        let mut total = 0usize;
        for c in &self.train {
            total += positions(c);
            cumulative.push(total);
        }
        for dst in out.chunks_exact_mut(chunk_len) {
            let r = below(rng, total);
            let i = cumulative.partition_point(|&c| c <= r);
            let clip = &self.train[i];
            let start = below(rng, positions(clip));
            let n = chunk_len.min(clip.samples.len() - start);
            dst[..n].copy_from_slice(&clip.samples[start..start + n]);
        }
    }

    /// Fixed evaluation chunks from the held-out clips, layout `[n, chunk_len, 1]` with
    /// `n <= max`: each clip is cut into consecutive non-overlapping chunks from its
    /// start (a clip shorter than one chunk gives one zero-padded chunk; the tail of a
    /// longer clip is dropped), taken round-robin over the clips. The same every call.
    pub fn holdout_chunks(&self, chunk_len: usize, max: usize) -> Vec<f32> {
        if chunk_len == 0 {
            return Vec::new();
        }
        let counts: Vec<usize> = self
            .holdout
            .iter()
            .map(|c| (c.samples.len() / chunk_len).max(1))
            .collect();
        let longest = counts.iter().copied().max().unwrap_or(0);
        let mut out = Vec::new();
        let mut n = 0;
        'rounds: for k in 0..longest {
            for (clip, &count) in self.holdout.iter().zip(&counts) {
                if n == max {
                    break 'rounds;
                }
                if k < count {
                    let s = &clip.samples[(k * chunk_len).min(clip.samples.len())..];
                    let take = chunk_len.min(s.len());
                    out.extend_from_slice(&s[..take]);
                    out.resize(out.len() + chunk_len - take, 0.0);
                    n += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{spec, write_wav, TempDir};

    #[test]
    fn reads_wav_formats() {
        let dir = TempDir::new("wavfmt");
        let ramp: Vec<f64> = (0..100).map(|i| (i as f64 - 50.0) / 64.0).collect();
        let cases = [
            ("i16.wav", spec(1, 16_000, 16, false), 1.0 / 32768.0),
            ("i24.wav", spec(1, 16_000, 24, false), 1.0 / 8_388_608.0),
            ("i32.wav", spec(1, 16_000, 32, false), 1e-6),
            ("i8.wav", spec(1, 16_000, 8, false), 1.0 / 128.0),
            ("f32.wav", spec(1, 16_000, 32, true), 1e-7),
        ];
        for (name, sp, tol) in cases {
            write_wav(&dir.path(name), sp, &ramp);
            let got = read_wav(&dir.path(name), 16_000).unwrap();
            assert_eq!(got.len(), ramp.len(), "{name}");
            for (g, r) in got.iter().zip(&ramp) {
                assert!((*g as f64 - r).abs() <= tol + 1e-9, "{name}: {g} vs {r}");
            }
        }
        // Stereo is averaged.
        let lr: Vec<f64> = (0..50).flat_map(|i| [i as f64 / 100.0, 0.0]).collect();
        write_wav(&dir.path("st.wav"), spec(2, 16_000, 16, false), &lr);
        let got = read_wav(&dir.path("st.wav"), 16_000).unwrap();
        assert_eq!(got.len(), 50);
        assert!((got[20] - 0.1).abs() < 1e-4, "{}", got[20]);
        // Three channels: refused.
        write_wav(&dir.path("3ch.wav"), spec(3, 16_000, 16, false), &[0.0; 9]);
        let err = read_wav(&dir.path("3ch.wav"), 16_000).unwrap_err();
        assert!(
            matches!(err, DataError::UnsupportedWav { .. }) && err.to_string().contains("3ch.wav"),
            "{err}"
        );
        // Not a WAV.
        fs::write(dir.path("junk.wav"), b"RIFFxxxxWAVEjunk").unwrap();
        let err = read_wav(&dir.path("junk.wav"), 16_000).unwrap_err();
        assert!(
            matches!(err, DataError::Wav { .. }) && err.to_string().contains("junk.wav"),
            "{err}"
        );
    }

    #[test]
    fn other_sample_rates_are_resampled() {
        let dir = TempDir::new("rate");
        write_wav(&dir.path("a.wav"), spec(1, 16_000, 16, false), &[0.1; 1600]);
        let tone: Vec<f64> = (0..4410)
            .map(|i| 0.5 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 44_100.0).sin())
            .collect();
        write_wav(&dir.path("b_44k.wav"), spec(1, 44_100, 16, false), &tone);
        let set = AudioSet::load(
            &dir.0,
            &AudioSetOptions {
                holdout_fraction: 0.0,
                ..AudioSetOptions::default()
            },
        )
        .unwrap();
        let all: Vec<&Clip> = set.train.iter().chain(&set.holdout).collect();
        let b = all.iter().find(|c| c.name == "b_44k.wav").unwrap();
        // 0.1 s at 16 kHz, and still a 440 Hz tone of amplitude 0.5 in the middle.
        assert_eq!(b.samples.len(), 1600);
        let peak = b.samples[400..1200]
            .iter()
            .fold(0f32, |m, &x| m.max(x.abs()));
        assert!((peak - 0.5).abs() < 0.02, "{peak}");
        let empty = TempDir::new("noaudio");
        let err = AudioSet::load(&empty.0, &AudioSetOptions::default()).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
    }

    fn clip(name: &str, samples: Vec<f32>) -> Clip {
        Clip {
            name: name.into(),
            samples,
        }
    }

    #[test]
    fn audio_load_split_and_chunks() {
        let dir = TempDir::new("audio");
        for i in 0..10 {
            let s: Vec<f64> = (0..(1000 + 100 * i))
                .map(|k| ((k % 200) as f64 - 100.0) / 128.0)
                .collect();
            write_wav(
                &dir.path(&format!("c{i}.wav")),
                spec(1, 16_000, 16, false),
                &s,
            );
        }
        fs::write(dir.path("README"), "x").unwrap();
        let opts = AudioSetOptions {
            holdout_fraction: 0.2,
            ..AudioSetOptions::default()
        };
        let set = AudioSet::load(&dir.0, &opts).unwrap();
        let again = AudioSet::load(&dir.0, &opts).unwrap();
        assert_eq!(set.train, again.train);
        assert_eq!(set.holdout, again.holdout);
        assert_eq!(set.train.len() + set.holdout.len(), 10);
        assert!(!set.holdout.is_empty() && !set.train.is_empty());
        assert_eq!(set.sample_rate, 16_000);
        let mut out = Vec::new();
        set.sample_batch(&mut SplitMix64(5), 32, 256, &mut out);
        assert_eq!(out.len(), 32 * 256);
        let mut same = Vec::new();
        set.sample_batch(&mut SplitMix64(5), 32, 256, &mut same);
        assert_eq!(out, same);
    }

    #[test]
    fn audio_chunks_are_contiguous_and_short_clips_are_padded() {
        // Sample k of the long clip is k / 10000: a chunk's values tell its position.
        let long: Vec<f32> = (0..1000).map(|k| k as f32 / 10_000.0).collect();
        let short = vec![-0.5f32; 30];
        let set = AudioSet {
            train: vec![clip("long", long), clip("short", short)],
            holdout: Vec::new(),
            sample_rate: 16_000,
        };
        let n = 64;
        let mut out = Vec::new();
        set.sample_batch(&mut SplitMix64(11), 3000, n, &mut out);
        let (mut shorts, mut starts) = (0, vec![0usize; 1000 - n + 1]);
        for c in out.chunks_exact(n) {
            if c[0] == -0.5 {
                shorts += 1;
                assert!(c[..30].iter().all(|&v| v == -0.5));
                assert!(c[30..].iter().all(|&v| v == 0.0));
            } else {
                let s = (c[0] * 10_000.0).round() as usize;
                starts[s] += 1;
                for (i, &v) in c.iter().enumerate() {
                    assert_eq!(v, (s + i) as f32 / 10_000.0);
                }
            }
        }
        // The short clip has 1 position against 937: drawn about 3 times in 3000.
        assert!(shorts <= 12, "{shorts}");
        // Uniform positions: most of the 937 starts are hit, the mean is in the middle.
        let hit = starts.iter().filter(|&&c| c > 0).count();
        assert!(hit > 850, "{hit}");
        let (sum, cnt) = starts
            .iter()
            .enumerate()
            .fold((0, 0), |(s, c), (i, &k)| (s + i * k, c + k));
        let mean = sum as f64 / cnt as f64;
        assert!((mean - 468.0).abs() < 25.0, "{mean}");
    }

    #[test]
    fn holdout_chunks_are_fixed_and_round_robin() {
        let a: Vec<f32> = (0..250).map(|k| k as f32).collect();
        let b: Vec<f32> = (0..40).map(|k| 1000.0 + k as f32).collect();
        let set = AudioSet {
            train: vec![clip("t", vec![0.0; 10])],
            holdout: vec![clip("a", a), clip("b", b)],
            sample_rate: 16_000,
        };
        let out = set.holdout_chunks(100, 10);
        // a: chunks at 0 and 100 (the 50-sample tail is dropped); b: one padded chunk.
        assert_eq!(out.len(), 3 * 100);
        assert_eq!(out[0], 0.0);
        assert_eq!(out[99], 99.0);
        assert_eq!(out[100], 1000.0);
        assert_eq!(out[139], 1039.0);
        assert!(out[140..200].iter().all(|&v| v == 0.0));
        assert_eq!(out[200], 100.0);
        assert_eq!(out, set.holdout_chunks(100, 10));
        assert_eq!(set.holdout_chunks(100, 2), out[..200]);
        assert!(set.holdout_chunks(0, 10).is_empty());
    }
}
