//! The edge filters of format version 2: tiles are synthesised independently, so the
//! samples either side of a tile edge can jump.
//!
//! - With the header flag `EDGE_FILTER` (spec/bitstream.md §8.5), the decoder moves
//!   each of the two samples at every internal tile edge a quarter of the jump
//!   towards the other.
//! - With `FITTED_EDGE_FILTER` (§8.6), it corrects the three samples either side of
//!   every edge with 15 taps the encoder fitted to the signal ([`EdgeTaps`]).
//!
//! Both work on the final integer samples, in integers only: every decoder produces
//! the same samples from the same synthesis.

/// Which edge filter a file asks for (spec/bitstream.md §3.1), with the fitted
/// filter's taps.
///
/// ```
/// use ipc_codec::edge_filter::{EdgeFilter, EdgeTaps};
/// let taps = EdgeTaps([[0; 5], [0; 5], [0, 0, 32, 0, 0]]);
/// assert_eq!(EdgeFilter::Fitted(taps).kind(), ipc_codec::edge_filter::EdgeFilterKind::Fitted);
/// assert_eq!(EdgeTaps::from_block(&taps.to_block()), Ok(taps));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeFilter {
    /// No filter (version 1, and version 2 without either flag).
    Off,
    /// The fixed quarter-of-the-jump rule (§8.5, flag `EDGE_FILTER`).
    Quarter,
    /// The fitted filter (§8.6, flag `FITTED_EDGE_FILTER`) with its taps.
    Fitted(EdgeTaps),
}

/// The edge filter a header's flags name (spec/bitstream.md §3.1); the fitted
/// filter's taps are in the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EdgeFilterKind {
    /// No flag.
    Off,
    /// `EDGE_FILTER` (§8.5).
    Quarter,
    /// `FITTED_EDGE_FILTER` (§8.6).
    Fitted,
}

impl EdgeFilter {
    /// The flag this filter sets.
    pub fn kind(&self) -> EdgeFilterKind {
        match self {
            EdgeFilter::Off => EdgeFilterKind::Off,
            EdgeFilter::Quarter => EdgeFilterKind::Quarter,
            EdgeFilter::Fitted(_) => EdgeFilterKind::Fitted,
        }
    }
}

/// Length of the edge filter block at the start of the payload (spec/bitstream.md §8.6).
pub const EDGE_FILTER_BLOCK_LEN: usize = 16;

/// The 15 taps of the fitted edge filter (spec/bitstream.md §8.6): `c[t][k]` in units of
/// 1/128, the correction of the sample `3 - t` positions from the edge from the five
/// differences `D[k]` of the six samples around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct EdgeTaps(pub [[i8; 5]; 3]);

/// The fitted filter's block has a reserved byte set (spec/bitstream.md §8.6, §5.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservedByteSet(pub u8);

impl EdgeTaps {
    /// The edge filter block: the taps in order, then the reserved byte 0.
    pub fn to_block(&self) -> [u8; EDGE_FILTER_BLOCK_LEN] {
        let mut b = [0u8; EDGE_FILTER_BLOCK_LEN];
        for (out, &c) in b.iter_mut().zip(self.0.iter().flatten()) {
            *out = c.to_le_bytes()[0];
        }
        b
    }

    /// Reads an edge filter block; its reserved byte must be 0.
    pub fn from_block(block: &[u8; EDGE_FILTER_BLOCK_LEN]) -> Result<EdgeTaps, ReservedByteSet> {
        if block[15] != 0 {
            return Err(ReservedByteSet(block[15]));
        }
        let mut taps = [[0i8; 5]; 3];
        for (c, &b) in taps.iter_mut().flatten().zip(block.iter()) {
            *c = i8::from_le_bytes([b]);
        }
        Ok(EdgeTaps(taps))
    }
}

/// An output sample type the filter works on.
pub(crate) trait Sample: Copy {
    /// The range of output samples (spec/bitstream.md §8.6: `[lo, hi]`).
    const LO: i32;
    const HI: i32;
    fn get(self) -> i32;
    /// From a value in `[LO, HI]`.
    fn set(v: i32) -> Self;
}

impl Sample for u8 {
    const LO: i32 = 0;
    const HI: i32 = 255;
    fn get(self) -> i32 {
        i32::from(self)
    }
    fn set(v: i32) -> u8 {
        v as u8
    }
}

impl Sample for u16 {
    const LO: i32 = 0;
    const HI: i32 = 65535;
    fn get(self) -> i32 {
        i32::from(self)
    }
    fn set(v: i32) -> u16 {
        v as u16
    }
}

impl Sample for i16 {
    // §8.3: synthesis never produces -32768; neither does the filter.
    const LO: i32 = -32767;
    const HI: i32 = 32767;
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

/// The six samples around an edge at `e` of a line of `n` samples, the line's sample
/// `i` at `samples[base + i * stride]` (spec/bitstream.md §8.6: `s[j]`).
fn edge_window<S: Sample>(
    samples: &[S],
    (base, stride, n): (usize, usize, usize),
    e: usize,
) -> [i32; 6] {
    std::array::from_fn(|j| samples[base + (e + j - 3).min(n - 1) * stride].get())
}

/// The corrections of the fitted filter for the window `s`: for `t` = 0..2 the sample
/// `3 - t` before the edge, then the one `3 - t` after it (spec/bitstream.md §8.6).
pub fn fitted_corrections(taps: &EdgeTaps, s: &[i32; 6]) -> ([i32; 3], [i32; 3]) {
    let d: [i32; 5] = std::array::from_fn(|k| s[k + 1] - s[k]);
    let m: [i32; 5] = std::array::from_fn(|k| s[4 - k] - s[5 - k]);
    let apply = |c: &[i8; 5], x: &[i32; 5]| -> i32 {
        let sum: i32 = c.iter().zip(x).map(|(&c, &x)| i32::from(c) * x).sum();
        (sum + 64).div_euclid(128)
    };
    (
        std::array::from_fn(|t| apply(&taps.0[t], &d)),
        std::array::from_fn(|t| apply(&taps.0[t], &m)),
    )
}

/// Filters every internal edge of one line of `n` samples cut into runs of `len`
/// (spec/bitstream.md §8.6); nothing when `len < 6`.
fn fitted_line<S: Sample>(
    samples: &mut [S],
    (base, stride, n): (usize, usize, usize),
    len: usize,
    taps: &EdgeTaps,
) {
    if len < 6 {
        return;
    }
    for e in (len..n).step_by(len) {
        let s = edge_window(samples, (base, stride, n), e);
        let (before, after) = fitted_corrections(taps, &s);
        for t in 0..3 {
            let i = e + t - 3;
            samples[base + i * stride] = S::set((s[t] + before[t]).clamp(S::LO, S::HI));
            let j = e + 2 - t;
            if j < n {
                samples[base + j * stride] = S::set((s[5 - t] + after[t]).clamp(S::LO, S::HI));
            }
        }
    }
}

/// The fitted edge filter on an interleaved image (spec/bitstream.md §8.6): every row of
/// every channel, then every column of every channel of the result.
pub(crate) fn fitted_image<S: Sample>(
    px: &mut [S],
    (width, height, channels): (usize, usize, usize),
    (tile_w, tile_h): (usize, usize),
    taps: &EdgeTaps,
) {
    debug_assert_eq!(px.len(), width * height * channels);
    for y in 0..height {
        for c in 0..channels {
            fitted_line(
                px,
                (y * width * channels + c, channels, width),
                tile_w,
                taps,
            );
        }
    }
    for x in 0..width {
        for c in 0..channels {
            fitted_line(
                px,
                (x * channels + c, width * channels, height),
                tile_h,
                taps,
            );
        }
    }
}

/// The fitted edge filter on interleaved audio (spec/bitstream.md §8.6): every channel.
/// An audio signal is filtered as an image one frame high.
pub(crate) fn fitted_audio(samples: &mut [i16], channels: usize, chunk: usize, taps: &EdgeTaps) {
    let frames = samples.len() / channels.max(1);
    fitted_image(samples, (frames, 1, channels), (chunk, 1), taps);
}

/// Runs `filter` on an interleaved image (spec/bitstream.md §8.5, §8.6).
pub(crate) fn apply_image<S: Sample>(
    px: &mut [S],
    size: (usize, usize, usize),
    tile: (usize, usize),
    filter: &EdgeFilter,
) {
    match filter {
        EdgeFilter::Off => {}
        EdgeFilter::Quarter => filter_image(px, size, tile),
        EdgeFilter::Fitted(taps) => fitted_image(px, size, tile, taps),
    }
}

/// Runs `filter` on interleaved audio (spec/bitstream.md §8.5, §8.6).
pub(crate) fn apply_audio(samples: &mut [i16], channels: usize, chunk: usize, filter: &EdgeFilter) {
    match filter {
        EdgeFilter::Off => {}
        EdgeFilter::Quarter => filter_audio(samples, channels, chunk),
        EdgeFilter::Fitted(taps) => fitted_audio(samples, channels, chunk, taps),
    }
}

/// The window of every internal edge the fitted filter touches, with the positions of
/// its six samples, in the filter's order (rows then columns; channels): what an
/// encoder fits the taps on. `f(window_positions)` gets the six sample indices.
pub fn for_each_edge_window(
    (width, height, channels): (usize, usize, usize),
    (tile_w, tile_h): (usize, usize),
    mut f: impl FnMut([usize; 6]),
) {
    let mut line = |(base, stride, n): (usize, usize, usize), len: usize| {
        if len < 6 {
            return;
        }
        for e in (len..n).step_by(len) {
            f(std::array::from_fn(|j| {
                base + (e + j - 3).min(n - 1) * stride
            }));
        }
    };
    for y in 0..height {
        for c in 0..channels {
            line((y * width * channels + c, channels, width), tile_w);
        }
    }
    for x in 0..width {
        for c in 0..channels {
            line((x * channels + c, width * channels, height), tile_h);
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
    fn the_fitted_filter_example_of_the_spec() {
        // spec/bitstream.md §8.6, Example: a quarter of the jump on the sample beside
        // the edge; halves round up.
        let taps = EdgeTaps([[0; 5], [0; 5], [0, 0, 32, 0, 0]]);
        let mut line: Vec<u8> = vec![10, 10, 10, 20, 20, 20];
        fitted_image(&mut line, (6, 1, 1), (3, 1), &taps);
        assert_eq!(
            line,
            vec![10, 10, 10, 20, 20, 20],
            "runs shorter than 6 are not filtered"
        );
        let mut line: Vec<u8> = vec![10, 10, 10, 10, 10, 10, 20, 20, 20, 20, 20, 20];
        fitted_image(&mut line, (12, 1, 1), (6, 1), &taps);
        assert_eq!(line, vec![10, 10, 10, 10, 10, 13, 18, 20, 20, 20, 20, 20]);
        assert_eq!(
            fitted_corrections(&taps, &[10, 10, 10, 20, 20, 20]),
            ([0, 0, 3], [0, 0, -2])
        );
    }

    #[test]
    fn fitted_taps_round_trip_through_the_block_and_clamp_to_the_range() {
        let taps = EdgeTaps([[-128, 127, 0, 1, -1], [5, 6, 7, 8, 9], [-5, -6, -7, -8, -9]]);
        let block = taps.to_block();
        assert_eq!(block[0], 0x80);
        assert_eq!(block[15], 0);
        assert_eq!(EdgeTaps::from_block(&block), Ok(taps));
        let mut bad = block;
        bad[15] = 7;
        assert_eq!(EdgeTaps::from_block(&bad), Err(ReservedByteSet(7)));
        // A strong pull overshoots the other side: (127 x 64000 + 64) div 128 = 63500.
        let pull = EdgeTaps([[0; 5], [0; 5], [0, 0, 127, 0, 0]]);
        let mut s: Vec<i16> = vec![-32000; 6];
        s.extend([32000i16; 6]);
        fitted_audio(&mut s, 1, 6, &pull);
        assert_eq!((s[5], s[6]), (31500, -31500));
        // A push outwards clamps to the range (audio: never -32768).
        let mut s: Vec<i16> = vec![32767; 6];
        s.extend([-32767i16; 6]);
        let push = EdgeTaps([[0; 5], [0; 5], [0, 0, -127, 0, 0]]);
        fitted_audio(&mut s, 1, 6, &push);
        assert_eq!((s[5], s[6]), (32767, -32767));
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
