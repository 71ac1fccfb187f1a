//! The decoding process (spec/bitstream.md §5–§8): parse and validate, check the pack,
//! entropy-decode V, dequantise, synthesise every tile, reassemble and quantise samples.

use std::io::Read;

pub use crate::container::Limits;
use crate::container::{check_limits, Container, Geometry, Header, HEADER_LEN};
use crate::edge_filter::{self, EdgeFilter};
use crate::entropy::{PayloadCoding, VModel};
use crate::error::{Error, FormatError};
use crate::pack::ModelPack;
use crate::restoration::{self, RestorationTaps};
use crate::synthesis::TileSynthesizer;

/// Options of [`Decoder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DecodeOptions {
    /// Resource limits.
    pub limits: Limits,
    /// Threads for synthesis; 0 uses every core.
    pub threads: usize,
}

/// A decoded image: samples row-major, channels interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// 1 (grey) or 3 (RGB).
    pub channels: u8,
    /// The samples, 8- or 16-bit as the file says.
    pub pixels: ImagePixels,
}

/// Sample storage of a [`DecodedImage`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImagePixels {
    /// 8-bit samples.
    U8(Vec<u8>),
    /// 16-bit samples.
    U16(Vec<u16>),
}

/// Decoded audio: 16-bit PCM, channels interleaved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedAudio {
    /// Samples per second.
    pub sample_rate: u32,
    /// Channels.
    pub channels: u8,
    /// `frames x channels` samples, interleaved.
    pub samples: Vec<i16>,
}

/// What a file decodes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// An image.
    Image(DecodedImage),
    /// Audio.
    Audio(DecodedAudio),
}

/// Decodes `.ipc` files made with one model pack. Creating it computes the pack's
/// instance-independent synthesis state once; decoding many files reuses it.
///
/// ```
/// use ipc_codec::{pack::synthetic::SyntheticPack, Decoded, Decoder, ModelPack};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// // A real program reads a trained pack file with `ModelPack::from_pack_file`.
/// let pack = ModelPack::from_pack_file(&SyntheticPack::small_image().build().to_pack_file()?)?;
/// let decoder = Decoder::new(&pack);
/// # let file = ipc_codec::encode_quantised(&pack, ipc_codec::Geometry::Image {
/// #     width: 20, height: 10, channels: 3, bit_depth: 8 }, 1, None, &vec![0; 6 * 4 * 16])?;
/// match decoder.decode(&file)? {
///     Decoded::Image(img) => println!("{}x{} image", img.width, img.height),
///     Decoded::Audio(a) => println!("{} samples at {} Hz", a.samples.len(), a.sample_rate),
/// }
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Decoder<'p> {
    pack: &'p ModelPack,
    synth: TileSynthesizer<'p>,
    options: DecodeOptions,
}

impl<'p> Decoder<'p> {
    /// A decoder with default options.
    pub fn new(pack: &'p ModelPack) -> Decoder<'p> {
        Self::with_options(pack, DecodeOptions::default())
    }

    /// A decoder with the given options.
    pub fn with_options(pack: &'p ModelPack, options: DecodeOptions) -> Decoder<'p> {
        Decoder {
            pack,
            synth: TileSynthesizer::new(pack),
            options,
        }
    }

    /// The pack this decoder uses.
    pub fn pack(&self) -> &'p ModelPack {
        self.pack
    }

    /// The pack's synthesis state, computed when the decoder was made.
    pub(crate) fn synthesizer(&self) -> &TileSynthesizer<'p> {
        &self.synth
    }

    /// Decodes a complete file held in memory.
    pub fn decode(&self, bytes: &[u8]) -> Result<Decoded, Error> {
        self.decode_container(&Container::parse(bytes, &self.options.limits)?)
    }

    /// Decodes a file already split and verified by [`Container::parse`], for callers
    /// that read the header first (to choose a pack or an output format): the header is
    /// not parsed, nor the checksum computed, a second time. The decoder's own limits
    /// and the pack are checked.
    ///
    /// ```
    /// # use ipc_codec::{pack::synthetic::SyntheticPack, Decoder, ModelPack};
    /// use ipc_codec::container::Container;
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// # let pack = ModelPack::from_pack_file(&SyntheticPack::small_image().build().to_pack_file()?)?;
    /// # let file = ipc_codec::encode_quantised(&pack, ipc_codec::Geometry::Image {
    /// #     width: 20, height: 10, channels: 3, bit_depth: 8 }, 1, None, &vec![0; 6 * 4 * 16])?;
    /// let container = Container::parse(&file, &ipc_codec::Limits::default())?;
    /// println!("made with pack {}", container.header.pack_id);
    /// let decoded = Decoder::new(&pack).decode_container(&container)?;
    /// # Ok(()) }
    /// ```
    pub fn decode_container(&self, container: &Container<'_>) -> Result<Decoded, Error> {
        let v = self.quantised_v(container)?;
        self.synthesise(
            &container.header,
            container.edge_filter,
            container.restoration,
            &v,
        )
    }

    /// Decodes a file from a reader, reading no more than the header declares (plus one
    /// byte to detect trailing data) and checking limits before allocating.
    pub fn decode_reader(&self, mut reader: impl Read) -> Result<Decoded, Error> {
        let bytes = read_ipc(&mut reader, &self.options.limits)?;
        self.decode(&bytes)
    }

    /// Decodes an 8-bit image into a caller's buffer of exactly
    /// `width * height * channels` bytes (see [`Header::parse`] to learn the size first).
    pub fn decode_image_into(&self, bytes: &[u8], buf: &mut [u8]) -> Result<Header, Error> {
        let container = Container::parse(bytes, &self.options.limits)?;
        self.decode_container_image_into(&container, buf)?;
        Ok(container.header)
    }

    /// [`Decoder::decode_image_into`] for a file already split and verified by
    /// [`Container::parse`] (see [`Decoder::decode_container`]).
    pub fn decode_container_image_into(
        &self,
        container: &Container<'_>,
        buf: &mut [u8],
    ) -> Result<(), Error> {
        let header = &container.header;
        let Geometry::Image {
            width,
            height,
            channels,
            bit_depth: 8,
        } = header.geometry
        else {
            return Err(Error::InvalidArgument(
                "decode_image_into takes 8-bit images; use decode".into(),
            ));
        };
        let needed = width as usize * height as usize * usize::from(channels);
        if buf.len() != needed {
            return Err(Error::InvalidArgument(format!(
                "buffer holds {} bytes, the image needs {needed}",
                buf.len()
            )));
        }
        let v = self.quantised_v(container)?;
        self.render_image(header, &v, |i, x| buf[i] = to_u8(x));
        filter_image_edges(
            header,
            container.edge_filter,
            container.restoration,
            self.options.threads,
            buf,
        );
        Ok(())
    }

    /// Parses, validates and entropy-decodes a file, returning its header and the
    /// quantised V of every tile (tile after tile, each in `PackConfig::v_shape`, row-major).
    /// Conformance tests compare this exactly (codec-tests/README.md).
    pub fn decode_quantised(&self, bytes: &[u8]) -> Result<(Header, Vec<i32>), Error> {
        let container = Container::parse(bytes, &self.options.limits)?;
        let v = self.quantised_v(&container)?;
        Ok((container.header, v))
    }

    /// The entropy-decoded quantised V of a verified file, after checking it against
    /// the decoder's limits and pack.
    fn quantised_v(&self, container: &Container<'_>) -> Result<Vec<i32>, Error> {
        let header = &container.header;
        self.options.limits.check(header)?;
        check_pack(header, self.pack)?;
        let model = self
            .pack
            .v_model(usize::from(header.quality_level))
            .expect("check_pack verified the level");
        // Saturating: with raised limits a huge header must meet the limit, not wrap.
        let count = header
            .tile_count()
            .saturating_mul(model.elements_per_tile() as u64);
        let limit = self.options.limits.max_v_elements;
        if count > limit {
            return Err(Error::LimitExceeded {
                what: "elements of V",
                value: count,
                limit,
            });
        }
        Ok(model
            .decode_tiles(container.payload, header.grid(), header.coding)
            .map_err(FormatError::Payload)?)
    }

    /// Synthesises the tiles of `q` in bands of `band_tiles` tiles, handing each band's
    /// outputs (tile after tile) with the index of its first tile to `sink`. Peak memory
    /// is the band's, not the whole signal's in f32: decoding needs about the output
    /// plus the quantised V, whatever the size.
    fn render_bands(
        &self,
        header: &Header,
        q: &[i32],
        band_tiles: usize,
        mut sink: impl FnMut(usize, &[f32]),
    ) {
        let step = header.step();
        let v_len = self.synth.v_len();
        let per_tile = self.synth.outputs_per_tile();
        let (mut v, mut out) = (Vec::new(), Vec::new());
        for (b, band) in q.chunks(band_tiles.max(1) * v_len).enumerate() {
            v.clear();
            v.extend(band.iter().map(|&x| x as f32 * step));
            out.clear();
            out.resize(band.len() / v_len * per_tile, 0.0);
            self.synth.render(&v, &mut out, self.options.threads);
            sink(b * band_tiles.max(1), &out);
        }
    }

    /// Synthesises an image band by band (whole rows of tiles) and hands every output
    /// sample, clamped to [0, 1], with its index to `put` (spec/bitstream.md §8.2).
    fn render_image(&self, header: &Header, q: &[i32], mut put: impl FnMut(usize, f32)) {
        let (tiles_x, _) = header.tile_grid();
        let tiles_x = tiles_x as usize;
        let rows = (BAND_TILES / tiles_x).max(1);
        self.render_bands(header, q, rows * tiles_x, |first, band| {
            place_tile_rows(header, first / tiles_x, band, &mut put);
        });
    }

    fn synthesise(
        &self,
        header: &Header,
        edge_filter: EdgeFilter,
        restoration: Option<RestorationTaps>,
        q: &[i32],
    ) -> Result<Decoded, Error> {
        Ok(match header.geometry {
            Geometry::Image {
                width,
                height,
                channels,
                bit_depth,
            } => {
                let n = width as usize * height as usize * usize::from(channels);
                let pixels = if bit_depth == 8 {
                    let mut px = vec![0u8; n];
                    self.render_image(header, q, |i, x| px[i] = to_u8(x));
                    filter_image_edges(
                        header,
                        edge_filter,
                        restoration,
                        self.options.threads,
                        &mut px,
                    );
                    ImagePixels::U8(px)
                } else {
                    let mut px = vec![0u16; n];
                    self.render_image(header, q, |i, x| px[i] = (x * 65535.0).round() as u16);
                    filter_image_edges(
                        header,
                        edge_filter,
                        restoration,
                        self.options.threads,
                        &mut px,
                    );
                    ImagePixels::U16(px)
                };
                Decoded::Image(DecodedImage {
                    width,
                    height,
                    channels,
                    pixels,
                })
            }
            Geometry::Audio {
                sample_rate,
                frames,
                channels,
                ..
            } => {
                let frames = frames as usize;
                let chans = usize::from(channels);
                let chunk = usize::from(header.tile_width);
                let chunks_per_channel = frames.div_ceil(chunk);
                let mut samples = vec![0i16; frames * chans];
                // §8.3: tiles are channel after channel; each channel's chunks concatenate.
                self.render_bands(header, q, BAND_TILES, |first, band| {
                    for (i, tile) in band.chunks_exact(chunk).enumerate() {
                        let t = first + i;
                        let (c, k) = (t / chunks_per_channel, t % chunks_per_channel);
                        let start = k * chunk;
                        let end = (start + chunk).min(frames);
                        for (f, &x) in (start..end).zip(tile) {
                            samples[f * chans + c] = (x.clamp(-1.0, 1.0) * 32767.0).round() as i16;
                        }
                    }
                });
                // §8.5, §8.6.
                edge_filter::apply_audio(&mut samples, chans, chunk, &edge_filter);
                if let Some(taps) = &restoration {
                    restoration::restore_audio(&mut samples, chans, taps);
                }
                Decoded::Audio(DecodedAudio {
                    sample_rate,
                    channels,
                    samples,
                })
            }
        })
    }
}

/// Applies a decoded image's edge filter and restoration filter (spec/bitstream.md
/// §8.5, §8.6, §8.7).
fn filter_image_edges<S: edge_filter::Sample + Send + Sync>(
    header: &Header,
    filter: EdgeFilter,
    restoration: Option<RestorationTaps>,
    threads: usize,
    px: &mut [S],
) {
    let Geometry::Image {
        width,
        height,
        channels,
        ..
    } = header.geometry
    else {
        return;
    };
    let size = (width as usize, height as usize, usize::from(channels));
    let tile = (
        usize::from(header.tile_width),
        usize::from(header.tile_height),
    );
    edge_filter::apply_image(px, size, tile, &filter);
    if let Some(taps) = &restoration {
        restoration::restore_image(px, size, taps, threads);
    }
}

impl Decoded {
    /// Runs the restoration filter (spec/bitstream.md §8.7) over decoded samples, as a
    /// decoder does after the edge filter of a file with those taps.
    pub(crate) fn restore(&mut self, taps: &RestorationTaps, threads: usize) {
        match self {
            Decoded::Image(img) => {
                let size = (
                    img.width as usize,
                    img.height as usize,
                    usize::from(img.channels),
                );
                match &mut img.pixels {
                    ImagePixels::U8(px) => restoration::restore_image(px, size, taps, threads),
                    ImagePixels::U16(px) => restoration::restore_image(px, size, taps, threads),
                }
            }
            Decoded::Audio(a) => {
                restoration::restore_audio(&mut a.samples, usize::from(a.channels), taps)
            }
        }
    }

    /// Runs an edge filter (spec/bitstream.md §8.5, §8.6) over decoded samples, as a
    /// decoder does for a file with that filter and tiles of `tile_width x tile_height`
    /// (audio: chunks of `tile_width`).
    pub(crate) fn filter_edges(
        &mut self,
        (tile_width, tile_height): (usize, usize),
        filter: &EdgeFilter,
    ) {
        match self {
            Decoded::Image(img) => {
                let size = (
                    img.width as usize,
                    img.height as usize,
                    usize::from(img.channels),
                );
                let tile = (tile_width, tile_height);
                match &mut img.pixels {
                    ImagePixels::U8(px) => edge_filter::apply_image(px, size, tile, filter),
                    ImagePixels::U16(px) => edge_filter::apply_image(px, size, tile, filter),
                }
            }
            Decoded::Audio(a) => edge_filter::apply_audio(
                &mut a.samples,
                usize::from(a.channels),
                tile_width,
                filter,
            ),
        }
    }
}

/// Tiles synthesised at once when decoding (rounded to whole rows of tiles for images):
/// enough work for every thread (a 768x512 photo of 32x32 tiles is one band), and a
/// working set of about 12 MB (1024 tiles of 32x32 RGB in f32) whatever the size of
/// the signal.
const BAND_TILES: usize = 1024;

/// An 8-bit image sample: `round(255 x)` of the clamped value (spec/bitstream.md §8.2).
fn to_u8(x: f32) -> u8 {
    (x * 255.0).round() as u8
}

/// Places the samples of whole rows of tiles, starting at tile row `first_row`, into
/// the image, cropping the padding, and hands each output sample (clamped to [0, 1])
/// with its index to `put` (spec/bitstream.md §8.2). Grey images take the mean of the
/// three network outputs.
fn place_tile_rows(
    header: &Header,
    first_row: usize,
    tiles: &[f32],
    mut put: impl FnMut(usize, f32),
) {
    let Geometry::Image {
        width,
        height,
        channels,
        ..
    } = header.geometry
    else {
        unreachable!("image geometry");
    };
    let (w, h, ch) = (width as usize, height as usize, usize::from(channels));
    let (tw, th) = (
        usize::from(header.tile_width),
        usize::from(header.tile_height),
    );
    let tiles_x = w.div_ceil(tw);
    let band_rows = tiles.len() / (3 * tw * th * tiles_x);
    let y0 = first_row * th;
    let y1 = ((first_row + band_rows) * th).min(h);
    for y in y0..y1 {
        for x in 0..w {
            let tile = (y / th - first_row) * tiles_x + x / tw;
            let s = tile * tw * th + (y % th) * tw + x % tw;
            let rgb = &tiles[s * 3..s * 3 + 3];
            let base = (y * w + x) * ch;
            if ch == 3 {
                for (c, &value) in rgb.iter().enumerate() {
                    put(base + c, value.clamp(0.0, 1.0));
                }
            } else {
                put(base, ((rgb[0] + rgb[1] + rgb[2]) / 3.0).clamp(0.0, 1.0));
            }
        }
    }
}

/// Checks that the file was made for this pack and fits it (spec/bitstream.md §5.4).
pub fn check_pack(header: &Header, pack: &ModelPack) -> Result<(), Error> {
    if header.pack_id != pack.id() {
        return Err(Error::WrongPack {
            needed: header.pack_id,
            supplied: pack.id(),
        });
    }
    let cfg = pack.config();
    let mismatch = |reason: String| Error::PackMismatch {
        pack: pack.id(),
        reason,
    };
    let modality = cfg.modality()?;
    if header.geometry.modality() != modality {
        return Err(mismatch(format!(
            "file holds {}, pack is for {}",
            header.geometry.modality().name(),
            modality.name()
        )));
    }
    if usize::from(header.tile_width) != cfg.tile_width
        || usize::from(header.tile_height) != cfg.tile_height
    {
        return Err(mismatch(format!(
            "tile {}x{} differs from the pack's {}x{}",
            header.tile_width, header.tile_height, cfg.tile_width, cfg.tile_height
        )));
    }
    if usize::from(header.quality_level) >= cfg.quality_levels.len() {
        return Err(mismatch(format!(
            "quality level {} but the pack has {}",
            header.quality_level,
            cfg.quality_levels.len()
        )));
    }
    let neighbour_tables = pack
        .v_model(usize::from(header.quality_level))
        .is_some_and(VModel::has_neighbour_tables);
    if header.coding == PayloadCoding::NeighbourContexts && !neighbour_tables {
        return Err(mismatch(
            "the file is coded with neighbour contexts and the pack has no neighbour tables".into(),
        ));
    }
    Ok(())
}

/// Reads one `.ipc` file from a stream: the header first, then exactly the declared
/// payload and checksum after checking the payload limit, then verifies that the
/// stream ends there. The checksum is left to [`Decoder::decode`].
pub fn read_ipc(reader: &mut impl Read, limits: &Limits) -> Result<Vec<u8>, Error> {
    let mut bytes = Vec::with_capacity(HEADER_LEN);
    reader
        .by_ref()
        .take(HEADER_LEN as u64)
        .read_to_end(&mut bytes)?;
    let header = Header::parse(&bytes)?;
    check_limits(&header, limits)?;
    let total = header.file_len();
    reader
        .by_ref()
        .take(total - HEADER_LEN as u64)
        .read_to_end(&mut bytes)?;
    if (bytes.len() as u64) < total {
        return Err(FormatError::Truncated {
            needed: total,
            available: bytes.len() as u64,
        }
        .into());
    }
    let mut extra = [0u8; 1];
    if reader.read(&mut extra)? > 0 {
        // Count what is left, without keeping it, to report how much trails.
        let rest = std::io::copy(reader, &mut std::io::sink())?;
        return Err(FormatError::TrailingData(rest + 1).into());
    }
    Ok(bytes)
}

#[cfg(feature = "image")]
impl DecodedImage {
    /// Converts into an `image` crate buffer.
    pub fn into_dynamic_image(self) -> image::DynamicImage {
        use image::{DynamicImage, ImageBuffer};
        let (w, h) = (self.width, self.height);
        let bad = "buffer length matches geometry by construction";
        match (self.channels, self.pixels) {
            (1, ImagePixels::U8(p)) => {
                DynamicImage::ImageLuma8(ImageBuffer::from_raw(w, h, p).expect(bad))
            }
            (1, ImagePixels::U16(p)) => {
                DynamicImage::ImageLuma16(ImageBuffer::from_raw(w, h, p).expect(bad))
            }
            (_, ImagePixels::U8(p)) => {
                DynamicImage::ImageRgb8(ImageBuffer::from_raw(w, h, p).expect(bad))
            }
            (_, ImagePixels::U16(p)) => {
                DynamicImage::ImageRgb16(ImageBuffer::from_raw(w, h, p).expect(bad))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::synthetic::SyntheticPack;
    use crate::rng::SplitMix64;

    /// Every sample as a whole-signal synthesis gives it (all tiles at once), against
    /// the band-by-band decoder, for signals of several bands with partial last ones.
    #[test]
    fn band_by_band_synthesis_matches_all_tiles_at_once() {
        let mut rng = SplitMix64(9);
        for (shape, geometry) in [
            (
                SyntheticPack::small_image(),
                Geometry::Image {
                    width: 8 * 1100 + 5,
                    height: 8 * 2 + 3,
                    channels: 3,
                    bit_depth: 8,
                },
            ),
            (
                SyntheticPack::small_image(),
                Geometry::Image {
                    width: 8 * 20 + 1,
                    height: 8 * 60 + 7,
                    channels: 1,
                    bit_depth: 16,
                },
            ),
            (
                SyntheticPack::small_audio(),
                Geometry::Audio {
                    sample_rate: 16_000,
                    frames: 64 * 600 + 17,
                    channels: 2,
                    bit_depth: 16,
                },
            ),
        ] {
            let pack = ModelPack::from_pack_file(&shape.build().to_pack_file().unwrap()).unwrap();
            let (tw, th) = (pack.config().tile_width, pack.config().tile_height);
            let tiles = geometry.tile_count(tw as u64, th as u64) as usize;
            let q: Vec<i32> = (0..tiles * pack.config().v_len())
                .map(|_| (rng.next_u64() % 9) as i32 - 4)
                .collect();
            // Version 1: the samples as synthesised, without the edge filter.
            let format = crate::FileFormat::VERSION_1;
            let file = crate::encode_quantised_as(&pack, geometry, 1, None, &q, format).unwrap();
            assert!(tiles > BAND_TILES, "{tiles} tiles: one band");
            let decoder = Decoder::new(&pack);
            let (header, q) = decoder.decode_quantised(&file).unwrap();
            let v: Vec<f32> = q.iter().map(|&x| x as f32 * header.step()).collect();
            let mut all = vec![0f32; tiles * decoder.synth.outputs_per_tile()];
            decoder.synth.render(&v, &mut all, 1);
            match decoder.decode(&file).unwrap() {
                Decoded::Image(img) => {
                    let got: Vec<f32> = match img.pixels {
                        ImagePixels::U8(p) => p.iter().map(|&b| f32::from(b)).collect(),
                        ImagePixels::U16(p) => p.iter().map(|&b| f32::from(b)).collect(),
                    };
                    let mut want = vec![0f32; got.len()];
                    place_tile_rows(&header, 0, &all, |i, x| want[i] = x);
                    let scale = if img.channels == 3 { 255.0 } else { 65535.0 };
                    for (g, w) in got.iter().zip(&want) {
                        assert_eq!(*g, (w * scale).round());
                    }
                }
                Decoded::Audio(a) => {
                    let Geometry::Audio { frames, .. } = geometry else {
                        unreachable!()
                    };
                    let per_channel = (frames as usize).div_ceil(64) * 64;
                    for (i, &s) in a.samples.iter().enumerate() {
                        let (f, c) = (i / 2, i % 2);
                        let x = all[c * per_channel + f];
                        assert_eq!(s, (x.clamp(-1.0, 1.0) * 32767.0).round() as i16);
                    }
                }
            }
        }
    }
}
