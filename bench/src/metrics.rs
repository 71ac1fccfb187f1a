//! Distortion measures: PSNR and MS-SSIM of 8-bit RGB images, SNR and PSNR of audio,
//! and the alignment of decoded audio that comes back delayed (MP3).

use ipc_codec::metrics::{psnr_from_mse, snr_db};

/// PSNR in dB of two equally long 8-bit sample buffers (peak 255); infinite when they
/// are equal. Every sample counts the same (all channels of all pixels).
pub fn psnr_u8(a: &[u8], b: &[u8]) -> f64 {
    debug_assert_eq!(a.len(), b.len());
    let n = a.len().min(b.len());
    if n == 0 {
        return f64::INFINITY;
    }
    let sse: u64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| {
            let d = i64::from(x) - i64::from(y);
            (d * d) as u64
        })
        .sum();
    psnr_from_mse(sse as f64 / n as f64, 255.0)
}

/// The MS-SSIM weights of the five scales (Wang, Simoncelli, Bovik 2003, Table 1 of the
/// calibration: beta_j = gamma_j, and alpha_M at the coarsest scale).
const MS_SSIM_WEIGHTS: [f64; 5] = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333];
const WINDOW: usize = 11;
const SIGMA: f64 = 1.5;

/// The smallest width and height MS-SSIM is defined for here: the coarsest of the five
/// scales (four halvings) must still hold one whole 11x11 window.
pub const MS_SSIM_MIN_SIDE: usize = WINDOW << 4;

/// MS-SSIM (Wang et al. 2003: five scales, 11x11 Gaussian window with sigma 1.5,
/// K1 = 0.01, K2 = 0.03, L = 255, 2x2 averaging between scales) of two interleaved
/// 8-bit RGB images of `width x height`, computed on each of R, G and B separately and
/// averaged over the three: the colour convention of the learned-compression
/// literature. Only windows wholly inside the image count. `None` for images smaller
/// than [`MS_SSIM_MIN_SIDE`] in either direction.
pub fn ms_ssim_rgb(a: &[u8], b: &[u8], width: usize, height: usize) -> Option<f64> {
    if width < MS_SSIM_MIN_SIDE
        || height < MS_SSIM_MIN_SIDE
        || a.len() != width * height * 3
        || b.len() != a.len()
    {
        return None;
    }
    let kernel = gaussian_kernel();
    let mut total = 0.0;
    for c in 0..3 {
        let x: Vec<f64> = a.iter().skip(c).step_by(3).map(|&v| f64::from(v)).collect();
        let y: Vec<f64> = b.iter().skip(c).step_by(3).map(|&v| f64::from(v)).collect();
        total += ms_ssim_plane(x, y, width, height, &kernel);
    }
    Some(total / 3.0)
}

fn gaussian_kernel() -> [f64; WINDOW] {
    let mut k = [0.0; WINDOW];
    let centre = (WINDOW / 2) as f64;
    for (i, v) in k.iter_mut().enumerate() {
        let d = i as f64 - centre;
        *v = (-d * d / (2.0 * SIGMA * SIGMA)).exp();
    }
    let sum: f64 = k.iter().sum();
    k.iter_mut().for_each(|v| *v /= sum);
    k
}

fn ms_ssim_plane(
    mut x: Vec<f64>,
    mut y: Vec<f64>,
    mut w: usize,
    mut h: usize,
    kernel: &[f64; WINDOW],
) -> f64 {
    let mut result = 1.0;
    for (scale, &weight) in MS_SSIM_WEIGHTS.iter().enumerate() {
        let (ssim, cs) = ssim_means(&x, &y, w, h, kernel);
        let last = scale + 1 == MS_SSIM_WEIGHTS.len();
        // At the coarsest scale the luminance term joins in (the mean SSIM map);
        // the finer scales contribute contrast-structure only. A negative mean (anti-
        // correlated structure, possible at very low rates) has no real fractional
        // power; it is clamped to 0, which makes the whole index 0.
        let term = if last { ssim } else { cs };
        result *= term.max(0.0).powf(weight);
        if !last {
            (x, _, _) = halve(&x, w, h);
            (y, w, h) = halve(&y, w, h);
        }
    }
    result
}

/// 2x2 averaging, dropping an odd last row or column.
fn halve(p: &[f64], w: usize, h: usize) -> (Vec<f64>, usize, usize) {
    let (w2, h2) = (w / 2, h / 2);
    let mut out = Vec::with_capacity(w2 * h2);
    for j in 0..h2 {
        for i in 0..w2 {
            let at = |dx: usize, dy: usize| p[(2 * j + dy) * w + 2 * i + dx];
            out.push((at(0, 0) + at(1, 0) + at(0, 1) + at(1, 1)) / 4.0);
        }
    }
    (out, w2, h2)
}

/// Filters with the separable Gaussian, keeping only positions where the window fits
/// ("valid"): `(w - 10) x (h - 10)` values.
fn blur(p: &[f64], w: usize, h: usize, kernel: &[f64; WINDOW]) -> Vec<f64> {
    let ow = w + 1 - WINDOW;
    let oh = h + 1 - WINDOW;
    let mut rows: Vec<f64> = Vec::with_capacity(ow * h);
    for j in 0..h {
        let row = &p[j * w..(j + 1) * w];
        for i in 0..ow {
            rows.push(
                kernel
                    .iter()
                    .zip(&row[i..])
                    .map(|(k, v)| k * v)
                    .sum::<f64>(),
            );
        }
    }
    let mut out = vec![0.0; ow * oh];
    for j in 0..oh {
        for (t, k) in kernel.iter().enumerate() {
            let src = &rows[(j + t) * ow..(j + t + 1) * ow];
            for (o, s) in out[j * ow..(j + 1) * ow].iter_mut().zip(src) {
                *o += k * s;
            }
        }
    }
    out
}

/// The means over the image of the SSIM map and of the contrast-structure map.
fn ssim_means(x: &[f64], y: &[f64], w: usize, h: usize, kernel: &[f64; WINDOW]) -> (f64, f64) {
    const C1: f64 = (0.01 * 255.0) * (0.01 * 255.0);
    const C2: f64 = (0.03 * 255.0) * (0.03 * 255.0);
    let xx: Vec<f64> = x.iter().map(|v| v * v).collect();
    let yy: Vec<f64> = y.iter().map(|v| v * v).collect();
    let xy: Vec<f64> = x.iter().zip(y).map(|(a, b)| a * b).collect();
    let (mx, my) = (blur(x, w, h, kernel), blur(y, w, h, kernel));
    let (sxx, syy, sxy) = (
        blur(&xx, w, h, kernel),
        blur(&yy, w, h, kernel),
        blur(&xy, w, h, kernel),
    );
    let (mut ssim, mut cs) = (0.0, 0.0);
    for i in 0..mx.len() {
        let (ux, uy) = (mx[i], my[i]);
        let vx = sxx[i] - ux * ux;
        let vy = syy[i] - uy * uy;
        let cov = sxy[i] - ux * uy;
        let c = (2.0 * cov + C2) / (vx + vy + C2);
        let l = (2.0 * ux * uy + C1) / (ux * ux + uy * uy + C1);
        cs += c;
        ssim += l * c;
    }
    let n = mx.len() as f64;
    (ssim / n, cs / n)
}

/// Audio measures of `decoded` against `reference` (both in [-1, 1]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AudioQuality {
    /// 10 log10(signal energy / error energy), dB.
    pub snr: f64,
    /// 10 log10(1 / mean squared error): peak 1, dB.
    pub psnr: f64,
}

/// SNR and PSNR of `decoded` against `reference`, sample by sample; missing decoded
/// samples count as silence, extra ones are ignored.
pub fn audio_quality(reference: &[f32], decoded: &[f32]) -> AudioQuality {
    let mut signal = 0.0f64;
    let mut error = 0.0f64;
    for (i, &r) in reference.iter().enumerate() {
        let d = decoded.get(i).copied().unwrap_or(0.0);
        signal += f64::from(r) * f64::from(r);
        let e = f64::from(r) - f64::from(d);
        error += e * e;
    }
    let n = reference.len().max(1) as f64;
    AudioQuality {
        snr: snr_db(signal, error),
        psnr: psnr_from_mse(error / n, 1.0),
    }
}

/// The delay in frames, within `lags`, by which `decoded` lags `reference` (mono, or
/// interleaved with `channels`): the lag whose normalised cross-correlation is largest.
/// Negative: the output comes early. MP3 decoders output the signal late by several
/// hundred samples; Opus, resampled back from 48 kHz, can come a sample early. The lag
/// is found from the data rather than assumed, because it depends on the tool's
/// settings and version, so that the measure is of the coding error, not of a shift.
pub fn find_delay(
    reference: &[f32],
    decoded: &[f32],
    channels: usize,
    lags: std::ops::RangeInclusive<isize>,
) -> isize {
    let channels = channels.max(1);
    // Two seconds at 16 kHz fix the delay as well as the whole clip would, at a
    // fraction of the cost of correlating every lag over everything.
    let frames = (reference.len() / channels).min(32_768);
    let mut best = (0isize, f64::NEG_INFINITY);
    for lag in lags {
        let mut corr = 0.0f64;
        let mut energy = 0.0f64;
        for f in 0..frames {
            let Some(at) = (f as isize + lag)
                .try_into()
                .ok()
                .map(|a: usize| a * channels)
            else {
                continue;
            };
            for c in 0..channels {
                let Some(&d) = decoded.get(at + c) else {
                    break;
                };
                corr += f64::from(reference[f * channels + c]) * f64::from(d);
                energy += f64::from(d) * f64::from(d);
            }
        }
        // Normalised by the decoded energy in the window, so that a lag is not
        // preferred only because more (or louder) samples overlap.
        let score = if energy > 0.0 {
            corr / energy.sqrt()
        } else {
            f64::NEG_INFINITY
        };
        if score > best.1 {
            best = (lag, score);
        }
    }
    best.0
}

/// Shifts `decoded` (interleaved with `channels`) by `lag` frames so that it lines up
/// with the reference: drops the first `lag` frames, or for a negative lag puts
/// silence before it.
pub fn align(decoded: &mut Vec<f32>, channels: usize, lag: isize) {
    let n = lag.unsigned_abs() * channels.max(1);
    if lag >= 0 {
        decoded.drain(..n.min(decoded.len()));
    } else {
        decoded.splice(0..0, std::iter::repeat_n(0.0, n));
    }
}

/// STOI (bench/src/stoi.rs) of interleaved `decoded` against `reference`, the mean over
/// the channels; missing decoded samples count as silence, extra ones are ignored.
pub fn stoi(reference: &[f32], decoded: &[f32], channels: usize, rate: u32) -> f64 {
    let channel = |s: &[f32], c: usize, n: usize| -> Vec<f32> {
        (0..n)
            .map(|f| s.get(f * channels + c).copied().unwrap_or(0.0))
            .collect()
    };
    let frames = reference.len() / channels.max(1);
    let sum: f64 = (0..channels)
        .map(|c| {
            crate::stoi::stoi(
                &channel(reference, c, frames),
                &channel(decoded, c, frames),
                rate,
            )
        })
        .sum();
    sum / channels.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A deterministic textured RGB image.
    fn texture(w: usize, h: usize, seed: u64) -> Vec<u8> {
        let mut s = seed;
        let mut out = Vec::with_capacity(w * h * 3);
        for j in 0..h {
            for i in 0..w {
                for c in 0..3 {
                    s = s
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    let noise = (s >> 59) as f64;
                    let v = 128.0
                        + 60.0 * ((i as f64) / 7.0 + c as f64).sin()
                        + 40.0 * ((j as f64) / 11.0).cos()
                        + noise;
                    out.push(v.clamp(0.0, 255.0) as u8);
                }
            }
        }
        out
    }

    fn perturb(a: &[u8], amount: u8) -> Vec<u8> {
        a.iter()
            .enumerate()
            .map(|(i, &v)| {
                if i % 2 == 0 {
                    v.saturating_add(amount)
                } else {
                    v.saturating_sub(amount)
                }
            })
            .collect()
    }

    #[test]
    fn psnr_of_known_errors() {
        assert_eq!(psnr_u8(&[1, 2, 3], &[1, 2, 3]), f64::INFINITY);
        // Every sample off by 1: MSE 1, PSNR 20 log10(255).
        let p = psnr_u8(&[10, 20, 30, 40], &[11, 19, 31, 39]);
        assert!((p - 20.0 * 255f64.log10()).abs() < 1e-12);
    }

    #[test]
    fn ms_ssim_of_identical_images_is_one() {
        let a = texture(180, 200, 1);
        let v = ms_ssim_rgb(&a, &a, 180, 200).unwrap();
        assert!((v - 1.0).abs() < 1e-12, "{v}");
    }

    #[test]
    fn ms_ssim_falls_with_distortion_and_is_symmetric() {
        let (w, h) = (192, 176);
        let a = texture(w, h, 2);
        let small = perturb(&a, 4);
        let large = perturb(&a, 30);
        let s = ms_ssim_rgb(&a, &small, w, h).unwrap();
        let l = ms_ssim_rgb(&a, &large, w, h).unwrap();
        assert!(s < 1.0 && l < s && l >= 0.0, "{s} {l}");
        let back = ms_ssim_rgb(&small, &a, w, h).unwrap();
        assert!((s - back).abs() < 1e-12);
        // A uniform brightness shift keeps structure: it costs far less than noise
        // of the same mean squared error.
        let shifted: Vec<u8> = a.iter().map(|&v| v.saturating_add(4)).collect();
        let sh = ms_ssim_rgb(&a, &shifted, w, h).unwrap();
        assert!(sh > s, "shift {sh} vs noise {s}");
    }

    #[test]
    fn ms_ssim_needs_room_for_five_scales() {
        let a = texture(175, 200, 3);
        assert_eq!(ms_ssim_rgb(&a, &a, 175, 200), None);
        let b = texture(176, 176, 3);
        assert!(ms_ssim_rgb(&b, &b, 176, 176).is_some());
        assert_eq!(ms_ssim_rgb(&b, &b[3..], 176, 176), None);
    }

    #[test]
    fn gaussian_window_is_normalised_and_symmetric() {
        let k = gaussian_kernel();
        assert!((k.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        for i in 0..WINDOW {
            assert!((k[i] - k[WINDOW - 1 - i]).abs() < 1e-15);
        }
    }

    #[test]
    fn audio_snr_and_psnr() {
        let r = [0.5f32, -0.5, 0.5, -0.5];
        let d = [0.4f32, -0.4, 0.4, -0.4];
        let q = audio_quality(&r, &d);
        // Signal energy 1, error energy 0.04: SNR 10 log10(25); MSE 0.01: PSNR 20 dB.
        assert!((q.snr - 10.0 * 25f64.log10()).abs() < 1e-5, "{}", q.snr);
        assert!((q.psnr - 20.0).abs() < 1e-5, "{}", q.psnr);
        assert_eq!(audio_quality(&r, &r).snr, f64::INFINITY);
    }

    #[test]
    fn delay_is_found_by_cross_correlation() {
        use std::f32::consts::PI;
        let x: Vec<f32> = (0..4000)
            .map(|i| {
                let t = i as f32 / 16000.0;
                0.3 * (2.0 * PI * 300.0 * t).sin() * (2.0 * PI * 3.0 * t).sin()
                    + 0.1 * ((i * 7919 % 101) as f32 / 101.0 - 0.5)
            })
            .collect();
        for delay in [0usize, 1, 576, 1105] {
            let mut y = vec![0.0f32; delay];
            y.extend(x.iter().map(|v| v * 0.9));
            let lag = find_delay(&x, &y, 1, -8..=2048);
            assert_eq!(lag, delay as isize);
            align(&mut y, 1, lag);
            assert_eq!(
                y[..x.len()],
                x.iter().map(|v| v * 0.9).collect::<Vec<_>>()[..]
            );
        }
        // Early output.
        let mut early = x[3..].to_vec();
        let lag = find_delay(&x, &early, 1, -8..=8);
        assert_eq!(lag, -3);
        align(&mut early, 1, lag);
        assert_eq!(early[..3], [0.0; 3]);
        assert_eq!(early[3..], x[3..]);
        // Stereo, interleaved.
        let stereo: Vec<f32> = x.iter().flat_map(|&v| [v, -v]).collect();
        let mut y = vec![0.0f32; 2 * 100];
        y.extend(&stereo);
        assert_eq!(find_delay(&stereo, &y, 2, 0..=300), 100);
    }
}
