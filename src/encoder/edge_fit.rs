//! How the encoder chooses a file's edge filter (spec/bitstream.md §8.5, §8.6).
//!
//! The encoder has the original, so it fits the 15 taps of the fitted filter to it:
//! least squares on the unfiltered samples of every edge window (rows and columns,
//! both sides pooled, since the filter treats the two tiles alike), each tap rounded
//! to 1/128. Then it keeps whichever of no filter, the quarter rule of §8.5 and the
//! fitted filter decodes closest to the original, charging the fitted filter for the
//! 128 bits of its block.

use crate::decoder::{Decoded, ImagePixels};
use crate::edge_filter::{self, EdgeFilter, EdgeTaps, EDGE_FILTER_BLOCK_LEN};
use crate::metrics;

use super::Signal;

/// Least-squares taps for the unfiltered `decoded` samples against `signal`, or `None`
/// when the signal has no edge the filter touches (spec/bitstream.md §8.6: tiles of at
/// least 6 samples along a line).
pub(crate) fn fit_taps(
    signal: &Signal,
    decoded: &Decoded,
    tile: (usize, usize),
) -> Option<EdgeTaps> {
    let (size, got, want) = samples_of(signal, decoded)?;
    // Normal equations of the three corrections: one 5x5 Gram matrix of the
    // differences, three right-hand sides.
    let mut gram = [[0f64; 5]; 5];
    let mut rhs = [[0f64; 5]; 3];
    let mut windows = 0usize;
    let mut add = |x: [f64; 5], targets: [f64; 3]| {
        for i in 0..5 {
            for j in 0..5 {
                gram[i][j] += x[i] * x[j];
            }
            for t in 0..3 {
                rhs[t][i] += x[i] * targets[t];
            }
        }
    };
    edge_filter::for_each_edge_window(size, tile, |pos| {
        if pos[5] == pos[4] {
            // A last tile shorter than 3: its samples are clamped, not all written.
            return;
        }
        windows += 1;
        let s: [f64; 6] = pos.map(|i| f64::from(got(i)));
        let o: [f64; 6] = pos.map(&want);
        let d: [f64; 5] = std::array::from_fn(|k| s[k + 1] - s[k]);
        let m: [f64; 5] = std::array::from_fn(|k| s[4 - k] - s[5 - k]);
        add(d, std::array::from_fn(|t| o[t] - s[t]));
        add(m, std::array::from_fn(|t| o[5 - t] - s[5 - t]));
    });
    if windows == 0 {
        return None;
    }
    // A touch of ridge keeps flat signals (all differences zero) solvable.
    let ridge = 1e-9 * (0..5).map(|i| gram[i][i]).sum::<f64>() + 1e-9;
    for (i, row) in gram.iter_mut().enumerate() {
        row[i] += ridge;
    }
    let mut taps = [[0i8; 5]; 3];
    for t in 0..3 {
        let c = solve(gram, rhs[t]);
        for k in 0..5 {
            taps[t][k] = (c[k] * 128.0).round().clamp(-128.0, 127.0) as i8;
        }
    }
    Some(EdgeTaps(taps))
}

/// The decoded samples as integers and the original at the same scale, by index, with
/// the `(width, height, channels)` the filter sees (audio: one frame high).
#[allow(clippy::type_complexity)]
pub(crate) fn samples_of<'a>(
    signal: &'a Signal,
    decoded: &'a Decoded,
) -> Option<(
    (usize, usize, usize),
    Box<dyn Fn(usize) -> i32 + 'a>,
    Box<dyn Fn(usize) -> f64 + 'a>,
)> {
    Some(match (signal, decoded) {
        (Signal::Image(s), Decoded::Image(d)) => {
            let size = (d.width as usize, d.height as usize, usize::from(d.channels));
            let (got, peak): (Box<dyn Fn(usize) -> i32>, f64) = match &d.pixels {
                ImagePixels::U8(p) => (Box::new(move |i| i32::from(p[i])), 255.0),
                ImagePixels::U16(p) => (Box::new(move |i| i32::from(p[i])), 65535.0),
            };
            let want = move |i: usize| f64::from(s.samples[i]) * peak;
            (size, got, Box::new(want))
        }
        (Signal::Audio(s), Decoded::Audio(d)) => {
            let channels = usize::from(d.channels);
            let size = (d.samples.len() / channels.max(1), 1, channels);
            let got = move |i: usize| i32::from(d.samples[i]);
            let want = move |i: usize| f64::from(s.samples[i].clamp(-1.0, 1.0)) * 32767.0;
            (size, Box::new(got), Box::new(want))
        }
        _ => return None,
    })
}

/// Solves the symmetric positive definite system `a x = b` of the normal equations of
/// a least-squares fit (Gaussian elimination with partial pivoting).
pub(crate) fn solve<const N: usize>(mut a: [[f64; N]; N], mut b: [f64; N]) -> [f64; N] {
    for col in 0..N {
        let pivot = (col..N)
            .max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))
            .expect("non-empty range");
        a.swap(col, pivot);
        b.swap(col, pivot);
        if a[col][col].abs() < 1e-300 {
            continue;
        }
        let pivot_row = a[col];
        for row in col + 1..N {
            let f = a[row][col] / pivot_row[col];
            for (x, &p) in a[row].iter_mut().zip(&pivot_row).skip(col) {
                *x -= f * p;
            }
            b[row] -= f * b[col];
        }
    }
    let mut x = [0f64; N];
    for row in (0..N).rev() {
        let rest: f64 = (row + 1..N).map(|k| a[row][k] * x[k]).sum();
        x[row] = if a[row][row].abs() < 1e-300 {
            0.0
        } else {
            (b[row] - rest) / a[row][row]
        };
    }
    x
}

/// What [`choose`] picked: the filter, the samples a decoder produces with it, and
/// their PSNR against the signal ([`metrics::psnr`]).
pub(crate) struct Choice {
    pub filter: EdgeFilter,
    pub decoded: Decoded,
    pub psnr: f64,
}

/// The edge filter for a file whose unfiltered decode is `unfiltered` and whose
/// payload without a filter block takes `file_bits`: the fitted filter when it gains
/// more than its block costs at 6.02 dB per doubling of the file (a generous price:
/// no codec gains more per bit), else the better of none and the quarter rule.
pub(crate) fn choose(
    signal: &Signal,
    unfiltered: Decoded,
    tile: (usize, usize),
    file_bits: u64,
) -> Choice {
    let measure = |filter: EdgeFilter| {
        let mut decoded = unfiltered.clone();
        decoded.filter_edges(tile, &filter);
        let psnr = metrics::psnr(signal, &decoded);
        Choice {
            filter,
            decoded,
            psnr,
        }
    };
    let quarter = measure(EdgeFilter::Quarter);
    let off_psnr = metrics::psnr(signal, &unfiltered);
    let best = if quarter.psnr >= off_psnr {
        quarter
    } else {
        Choice {
            filter: EdgeFilter::Off,
            decoded: unfiltered.clone(),
            psnr: off_psnr,
        }
    };
    let Some(taps) = fit_taps(signal, &unfiltered, tile) else {
        return best;
    };
    let fitted = measure(EdgeFilter::Fitted(taps));
    let block_bits = (EDGE_FILTER_BLOCK_LEN * 8) as f64;
    let price = 6.02 * (1.0 + block_bits / file_bits.max(1) as f64).log2();
    if fitted.psnr - best.psnr > price {
        fitted
    } else {
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::DecodedAudio;
    use crate::encoder::AudioSignal;

    #[test]
    fn solve_solves() {
        let a = [
            [4.0, 1.0, 0.0, 0.0, 0.5],
            [1.0, 3.0, 0.2, 0.0, 0.0],
            [0.0, 0.2, 5.0, 1.0, 0.0],
            [0.0, 0.0, 1.0, 2.0, 0.3],
            [0.5, 0.0, 0.0, 0.3, 6.0],
        ];
        let x = [1.0, -2.0, 0.5, 3.0, -1.5];
        let b: [f64; 5] = std::array::from_fn(|i| (0..5).map(|k| a[i][k] * x[k]).sum());
        let got = solve(a, b);
        for k in 0..5 {
            assert!((got[k] - x[k]).abs() < 1e-12, "{got:?}");
        }
    }

    /// Audio whose chunks of 8 each carry a constant offset from a smooth original:
    /// the fitted taps must pull the samples beside every edge towards the original,
    /// and the encoder must choose them over the quarter rule.
    #[test]
    fn fitted_taps_undo_a_jump_at_every_chunk_edge() {
        let frames = 4096;
        let chunk = 8;
        let original: Vec<f32> = (0..frames).map(|i| 0.5 * (i as f32 * 0.01).sin()).collect();
        let decoded: Vec<i16> = original
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let offset = if (i / chunk) % 2 == 0 { 300.0 } else { -300.0 };
                // The jump sits at the edge, worst on the samples beside it.
                let d = (i % chunk) as f32;
                let weight = if d < 3.0 {
                    (3.0 - d) / 3.0
                } else if d > 4.0 {
                    (d - 4.0) / 3.0
                } else {
                    0.0
                };
                (x * 32767.0 + offset * weight).round() as i16
            })
            .collect();
        let signal = Signal::Audio(AudioSignal {
            sample_rate: 16000,
            channels: 1,
            samples: original,
        });
        let unfiltered = Decoded::Audio(DecodedAudio {
            sample_rate: 16000,
            channels: 1,
            samples: decoded,
        });
        let before = metrics::psnr(&signal, &unfiltered);
        let choice = choose(&signal, unfiltered, (chunk, 1), 100_000);
        assert!(
            matches!(choice.filter, EdgeFilter::Fitted(_)),
            "{:?}",
            choice.filter
        );
        assert!(choice.psnr > before + 3.0, "{before} -> {}", choice.psnr);
    }

    #[test]
    fn no_edges_no_taps() {
        // Chunks of 4 are too short for the fitted filter (§8.6).
        let signal = Signal::Audio(AudioSignal {
            sample_rate: 8000,
            channels: 1,
            samples: vec![0.1; 64],
        });
        let decoded = Decoded::Audio(DecodedAudio {
            sample_rate: 8000,
            channels: 1,
            samples: vec![3277; 64],
        });
        assert_eq!(fit_taps(&signal, &decoded, (4, 1)), None);
        let choice = choose(&signal, decoded, (4, 1), 1000);
        assert_ne!(
            choice.filter.kind(),
            crate::edge_filter::EdgeFilterKind::Fitted
        );
    }
}
