//! The edge filter of format version 2 (spec/bitstream.md §8.5): tiles are synthesised
//! independently, so the samples either side of a tile edge can jump. With the header
//! flag `EDGE_FILTER`, the decoder moves each of the two samples at every internal
//! tile edge a quarter of the jump towards the other, on the final integer samples.
//! Integers only: every decoder produces the same samples from the same synthesis.

/// An output sample type the filter works on.
pub(crate) trait Sample: Copy {
    fn get(self) -> i32;
    /// From a value between two samples of this type (so always in range).
    fn set(v: i32) -> Self;
}

impl Sample for u8 {
    fn get(self) -> i32 {
        i32::from(self)
    }
    fn set(v: i32) -> u8 {
        v as u8
    }
}

impl Sample for u16 {
    fn get(self) -> i32 {
        i32::from(self)
    }
    fn set(v: i32) -> u16 {
        v as u16
    }
}

impl Sample for i16 {
    fn get(self) -> i32 {
        i32::from(self)
    }
    fn set(v: i32) -> i16 {
        v as i16
    }
}

/// The pair `(p, q)` either side of an edge after filtering (§8.5): with `d = q - p`,
/// each moves `sign(d) * floor((|d| + 2) / 4)` towards the other. The results lie
/// between `p` and `q`, so they never leave the sample range.
///
/// ```text
/// (10, 20) -> (13, 17)   (20, 10) -> (17, 13)   (5, 7) -> (6, 6)   (5, 6) -> (5, 6)
/// ```
pub fn filter_pair(p: i32, q: i32) -> (i32, i32) {
    let d = q - p;
    let delta = d.signum() * ((d.abs() + 2) / 4);
    (p + delta, q - delta)
}

fn filter_at<S: Sample>(samples: &mut [S], i: usize, j: usize) {
    let (p, q) = filter_pair(samples[i].get(), samples[j].get());
    samples[i] = S::set(p);
    samples[j] = S::set(q);
}

/// Filters an interleaved image of `width x height` pixels of `channels` samples cut
/// into `tile_w x tile_h` tiles: every vertical internal edge (x = k tile_w, left to
/// right), then every horizontal one (y = k tile_h, top to bottom) on the result.
pub(crate) fn filter_image<S: Sample>(
    px: &mut [S],
    (width, height, channels): (usize, usize, usize),
    (tile_w, tile_h): (usize, usize),
) {
    debug_assert_eq!(px.len(), width * height * channels);
    for x in (tile_w..width).step_by(tile_w.max(1)) {
        for y in 0..height {
            for c in 0..channels {
                let q = (y * width + x) * channels + c;
                filter_at(px, q - channels, q);
            }
        }
    }
    let row = width * channels;
    for y in (tile_h..height).step_by(tile_h.max(1)) {
        for i in 0..row {
            let q = y * row + i;
            filter_at(px, q - row, q);
        }
    }
}

/// Filters interleaved audio of `channels` channels cut into chunks of `chunk`
/// samples: in every channel, every internal chunk edge (frame k chunk), in time order.
pub(crate) fn filter_audio(samples: &mut [i16], channels: usize, chunk: usize) {
    let frames = samples.len() / channels.max(1);
    for f in (chunk..frames).step_by(chunk.max(1)) {
        for c in 0..channels {
            filter_at(samples, (f - 1) * channels + c, f * channels + c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_move_a_quarter_of_the_jump_symmetrically() {
        assert_eq!(filter_pair(10, 20), (13, 17));
        assert_eq!(filter_pair(20, 10), (17, 13));
        assert_eq!(filter_pair(5, 7), (6, 6));
        assert_eq!(filter_pair(7, 5), (6, 6));
        assert_eq!(filter_pair(5, 6), (5, 6));
        assert_eq!(filter_pair(3, 3), (3, 3));
        // Extremes stay in range.
        assert_eq!(filter_pair(0, 255), (64, 191));
        assert_eq!(filter_pair(-32768, 32767), (-16384, 16383));
        for p in -40..40 {
            for q in -40..40 {
                let (a, b) = filter_pair(p, q);
                assert!(a.min(b) >= p.min(q) && a.max(b) <= p.max(q));
                assert_eq!(filter_pair(q, p), (b, a));
            }
        }
    }

    #[test]
    fn only_the_samples_at_internal_tile_edges_change() {
        // 5 x 3 grey pixels, tiles 2 x 2: vertical edges at x = 2, 4, a horizontal
        // edge at y = 2. Each pixel holds 20 * its tile index.
        let (w, h) = (5, 3);
        let mut px: Vec<u8> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                (20 * ((y / 2) * 3 + x / 2)) as u8
            })
            .collect();
        filter_image(&mut px, (w, h, 1), (2, 2));
        #[rustfmt::skip]
        let expected: Vec<u8> = vec![
            0, 5, 15, 25, 35,
            15, 20, 30, 40, 50,
            45, 50, 60, 70, 80,
        ];
        assert_eq!(px, expected);
    }

    #[test]
    fn audio_edges_are_filtered_per_channel() {
        // Stereo, chunks of 3 frames: edges at frames 3 and 6.
        let mut s: Vec<i16> = vec![0, 100, 0, 100, 0, 100, 40, -100, 40, -100, 40, -100, 0, 0];
        filter_audio(&mut s, 2, 3);
        assert_eq!(
            s,
            vec![0, 100, 0, 100, 10, 50, 30, -50, 40, -100, 30, -75, 10, -25]
        );
    }
}
