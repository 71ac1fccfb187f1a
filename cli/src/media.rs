//! Reading the signals `encode` takes: PNG and JPEG images, WAV audio. The format is
//! found from the first bytes, never from the file name, and every size is checked
//! against the limits before the pixels or samples are read.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use anyhow::{Context, Result};
use image::{DynamicImage, ImageDecoder, ImageError, ImageFormat, ImageReader};
use ipc_codec::encoder::{AudioSignal, ImageSignal};
use ipc_codec::Modality;
use ipc_wav::resample::{read_resampled, ReadError};

use crate::failure::Failure;

/// The input formats `encode` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    Png,
    Jpeg,
    Wav,
}

impl InputFormat {
    /// The format whose signature `head` (the first bytes of a file) starts with.
    pub fn sniff(head: &[u8]) -> Option<InputFormat> {
        if head.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(InputFormat::Png)
        } else if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(InputFormat::Jpeg)
        } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WAVE" {
            Some(InputFormat::Wav)
        } else {
            None
        }
    }

    pub fn modality(self) -> Modality {
        match self {
            InputFormat::Png | InputFormat::Jpeg => Modality::Image,
            InputFormat::Wav => Modality::Audio,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Png => "PNG",
            InputFormat::Jpeg => "JPEG",
            InputFormat::Wav => "WAV",
        }
    }
}

trait ReadSeek: BufRead + Seek {}
impl<T: BufRead + Seek> ReadSeek for T {}

/// An input file, opened and identified, not yet read.
pub struct Input {
    /// How messages name it.
    pub name: String,
    pub format: InputFormat,
    reader: Box<dyn ReadSeek>,
}

impl Input {
    /// Opens `arg` (`-` is standard input, read into memory, at most `stdin_cap`
    /// bytes) and identifies its format.
    pub fn open(arg: &Path, stdin_cap: u64) -> Result<Input> {
        let (name, mut reader): (String, Box<dyn ReadSeek>) = if arg.as_os_str() == "-" {
            let name = "standard input".to_string();
            let mut bytes = Vec::new();
            io::stdin()
                .lock()
                .take(stdin_cap.saturating_add(1))
                .read_to_end(&mut bytes)
                .with_context(|| format!("cannot read {name}"))?;
            if bytes.len() as u64 > stdin_cap {
                return Err(Failure::unsupported(format!(
                    "{name} holds more than {stdin_cap} bytes, more than an input within \
                     --max-pixels and --max-samples can take"
                ))
                .into());
            }
            (name, Box::new(Cursor::new(bytes)))
        } else {
            let name = arg.display().to_string();
            let file = File::open(arg).with_context(|| format!("cannot open {name}"))?;
            (name, Box::new(BufReader::new(file)))
        };
        let mut head = Vec::with_capacity(16);
        (&mut reader)
            .take(16)
            .read_to_end(&mut head)
            .and_then(|_| reader.seek(SeekFrom::Start(0)))
            .with_context(|| format!("cannot read {name}"))?;
        let Some(format) = InputFormat::sniff(&head) else {
            let what = if head.is_empty() {
                "it is empty".to_string()
            } else {
                "expected PNG, JPEG or WAV".to_string()
            };
            return Err(
                Failure::unsupported(format!("{name}: unsupported input format ({what})")).into(),
            );
        };
        Ok(Input {
            name,
            format,
            reader,
        })
    }
}

/// Whether a JPEG stream (from its start-of-image marker) has an end-of-image marker
/// after the start of its first scan (ITU-T T.81 §B.2: SOI, table and application
/// segments, then SOS and entropy-coded data, ..., EOI). The segments before the first
/// scan are skipped by their lengths, so a thumbnail inside an application segment,
/// which has its own EOI, does not count; inside entropy-coded data a 0xFF byte is
/// always followed by 0x00 or a marker (§B.1.1.5), so 0xFF 0xD9 there is the EOI.
/// Bytes after the EOI (some cameras append data) are allowed.
fn jpeg_is_complete(reader: &mut impl Read) -> io::Result<bool> {
    let mut bytes = io::BufReader::new(reader).bytes();
    let mut next = || bytes.next().transpose();
    let (Some(0xFF), Some(0xD8)) = (next()?, next()?) else {
        return Ok(false);
    };
    // The marker segments up to the first SOS.
    loop {
        let mut marker = match next()? {
            Some(0xFF) => 0xFF,
            Some(_) | None => return Ok(false),
        };
        while marker == 0xFF {
            marker = match next()? {
                Some(m) => m,
                None => return Ok(false),
            };
        }
        match marker {
            // No image data before the end: left to the decoder to refuse.
            0xD9 => return Ok(true),
            // Markers without a length (TEM, RSTn).
            0x01 | 0xD0..=0xD7 => continue,
            _ => {}
        }
        let (Some(hi), Some(lo)) = (next()?, next()?) else {
            return Ok(false);
        };
        let length = usize::from(hi) << 8 | usize::from(lo);
        for _ in 0..length.saturating_sub(2) {
            if next()?.is_none() {
                return Ok(false);
            }
        }
        if marker == 0xDA {
            break;
        }
    }
    // Entropy-coded data and any later scans: look for the EOI.
    let mut after_ff = false;
    while let Some(b) = next()? {
        if after_ff && b == 0xD9 {
            return Ok(true);
        }
        after_ff = b == 0xFF;
    }
    Ok(false)
}

/// Memory the system can still give this process (Linux: `MemAvailable` of
/// /proc/meminfo), if known.
fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib.saturating_mul(1024))
}

/// Whether a PNG stream (from its signature) reaches its IEND chunk, walking the chunks
/// by their lengths (PNG specification §5.3: length, type, data, CRC; §5.6: IEND
/// last). The CRCs are left to the decoder.
fn png_is_complete(reader: &mut impl Read) -> io::Result<bool> {
    let mut reader = io::BufReader::new(reader);
    let mut signature = [0u8; 8];
    if reader.read_exact(&mut signature).is_err() {
        return Ok(false);
    }
    loop {
        let mut head = [0u8; 8];
        if reader.read_exact(&mut head).is_err() {
            return Ok(false);
        }
        let length = u64::from(u32::from_be_bytes([head[0], head[1], head[2], head[3]]));
        // The data and the CRC.
        let skipped = io::copy(&mut (&mut reader).take(length + 4), &mut io::sink())?;
        if skipped < length + 4 {
            return Ok(false);
        }
        if &head[4..8] == b"IEND" {
            return Ok(true);
        }
    }
}

/// An image as read, ready for the encoder.
pub struct ReadImage {
    pub signal: ImageSignal,
    /// Whether the file had an alpha channel, dropped because it was opaque or
    /// because of `--ignore-alpha`.
    pub dropped_alpha: bool,
}

/// Reads a PNG or JPEG image: grey or RGB, with or without alpha, 8 or 16 bits.
pub fn read_image(input: Input, max_pixels: u64, ignore_alpha: bool) -> Result<ReadImage> {
    let name = input.name;
    let format = match input.format {
        InputFormat::Png => ImageFormat::Png,
        InputFormat::Jpeg => ImageFormat::Jpeg,
        InputFormat::Wav => unreachable!("read_image is called for images"),
    };
    let cannot = |e: ImageError| image_failure(&name, e);
    let mut source = input.reader;
    // The decoders accept some cut files: the JPEG decoder fills what is missing with
    // grey, the PNG decoder does not need the end chunk. A truncated input must not
    // become a "good" encode, so the file's structure is walked to its end first.
    let (complete, missing) = match format {
        ImageFormat::Jpeg => (jpeg_is_complete(&mut source), "end-of-image marker"),
        _ => (png_is_complete(&mut source), "IEND chunk"),
    };
    let complete = complete
        .and_then(|c| source.seek(SeekFrom::Start(0)).map(|_| c))
        .with_context(|| format!("cannot read {name}"))?;
    if !complete {
        return Err(Failure::invalid(format!(
            "cannot read {name}: the data ends early (no {missing}): the file is truncated \
             or damaged"
        ))
        .into());
    }
    let mut reader = ImageReader::with_format(source, format);
    let mut limits = image::Limits::default();
    // The largest buffer is 16-bit RGBA (8 bytes per pixel); the margin covers
    // the decoders' working memory.
    limits.max_alloc = Some(max_pixels.saturating_mul(8).saturating_add(64 << 20));
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(cannot)?;
    let (width, height) = decoder.dimensions();
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Failure::unsupported(format!(
            "{name} is {width} x {height} = {pixels} pixels, above the limit of {max_pixels} \
             (raise it with --max-pixels)"
        ))
        .into());
    }
    if pixels == 0 {
        return Err(Failure::invalid(format!("{name} is {width} x {height}: no pixels")).into());
    }
    // With a raised --max-pixels, an image (or a decompression bomb) can need more
    // memory than there is, and a failed allocation aborts the process: refuse it
    // first. The decoded pixels, then 3 floats per pixel for the encoder.
    let needed = decoder
        .total_bytes()
        .saturating_add(pixels.saturating_mul(12));
    if let Some(available) = available_memory() {
        if needed > available {
            return Err(Failure::unsupported(format!(
                "{name} is {width} x {height}: encoding it needs at least {needed} bytes of \
                 memory, more than the {available} available"
            ))
            .into());
        }
    }
    // A camera's JPEG may be stored sideways with an EXIF note to turn it.
    let orientation = decoder.orientation().ok();
    let mut image = DynamicImage::from_decoder(decoder).map_err(cannot)?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    let (width, height) = (image.width(), image.height());
    let (converted, bit_depth) = match &image {
        DynamicImage::ImageLuma8(b) => (convert(b.as_raw(), 1, false), 8),
        DynamicImage::ImageLumaA8(b) => (convert(b.as_raw(), 1, true), 8),
        DynamicImage::ImageRgb8(b) => (convert(b.as_raw(), 3, false), 8),
        DynamicImage::ImageRgba8(b) => (convert(b.as_raw(), 3, true), 8),
        DynamicImage::ImageLuma16(b) => (convert(b.as_raw(), 1, false), 16),
        DynamicImage::ImageLumaA16(b) => (convert(b.as_raw(), 1, true), 16),
        DynamicImage::ImageRgb16(b) => (convert(b.as_raw(), 3, false), 16),
        DynamicImage::ImageRgba16(b) => (convert(b.as_raw(), 3, true), 16),
        other => {
            return Err(Failure::unsupported(format!(
            "{name} has {:?} pixels; grey or RGB, with or without alpha, 8 or 16 bits can be coded",
            other.color()
        ))
            .into())
        }
    };
    drop(image);
    let Converted {
        samples,
        channels,
        alpha,
        transparent,
    } = converted;
    if transparent > 0 && !ignore_alpha {
        return Err(Failure::unsupported(format!(
            "{name} has transparent pixels ({transparent} of {pixels}), and .ipc files hold no \
             alpha; flatten the image first, or pass --ignore-alpha to drop the alpha channel"
        ))
        .into());
    }
    Ok(ReadImage {
        signal: ImageSignal {
            width,
            height,
            channels,
            bit_depth,
            samples,
        },
        dropped_alpha: alpha,
    })
}

struct Converted {
    samples: Vec<f32>,
    channels: u8,
    alpha: bool,
    /// Pixels whose alpha is below the maximum.
    transparent: u64,
}

/// Scales samples to `[0, 1]`, leaving out the alpha channel (the last one) if there
/// is one and counting the pixels it does not mark opaque.
fn convert<T: Copy + Into<f32> + PartialEq + Bounded>(
    raw: &[T],
    colours: u8,
    alpha: bool,
) -> Converted {
    let stride = usize::from(colours) + usize::from(alpha);
    let scale = 1.0 / T::MAX.into();
    let mut samples = Vec::with_capacity(raw.len() / stride * usize::from(colours));
    let mut transparent = 0;
    for px in raw.chunks_exact(stride) {
        samples.extend(px[..usize::from(colours)].iter().map(|&v| v.into() * scale));
        if alpha && px[stride - 1] != T::MAX {
            transparent += 1;
        }
    }
    Converted {
        samples,
        channels: colours,
        alpha,
        transparent,
    }
}

trait Bounded {
    const MAX: Self;
}
impl Bounded for u8 {
    const MAX: u8 = u8::MAX;
}
impl Bounded for u16 {
    const MAX: u16 = u16::MAX;
}

fn image_failure(name: &str, e: ImageError) -> anyhow::Error {
    let message = format!("cannot read {name}: {e}");
    match e {
        ImageError::Limits(_) => {
            Failure::unsupported(format!("{message} (raise the limit with --max-pixels)"))
        }
        ImageError::Unsupported(_) => Failure::unsupported(message),
        ImageError::IoError(_) => Failure::invalid(message),
        _ => Failure::invalid(message),
    }
    .into()
}

/// Audio as read, at the rate the pack codes.
pub struct ReadAudio {
    pub signal: AudioSignal,
    /// The file's sample rate, if it differed from the pack's and was converted.
    pub resampled_from: Option<u32>,
    /// The file's sample format, e.g. "16-bit integer".
    pub sample_format: String,
    /// Float samples outside [-1, 1], clipped to it.
    pub clipped: u64,
}

/// Reads a WAV file (integer samples of 1 to 32 bits, 32- or 64-bit float samples,
/// plain or extensible headers, 1 to 255 channels; a stream written to a pipe, whose
/// sizes are unknown, is read to its end) and resamples it to `rate` if that is given
/// and differs. The sample count is checked against `max_samples` before anything is
/// allocated when the file declares it, and as it is read when it does not.
pub fn read_wav(input: Input, max_samples: u64, rate: Option<u32>) -> Result<ReadAudio> {
    let name = input.name;
    let too_many = |n: Option<u64>, what: &str| -> anyhow::Error {
        let count = match n {
            Some(n) => format!("has {n} samples{what}, above"),
            None => format!("has more samples{what} than"),
        };
        Failure::unsupported(format!(
            "{name} {count} the limit of {max_samples} (raise it with --max-samples)"
        ))
        .into()
    };
    let read = read_resampled(input.reader, max_samples, u16::from(u8::MAX), rate).map_err(
        |e| -> anyhow::Error {
            match e {
                ReadError::Wav(ipc_wav::Error::TooManySamples { declared, .. }) => {
                    too_many(declared, "")
                }
                ReadError::Wav(e) if e.is_unsupported() => {
                    Failure::unsupported(format!("{name}: {e}")).into()
                }
                ReadError::Wav(e) => Failure::invalid(format!("cannot read {name}: {e}")).into(),
                ReadError::TooManyChannels { channels, .. } => Failure::unsupported(format!(
                    "{name} has {channels} channels; 1 to 255 can be coded"
                ))
                .into(),
                ReadError::NoAudio => {
                    Failure::invalid(format!("{name} holds no audio (0 frames)")).into()
                }
                ReadError::TooManyAfterResampling { samples, .. } => {
                    too_many(Some(samples), " after resampling")
                }
            }
        },
    )?;
    let resampled_from = read.resampled_from();
    Ok(ReadAudio {
        signal: AudioSignal {
            sample_rate: read.sample_rate,
            channels: u8::try_from(read.format.channels).expect("at most 255 channels are read"),
            samples: read.samples,
        },
        resampled_from,
        sample_format: read.format.describe(),
        clipped: read.clipped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg(width: u32, height: u32) -> Vec<u8> {
        let pixels: Vec<u8> = (0..width * height * 3)
            .map(|i| (i * 7 % 251) as u8)
            .collect();
        let mut out = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90)
            .encode(&pixels, width, height, image::ExtendedColorType::Rgb8)
            .unwrap();
        out
    }

    #[test]
    fn png_completeness() {
        let mut full = Vec::new();
        DynamicImage::ImageRgb8(image::RgbImage::new(20, 10))
            .write_to(&mut Cursor::new(&mut full), ImageFormat::Png)
            .unwrap();
        let complete = |b: &[u8]| png_is_complete(&mut Cursor::new(b.to_vec())).unwrap();
        assert!(complete(&full));
        for cut in [4, 8, 30, full.len() / 2, full.len() - 4, full.len() - 1] {
            assert!(!complete(&full[..cut]), "cut at {cut} of {}", full.len());
        }
    }

    #[test]
    fn jpeg_completeness() {
        let full = jpeg(48, 32);
        let complete = |b: &[u8]| jpeg_is_complete(&mut Cursor::new(b.to_vec())).unwrap();
        assert!(complete(&full));
        // Cut anywhere: in the headers, in the scan, just before the EOI.
        for cut in [2, 20, full.len() / 2, full.len() - 2, full.len() - 1] {
            assert!(!complete(&full[..cut]), "cut at {cut} of {}", full.len());
        }
        // Bytes after the EOI are allowed.
        let mut trailing = full.clone();
        trailing.extend_from_slice(b"camera data");
        assert!(complete(&trailing));
        // A whole JPEG (with its own EOI) inside an APP1 segment, then a cut main image.
        let thumb = jpeg(8, 8);
        let mut with_thumb = vec![0xFF, 0xD8, 0xFF, 0xE1];
        with_thumb.extend_from_slice(&((thumb.len() + 2) as u16).to_be_bytes());
        with_thumb.extend_from_slice(&thumb);
        with_thumb.extend_from_slice(&full[2..]);
        assert!(complete(&with_thumb));
        assert!(!complete(&with_thumb[..with_thumb.len() - 2]));
        assert!(!complete(b"not a jpeg"));
    }

    #[test]
    fn formats_are_told_by_their_signatures() {
        assert_eq!(
            InputFormat::sniff(b"\x89PNG\r\n\x1a\n...."),
            Some(InputFormat::Png)
        );
        assert_eq!(
            InputFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(InputFormat::Jpeg)
        );
        assert_eq!(
            InputFormat::sniff(b"RIFF\x24\0\0\0WAVEfmt "),
            Some(InputFormat::Wav)
        );
        assert_eq!(InputFormat::sniff(b"RIFF\x24\0\0\0AVI LIST"), None);
        assert_eq!(InputFormat::sniff(b"GIF89a"), None);
        assert_eq!(InputFormat::sniff(b""), None);
    }

    #[test]
    fn alpha_is_left_out_and_transparency_counted() {
        let c = convert::<u8>(&[255, 0, 0, 255, 0, 255, 0, 128], 3, true);
        assert_eq!(c.samples, [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]);
        assert_eq!((c.channels, c.alpha, c.transparent), (3, true, 1));
        let c = convert::<u16>(&[65535, 65535, 0, 65535], 1, true);
        assert_eq!(c.samples, [1.0, 0.0]);
        assert_eq!(c.transparent, 0);
    }
}
