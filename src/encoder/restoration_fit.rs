//! How the encoder fits the restoration filter (spec/bitstream.md §8.7) and decides
//! whether a file carries it: least squares of the original's difference from the
//! decoded samples (after the edge filter) on the filter's 13 terms of every sample,
//! the taps rounded to 1/128, kept when they gain more than their block costs.

use crate::decoder::{Decoded, ImagePixels};
use crate::edge_filter::Sample;
use crate::metrics;
use crate::restoration::{self, RestorationTaps, RESTORATION_BLOCK_LEN};

use super::edge_fit::{samples_of, solve};
use super::Signal;

/// Least-squares taps for `decoded` against `signal`; `None` for signals of other kinds
/// than the decoded ones.
pub(crate) fn fit_taps(signal: &Signal, decoded: &Decoded) -> Option<RestorationTaps> {
    let (_, got, want) = samples_of(signal, decoded)?;
    let mut gram = [[0f64; 13]; 13];
    let mut rhs = [0f64; 13];
    let mut add = |terms: [i32; 13], i: usize| {
        let x = terms.map(f64::from);
        let target = want(i) - f64::from(got(i));
        for a in 0..13 {
            if x[a] == 0.0 {
                continue;
            }
            for b in a..13 {
                gram[a][b] += x[a] * x[b];
            }
            rhs[a] += x[a] * target;
        }
    };
    match decoded {
        Decoded::Image(img) => {
            let size = (
                img.width as usize,
                img.height as usize,
                usize::from(img.channels),
            );
            match &img.pixels {
                ImagePixels::U8(p) => image_sums(p, size, &mut add),
                ImagePixels::U16(p) => image_sums(p, size, &mut add),
            }
        }
        Decoded::Audio(a) => {
            let channels = usize::from(a.channels).max(1);
            let frames = a.samples.len() / channels;
            for ch in 0..channels {
                let line = |f: usize| i32::from(a.samples[f * channels + ch]);
                for f in 0..frames {
                    add(restoration::audio_terms(line, frames, f), f * channels + ch);
                }
            }
        }
    }
    // The sums filled the upper triangle; mirror it.
    let upper = gram;
    for (a, row) in gram.iter_mut().enumerate() {
        for (b, x) in row.iter_mut().enumerate().take(a) {
            *x = upper[b][a];
        }
    }
    // A touch of ridge keeps unused terms (the cross-channel term of grey images and
    // audio) and flat signals solvable.
    let ridge = 1e-9 * (0..13).map(|i| gram[i][i]).sum::<f64>() + 1e-9;
    for (i, row) in gram.iter_mut().enumerate() {
        row[i] += ridge;
    }
    let c = solve(gram, rhs);
    let tap = |x: f64| (x * 128.0).round().clamp(-128.0, 127.0) as i8;
    Some(RestorationTaps {
        spatial: std::array::from_fn(|j| tap(c[j])),
        cross: tap(c[12]),
    })
}

fn image_sums<S: Sample>(
    px: &[S],
    size: (usize, usize, usize),
    add: &mut impl FnMut([i32; 13], usize),
) {
    let (width, height, channels) = size;
    for y in 0..height {
        for x in 0..width {
            for ch in 0..channels {
                let i = (y * width + x) * channels + ch;
                add(restoration::image_terms(px, size, (x, y, ch)), i);
            }
        }
    }
}

/// The restoration filter for `decoded` (the samples after the edge filter) when it pays
/// for its block in a file of `file_bits` bits: its taps, the samples a decoder then
/// produces, and their PSNR ([`metrics::psnr`]). The price is as for the fitted edge
/// filter (6.02 dB per doubling of the file).
pub(crate) fn choose(
    signal: &Signal,
    decoded: &Decoded,
    psnr: f64,
    file_bits: u64,
    threads: usize,
) -> Option<(RestorationTaps, Decoded, f64)> {
    let taps = fit_taps(signal, decoded)?;
    let mut restored = decoded.clone();
    restored.restore(&taps, threads);
    let restored_psnr = metrics::psnr(signal, &restored);
    let block_bits = (RESTORATION_BLOCK_LEN * 8) as f64;
    let price = 6.02 * (1.0 + block_bits / file_bits.max(1) as f64).log2();
    (restored_psnr - psnr > price).then_some((taps, restored, restored_psnr))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::DecodedImage;
    use crate::encoder::ImageSignal;
    use crate::rng::SplitMix64;

    /// A decoded image that is the original blurred: the fitted filter must sharpen it
    /// back and be chosen.
    #[test]
    fn the_filter_undoes_a_blur_and_pays_for_itself() {
        let (w, h) = (64usize, 48usize);
        // Texture of a few periods of 3 to 8 pixels, different in each channel.
        let mut rng = SplitMix64(5);
        let phase: Vec<f32> = (0..6)
            .map(|_| (rng.next_u64() % 628) as f32 / 100.0)
            .collect();
        let original: Vec<f32> = (0..w * h * 3)
            .map(|i| {
                let (c, x, y) = (i % 3, ((i / 3) % w) as f32, (i / 3 / w) as f32);
                let a = (x * (0.8 + 0.3 * c as f32) + phase[c]).sin();
                let b = (y * 1.1 + x * 0.4 + phase[c + 3]).sin();
                0.5 + 0.2 * a + 0.15 * b
            })
            .collect();
        let at = |y: usize, x: usize, c: usize| original[(y * w + x) * 3 + c];
        let blurred: Vec<u8> = (0..w * h * 3)
            .map(|i| {
                let (c, x, y) = (i % 3, (i / 3) % w, i / 3 / w);
                let l = at(y, x.saturating_sub(1), c);
                let r = at(y, (x + 1).min(w - 1), c);
                ((0.25 * l + 0.5 * at(y, x, c) + 0.25 * r) * 255.0).round() as u8
            })
            .collect();
        let signal = Signal::Image(ImageSignal {
            width: w as u32,
            height: h as u32,
            channels: 3,
            bit_depth: 8,
            samples: original,
        });
        let decoded = Decoded::Image(DecodedImage {
            width: w as u32,
            height: h as u32,
            channels: 3,
            pixels: ImagePixels::U8(blurred),
        });
        let before = metrics::psnr(&signal, &decoded);
        let (_, _, after) = choose(&signal, &decoded, before, 100_000, 1).expect("chosen");
        assert!(after > before + 1.0, "{before} -> {after}");
        // A flat image has nothing to restore: the taps gain nothing and are not kept.
        let flat = Decoded::Image(DecodedImage {
            width: w as u32,
            height: h as u32,
            channels: 3,
            pixels: ImagePixels::U8(vec![128; w * h * 3]),
        });
        let flat_psnr = metrics::psnr(&signal, &flat);
        assert!(choose(&signal, &flat, flat_psnr, 100_000, 1).is_none());
    }
}
