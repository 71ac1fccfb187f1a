//! Distortion and rate figures in the one form every part of the project reports them
//! (PSNR and SNR, PSNR of a decoded signal and of the pixels at tile seams, bits per
//! sample, kbit/s, the rate of a whole file):
//! the encoder's rate control and summary, training's held-out evaluation and the
//! rate-distortion bench all call these, so a figure means the same wherever it is
//! printed.
//!
//! ```
//! use ipc_codec::metrics::{bits_per_sample, kbit_per_second, psnr_from_mse, snr_db};
//!
//! assert_eq!(psnr_from_mse(0.0, 255.0), f64::INFINITY);
//! assert!((psnr_from_mse(1.0, 255.0) - 48.1308).abs() < 1e-4);
//! assert_eq!(snr_db(100.0, 1.0), 20.0);
//! assert_eq!(bits_per_sample(1000, 4000), 2.0);
//! assert_eq!(kbit_per_second(4000, 16_000, 16_000), 32.0);
//! ```

use crate::container::Geometry;
use crate::decoder::{Decoded, DecodedImage, ImagePixels};
use crate::encoder::{ImageSignal, Signal};

/// Peak signal-to-noise ratio in dB of a mean squared error against a peak value:
/// `10 log10(peak² / mse)`; infinite when there is no error.
pub fn psnr_from_mse(mse: f64, peak: f64) -> f64 {
    if mse <= 0.0 {
        f64::INFINITY
    } else {
        10.0 * (peak * peak / mse).log10()
    }
}

/// Signal-to-noise ratio in dB from the signal's energy and the error's (sums of
/// squares over the same samples): infinite when there is no error, minus infinity
/// when there is error and no signal.
pub fn snr_db(signal_energy: f64, error_energy: f64) -> f64 {
    if error_energy <= 0.0 {
        f64::INFINITY
    } else if signal_energy <= 0.0 {
        f64::NEG_INFINITY
    } else {
        10.0 * (signal_energy / error_energy).log10()
    }
}

/// Bits per sample (per pixel for images, per sample of every channel for audio when
/// `samples` counts them) of a file of `bytes` bytes, its header included.
pub fn bits_per_sample(bytes: u64, samples: u64) -> f64 {
    bytes as f64 * 8.0 / samples.max(1) as f64
}

/// Kilobits per second of a file of `bytes` bytes holding `frames` frames at
/// `sample_rate` frames per second.
pub fn kbit_per_second(bytes: u64, frames: u64, sample_rate: u32) -> f64 {
    bytes as f64 * 8.0 / 1000.0 / (frames.max(1) as f64 / f64::from(sample_rate.max(1)))
}

/// The rate of a whole `.ipc` file of `bytes` bytes as users see it: bits per pixel
/// for images, kbit/s for audio.
pub fn file_rate(geometry: &Geometry, bytes: u64) -> f64 {
    match *geometry {
        Geometry::Image { width, height, .. } => {
            bits_per_sample(bytes, u64::from(width) * u64::from(height))
        }
        Geometry::Audio {
            sample_rate,
            frames,
            ..
        } => kbit_per_second(bytes, u64::from(frames), sample_rate),
    }
}

/// PSNR of a decoded signal against the original (see [`crate::encoder::Encoded::psnr`]); infinite
/// when they are equal.
pub fn psnr(signal: &Signal, decoded: &Decoded) -> f64 {
    let (sse, n, peak) = match (signal, decoded) {
        (Signal::Image(s), Decoded::Image(d)) => {
            let peak = if s.bit_depth == 16 { 65535.0 } else { 255.0 };
            let sse: f64 = match &d.pixels {
                ImagePixels::U8(p) => p
                    .iter()
                    .zip(&s.samples)
                    .map(|(&a, &b)| (f64::from(a) - (f64::from(b) * 255.0).round()).powi(2))
                    .sum(),
                ImagePixels::U16(p) => p
                    .iter()
                    .zip(&s.samples)
                    .map(|(&a, &b)| (f64::from(a) - (f64::from(b) * 65535.0).round()).powi(2))
                    .sum(),
            };
            (sse, s.samples.len(), peak)
        }
        (Signal::Audio(s), Decoded::Audio(d)) => {
            let sse: f64 = d
                .samples
                .iter()
                .zip(&s.samples)
                .map(|(&a, &b)| (f64::from(a) / 32767.0 - f64::from(b.clamp(-1.0, 1.0))).powi(2))
                .sum();
            (sse, s.samples.len(), 1.0)
        }
        _ => return f64::NAN,
    };
    psnr_from_mse(sse / n.max(1) as f64, peak)
}

/// PSNR of the pixels next to an internal tile boundary (the two pixel columns and
/// rows either side of every boundary between tiles) and of all other pixels, in that
/// order: a direct measure of tiling seams, which would show as a lower first figure.
/// Peaks as in [`crate::encoder::Encoded::psnr`]; NaN where a set is empty (an image of one tile).
pub fn seam_psnr(
    image: &ImageSignal,
    decoded: &DecodedImage,
    tile_width: usize,
    tile_height: usize,
) -> (f64, f64) {
    let (w, h) = (image.width as usize, image.height as usize);
    let c = usize::from(image.channels);
    let peak: f64 = if image.bit_depth == 16 {
        65535.0
    } else {
        255.0
    };
    let sample = |i: usize| -> f64 {
        match &decoded.pixels {
            ImagePixels::U8(p) => f64::from(p[i]),
            ImagePixels::U16(p) => f64::from(p[i]),
        }
    };
    let near_seam =
        |i: usize, n: usize, t: usize| (i % t == 0 && i > 0) || (i % t == t - 1 && i + 1 < n);
    let mut sums = [(0f64, 0usize); 2];
    for y in 0..h {
        let seam_y = near_seam(y, h, tile_height);
        for x in 0..w {
            let set = usize::from(!(seam_y || near_seam(x, w, tile_width)));
            for ch in 0..c {
                let i = (y * w + x) * c + ch;
                let want = (f64::from(image.samples[i]) * peak).round();
                sums[set].0 += (sample(i) - want).powi(2);
                sums[set].1 += 1;
            }
        }
    }
    let psnr = |(sse, n): (f64, usize)| {
        if n == 0 {
            f64::NAN
        } else {
            psnr_from_mse(sse / n as f64, peak)
        }
    };
    (psnr(sums[0]), psnr(sums[1]))
}
