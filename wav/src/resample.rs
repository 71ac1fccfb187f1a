//! Band-limited sample-rate conversion for WAV input whose rate differs from the
//! pack's: every output sample is the input convolved with a Kaiser-windowed sinc
//! low-pass centred on the output instant (bandlimited interpolation, J. O. Smith).
//!
//! The cutoff sits a little below the lower of the two Nyquist frequencies, so that
//! downsampling does not fold content above the new Nyquist back into the band. The
//! windowed sinc is tabulated densely once and interpolated linearly, which serves any
//! pair of rates (44100 to 16000 has no small common period) with a fixed, small table.
//!
//! [`read_resampled`] reads a WAV file and brings it to a target rate in one call, with
//! the sample limit checked before anything is allocated where the file allows it.

use std::fmt;
use std::io::Read;

use crate::{Error, Format, WavReader};

/// Zero crossings of the sinc on each side of the centre: the filter spans
/// `2 * ZERO_CROSSINGS` periods of the cutoff. 32 gives a transition band of about
/// 6% of the output Nyquist frequency.
const ZERO_CROSSINGS: usize = 32;
/// Table entries per zero crossing; the linear interpolation error is far below
/// the window's stopband.
const TABLE_DENSITY: usize = 512;
/// Kaiser window shape: about 80 dB of stopband attenuation.
const KAISER_BETA: f64 = 8.0;
/// Cutoff as a fraction of the lower Nyquist frequency; the transition band lies
/// between it and the Nyquist frequency, so that hardly anything aliases.
const ROLLOFF: f64 = 0.9;

/// A resampler from one rate to another.
pub struct Resampler {
    from: u64,
    to: u64,
    /// Cutoff in cycles per input sample, times two (the sinc's scale).
    scale: f64,
    /// Half the filter length, in input samples.
    half_width: f64,
    /// The windowed sinc at `k / TABLE_DENSITY` zero crossings, `k = 0..=len`.
    table: Vec<f64>,
}

impl Resampler {
    /// A resampler from `from` Hz to `to` Hz (both non-zero).
    pub fn new(from: u32, to: u32) -> Resampler {
        assert!(from > 0 && to > 0, "sample rates are positive");
        let ratio = f64::from(to) / f64::from(from);
        let scale = ROLLOFF * ratio.min(1.0);
        let n = ZERO_CROSSINGS * TABLE_DENSITY;
        let norm = bessel_i0(KAISER_BETA);
        let table = (0..=n + 1)
            .map(|k| {
                let u = k as f64 / TABLE_DENSITY as f64;
                let r = (k as f64 / n as f64).min(1.0);
                let window = bessel_i0(KAISER_BETA * (1.0 - r * r).sqrt()) / norm;
                sinc(u) * window
            })
            .collect();
        Resampler {
            from: u64::from(from),
            to: u64::from(to),
            scale,
            half_width: ZERO_CROSSINGS as f64 / scale,
            table,
        }
    }

    /// Frames of output for `frames` frames of input: the same duration, rounded up.
    pub fn output_frames(&self, frames: u64) -> u64 {
        (u128::from(frames) * u128::from(self.to)).div_ceil(u128::from(self.from)) as u64
    }

    /// The filter at `x` input samples from the output instant.
    fn kernel(&self, x: f64) -> f64 {
        let pos = x.abs() * self.scale * TABLE_DENSITY as f64;
        let k = pos as usize;
        if k >= self.table.len() - 1 {
            return 0.0;
        }
        let frac = pos - k as f64;
        let h = self.table[k] + (self.table[k + 1] - self.table[k]) * frac;
        h * self.scale
    }

    /// Resamples interleaved `samples` of `channels` channels (silence is assumed
    /// before the first and after the last frame). The caller bounds the output size
    /// with [`Resampler::output_frames`] first.
    pub fn process(&self, samples: &[f32], channels: usize) -> Vec<f32> {
        let frames = samples.len() / channels;
        let out_frames = self.output_frames(frames as u64) as usize;
        let mut out = vec![0f32; out_frames * channels];
        let reach = self.half_width.ceil() as i64;
        let mut acc = vec![0f64; channels];
        for (j, frame) in out.chunks_exact_mut(channels).enumerate() {
            // The output instant j / to seconds is input position j * from / to; kept
            // exact in integers so that long signals do not drift.
            let num = j as u64 * self.from;
            let centre = (num / self.to) as i64;
            let frac = (num % self.to) as f64 / self.to as f64;
            let first = (centre - reach).max(0);
            let last = (centre + reach + 1).min(frames as i64 - 1);
            acc.fill(0.0);
            for i in first..=last {
                let h = self.kernel((centre - i) as f64 + frac);
                if h == 0.0 {
                    continue;
                }
                let input = &samples[i as usize * channels..(i as usize + 1) * channels];
                for (a, &s) in acc.iter_mut().zip(input) {
                    *a += h * f64::from(s);
                }
            }
            for (o, &a) in frame.iter_mut().zip(&acc) {
                *o = a as f32;
            }
        }
        out
    }
}

fn sinc(x: f64) -> f64 {
    if x == 0.0 {
        1.0
    } else {
        let px = std::f64::consts::PI * x;
        px.sin() / px
    }
}

/// The modified Bessel function of the first kind, order 0, by its power series
/// (converges quickly for the arguments a Kaiser window needs).
fn bessel_i0(x: f64) -> f64 {
    let q = x * x / 4.0;
    let mut term = 1.0;
    let mut sum = 1.0;
    for k in 1..200 {
        term *= q / (k * k) as f64;
        sum += term;
        if term < sum * 1e-17 {
            break;
        }
    }
    sum
}

/// Audio read by [`read_resampled`].
#[derive(Debug, Clone, PartialEq)]
pub struct Resampled {
    /// The file's format (its own sample rate included).
    pub format: Format,
    /// The rate of `samples`: the target rate, or the file's when none was asked for
    /// or it already had it.
    pub sample_rate: u32,
    /// Whole frames at `sample_rate`, interleaved (channel 0, channel 1, ... of frame
    /// 0, then frame 1).
    pub samples: Vec<f32>,
    /// Float samples of the file that were outside `[-1, 1]` and were clipped to it.
    pub clipped: u64,
}

impl Resampled {
    /// The file's sample rate, if it differed from the target and was converted.
    pub fn resampled_from(&self) -> Option<u32> {
        (self.sample_rate != self.format.sample_rate).then_some(self.format.sample_rate)
    }
}

/// What can go wrong in [`read_resampled`].
#[derive(Debug)]
pub enum ReadError {
    /// The file could not be read ([`WavReader`]'s errors, the sample limit included).
    Wav(Error),
    /// The file has more channels than the caller takes.
    TooManyChannels {
        /// The file's channels.
        channels: u16,
        /// The most the caller takes.
        limit: u16,
    },
    /// The file holds no frames.
    NoAudio,
    /// Resampling would give more samples than the caller's limit.
    TooManyAfterResampling {
        /// Samples (every channel) after resampling.
        samples: u64,
        /// The limit.
        limit: u64,
    },
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReadError::Wav(e) => write!(f, "{e}"),
            ReadError::TooManyChannels { channels, limit } => {
                write!(f, "{channels} channels; 1 to {limit} can be read")
            }
            ReadError::NoAudio => write!(f, "no audio (0 frames)"),
            ReadError::TooManyAfterResampling { samples, limit } => write!(
                f,
                "{samples} samples after resampling, above the limit of {limit}"
            ),
        }
    }
}

impl std::error::Error for ReadError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ReadError::Wav(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for ReadError {
    fn from(e: Error) -> ReadError {
        ReadError::Wav(e)
    }
}

/// Reads a WAV file with [`WavReader`] and resamples it to `rate` if that is given and
/// differs from the file's. At most `max_samples` samples (every channel) are read and
/// produced, and at most `max_channels` channels taken; what the file declares is
/// checked before its samples are read, a stream after.
pub fn read_resampled<R: Read>(
    input: R,
    max_samples: u64,
    max_channels: u16,
    rate: Option<u32>,
) -> Result<Resampled, ReadError> {
    let reader = WavReader::new(input)?;
    let format = *reader.format();
    if format.channels > max_channels {
        return Err(ReadError::TooManyChannels {
            channels: format.channels,
            limit: max_channels,
        });
    }
    let resampler = rate
        .filter(|&r| r > 0 && r != format.sample_rate)
        .map(|r| Resampler::new(format.sample_rate, r));
    let check = |frames: u64| -> Result<(), ReadError> {
        if frames == 0 {
            return Err(ReadError::NoAudio);
        }
        if let Some(r) = &resampler {
            let after = r.output_frames(frames) * u64::from(format.channels);
            if after > max_samples {
                return Err(ReadError::TooManyAfterResampling {
                    samples: after,
                    limit: max_samples,
                });
            }
        }
        Ok(())
    };
    if let Some(frames) = reader.declared_frames() {
        check(frames)?;
    }
    let audio = reader.read_all(max_samples)?;
    check(audio.frames())?;
    let (samples, sample_rate) = match (&resampler, rate) {
        (Some(r), Some(rate)) => (
            r.process(&audio.samples, usize::from(format.channels)),
            rate,
        ),
        _ => (audio.samples, format.sample_rate),
    };
    Ok(Resampled {
        format,
        sample_rate,
        samples,
        clipped: audio.clipped,
    })
}

#[cfg(test)]
mod tests {
    use std::f64::consts::PI;

    use super::*;

    fn tone(freq: f64, rate: u32, seconds: f64, amplitude: f64) -> Vec<f32> {
        let n = (f64::from(rate) * seconds) as usize;
        (0..n)
            .map(|i| (amplitude * (2.0 * PI * freq * i as f64 / f64::from(rate)).sin()) as f32)
            .collect()
    }

    /// Amplitude of the component at `freq` (least squares on sine and cosine) over the
    /// middle half of `x`, away from the edges where the zero padding shows.
    fn amplitude(x: &[f32], freq: f64, rate: u32) -> f64 {
        let (lo, hi) = (x.len() / 4, 3 * x.len() / 4);
        let (mut ss, mut sc, mut cc, mut xs, mut xc) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for (i, &v) in x.iter().enumerate().take(hi).skip(lo) {
            let w = 2.0 * PI * freq * i as f64 / f64::from(rate);
            let (s, c) = w.sin_cos();
            ss += s * s;
            sc += s * c;
            cc += c * c;
            xs += f64::from(v) * s;
            xc += f64::from(v) * c;
        }
        let det = ss * cc - sc * sc;
        let a = (xs * cc - xc * sc) / det;
        let b = (xc * ss - xs * sc) / det;
        a.hypot(b)
    }

    fn rms_middle(x: &[f32]) -> f64 {
        let m = &x[x.len() / 4..3 * x.len() / 4];
        (m.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / m.len() as f64).sqrt()
    }

    #[test]
    fn a_1khz_tone_keeps_its_amplitude_from_44100_to_16000() {
        let r = Resampler::new(44_100, 16_000);
        let out = r.process(&tone(1000.0, 44_100, 0.5, 0.5), 1);
        assert_eq!(out.len(), 8000);
        let gain_db = 20.0 * (amplitude(&out, 1000.0, 16_000) / 0.5).log10();
        assert!(gain_db.abs() < 0.1, "gain {gain_db} dB");
    }

    #[test]
    fn a_10khz_tone_does_not_alias_from_44100_to_16000() {
        let r = Resampler::new(44_100, 16_000);
        let out = r.process(&tone(10_000.0, 44_100, 0.5, 0.5), 1);
        // It would fold to 6 kHz; everything that is left counts as aliasing.
        let level_db = 20.0 * (rms_middle(&out) / (0.5 / 2f64.sqrt())).log10();
        assert!(level_db < -40.0, "alias at {level_db} dB");
    }

    #[test]
    fn upsampling_keeps_a_tone_and_adds_no_images() {
        let r = Resampler::new(8000, 16_000);
        let out = r.process(&tone(1000.0, 8000, 0.5, 0.5), 1);
        assert_eq!(out.len(), 8000);
        let gain_db = 20.0 * (amplitude(&out, 1000.0, 16_000) / 0.5).log10();
        assert!(gain_db.abs() < 0.1, "gain {gain_db} dB");
        // The spectral image of 1 kHz at 7 kHz must be gone.
        let image_db = 20.0 * (amplitude(&out, 7000.0, 16_000) / 0.5).log10();
        assert!(image_db < -40.0, "image at {image_db} dB");
    }

    #[test]
    fn channels_stay_apart_and_lengths_round_up() {
        let r = Resampler::new(48_000, 16_000);
        let left = tone(500.0, 48_000, 0.2, 0.5);
        let stereo: Vec<f32> = left.iter().flat_map(|&l| [l, 0.0]).collect();
        let out = r.process(&stereo, 2);
        assert_eq!(out.len(), 2 * 3200);
        assert!(out.iter().skip(1).step_by(2).all(|&v| v == 0.0));
        let l: Vec<f32> = out.iter().step_by(2).copied().collect();
        assert!((amplitude(&l, 500.0, 16_000) - 0.5).abs() < 0.01);
        assert_eq!(r.output_frames(1), 1);
        assert_eq!(r.output_frames(4), 2);
        assert_eq!(r.process(&[0.25], 1).len(), 1);
    }

    fn wav(channels: u16, rate: u32, samples: &[i16]) -> Vec<u8> {
        let mut file = Vec::new();
        crate::write_pcm16(&mut file, channels, rate, samples).unwrap();
        file
    }

    #[test]
    fn read_resampled_converts_only_a_different_rate() {
        let pcm: Vec<i16> = tone(1000.0, 48_000, 0.1, 0.5)
            .iter()
            .map(|&s| (s * 32768.0) as i16)
            .collect();
        let file = wav(1, 48_000, &pcm);
        let r = read_resampled(&file[..], 1_000_000, 255, Some(16_000)).unwrap();
        assert_eq!((r.sample_rate, r.samples.len()), (16_000, 1600));
        assert_eq!(r.resampled_from(), Some(48_000));
        assert_eq!(r.format.sample_rate, 48_000);
        for rate in [None, Some(48_000)] {
            let r = read_resampled(&file[..], 1_000_000, 255, rate).unwrap();
            assert_eq!((r.sample_rate, r.samples.len()), (48_000, 4800));
            assert_eq!(r.resampled_from(), None);
        }
    }

    #[test]
    fn read_resampled_checks_channels_emptiness_and_the_limit_after_resampling() {
        let stereo = wav(2, 8000, &[0; 800]);
        assert!(matches!(
            read_resampled(&stereo[..], 1_000_000, 1, None),
            Err(ReadError::TooManyChannels {
                channels: 2,
                limit: 1
            })
        ));
        // 400 frames at 8 kHz are 800 at 16 kHz: 1600 samples.
        assert!(matches!(
            read_resampled(&stereo[..], 1000, 2, Some(16_000)),
            Err(ReadError::TooManyAfterResampling {
                samples: 1600,
                limit: 1000
            })
        ));
        assert!(read_resampled(&stereo[..], 1000, 2, None).is_ok());
        assert!(matches!(
            read_resampled(&stereo[..], 10, 2, None),
            Err(ReadError::Wav(Error::TooManySamples { .. }))
        ));
        let empty = wav(1, 8000, &[]);
        assert!(matches!(
            read_resampled(&empty[..], 1000, 2, None),
            Err(ReadError::NoAudio)
        ));
    }
}
