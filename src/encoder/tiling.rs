//! Cutting a signal into the tiles of spec/bitstream.md §4 for the encoder, and the
//! signals themselves.
//!
//! Padding (the area beyond the right and bottom edge, or beyond the end of the audio)
//! is not coded: the decoder discards it. The encoder fills it by repeating the edge
//! (images) or with silence (audio) so that the hypernetwork sees a natural tile, and
//! gives it zero weight in the distortion, so that no effort is spent on it.

use crate::container::Geometry;
use crate::entropy::TileGrid;

/// An image to encode: samples in `[0, 1]`, row-major, channels interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSignal {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u8,
    /// 8 or 16: the precision the decoder will output (spec/bitstream.md §3.2).
    pub bit_depth: u8,
    /// `width * height * channels` samples in `[0, 1]`.
    pub samples: Vec<f32>,
}

/// Audio to encode: samples in `[-1, 1]`, frames in time order, channels interleaved.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioSignal {
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Number of channels, 1 to 255.
    pub channels: u8,
    /// `frames * channels` samples in `[-1, 1]`.
    pub samples: Vec<f32>,
}

impl AudioSignal {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / usize::from(self.channels.max(1))
    }
}

/// A signal to encode.
#[derive(Debug, Clone, PartialEq)]
pub enum Signal {
    /// An image.
    Image(ImageSignal),
    /// Audio.
    Audio(AudioSignal),
}

impl Signal {
    /// The geometry a file of this signal has (spec/bitstream.md §3.2).
    pub fn geometry(&self) -> Geometry {
        match self {
            Signal::Image(i) => Geometry::Image {
                width: i.width,
                height: i.height,
                channels: i.channels,
                bit_depth: i.bit_depth,
            },
            Signal::Audio(a) => Geometry::Audio {
                sample_rate: a.sample_rate,
                frames: a.frames() as u32,
                channels: a.channels,
                bit_depth: 16,
            },
        }
    }

    /// Samples in the signal (pixels times channels, or frames times channels).
    pub fn sample_count(&self) -> usize {
        match self {
            Signal::Image(i) => i.samples.len(),
            Signal::Audio(a) => a.samples.len(),
        }
    }
}

/// Tiles ready for the networks: every tile's target samples in the pack's output
/// channels, and a weight per sample (1 inside the signal, 0 in the padding).
#[derive(Debug, Clone, Default)]
pub struct Tiles {
    /// Number of tiles.
    pub count: usize,
    /// Samples per tile.
    pub samples: usize,
    /// Channels per sample (the pack's output channels).
    pub channels: usize,
    /// `count * samples * channels` targets.
    pub targets: Vec<f32>,
    /// `count * samples` weights.
    pub weights: Vec<f32>,
    /// The tiles as a grid (spec/bitstream.md §4): what neighbour contexts see.
    pub grid: TileGrid,
}

impl Tiles {
    /// Tiles of an image for `tw x th` tiles, in raster order (spec/bitstream.md §4).
    /// Grey images are given to the RGB network as three equal channels, which is what
    /// the decoder's average of the channels (spec/bitstream.md §8.2) then reproduces.
    pub fn of_image(image: &ImageSignal, tw: usize, th: usize) -> Tiles {
        let (w, h) = (image.width as usize, image.height as usize);
        let (tiles_x, tiles_y) = (w.div_ceil(tw), h.div_ceil(th));
        let count = tiles_x * tiles_y;
        let samples = tw * th;
        let ic = usize::from(image.channels);
        let mut targets = vec![0f32; count * samples * 3];
        let mut weights = vec![0f32; count * samples];
        for ty in 0..tiles_y {
            for tx in 0..tiles_x {
                let t = ty * tiles_x + tx;
                for row in 0..th {
                    let y = (ty * th + row).min(h - 1);
                    for col in 0..tw {
                        let x = (tx * tw + col).min(w - 1);
                        let s = t * samples + row * tw + col;
                        let src = &image.samples[(y * w + x) * ic..(y * w + x + 1) * ic];
                        let dst = &mut targets[s * 3..s * 3 + 3];
                        if ic == 1 {
                            dst.fill(src[0]);
                        } else {
                            dst.copy_from_slice(src);
                        }
                        if ty * th + row < h && tx * tw + col < w {
                            weights[s] = 1.0;
                        }
                    }
                }
            }
        }
        Tiles {
            count,
            samples,
            channels: 3,
            targets,
            weights,
            grid: TileGrid {
                columns: tiles_x,
                rows: tiles_y,
            },
        }
    }

    /// Multiplies by `factor` the weight of every sample beside an internal tile edge
    /// (the first or last row or column of a tile that has a neighbour on that side;
    /// audio: the first or last sample of a chunk), so that refinement spends more on
    /// the samples where tiles meet. `tw x th` is the tile size the tiles were cut with.
    pub fn weight_edges(&mut self, tw: usize, th: usize, factor: f32) {
        let TileGrid { columns, rows } = self.grid;
        if tw * th != self.samples {
            return;
        }
        for t in 0..self.count {
            let (tx, ty) = (t % columns.max(1), t / columns.max(1));
            for row in 0..th {
                for col in 0..tw {
                    let edge = (col == 0 && tx > 0)
                        || (col + 1 == tw && tx + 1 < columns)
                        || (th > 1 && ((row == 0 && ty > 0) || (row + 1 == th && ty + 1 < rows)));
                    if edge {
                        self.weights[t * self.samples + row * tw + col] *= factor;
                    }
                }
            }
        }
    }

    /// Tiles of audio for chunks of `tw` samples: channel after channel, chunk after
    /// chunk (spec/bitstream.md §4).
    pub fn of_audio(audio: &AudioSignal, tw: usize) -> Tiles {
        let c = usize::from(audio.channels);
        let frames = audio.frames();
        let chunks = frames.div_ceil(tw).max(1);
        let count = chunks * c;
        let mut targets = vec![0f32; count * tw];
        let mut weights = vec![0f32; count * tw];
        for ch in 0..c {
            for f in 0..frames {
                let s = (ch * chunks + f / tw) * tw + f % tw;
                targets[s] = audio.samples[f * c + ch];
                weights[s] = 1.0;
            }
        }
        Tiles {
            count,
            samples: tw,
            channels: 1,
            targets,
            weights,
            grid: TileGrid {
                columns: chunks,
                rows: c,
            },
        }
    }

    /// The tiles of any signal.
    pub fn of_signal(signal: &Signal, tw: usize, th: usize) -> Tiles {
        match signal {
            Signal::Image(i) => Tiles::of_image(i, tw, th),
            Signal::Audio(a) => Tiles::of_audio(a, tw),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_tiles_repeat_the_edge_and_weigh_only_real_pixels() {
        let image = ImageSignal {
            width: 3,
            height: 2,
            channels: 1,
            bit_depth: 8,
            samples: vec![0.0, 0.1, 0.2, 0.3, 0.4, 0.5],
        };
        let tiles = Tiles::of_image(&image, 2, 2);
        assert_eq!((tiles.count, tiles.samples, tiles.channels), (2, 4, 3));
        // Tile 1 covers x = 2..4: its right column repeats x = 2.
        let t1: Vec<f32> = tiles.targets[12..24].iter().step_by(3).copied().collect();
        assert_eq!(t1, vec![0.2, 0.2, 0.5, 0.5]);
        assert_eq!(tiles.weights, vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0]);
    }

    #[test]
    fn edge_weights_grow_only_beside_internal_tile_edges() {
        // 5 x 4 pixels in 3 x 2 tiles: a grid of 2 x 2 tiles, the right ones padded.
        let image = ImageSignal {
            width: 5,
            height: 4,
            channels: 3,
            bit_depth: 8,
            samples: vec![0.5; 60],
        };
        let mut tiles = Tiles::of_image(&image, 3, 2);
        tiles.weight_edges(3, 2, 2.0);
        #[rustfmt::skip]
        let expected = vec![
            // Tile 0 (top left): its right column and bottom row face other tiles.
            1.0, 1.0, 2.0,
            2.0, 2.0, 2.0,
            // Tile 1 (top right): left column and bottom row; the padding stays 0.
            2.0, 1.0, 0.0,
            2.0, 2.0, 0.0,
            // Tile 2 (bottom left): right column and top row.
            2.0, 2.0, 2.0,
            1.0, 1.0, 2.0,
            // Tile 3 (bottom right): left column and top row.
            2.0, 2.0, 0.0,
            2.0, 1.0, 0.0,
        ];
        assert_eq!(tiles.weights, expected);

        // Audio: the first and last sample of each chunk that meets another chunk of
        // the same channel.
        let audio = AudioSignal {
            sample_rate: 8000,
            channels: 2,
            samples: vec![0.0; 16],
        };
        let mut tiles = Tiles::of_audio(&audio, 4);
        tiles.weight_edges(4, 1, 3.0);
        let one_channel = vec![1.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0, 1.0];
        assert_eq!(tiles.weights, [one_channel.clone(), one_channel].concat());
    }

    #[test]
    fn audio_tiles_are_channel_major() {
        let audio = AudioSignal {
            sample_rate: 16000,
            channels: 2,
            samples: vec![0.1, -0.1, 0.2, -0.2, 0.3, -0.3],
        };
        let tiles = Tiles::of_audio(&audio, 2);
        assert_eq!(tiles.count, 4);
        assert_eq!(
            tiles.targets,
            vec![0.1, 0.2, 0.3, 0.0, -0.1, -0.2, -0.3, 0.0]
        );
        assert_eq!(tiles.weights, vec![1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]);
    }
}
