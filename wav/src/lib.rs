//! RIFF WAVE audio as ipc-codec reads and writes it.
//!
//! One reader and one writer for the whole project: `ipc-codec encode` reads its WAV
//! input with [`WavReader`], `ipc-codec bench` reads the other codecs' decoded output
//! with it, the training engine reads its speech with it, and `ipc-codec decode` writes
//! 16-bit PCM with [`write_pcm16`]. The [`resample`] module converts sample rates
//! (a band-limited [`resample::Resampler`]); with it [`resample::read_resampled`] reads
//! a file and brings it to the rate a model pack codes, which is how `ipc-codec encode`
//! and `ipc-codec bench` read their WAV input.
//!
//! What is read (Microsoft "Multimedia Programming Interface and Data Specifications
//! 1.0", RIFF WAVE, and the `WAVE_FORMAT_EXTENSIBLE` amendment):
//! - `WAVE_FORMAT_PCM` (tag 1): integer samples of 1 to 32 bits, each stored
//!   left-justified in the fewest whole bytes (`(wBitsPerSample + 7) / 8`), unsigned
//!   with an offset of 128 when a container is one byte, two's complement otherwise.
//! - `WAVE_FORMAT_IEEE_FLOAT` (tag 3): 32- and 64-bit floats.
//! - `WAVE_FORMAT_EXTENSIBLE` (tag 0xFFFE) whose sub-format GUID is one of the two
//!   above; `wBitsPerSample` is then the container and `wValidBitsPerSample` the bits
//!   that carry signal.
//!
//! Every integer sample is scaled by its container, `x / 2^(8·bytes − 1)`, which maps
//! left-justified samples of any valid width onto `[-1, 1)`. Float samples must be
//! finite; those outside `[-1, 1]` are clipped to it and counted ([`Audio::clipped`]).
//!
//! **Streams.** A WAV written to a pipe cannot go back to fill in its sizes. ffmpeg
//! leaves them at 0xFFFFFFFF, other writers at 0, and SoX at 0x7FFFF000 (its
//! "unspecified length"). A `data` chunk whose size is one of these three is read to the
//! end of the input instead, within the caller's sample limit. Any other size is
//! trusted: data that ends before it is [`Error::Truncated`], and chunks after it are
//! not read.
//!
//! **Bounded memory.** The sample count of a `data` chunk of known size is checked
//! against the caller's limit before anything is allocated; a stream is checked as it
//! is read. Chunks before `data` are skipped without being held in memory, and a `fmt `
//! chunk larger than [`MAX_FMT_BYTES`] is refused.
//!
//! ```
//! let samples = [0i16, 16384, -16384, 32767];
//! let mut file = Vec::new();
//! ipc_wav::write_pcm16(&mut file, 2, 16_000, &samples)?;
//!
//! let reader = ipc_wav::WavReader::new(&file[..])?;
//! assert_eq!(reader.format().channels, 2);
//! assert_eq!(reader.format().describe(), "16-bit integer");
//! assert_eq!(reader.declared_frames(), Some(2));
//! let audio = reader.read_all(1_000_000)?;
//! assert_eq!(audio.samples, [0.0, 0.5, -0.5, 32767.0 / 32768.0]);
//! # Ok::<(), ipc_wav::Error>(())
//! ```

#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::fmt;
use std::io::{self, Read, Write};

pub mod resample;

/// The largest `fmt ` chunk read (an extensible one is 40 bytes; anything much larger
/// is not a format description).
pub const MAX_FMT_BYTES: u32 = 1024;

/// `data` chunk sizes that mean "unknown, read to the end": what ffmpeg (0xFFFFFFFF),
/// other pipe writers (0) and SoX (0x7FFFF000) leave when they cannot seek back.
const STREAMED_SIZES: [u32; 3] = [0, u32::MAX, 0x7FFF_F000];

/// Bytes read from the input at a time.
const READ_BLOCK: usize = 64 * 1024;

const TAG_PCM: u16 = 0x0001;
const TAG_IEEE_FLOAT: u16 = 0x0003;
const TAG_EXTENSIBLE: u16 = 0xFFFE;
/// Bytes 2..16 of `KSDATAFORMAT_SUBTYPE_PCM` and `..._IEEE_FLOAT`, as stored in a file
/// (the first two bytes are the format tag).
const SUBFORMAT_TAIL: [u8; 14] = [
    0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 0x80, 0x00, 0x00, 0xAA, 0x00, 0x38, 0x9B, 0x71,
];

/// How each sample is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleType {
    /// Integers (PCM): unsigned with an offset of 128 in one-byte containers, two's
    /// complement in wider ones.
    Integer,
    /// IEEE 754 floats, nominally in `[-1, 1]`.
    Float,
}

/// What the `fmt ` chunk says, as far as reading the samples needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Format {
    /// Interleaved channels, at least 1.
    pub channels: u16,
    /// Frames per second, at least 1.
    pub sample_rate: u32,
    /// Integer or float samples.
    pub sample_type: SampleType,
    /// Bytes each sample occupies: 1 to 4 for integers, 4 or 8 for floats.
    pub container_bytes: u16,
    /// Bits of each sample that carry signal, at most `8 * container_bytes`.
    pub valid_bits: u16,
}

impl Format {
    /// Bytes of one frame (one sample of every channel).
    pub fn frame_bytes(&self) -> u64 {
        u64::from(self.channels) * u64::from(self.container_bytes)
    }

    /// The sample format in words, e.g. "16-bit integer", "64-bit float" or "20-bit
    /// integer in 24-bit containers".
    pub fn describe(&self) -> String {
        let container = 8 * self.container_bytes;
        match self.sample_type {
            SampleType::Float => format!("{container}-bit float"),
            SampleType::Integer if self.valid_bits == container => {
                format!("{container}-bit integer")
            }
            SampleType::Integer => format!(
                "{}-bit integer in {container}-bit containers",
                self.valid_bits
            ),
        }
    }
}

/// Samples read from a WAV file.
#[derive(Debug, Clone, PartialEq)]
pub struct Audio {
    /// The file's format.
    pub format: Format,
    /// Whole frames, interleaved (channel 0, channel 1, ... of frame 0, then frame 1),
    /// each sample in `[-1, 1]`. A partial frame at the end of the data is dropped.
    pub samples: Vec<f32>,
    /// Float samples that were outside `[-1, 1]` and were clipped to it.
    pub clipped: u64,
}

impl Audio {
    /// Whole frames read.
    pub fn frames(&self) -> u64 {
        self.samples.len() as u64 / u64::from(self.format.channels)
    }
}

/// What can go wrong reading or writing a WAV file.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing failed.
    Io(io::Error),
    /// The input does not start with a RIFF WAVE header.
    NotWav,
    /// The file breaks the RIFF WAVE rules (the text says how).
    Malformed(String),
    /// A valid file that this reader does not decode (the text says what).
    Unsupported(String),
    /// The `data` chunk ends before the size it declares.
    Truncated {
        /// Whole frames the `data` chunk declares.
        declared_frames: u64,
        /// Whole frames it holds.
        frames: u64,
    },
    /// More samples than the caller's limit.
    TooManySamples {
        /// The limit.
        limit: u64,
        /// The samples a `data` chunk of known size declares; `None` for a stream,
        /// which is stopped as soon as it passes the limit.
        declared: Option<u64>,
    },
    /// A float sample is infinite or not a number.
    NotFinite {
        /// Its index among the interleaved samples.
        sample: u64,
    },
    /// [`write_pcm16`] was given arguments it cannot write (the text says why).
    InvalidArgument(String),
}

impl Error {
    /// Whether the file is valid but beyond what is read (an unsupported format or the
    /// caller's sample limit), as opposed to damaged or unreadable.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::Unsupported(_) | Error::TooManySamples { .. })
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(e) => write!(f, "{e}"),
            Error::NotWav => write!(f, "not a WAV file (no RIFF WAVE header)"),
            Error::Malformed(why) => write!(f, "malformed WAV file: {why}"),
            Error::Unsupported(what) => write!(f, "unsupported WAV file: {what}"),
            Error::Truncated {
                declared_frames,
                frames,
            } => write!(
                f,
                "the WAV data ends early: {frames} of the {declared_frames} frames it \
                 declares are there"
            ),
            Error::TooManySamples {
                limit,
                declared: Some(n),
            } => write!(f, "{n} samples, above the limit of {limit}"),
            Error::TooManySamples {
                limit,
                declared: None,
            } => write!(f, "more than {limit} samples, the limit"),
            Error::NotFinite { sample } => {
                write!(f, "float sample {sample} is infinite or not a number")
            }
            Error::InvalidArgument(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for Error {
    fn from(e: io::Error) -> Error {
        Error::Io(e)
    }
}

/// A WAV file whose header has been read, positioned at the start of its samples.
#[derive(Debug)]
pub struct WavReader<R> {
    inner: R,
    format: Format,
    /// Bytes of the `data` chunk; `None` when it is a stream read to the end.
    data_bytes: Option<u64>,
}

impl<R: Read> WavReader<R> {
    /// Reads the RIFF header and the chunks up to the start of `data`: the `fmt ` chunk
    /// is parsed, other chunks (`LIST`, `fact`, ...) are skipped.
    pub fn new(mut inner: R) -> Result<WavReader<R>, Error> {
        let mut riff = [0u8; 12];
        read_exact_or(&mut inner, &mut riff, || Error::NotWav)?;
        if &riff[..4] == b"RF64" || &riff[..4] == b"BW64" {
            return Err(Error::Unsupported(
                "RF64/BW64 (64-bit size) files are not read".into(),
            ));
        }
        if &riff[..4] != b"RIFF" || &riff[8..12] != b"WAVE" {
            return Err(Error::NotWav);
        }
        let mut format = None;
        loop {
            let mut header = [0u8; 8];
            read_exact_or(&mut inner, &mut header, || {
                Error::Malformed(if format.is_none() {
                    "no fmt chunk".into()
                } else {
                    "no data chunk".into()
                })
            })?;
            let id = [header[0], header[1], header[2], header[3]];
            let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
            match &id {
                b"fmt " => {
                    if format.is_some() {
                        return Err(Error::Malformed("two fmt chunks".into()));
                    }
                    if !(16..=MAX_FMT_BYTES).contains(&size) {
                        return Err(Error::Malformed(format!(
                            "a fmt chunk of {size} bytes (16 to {MAX_FMT_BYTES} are read)"
                        )));
                    }
                    let mut body = vec![0u8; size as usize + (size as usize & 1)];
                    read_exact_or(&mut inner, &mut body, || {
                        Error::Malformed("the file ends inside its fmt chunk".into())
                    })?;
                    format = Some(parse_fmt(&body[..size as usize])?);
                }
                b"data" => {
                    let format =
                        format.ok_or_else(|| Error::Malformed("data before fmt".into()))?;
                    let data_bytes = (!STREAMED_SIZES.contains(&size)).then_some(u64::from(size));
                    return Ok(WavReader {
                        inner,
                        format,
                        data_bytes,
                    });
                }
                _ => {
                    // RIFF chunks are padded to an even length (the pad byte is not
                    // counted in the size).
                    let skip = u64::from(size) + u64::from(size & 1);
                    let skipped = io::copy(&mut (&mut inner).take(skip), &mut io::sink())?;
                    if skipped < skip {
                        return Err(Error::Malformed(format!(
                            "the file ends inside its \"{}\" chunk",
                            String::from_utf8_lossy(&id)
                        )));
                    }
                }
            }
        }
    }

    /// The file's format.
    pub fn format(&self) -> &Format {
        &self.format
    }

    /// Whole frames the `data` chunk declares; `None` for a stream of unknown length.
    pub fn declared_frames(&self) -> Option<u64> {
        self.data_bytes.map(|b| b / self.format.frame_bytes())
    }

    /// Reads every sample, at most `max_samples` of them (counting every channel).
    /// A `data` chunk of known size is checked against the limit before anything is
    /// allocated; a stream is read to its end and stopped as soon as it passes it.
    pub fn read_all(self, max_samples: u64) -> Result<Audio, Error> {
        let WavReader {
            inner,
            format,
            data_bytes,
        } = self;
        let frame_bytes = format.frame_bytes() as usize;
        let channels = u64::from(format.channels);
        let declared_frames = data_bytes.map(|b| b / frame_bytes as u64);
        let mut samples = Vec::new();
        if let Some(frames) = declared_frames {
            let declared = frames * channels;
            if declared > max_samples {
                return Err(Error::TooManySamples {
                    limit: max_samples,
                    declared: Some(declared),
                });
            }
            samples.reserve_exact(declared as usize);
        }
        let mut input = inner.take(data_bytes.unwrap_or(u64::MAX));
        let mut block = vec![0u8; (READ_BLOCK / frame_bytes).max(1) * frame_bytes];
        let mut clipped = 0u64;
        loop {
            let filled = fill(&mut input, &mut block)?;
            let whole = filled / frame_bytes * frame_bytes;
            let new = (whole / usize::from(format.container_bytes)) as u64;
            if samples.len() as u64 + new > max_samples {
                return Err(Error::TooManySamples {
                    limit: max_samples,
                    declared: None,
                });
            }
            let first = samples.len() as u64;
            decode_samples(&format, &block[..whole], first, &mut samples, &mut clipped)?;
            if filled < block.len() {
                break;
            }
        }
        if let Some(declared_frames) = declared_frames {
            let frames = samples.len() as u64 / channels;
            if frames < declared_frames {
                return Err(Error::Truncated {
                    declared_frames,
                    frames,
                });
            }
        }
        Ok(Audio {
            format,
            samples,
            clipped,
        })
    }
}

/// Parses a `fmt ` chunk's body.
fn parse_fmt(body: &[u8]) -> Result<Format, Error> {
    let u16_at = |i: usize| u16::from_le_bytes([body[i], body[i + 1]]);
    let u32_at = |i: usize| u32::from_le_bytes([body[i], body[i + 1], body[i + 2], body[i + 3]]);
    let mut tag = u16_at(0);
    let channels = u16_at(2);
    let sample_rate = u32_at(4);
    let block_align = u16_at(12);
    let bits = u16_at(14);
    let mut valid_bits = bits;
    if tag == TAG_EXTENSIBLE {
        if body.len() < 40 {
            return Err(Error::Malformed(format!(
                "an extensible fmt chunk of {} bytes (40 expected)",
                body.len()
            )));
        }
        if bits % 8 != 0 {
            return Err(Error::Malformed(format!(
                "an extensible format with {bits}-bit containers (whole bytes expected)"
            )));
        }
        if u16_at(18) != 0 {
            valid_bits = u16_at(18);
        }
        if body[26..40] != SUBFORMAT_TAIL {
            return Err(Error::Unsupported(
                "an extensible format whose sub-format is not PCM or IEEE float".into(),
            ));
        }
        tag = u16_at(24);
    }
    if channels == 0 {
        return Err(Error::Malformed("0 channels".into()));
    }
    if sample_rate == 0 {
        return Err(Error::Malformed("a sample rate of 0 Hz".into()));
    }
    let (sample_type, container_bytes) = match tag {
        TAG_PCM => {
            if !(1..=32).contains(&bits) {
                return Err(Error::Unsupported(format!(
                    "{bits}-bit integer samples (1 to 32 bits are read)"
                )));
            }
            (SampleType::Integer, bits.div_ceil(8))
        }
        TAG_IEEE_FLOAT => {
            if bits != 32 && bits != 64 {
                return Err(Error::Unsupported(format!(
                    "{bits}-bit float samples (32 and 64 bits are read)"
                )));
            }
            (SampleType::Float, bits / 8)
        }
        other => {
            let name = match other {
                0x0002 => "Microsoft ADPCM",
                0x0006 => "A-law",
                0x0007 => "mu-law",
                0x0011 => "IMA ADPCM",
                0x0031 => "GSM 6.10",
                0x0055 => "MPEG layer 3",
                _ => "a compressed format",
            };
            return Err(Error::Unsupported(format!(
                "{name} (format tag {other:#06x}); PCM integer or IEEE float samples are read"
            )));
        }
    };
    if valid_bits == 0 || valid_bits > 8 * container_bytes {
        return Err(Error::Malformed(format!(
            "{valid_bits} valid bits in {}-bit containers",
            8 * container_bytes
        )));
    }
    if sample_type == SampleType::Float && valid_bits != 8 * container_bytes {
        return Err(Error::Unsupported(format!(
            "{valid_bits}-bit floats in {}-bit containers",
            8 * container_bytes
        )));
    }
    let format = Format {
        channels,
        sample_rate,
        sample_type,
        container_bytes,
        valid_bits,
    };
    if u64::from(block_align) != format.frame_bytes() {
        return Err(Error::Malformed(format!(
            "a block alignment of {block_align} bytes for {channels} channels of {}",
            format.describe()
        )));
    }
    Ok(format)
}

/// Appends the samples of whole frames in `bytes` to `out`; `first` is the index of the
/// first of them (for error messages).
fn decode_samples(
    format: &Format,
    bytes: &[u8],
    first: u64,
    out: &mut Vec<f32>,
    clipped: &mut u64,
) -> Result<(), Error> {
    let width = usize::from(format.container_bytes);
    let samples = bytes.chunks_exact(width);
    match (format.sample_type, width) {
        (SampleType::Integer, 1) => out.extend(samples.map(|b| (f32::from(b[0]) - 128.0) / 128.0)),
        (SampleType::Integer, 2) => {
            out.extend(samples.map(|b| f32::from(i16::from_le_bytes([b[0], b[1]])) / 32_768.0))
        }
        (SampleType::Integer, 3) => out.extend(samples.map(|b| {
            // Sign-extend by placing the three bytes at the top of an i32.
            let v = i32::from_le_bytes([0, b[0], b[1], b[2]]) >> 8;
            v as f32 / 8_388_608.0
        })),
        (SampleType::Integer, _) => out.extend(samples.map(|b| {
            let v = i32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            (f64::from(v) / 2_147_483_648.0) as f32
        })),
        (SampleType::Float, _) => {
            for (i, b) in samples.enumerate() {
                let v = if width == 4 {
                    f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                } else {
                    f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]])
                };
                if !v.is_finite() {
                    return Err(Error::NotFinite {
                        sample: first + i as u64,
                    });
                }
                *clipped += u64::from(!(-1.0..=1.0).contains(&v));
                out.push(v.clamp(-1.0, 1.0) as f32);
            }
        }
    }
    Ok(())
}

/// Reads until `buf` is full or the input ends; the number of bytes read.
fn fill(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match input.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// `read_exact`, with the end of the input reported as `at_end()`.
fn read_exact_or(
    input: &mut impl Read,
    buf: &mut [u8],
    at_end: impl FnOnce() -> Error,
) -> Result<(), Error> {
    if fill(input, buf)? < buf.len() {
        return Err(at_end());
    }
    Ok(())
}

/// Bytes of the RIFF header, the 16-byte `fmt ` chunk and the `data` chunk header.
const PCM16_HEADER_BYTES: u32 = 44;

/// Writes `samples` (interleaved frames of `channels` channels) as a 16-bit PCM WAV
/// file: a RIFF header, a 16-byte `fmt ` chunk (`WAVE_FORMAT_PCM`) and the `data`
/// chunk, sizes filled in, so `out` need not be seekable.
pub fn write_pcm16(
    mut out: impl Write,
    channels: u16,
    sample_rate: u32,
    samples: &[i16],
) -> Result<(), Error> {
    if channels == 0 || sample_rate == 0 {
        return Err(Error::InvalidArgument(format!(
            "cannot write {channels} channels at {sample_rate} Hz"
        )));
    }
    if samples.len() % usize::from(channels) != 0 {
        return Err(Error::InvalidArgument(format!(
            "{} samples are no whole number of {channels}-channel frames",
            samples.len()
        )));
    }
    // A RIFF file counts its bytes in 32 bits.
    let data_bytes = u32::try_from(samples.len() as u64 * 2)
        .ok()
        .filter(|&n| n <= u32::MAX - PCM16_HEADER_BYTES)
        .ok_or_else(|| {
            Error::InvalidArgument(format!(
                "{} samples do not fit in a WAV file (at most 4 GiB)",
                samples.len()
            ))
        })?;
    let block_align = channels * 2;
    let mut header = Vec::with_capacity(PCM16_HEADER_BYTES as usize);
    header.extend_from_slice(b"RIFF");
    header.extend_from_slice(&(PCM16_HEADER_BYTES - 8 + data_bytes).to_le_bytes());
    header.extend_from_slice(b"WAVEfmt ");
    header.extend_from_slice(&16u32.to_le_bytes());
    header.extend_from_slice(&TAG_PCM.to_le_bytes());
    header.extend_from_slice(&channels.to_le_bytes());
    header.extend_from_slice(&sample_rate.to_le_bytes());
    header.extend_from_slice(&(sample_rate.wrapping_mul(u32::from(block_align))).to_le_bytes());
    header.extend_from_slice(&block_align.to_le_bytes());
    header.extend_from_slice(&16u16.to_le_bytes());
    header.extend_from_slice(b"data");
    header.extend_from_slice(&data_bytes.to_le_bytes());
    out.write_all(&header)?;
    let mut block = Vec::with_capacity(READ_BLOCK);
    for chunk in samples.chunks(READ_BLOCK / 2) {
        block.clear();
        block.extend(chunk.iter().flat_map(|s| s.to_le_bytes()));
        out.write_all(&block)?;
    }
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests;
