//! The `.ipc` container: fixed header, entropy-coded payload, checksum (spec/bitstream.md).

use crate::edge_filter::{EdgeFilter, EdgeFilterKind, EdgeTaps, EDGE_FILTER_BLOCK_LEN};
use crate::entropy::{PayloadCoding, TileGrid};
use crate::error::{Error, FormatError};
pub use crate::ids::Modality;
use crate::ids::PackId;
use crate::restoration::{RestorationTaps, RESTORATION_BLOCK_LEN};

/// File signature (spec/bitstream.md §2). The high first byte catches 7-bit transfers, as PNG's does.
pub const MAGIC: [u8; 4] = [0x89, b'I', b'P', b'C'];
/// The format version new files are written in (spec/bitstream.md §2). This decoder
/// reads versions 1 and 2.
pub const FORMAT_VERSION: u8 = 2;
/// The oldest format version this decoder reads.
pub const OLDEST_FORMAT_VERSION: u8 = 1;
/// Header flag of version 2, bit 0: the payload is coded with neighbour contexts
/// (spec/bitstream.md §3.1, §7.5). Bits 3 to 15 are reserved.
pub const FLAG_NEIGHBOUR_CONTEXTS: u16 = 1;
/// Header flag of version 2, bit 1: the decoder filters the samples either side of
/// every internal tile edge (spec/bitstream.md §3.1, §8.5).
pub const FLAG_EDGE_FILTER: u16 = 2;
/// Header flag of version 2, bit 2: the decoder filters the three samples either side
/// of every internal tile edge with the taps at the start of the payload
/// (spec/bitstream.md §3.1, §8.6). Never with [`FLAG_EDGE_FILTER`].
pub const FLAG_FITTED_EDGE_FILTER: u16 = 4;
/// Header flag of version 2, bit 3: the decoder corrects every sample with the
/// restoration filter whose taps follow the edge filter's block in the payload
/// (spec/bitstream.md §3.1, §8.7).
pub const FLAG_RESTORATION_FILTER: u16 = 8;
/// Bytes before the payload (spec/bitstream.md §3).
pub const HEADER_LEN: usize = 50;
/// Bytes after the payload: the CRC-32 (spec/bitstream.md §6).
pub const TRAILER_LEN: usize = 4;

/// Signal geometry (spec/bitstream.md §3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Geometry {
    /// Image geometry.
    Image {
        /// Width in pixels, at least 1.
        width: u32,
        /// Height in pixels, at least 1.
        height: u32,
        /// 1 (grey) or 3 (RGB).
        channels: u8,
        /// Bits per decoded sample: 8 or 16.
        bit_depth: u8,
    },
    /// Audio geometry.
    Audio {
        /// Samples per second, at least 1.
        sample_rate: u32,
        /// Samples in each channel, at least 1.
        frames: u32,
        /// Channels, 1 to 255, coded one after another.
        channels: u8,
        /// Bits per decoded sample: 16.
        bit_depth: u8,
    },
}

impl Geometry {
    /// The modality this geometry belongs to.
    pub fn modality(&self) -> Modality {
        match self {
            Geometry::Image { .. } => Modality::Image,
            Geometry::Audio { .. } => Modality::Audio,
        }
    }

    /// Tiles along x and y for a tile size (audio: chunks per channel and channels)
    /// (spec/bitstream.md §4).
    pub fn tile_grid(&self, tile_width: u64, tile_height: u64) -> (u64, u64) {
        match *self {
            Geometry::Image { width, height, .. } => (
                u64::from(width).div_ceil(tile_width),
                u64::from(height).div_ceil(tile_height),
            ),
            Geometry::Audio {
                frames, channels, ..
            } => (u64::from(frames).div_ceil(tile_width), u64::from(channels)),
        }
    }

    /// Total number of tiles for a tile size, each carrying one V. Saturates at
    /// `u64::MAX`, which only a header of absurd size with tiles of one sample reaches
    /// (and no limit admits).
    pub fn tile_count(&self, tile_width: u64, tile_height: u64) -> u64 {
        let (nx, ny) = self.tile_grid(tile_width, tile_height);
        nx.saturating_mul(ny)
    }

    /// Decoded samples over all channels: pixels x channels, or frames x channels;
    /// `None` when that does not fit in 64 bits (a 4294967295 x 4294967295 RGB header
    /// parses, and must be refused rather than wrap).
    pub fn checked_sample_count(&self) -> Option<u64> {
        match *self {
            Geometry::Image {
                width,
                height,
                channels,
                ..
            } => (u64::from(width) * u64::from(height)).checked_mul(u64::from(channels)),
            Geometry::Audio {
                frames, channels, ..
            } => Some(u64::from(frames) * u64::from(channels)),
        }
    }

    /// [`Geometry::checked_sample_count`], saturating at `u64::MAX`.
    pub fn sample_count(&self) -> u64 {
        self.checked_sample_count().unwrap_or(u64::MAX)
    }
}

/// The parsed, syntactically valid fixed header of an `.ipc` file (spec/bitstream.md §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Format version: 1 or 2 (spec/bitstream.md §2).
    pub version: u8,
    /// How the payload chooses its tables (spec/bitstream.md §7.2, §7.5); always
    /// [`PayloadCoding::PerElement`] in version 1.
    pub coding: PayloadCoding,
    /// Which filter the decoder runs over tile edges (spec/bitstream.md §8.5, §8.6);
    /// never one in version 1. The fitted filter's taps are in the payload
    /// ([`Container::edge_filter`]).
    pub edge_filter: EdgeFilterKind,
    /// Whether the decoder runs the restoration filter after the edge filter
    /// (spec/bitstream.md §8.7); its taps are in the payload ([`Container::restoration`]).
    pub restoration: bool,
    /// The model pack the file must be decoded with.
    pub pack_id: PackId,
    /// Signal geometry; also gives the modality.
    pub geometry: Geometry,
    /// Tile width in samples (audio: chunk length).
    pub tile_width: u16,
    /// Tile height in samples (audio: 1).
    pub tile_height: u16,
    /// Quantisation step of V as an unsigned Q16.16 number, never zero.
    pub step_q16: u32,
    /// Index of the pack's quality level whose entropy tables code the payload.
    pub quality_level: u8,
    /// Length of the entropy-coded payload in bytes.
    pub payload_len: u32,
}

/// A quantisation step stored as unsigned Q16.16 (spec/bitstream.md §3.4), as a
/// number: `step_q16 / 65536`.
///
/// ```
/// use ipc_codec::container::{step_from_q16, step_to_q16};
/// assert_eq!(step_from_q16(0x0001_8000), 1.5);
/// assert_eq!(step_to_q16(1.5), 0x0001_8000);
/// assert_eq!(step_to_q16(0.0), 1); // never zero
/// ```
pub fn step_from_q16(step_q16: u32) -> f64 {
    f64::from(step_q16) / 65536.0
}

/// The Q16.16 value nearest to `step` (spec/bitstream.md §3.4), within 1 (a step is
/// never zero) and `u32::MAX`.
pub fn step_to_q16(step: f64) -> u32 {
    (step * 65536.0).round().clamp(1.0, f64::from(u32::MAX)) as u32
}

impl Header {
    /// The quantisation step as a float: `step_q16 / 65536` (spec/bitstream.md §3.4).
    pub fn step(&self) -> f32 {
        step_from_q16(self.step_q16) as f32
    }

    /// Tiles along x and y (audio: chunks per channel and channels) (spec/bitstream.md §4).
    pub fn tile_grid(&self) -> (u64, u64) {
        self.geometry
            .tile_grid(self.tile_width.into(), self.tile_height.into())
    }

    /// The tile grid as the payload codes it (spec/bitstream.md §4, §7.5). Only for a
    /// header whose tile count the caller has bounded (it saturates at `usize::MAX`).
    pub fn grid(&self) -> TileGrid {
        let (columns, rows) = self.tile_grid();
        let size = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        TileGrid {
            columns: size(columns),
            rows: size(rows),
        }
    }

    /// Total number of tiles, each carrying one V (spec/bitstream.md §4).
    pub fn tile_count(&self) -> u64 {
        self.geometry
            .tile_count(self.tile_width.into(), self.tile_height.into())
    }

    /// Total file length implied by the header.
    pub fn file_len(&self) -> u64 {
        (HEADER_LEN + TRAILER_LEN) as u64 + u64::from(self.payload_len)
    }

    /// Serialises the header (spec/bitstream.md §3).
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4] = self.version;
        b[5] = self.geometry.modality().code();
        let mut flags = match self.coding {
            PayloadCoding::PerElement => 0,
            PayloadCoding::NeighbourContexts => FLAG_NEIGHBOUR_CONTEXTS,
        };
        flags |= match self.edge_filter {
            EdgeFilterKind::Off => 0,
            EdgeFilterKind::Quarter => FLAG_EDGE_FILTER,
            EdgeFilterKind::Fitted => FLAG_FITTED_EDGE_FILTER,
        };
        if self.restoration {
            flags |= FLAG_RESTORATION_FILTER;
        }
        b[6..8].copy_from_slice(&flags.to_le_bytes());
        b[8..24].copy_from_slice(self.pack_id.as_bytes());
        let (a, c, ch, bd) = match self.geometry {
            Geometry::Image {
                width,
                height,
                channels,
                bit_depth,
            } => (width, height, channels, bit_depth),
            Geometry::Audio {
                sample_rate,
                frames,
                channels,
                bit_depth,
            } => (sample_rate, frames, channels, bit_depth),
        };
        b[24..28].copy_from_slice(&a.to_le_bytes());
        b[28..32].copy_from_slice(&c.to_le_bytes());
        b[32] = ch;
        b[33] = bd;
        // b[34..36]: reserved, zero.
        b[36..38].copy_from_slice(&self.tile_width.to_le_bytes());
        b[38..40].copy_from_slice(&self.tile_height.to_le_bytes());
        b[40..44].copy_from_slice(&self.step_q16.to_le_bytes());
        b[44] = self.quality_level;
        // b[45]: reserved, zero.
        b[46..50].copy_from_slice(&self.payload_len.to_le_bytes());
        b
    }

    /// Parses and validates the fixed header from the first [`HEADER_LEN`] bytes
    /// (spec/bitstream.md §3 and §5). Does not look at the payload or checksum.
    pub fn parse(b: &[u8]) -> Result<Header, Error> {
        // §5.1: the signature is checked on whatever prefix is present, so that a
        // short non-.ipc file is reported as such rather than as truncated.
        let sig = b.len().min(4);
        if b[..sig] != MAGIC[..sig] {
            return Err(FormatError::BadMagic.into());
        }
        if b.len() < 5 {
            return Err(truncated(HEADER_LEN, b.len()));
        }
        // §5.2: the version is checked before the rest, whose layout it governs.
        let version = b[4];
        if !(OLDEST_FORMAT_VERSION..=FORMAT_VERSION).contains(&version) {
            return Err(Error::Unsupported(format!(
                "format version {version} (this decoder reads versions \
                 {OLDEST_FORMAT_VERSION} to {FORMAT_VERSION})"
            )));
        }
        if b.len() < HEADER_LEN {
            return Err(truncated(HEADER_LEN, b.len()));
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let field = |field: &'static str, value: u64| -> Error {
            FormatError::Field { field, value }.into()
        };

        let modality = match b[5] {
            1 => Modality::Image,
            2 => Modality::Audio,
            v => return Err(field("modality", v.into())),
        };
        // §3.1: version 1 reserves every flag; version 2 defines bits 0 to 3.
        let flags = u16_at(6);
        let defined = if version == 1 {
            0
        } else {
            FLAG_NEIGHBOUR_CONTEXTS
                | FLAG_EDGE_FILTER
                | FLAG_FITTED_EDGE_FILTER
                | FLAG_RESTORATION_FILTER
        };
        if flags & !defined != 0 {
            return Err(Error::Unsupported(format!(
                "header flags {:#06x} are set (reserved in version {version})",
                flags & !defined
            )));
        }
        let edge_filter = match (
            flags & FLAG_EDGE_FILTER != 0,
            flags & FLAG_FITTED_EDGE_FILTER != 0,
        ) {
            (false, false) => EdgeFilterKind::Off,
            (true, false) => EdgeFilterKind::Quarter,
            (false, true) => EdgeFilterKind::Fitted,
            // §5.3.1: at most one edge filter.
            (true, true) => return Err(field("flags", flags.into())),
        };
        let coding = if flags & FLAG_NEIGHBOUR_CONTEXTS != 0 {
            PayloadCoding::NeighbourContexts
        } else {
            PayloadCoding::PerElement
        };
        let mut id = [0u8; 16];
        id.copy_from_slice(&b[8..24]);
        let pack_id = PackId::from_bytes(id);

        let (a, c, channels, bit_depth) = (u32_at(24), u32_at(28), b[32], b[33]);
        if u16_at(34) != 0 {
            return Err(Error::Unsupported("reserved geometry bytes are set".into()));
        }
        let geometry = match modality {
            Modality::Image => {
                if a == 0 {
                    return Err(field("width", 0));
                }
                if c == 0 {
                    return Err(field("height", 0));
                }
                match channels {
                    1 | 3 => {}
                    2 | 4 => {
                        return Err(Error::Unsupported(format!(
                            "{channels}-channel images (alpha) are not coded by format version 1"
                        )))
                    }
                    v => return Err(field("channels", v.into())),
                }
                match bit_depth {
                    8 | 16 => {}
                    v => return Err(field("bit_depth", v.into())),
                }
                Geometry::Image {
                    width: a,
                    height: c,
                    channels,
                    bit_depth,
                }
            }
            Modality::Audio => {
                if a == 0 {
                    return Err(field("sample_rate", 0));
                }
                if c == 0 {
                    return Err(field("frames", 0));
                }
                if channels == 0 {
                    return Err(field("channels", 0));
                }
                if bit_depth != 16 {
                    return Err(field("bit_depth", bit_depth.into()));
                }
                Geometry::Audio {
                    sample_rate: a,
                    frames: c,
                    channels,
                    bit_depth,
                }
            }
        };

        let tile_width = u16_at(36);
        let tile_height = u16_at(38);
        if tile_width == 0 {
            return Err(field("tile_width", 0));
        }
        if tile_height == 0 || (modality == Modality::Audio && tile_height != 1) {
            return Err(field("tile_height", tile_height.into()));
        }
        let step_q16 = u32_at(40);
        if step_q16 == 0 {
            return Err(field("step_q16", 0));
        }
        let quality_level = b[44];
        if b[45] != 0 {
            return Err(Error::Unsupported("reserved byte 45 is set".into()));
        }
        let payload_len = u32_at(46);
        if payload_len % 4 != 0 {
            return Err(FormatError::PayloadAlignment(payload_len.into()).into());
        }
        // §5.3.1 order 13: the filters' blocks are part of the payload.
        let restoration = flags & FLAG_RESTORATION_FILTER != 0;
        if (payload_len as usize) < blocks_len(edge_filter, restoration) {
            return Err(field("payload_len", payload_len.into()));
        }
        Ok(Header {
            version,
            coding,
            edge_filter,
            restoration,
            pack_id,
            geometry,
            tile_width,
            tile_height,
            step_q16,
            quality_level,
            payload_len,
        })
    }
}

/// Resource limits for untrusted input, checked against the header before any
/// allocation it implies (spec/bitstream.md §5.3). Decoding an image takes about
/// 16 bytes of memory per pixel at its peak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest image, in pixels (width x height). Default 2^26 (67 M, e.g. 8192 x 8192).
    pub max_pixels: u64,
    /// Largest audio signal, in samples over all channels. Default 2^28 (4.6 h of 16 kHz stereo).
    pub max_samples: u64,
    /// Largest entropy-coded payload, in bytes. Default 256 MiB.
    pub max_payload_bytes: u64,
    /// Most elements of V over all tiles (a pack with small tiles and a large V needs
    /// more per sample). Default 2^26.
    pub max_v_elements: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 1 << 26,
            max_samples: 1 << 28,
            max_payload_bytes: 256 << 20,
            max_v_elements: 1 << 26,
        }
    }
}

impl Limits {
    /// Checks a header against these limits (payload size, pixels or samples), as the
    /// decoder does before any allocation the header implies (spec/bitstream.md §5.3).
    /// For callers that parse a header themselves and size buffers from it.
    ///
    /// ```
    /// use ipc_codec::{Geometry, Header, Limits, PackId};
    ///
    /// let header = Header {
    ///     version: 2,
    ///     coding: ipc_codec::entropy::PayloadCoding::PerElement,
    ///     edge_filter: ipc_codec::edge_filter::EdgeFilterKind::Quarter,
    ///     restoration: false,
    ///     pack_id: PackId::from_bytes([0; 16]),
    ///     geometry: Geometry::Image { width: u32::MAX, height: u32::MAX, channels: 3, bit_depth: 8 },
    ///     tile_width: 32,
    ///     tile_height: 32,
    ///     step_q16: 1 << 16,
    ///     quality_level: 0,
    ///     payload_len: 0,
    /// };
    /// assert!(Limits::default().check(&header).is_err());
    /// ```
    pub fn check(&self, header: &Header) -> Result<(), Error> {
        check_limits(header, self)
    }
}

/// Checks the header against the limits, before any allocation it implies (spec/bitstream.md §5.3).
pub(crate) fn check_limits(header: &Header, limits: &Limits) -> Result<(), Error> {
    let exceeded = |what, value, limit| Error::LimitExceeded { what, value, limit };
    if u64::from(header.payload_len) > limits.max_payload_bytes {
        return Err(exceeded(
            "payload size",
            header.payload_len.into(),
            limits.max_payload_bytes,
        ));
    }
    match header.geometry {
        Geometry::Image { width, height, .. } => {
            let pixels = u64::from(width) * u64::from(height);
            if pixels > limits.max_pixels {
                return Err(exceeded("image size in pixels", pixels, limits.max_pixels));
            }
        }
        Geometry::Audio { .. } => {
            let samples = header.geometry.sample_count();
            if samples > limits.max_samples {
                return Err(exceeded(
                    "audio length in samples",
                    samples,
                    limits.max_samples,
                ));
            }
        }
    }
    Ok(())
}

fn truncated(needed: usize, available: usize) -> Error {
    FormatError::Truncated {
        needed: needed as u64,
        available: available as u64,
    }
    .into()
}

/// A whole `.ipc` file split into its parts, with its checksum verified.
#[derive(Debug, Clone)]
pub struct Container<'a> {
    /// The parsed header.
    pub header: Header,
    /// The edge filter the decoder runs, with the fitted filter's taps
    /// (spec/bitstream.md §8.5, §8.6).
    pub edge_filter: EdgeFilter,
    /// The restoration filter's taps, when the file has one (spec/bitstream.md §8.7).
    pub restoration: Option<RestorationTaps>,
    /// The entropy-coded payload: the range-coder stream of spec/bitstream.md §7
    /// (after the filters' blocks, when the file has them).
    pub payload: &'a [u8],
}

/// The bytes the filters' blocks take at the start of the payload (spec/bitstream.md
/// §7, §8.6, §8.7).
fn blocks_len(edge_filter: EdgeFilterKind, restoration: bool) -> usize {
    let edge = if edge_filter == EdgeFilterKind::Fitted {
        EDGE_FILTER_BLOCK_LEN
    } else {
        0
    };
    edge + if restoration {
        RESTORATION_BLOCK_LEN
    } else {
        0
    }
}

impl<'a> Container<'a> {
    /// Splits and verifies a complete file held in memory, in the order of
    /// spec/bitstream.md §5: signature, version, header fields, limits, length, checksum.
    pub fn parse(bytes: &'a [u8], limits: &Limits) -> Result<Container<'a>, Error> {
        let header = Header::parse(bytes)?;
        check_limits(&header, limits)?;
        let total = header.file_len();
        let available = bytes.len() as u64;
        if available < total {
            return Err(FormatError::Truncated {
                needed: total,
                available,
            }
            .into());
        }
        if available > total {
            return Err(FormatError::TrailingData(available - total).into());
        }
        let body_end = bytes.len() - TRAILER_LEN;
        verify_checksum(&bytes[..body_end], &bytes[body_end..])?;
        let payload = &bytes[HEADER_LEN..body_end];
        // §5.5, §8.6, §8.7: the filters' blocks come first, the edge filter's before the
        // restoration filter's; Header::parse made sure the payload holds them.
        let (edge_filter, payload) = match header.edge_filter {
            EdgeFilterKind::Off => (EdgeFilter::Off, payload),
            EdgeFilterKind::Quarter => (EdgeFilter::Quarter, payload),
            EdgeFilterKind::Fitted => {
                let (block, rest) = payload.split_at(EDGE_FILTER_BLOCK_LEN);
                let block: &[u8; EDGE_FILTER_BLOCK_LEN] =
                    block.try_into().expect("split at its length");
                let taps = EdgeTaps::from_block(block).map_err(|e| {
                    Error::Unsupported(format!("reserved byte of the edge filter block is {}", e.0))
                })?;
                (EdgeFilter::Fitted(taps), rest)
            }
        };
        let (restoration, payload) = if header.restoration {
            let (block, rest) = payload.split_at(RESTORATION_BLOCK_LEN);
            let block: &[u8; RESTORATION_BLOCK_LEN] =
                block.try_into().expect("split at its length");
            let taps = RestorationTaps::from_block(block).map_err(|_| {
                Error::Unsupported("reserved bytes of the restoration filter block are set".into())
            })?;
            (Some(taps), rest)
        } else {
            (None, payload)
        };
        Ok(Container {
            header,
            edge_filter,
            restoration,
            payload,
        })
    }
}

/// Checks the CRC-32 (ISO-HDLC, as in zlib and PNG) of `body` against the stored
/// little-endian trailer (spec/bitstream.md §6).
pub(crate) fn verify_checksum(body: &[u8], trailer: &[u8]) -> Result<(), FormatError> {
    let stored = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]);
    let computed = crc32fast::hash(body);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    Ok(())
}

/// Assembles a complete file from a header and payload, filling in the payload
/// length and checksum (spec/bitstream.md §3, §6). The payload is written as given:
/// with the header's fitted edge filter it must begin with the filter's block (see
/// [`write_file_with`]).
pub fn write_file(header: &Header, payload: &[u8]) -> Result<Vec<u8>, Error> {
    let payload_len = u32::try_from(payload.len()).map_err(|_| Error::LimitExceeded {
        what: "payload bytes",
        value: payload.len() as u64,
        limit: u32::MAX.into(),
    })?;
    let header = Header {
        payload_len,
        ..header.clone()
    };
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len() + TRAILER_LEN);
    out.extend_from_slice(&header.to_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    Ok(out)
}

/// [`write_file`] with `edge_filter` and `restoration`: it sets the header's flags and
/// writes the fitted filters' blocks before the range-coded `payload`
/// (spec/bitstream.md §8.6, §8.7).
pub fn write_file_with(
    header: &Header,
    edge_filter: EdgeFilter,
    restoration: Option<RestorationTaps>,
    payload: &[u8],
) -> Result<Vec<u8>, Error> {
    let header = Header {
        edge_filter: edge_filter.kind(),
        restoration: restoration.is_some(),
        ..header.clone()
    };
    let mut with_blocks = Vec::with_capacity(payload.len() + 32);
    if let EdgeFilter::Fitted(taps) = edge_filter {
        with_blocks.extend_from_slice(&taps.to_block());
    }
    if let Some(taps) = restoration {
        with_blocks.extend_from_slice(&taps.to_block());
    }
    with_blocks.extend_from_slice(payload);
    write_file(&header, &with_blocks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_header() -> Header {
        Header {
            version: FORMAT_VERSION,
            coding: PayloadCoding::NeighbourContexts,
            edge_filter: EdgeFilterKind::Quarter,
            restoration: false,
            pack_id: PackId::from_bytes([7; 16]),
            geometry: Geometry::Image {
                width: 33,
                height: 17,
                channels: 3,
                bit_depth: 8,
            },
            tile_width: 16,
            tile_height: 16,
            step_q16: 1 << 14,
            quality_level: 2,
            payload_len: 8,
        }
    }

    #[test]
    fn header_round_trips() {
        let h = sample_header();
        assert_eq!(Header::parse(&h.to_bytes()).unwrap(), h);
        assert_eq!(h.tile_grid(), (3, 2));
    }

    #[test]
    fn versions_and_flags() {
        // §3.1: version 2 defines flag bits 0 to 3; version 1 reserves every flag.
        let v2 = sample_header().to_bytes();
        assert_eq!((v2[4], v2[6], v2[7]), (2, 3, 0));
        let plain = Header {
            coding: PayloadCoding::PerElement,
            edge_filter: EdgeFilterKind::Off,
            ..sample_header()
        };
        assert_eq!(plain.to_bytes()[6], 0);
        let v1 = Header {
            version: 1,
            ..plain.clone()
        };
        assert_eq!(Header::parse(&v1.to_bytes()).unwrap(), v1);
        let mut flagged_v1 = v1.to_bytes();
        flagged_v1[6] = 1;
        let err = Header::parse(&flagged_v1).unwrap_err();
        assert_eq!(err.code(), "unsupported", "{err}");
        flagged_v1[6] = 2;
        assert_eq!(
            Header::parse(&flagged_v1).unwrap_err().code(),
            "unsupported"
        );
        for (byte, bit) in [(6, 16u8), (7, 0x80)] {
            let mut reserved = v2;
            reserved[byte] |= bit;
            let err = Header::parse(&reserved).unwrap_err();
            assert_eq!(err.code(), "unsupported", "{err}");
        }
        // Bit 2, the fitted edge filter, never with bit 1 (§5.3.1), and only with room
        // for its block in the payload.
        let mut both = v2;
        both[6] |= 4;
        assert_eq!(Header::parse(&both).unwrap_err().code(), "invalid-field");
        let fitted = Header {
            edge_filter: EdgeFilterKind::Fitted,
            payload_len: 16,
            ..sample_header()
        };
        assert_eq!(fitted.to_bytes()[6], 5);
        assert_eq!(Header::parse(&fitted.to_bytes()).unwrap(), fitted);
        let short = Header {
            payload_len: 12,
            ..fitted.clone()
        };
        let err = Header::parse(&short.to_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid-field", "{err}");
        // Bit 3, the restoration filter: 16 more bytes of blocks.
        let both = Header {
            restoration: true,
            payload_len: 32,
            ..fitted.clone()
        };
        assert_eq!(both.to_bytes()[6], 13);
        assert_eq!(Header::parse(&both.to_bytes()).unwrap(), both);
        let short = Header {
            payload_len: 28,
            ..both.clone()
        };
        let err = Header::parse(&short.to_bytes()).unwrap_err();
        assert_eq!(err.code(), "invalid-field", "{err}");
        for version in [0u8, 3, 255] {
            let mut other = v2;
            other[4] = version;
            assert_eq!(Header::parse(&other).unwrap_err().code(), "unsupported");
        }
    }

    #[test]
    fn every_prefix_of_a_file_is_rejected_without_panic() {
        let file = write_file(&sample_header(), &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        assert!(Container::parse(&file, &Limits::default()).is_ok());
        for n in 0..file.len() {
            let err = Container::parse(&file[..n], &Limits::default()).unwrap_err();
            assert_eq!(err.code(), "truncated", "prefix of {n} bytes: {err}");
        }
    }

    #[test]
    fn any_flipped_bit_is_detected() {
        let file = write_file(&sample_header(), &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
        for i in 0..file.len() * 8 {
            let mut damaged = file.clone();
            damaged[i / 8] ^= 1 << (i % 8);
            assert!(
                Container::parse(&damaged, &Limits::default()).is_err(),
                "bit {i} flip undetected"
            );
        }
    }
}
