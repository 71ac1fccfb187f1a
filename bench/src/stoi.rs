//! STOI, the short-time objective intelligibility measure of Taal, Hendriks, Heusdens
//! and Jensen ("An Algorithm for Intelligibility Prediction of Time-Frequency Weighted
//! Noisy Speech", IEEE TASLP 19(7), 2011), from the published algorithm. SNR punishes
//! codecs that keep what the ear needs and drop the waveform; STOI says how much of
//! the speech stays intelligible, from about 0.4 (noise) to 1 (the reference itself).
//!
//! The algorithm (§II of the paper), with its constants:
//! 1. Both signals are brought to 10 kHz.
//! 2. Silent frames are dropped: 256-sample frames (Hann window, hop 128) of the
//!    reference whose energy is more than 40 dB below its loudest frame are removed
//!    from both signals, which are then rebuilt by overlap-add.
//! 3. Short-time spectra: the same frames, zero-padded to a 512-point FFT.
//! 4. 15 one-third-octave bands from 150 Hz: each band's envelope is the square root
//!    of the energy of its FFT bins, frame by frame.
//! 5. For every 30-frame segment (384 ms, one starting at every frame) and band, the
//!    processed envelope is scaled to the reference's energy and clipped to at most
//!    `1 + 10^(-β/20)` times the reference (β = -15 dB: a signal-to-distortion floor),
//!    and the two are correlated.
//! 6. STOI is the mean correlation over bands and segments.
//!
//! Where the paper leaves a detail open, this follows the reference implementation that
//! `pystoi` reproduces, so that the figures are comparable with the published ones:
//! frames start at `0, 128, ...` strictly before `len - 256` (the last full position is
//! not used); the window is `0.5 - 0.5 cos(2π(n + 1)/(N + 1))` (MATLAB's `hanning`,
//! without zero end points); band edges are the FFT bins nearest to
//! `150 · 2^((2k ∓ 1)/6)` Hz, the upper one excluded; and a signal with fewer than 30
//! frames of speech gets 1e-5. The resampling to 10 kHz is the project's own
//! band-limited resampler (`ipc_wav::resample`), not `pystoi`'s polyphase filter, which
//! moves results by about 1e-3 (`tests` compares with `pystoi`'s values).

use ipc_wav::resample::Resampler;

/// The rate STOI works at.
const FS: u32 = 10_000;
/// Frame length and hop of the analysis, in samples at [`FS`].
const FRAME: usize = 256;
const HOP: usize = FRAME / 2;
/// FFT size: frames are zero-padded to it.
const NFFT: usize = 512;
/// One-third-octave bands and the centre of the lowest, Hz.
const BANDS: usize = 15;
const MIN_FREQ: f64 = 150.0;
/// Frames per segment of the intermediate intelligibility measure.
const SEGMENT: usize = 30;
/// Lower bound of the signal-to-distortion ratio, dB.
const BETA_DB: f64 = -15.0;
/// Frames this far below the loudest frame of the reference are silence, dB.
const DYNAMIC_RANGE_DB: f64 = 40.0;
/// What a too-short signal scores (the reference implementation's value).
const TOO_SHORT: f64 = 1e-5;

/// STOI of `processed` against `reference`, both mono at `rate` Hz; the longer one is
/// cut to the shorter one's length.
pub fn stoi(reference: &[f32], processed: &[f32], rate: u32) -> f64 {
    let n = reference.len().min(processed.len());
    let (x, y) = if rate == FS {
        (to_f64(&reference[..n]), to_f64(&processed[..n]))
    } else {
        let r = Resampler::new(rate, FS);
        (
            to_f64(&r.process(&reference[..n], 1)),
            to_f64(&r.process(&processed[..n], 1)),
        )
    };
    let w = window();
    let (x, y) = remove_silent_frames(&x, &y, &w);
    let bands = band_bins();
    let x_bands = band_envelopes(&x, &w, &bands);
    let y_bands = band_envelopes(&y, &w, &bands);
    let frames = x_bands.len();
    if frames < SEGMENT {
        return TOO_SHORT;
    }
    let clip = 1.0 + 10f64.powf(-BETA_DB / 20.0);
    let mut sum = 0.0;
    let mut count = 0usize;
    let (mut xs, mut ys) = (vec![0.0; SEGMENT], vec![0.0; SEGMENT]);
    for end in SEGMENT..=frames {
        for band in 0..BANDS {
            for (i, m) in (end - SEGMENT..end).enumerate() {
                xs[i] = x_bands[m][band];
                ys[i] = y_bands[m][band];
            }
            let scale = norm(&xs) / (norm(&ys) + f64::EPSILON);
            for (y, &x) in ys.iter_mut().zip(&xs) {
                *y = (*y * scale).min(x * clip);
            }
            sum += correlation(&mut xs, &mut ys);
            count += 1;
        }
    }
    sum / count as f64
}

fn to_f64(s: &[f32]) -> Vec<f64> {
    s.iter().map(|&v| f64::from(v)).collect()
}

fn norm(v: &[f64]) -> f64 {
    v.iter().map(|x| x * x).sum::<f64>().sqrt()
}

/// The correlation coefficient of two vectors (both are centred and scaled in place).
fn correlation(x: &mut [f64], y: &mut [f64]) -> f64 {
    for v in [&mut *x, &mut *y] {
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        v.iter_mut().for_each(|a| *a -= mean);
        let n = norm(v) + f64::EPSILON;
        v.iter_mut().for_each(|a| *a /= n);
    }
    x.iter().zip(y.iter()).map(|(a, b)| a * b).sum()
}

/// The analysis window: `0.5 - 0.5 cos(2π(n + 1)/(FRAME + 1))`, `n = 0..FRAME`.
fn window() -> Vec<f64> {
    (0..FRAME)
        .map(|n| {
            0.5 - 0.5 * (2.0 * std::f64::consts::PI * (n + 1) as f64 / (FRAME + 1) as f64).cos()
        })
        .collect()
}

/// Start of every analysis frame of a signal of `len` samples.
fn frame_starts(len: usize) -> impl Iterator<Item = usize> {
    (0..len.saturating_sub(FRAME)).step_by(HOP)
}

/// Step 2: both signals without the frames where the reference is silent, rebuilt by
/// overlap-adding the windowed frames that are kept.
fn remove_silent_frames(x: &[f64], y: &[f64], w: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let starts: Vec<usize> = frame_starts(x.len()).collect();
    let energy_db: Vec<f64> = starts
        .iter()
        .map(|&s| {
            let e: f64 = (0..FRAME).map(|n| (w[n] * x[s + n]).powi(2)).sum();
            20.0 * (e.sqrt() + f64::EPSILON).log10()
        })
        .collect();
    let loudest = energy_db.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let kept: Vec<usize> = starts
        .iter()
        .zip(&energy_db)
        .filter(|&(_, &e)| e > loudest - DYNAMIC_RANGE_DB)
        .map(|(&s, _)| s)
        .collect();
    if kept.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let len = (kept.len() - 1) * HOP + FRAME;
    let (mut xo, mut yo) = (vec![0.0; len], vec![0.0; len]);
    for (k, &s) in kept.iter().enumerate() {
        for n in 0..FRAME {
            xo[k * HOP + n] += w[n] * x[s + n];
            yo[k * HOP + n] += w[n] * y[s + n];
        }
    }
    (xo, yo)
}

/// Steps 3 and 4: the one-third-octave band envelopes of every frame, with the
/// analysis window `w` and the bands' FFT bins `bands`.
fn band_envelopes(x: &[f64], w: &[f64], bands: &[(usize, usize); BANDS]) -> Vec<[f64; BANDS]> {
    let mut re = vec![0.0; NFFT];
    let mut im = vec![0.0; NFFT];
    frame_starts(x.len())
        .map(|s| {
            re.iter_mut().for_each(|v| *v = 0.0);
            im.iter_mut().for_each(|v| *v = 0.0);
            for n in 0..FRAME {
                re[n] = w[n] * x[s + n];
            }
            fft(&mut re, &mut im);
            let mut out = [0.0; BANDS];
            for (o, &(lo, hi)) in out.iter_mut().zip(bands) {
                *o = (lo..hi)
                    .map(|k| re[k] * re[k] + im[k] * im[k])
                    .sum::<f64>()
                    .sqrt();
            }
            out
        })
        .collect()
}

/// The FFT bins `lo..hi` of each band: the bins nearest to its edges
/// `MIN_FREQ · 2^((2k ∓ 1)/6)`, the upper one excluded.
fn band_bins() -> [(usize, usize); BANDS] {
    let bin_hz = f64::from(FS) / NFFT as f64;
    let nearest = |f: f64| {
        (0..=NFFT / 2)
            .min_by(|&a, &b| {
                let da = (a as f64 * bin_hz - f).abs();
                let db = (b as f64 * bin_hz - f).abs();
                da.total_cmp(&db)
            })
            .unwrap_or(0)
    };
    std::array::from_fn(|k| {
        let k = k as f64;
        (
            nearest(MIN_FREQ * 2f64.powf((2.0 * k - 1.0) / 6.0)),
            nearest(MIN_FREQ * 2f64.powf((2.0 * k + 1.0) / 6.0)),
        )
    })
}

/// In-place radix-2 FFT of `re + i·im` (length a power of two).
fn fft(re: &mut [f64], im: &mut [f64]) {
    let n = re.len();
    debug_assert!(n.is_power_of_two() && im.len() == n);
    let mut j = 0;
    for i in 1..n {
        let mut bit = n >> 1;
        while j & bit != 0 {
            j ^= bit;
            bit >>= 1;
        }
        j |= bit;
        if i < j {
            re.swap(i, j);
            im.swap(i, j);
        }
    }
    let mut len = 2;
    while len <= n {
        let angle = -2.0 * std::f64::consts::PI / len as f64;
        for start in (0..n).step_by(len) {
            for k in 0..len / 2 {
                let (s, c) = (angle * k as f64).sin_cos();
                let (a, b) = (start + k, start + k + len / 2);
                let tr = re[b] * c - im[b] * s;
                let ti = re[b] * s + im[b] * c;
                re[b] = re[a] - tr;
                im[b] = im[a] - ti;
                re[a] += tr;
                im[a] += ti;
            }
        }
        len <<= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_codec::rng::SplitMix64;

    /// A speech-like test signal (`scripts/stoi-reference` makes the same one): a
    /// harmonic voice at 120–180 Hz whose loudness follows syllables of 200 ms, with
    /// pauses, at 16 kHz, `seconds` long.
    fn voice(seconds: f64) -> Vec<f32> {
        let rate = 16_000.0;
        let n = (seconds * rate) as usize;
        (0..n)
            .map(|i| {
                let t = i as f64 / rate;
                let f0 = 150.0 + 30.0 * (2.0 * std::f64::consts::PI * 0.7 * t).sin();
                let syllable = (std::f64::consts::PI * t / 0.2).sin().max(0.0);
                let pause = if (t % 1.5) > 1.2 { 0.0 } else { 1.0 };
                let mut v = 0.0;
                for h in 1..=20 {
                    let amp = 1.0 / h as f64;
                    v += amp * (2.0 * std::f64::consts::PI * f0 * h as f64 * t).sin();
                }
                (0.08 * v * syllable * pause) as f32
            })
            .collect()
    }

    /// White noise of standard deviation `sd`, from SplitMix64 (uniform, variance-scaled).
    fn noise(n: usize, sd: f64, seed: u64) -> Vec<f32> {
        let mut rng = SplitMix64(seed);
        (0..n)
            .map(|_| {
                let u = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                ((2.0 * u - 1.0) * sd * 3f64.sqrt()) as f32
            })
            .collect()
    }

    fn plus(a: &[f32], b: &[f32]) -> Vec<f32> {
        a.iter().zip(b).map(|(x, y)| x + y).collect()
    }

    #[test]
    fn identical_signals_score_one() {
        let x = voice(3.0);
        let d = stoi(&x, &x, 16_000);
        assert!((d - 1.0).abs() < 1e-9, "{d}");
    }

    #[test]
    fn too_short_signals_score_the_floor() {
        let x = voice(0.2);
        assert_eq!(stoi(&x, &x, 16_000), TOO_SHORT);
    }

    #[test]
    fn fft_matches_the_definition() {
        let mut rng = SplitMix64(3);
        let x: Vec<f64> = (0..16).map(|_| f64::from(rng.uniform(1.0))).collect();
        let (mut re, mut im) = (x.clone(), vec![0.0; 16]);
        fft(&mut re, &mut im);
        for k in 0..16 {
            let (mut r, mut i) = (0.0, 0.0);
            for (n, &v) in x.iter().enumerate() {
                let a = -2.0 * std::f64::consts::PI * (k * n) as f64 / 16.0;
                r += v * a.cos();
                i += v * a.sin();
            }
            assert!((re[k] - r).abs() < 1e-12 && (im[k] - i).abs() < 1e-12);
        }
    }

    /// The values `pystoi` 0.4.1 gives for the same signals (`scripts/stoi-reference`
    /// prints them); the difference is the resampler's (see the module documentation).
    #[test]
    fn agrees_with_pystoi() {
        let x = voice(4.0);
        let cases = [
            (
                "noise sd 0.01",
                plus(&x, &noise(x.len(), 0.01, 1)),
                PYSTOI[0],
            ),
            (
                "noise sd 0.05",
                plus(&x, &noise(x.len(), 0.05, 2)),
                PYSTOI[1],
            ),
            ("noise sd 0.2", plus(&x, &noise(x.len(), 0.2, 3)), PYSTOI[2]),
            (
                "half the level",
                x.iter().map(|v| v * 0.5).collect(),
                PYSTOI[3],
            ),
        ];
        for (what, y, want) in cases {
            let got = stoi(&x, &y, 16_000);
            assert!(
                (got - want).abs() < 0.005,
                "{what}: {got} against pystoi's {want}"
            );
        }
    }

    /// `scripts/stoi-reference`'s output.
    const PYSTOI: [f64; 4] = [0.979248, 0.857272, 0.641494, 1.000000];
}
