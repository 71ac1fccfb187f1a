//! The restoration filter of format version 2 (spec/bitstream.md §8.7): with the header
//! flag `RESTORATION_FILTER`, the decoder corrects every output sample by a symmetric
//! linear filter of its neighbourhood, with 13 taps the encoder fitted to the signal
//! ([`RestorationTaps`]). It runs after the edge filter, on the final integer samples,
//! in integers only.

use crate::edge_filter::Sample;

/// Length of the restoration filter block in the payload (spec/bitstream.md §8.7).
pub const RESTORATION_BLOCK_LEN: usize = 16;

/// The offsets `(dy, dx)` of the spatial taps of an image (spec/bitstream.md §8.7): one
/// of each pair `(dy, dx)`, `(-dy, -dx)` of the diamond `|dy| + |dx| <= 3`, in the
/// order of the block.
pub const IMAGE_OFFSETS: [(isize, isize); 12] = [
    (0, 1),
    (0, 2),
    (0, 3),
    (1, -2),
    (1, -1),
    (1, 0),
    (1, 1),
    (1, 2),
    (2, -1),
    (2, 0),
    (2, 1),
    (3, 0),
];

/// The taps of the restoration filter (spec/bitstream.md §8.7), in units of 1/128:
/// `spatial[j]` weighs `s(+o_j) + s(-o_j) - 2 s` for the `j`-th offset (images:
/// [`IMAGE_OFFSETS`]; audio: `j + 1` samples), `cross` weighs the other channels of the
/// pixel, `s_a + s_b - 2 s` (RGB images only).
///
/// ```
/// use ipc_codec::restoration::RestorationTaps;
/// let taps = RestorationTaps { spatial: [1, -2, 3, 0, 0, 0, 0, 0, 0, 0, 0, 5], cross: -7 };
/// assert_eq!(RestorationTaps::from_block(&taps.to_block()), Ok(taps));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RestorationTaps {
    /// The 12 spatial (images) or temporal (audio) taps.
    pub spatial: [i8; 12],
    /// The cross-channel tap.
    pub cross: i8,
}

/// The restoration filter's block has a reserved byte set (spec/bitstream.md §8.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedBytesSet;

impl RestorationTaps {
    /// The block: the 12 spatial taps, the cross-channel tap, then 3 reserved bytes 0.
    pub fn to_block(&self) -> [u8; RESTORATION_BLOCK_LEN] {
        let mut b = [0u8; RESTORATION_BLOCK_LEN];
        for (out, &c) in b.iter_mut().zip(self.spatial.iter()) {
            *out = c.to_le_bytes()[0];
        }
        b[12] = self.cross.to_le_bytes()[0];
        b
    }

    /// Reads a block; its reserved bytes must be 0.
    pub fn from_block(
        block: &[u8; RESTORATION_BLOCK_LEN],
    ) -> Result<RestorationTaps, ReservedBytesSet> {
        if block[13..].iter().any(|&b| b != 0) {
            return Err(ReservedBytesSet);
        }
        let mut spatial = [0i8; 12];
        for (c, &b) in spatial.iter_mut().zip(block.iter()) {
            *c = i8::from_le_bytes([b]);
        }
        Ok(RestorationTaps {
            spatial,
            cross: i8::from_le_bytes([block[12]]),
        })
    }
}

/// The 13 terms the taps weigh for sample `ch` of pixel `(x, y)` of an interleaved image
/// (spec/bitstream.md §8.7): coordinates clamped to the image.
pub(crate) fn image_terms<S: Sample>(
    px: &[S],
    (width, height, channels): (usize, usize, usize),
    (x, y, ch): (usize, usize, usize),
) -> [i32; 13] {
    let at = |yy: isize, xx: isize| -> i32 {
        let yy = yy.clamp(0, height as isize - 1) as usize;
        let xx = xx.clamp(0, width as isize - 1) as usize;
        px[(yy * width + xx) * channels + ch].get()
    };
    let (xi, yi) = (x as isize, y as isize);
    let s = at(yi, xi);
    let mut terms = [0i32; 13];
    for (t, &(dy, dx)) in terms.iter_mut().zip(IMAGE_OFFSETS.iter()) {
        *t = at(yi + dy, xi + dx) + at(yi - dy, xi - dx) - 2 * s;
    }
    if channels == 3 {
        let base = (y * width + x) * 3;
        terms[12] = (0..3)
            .filter(|&c| c != ch)
            .map(|c| px[base + c].get())
            .sum::<i32>()
            - 2 * s;
    }
    terms
}

/// The 13 terms for sample `f` of one channel of audio (spec/bitstream.md §8.7): the
/// channel's samples `line`, indices clamped; no cross-channel term.
pub(crate) fn audio_terms(line: impl Fn(usize) -> i32, frames: usize, f: usize) -> [i32; 13] {
    let at = |i: isize| line(i.clamp(0, frames as isize - 1) as usize);
    let s = line(f);
    let mut terms = [0i32; 13];
    for (k, t) in terms.iter_mut().take(12).enumerate() {
        let d = k as isize + 1;
        *t = at(f as isize + d) + at(f as isize - d) - 2 * s;
    }
    terms
}

/// The correction of a sample from its terms: `floor((sum c t + 64) / 128)`.
pub fn correction(taps: &RestorationTaps, terms: &[i32; 13]) -> i32 {
    let sum: i32 = taps
        .spatial
        .iter()
        .chain(std::iter::once(&taps.cross))
        .zip(terms)
        .map(|(&c, &t)| i32::from(c) * t)
        .sum();
    (sum + 64).div_euclid(128)
}

/// Filters an interleaved image (spec/bitstream.md §8.7): every sample from the
/// unfiltered image, rows in bands on up to `threads` threads (0: every core).
pub(crate) fn restore_image<S: Sample + Send + Sync>(
    px: &mut [S],
    size: (usize, usize, usize),
    taps: &RestorationTaps,
    threads: usize,
) {
    let (width, height, channels) = size;
    debug_assert_eq!(px.len(), width * height * channels);
    if px.is_empty() {
        return;
    }
    let input = px.to_vec();
    let row = width * channels;
    const BAND_ROWS: usize = 16;
    crate::parallel::for_each_group(
        px.chunks_mut(BAND_ROWS * row).enumerate(),
        height.div_ceil(BAND_ROWS),
        threads,
        |(b, band), _: &mut ()| {
            for (r, out) in band.chunks_mut(row).enumerate() {
                restore_row(&input, size, b * BAND_ROWS + r, taps, out);
            }
        },
    );
}

/// Row `y` of the filtered image into `out`: inside the image the taps read the input
/// without clamping; within 3 samples of its edges, clamped (`image_terms`).
fn restore_row<S: Sample>(
    input: &[S],
    size: (usize, usize, usize),
    y: usize,
    taps: &RestorationTaps,
    out: &mut [S],
) {
    let (width, height, channels) = size;
    let interior_y = y >= 3 && y + 3 < height;
    let c: [i32; 12] = taps.spatial.map(i32::from);
    let cross = if channels == 3 {
        i32::from(taps.cross)
    } else {
        0
    };
    // Offsets in samples of the twelve pairs.
    let step: [isize; 12] =
        IMAGE_OFFSETS.map(|(dy, dx)| (dy * width as isize + dx) * channels as isize);
    for x in 0..width {
        let base = (y * width + x) * channels;
        if interior_y && x >= 3 && x + 3 < width {
            for ch in 0..channels {
                let i = base + ch;
                let s = input[i].get();
                let mut sum = 0i32;
                for (&cj, &d) in c.iter().zip(&step) {
                    let a = input[(i as isize + d) as usize].get();
                    let b = input[(i as isize - d) as usize].get();
                    sum += cj * (a + b - 2 * s);
                }
                if cross != 0 {
                    let others: i32 = (0..3)
                        .filter(|&o| o != ch)
                        .map(|o| input[base + o].get())
                        .sum();
                    sum += cross * (others - 2 * s);
                }
                let v = s + (sum + 64).div_euclid(128);
                out[x * channels + ch] = S::set(v.clamp(S::LO, S::HI));
            }
        } else {
            for ch in 0..channels {
                let terms = image_terms(input, size, (x, y, ch));
                let v = input[base + ch].get() + correction(taps, &terms);
                out[x * channels + ch] = S::set(v.clamp(S::LO, S::HI));
            }
        }
    }
}

/// Filters interleaved audio (spec/bitstream.md §8.7): every channel on its own.
pub(crate) fn restore_audio(samples: &mut [i16], channels: usize, taps: &RestorationTaps) {
    let channels = channels.max(1);
    let frames = samples.len() / channels;
    let input = samples.to_vec();
    for ch in 0..channels {
        let line = |f: usize| i32::from(input[f * channels + ch]);
        for f in 0..frames {
            let v = line(f) + correction(taps, &audio_terms(line, frames, f));
            samples[f * channels + ch] = i16::set(v.clamp(i16::LO, i16::HI));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flat_image_is_left_alone_and_a_spike_is_pulled_down() {
        let taps = RestorationTaps {
            spatial: [16; 12],
            cross: 0,
        };
        let mut flat = vec![100u8; 7 * 5];
        restore_image(&mut flat, (7, 5, 1), &taps, 1);
        assert!(flat.iter().all(|&x| x == 100));
        // One bright pixel: every term is -2 x 90 at the spike, so the correction is
        // (12 x 16 x -180 + 64) div 128 = -270, clamped to 0.
        let mut spike = vec![10u8; 7 * 7];
        spike[3 * 7 + 3] = 100;
        restore_image(&mut spike, (7, 7, 1), &taps, 1);
        assert_eq!(spike[3 * 7 + 3], 0);
        // Its neighbour at (3, 4) sees the spike once, in the term of offset (1, 0):
        // 10 + (16 x 90 + 64) div 128 = 10 + 11.
        assert_eq!(spike[4 * 7 + 3], 21);
    }

    #[test]
    fn audio_terms_clamp_at_the_ends() {
        let s = [0i32, 10, 20];
        let t = audio_terms(|i| s[i], 3, 0);
        // k = 1: s[1] + s[0] - 0 = 10; k >= 2: s[2] + s[0] - 0 = 20.
        assert_eq!(t[0], 10);
        assert!(t[1..12].iter().all(|&x| x == 20));
        assert_eq!(t[12], 0);
    }

    #[test]
    fn the_block_round_trips_and_rejects_reserved_bytes() {
        let taps = RestorationTaps {
            spatial: [-128, 127, 1, -1, 0, 2, 3, 4, 5, 6, 7, 8],
            cross: -3,
        };
        let block = taps.to_block();
        assert_eq!(RestorationTaps::from_block(&block), Ok(taps));
        let mut bad = block;
        bad[14] = 1;
        assert_eq!(RestorationTaps::from_block(&bad), Err(ReservedBytesSet));
    }
}
