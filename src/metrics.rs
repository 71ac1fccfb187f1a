//! Distortion and rate figures in the one form every part of the project reports them:
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
