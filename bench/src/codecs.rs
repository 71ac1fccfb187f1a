//! The codecs compared: ipc (through the library) and the classical ones, run as the
//! command-line tools of their Debian packages (scripts/install-codecs).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};

use super::store::Kind;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Ipc,
    Jpeg,
    Webp,
    Avif,
    Jxl,
    Jpeg2000,
    Hevc,
    Opus,
    Mp3,
    Flac,
}

impl Codec {
    pub const ALL: [Codec; 10] = [
        Codec::Ipc,
        Codec::Jpeg,
        Codec::Webp,
        Codec::Avif,
        Codec::Jxl,
        Codec::Jpeg2000,
        Codec::Hevc,
        Codec::Opus,
        Codec::Mp3,
        Codec::Flac,
    ];

    /// The name `--codecs` takes.
    pub fn id(self) -> &'static str {
        match self {
            Codec::Ipc => "ipc",
            Codec::Jpeg => "jpeg",
            Codec::Webp => "webp",
            Codec::Avif => "avif",
            Codec::Jxl => "jxl",
            Codec::Jpeg2000 => "jpeg2000",
            Codec::Hevc => "hevc",
            Codec::Opus => "opus",
            Codec::Mp3 => "mp3",
            Codec::Flac => "flac",
        }
    }

    pub fn from_id(s: &str) -> Option<Codec> {
        let s = s.trim().to_ascii_lowercase();
        let s = match s.as_str() {
            "j2k" | "jp2" | "jpeg-2000" => "jpeg2000",
            "jpegxl" | "jpeg-xl" => "jxl",
            "heic" | "heif" | "x265" => "hevc",
            "jpg" => "jpeg",
            other => other,
        };
        Codec::ALL.into_iter().find(|c| c.id() == s)
    }

    /// How tables and plots name it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Ipc => "ipc",
            Codec::Jpeg => "JPEG",
            Codec::Webp => "WebP",
            Codec::Avif => "AVIF",
            Codec::Jxl => "JPEG XL",
            Codec::Jpeg2000 => "JPEG 2000",
            Codec::Hevc => "HEVC (HEIF)",
            Codec::Opus => "Opus",
            Codec::Mp3 => "MP3",
            Codec::Flac => "FLAC",
        }
    }

    /// Image codecs (ipc codes both; it is listed under both kinds).
    pub fn codes(self, kind: Kind) -> bool {
        match self {
            Codec::Ipc => true,
            Codec::Opus | Codec::Mp3 | Codec::Flac => kind == Kind::Audio,
            _ => kind == Kind::Image,
        }
    }

    /// The tools it needs; each entry is satisfied by any one of its names.
    pub fn tools(self) -> &'static [&'static [&'static str]] {
        match self {
            Codec::Ipc => &[],
            Codec::Jpeg => &[&["cjpeg"], &["djpeg"]],
            Codec::Webp => &[&["cwebp"], &["dwebp"]],
            Codec::Avif => &[&["avifenc"], &["avifdec"]],
            Codec::Jxl => &[&["cjxl"], &["djxl"]],
            Codec::Jpeg2000 => &[&["opj_compress"], &["opj_decompress"]],
            Codec::Hevc => &[&["heif-enc"], &["heif-dec", "heif-convert"]],
            Codec::Opus => &[&["opusenc"], &["opusdec"]],
            Codec::Mp3 => &[&["lame"]],
            Codec::Flac => &[&["flac"]],
        }
    }

    /// The swept parameter values: a dense sweep, or three for --quick (low, middle
    /// and high quality).
    pub fn sweep(self, quick: bool) -> Vec<f64> {
        let steps = |from: u32, to: u32, by: u32| -> Vec<f64> {
            (from..=to).step_by(by as usize).map(f64::from).collect()
        };
        match (self, quick) {
            (Codec::Ipc, _) => Vec::new(), // the pack's levels
            (Codec::Jpeg, false) => [steps(5, 95, 5), vec![98.0]].concat(),
            (Codec::Jpeg | Codec::Webp, true) => vec![20.0, 50.0, 85.0],
            (Codec::Webp, false) => steps(0, 100, 5),
            // The AV1 quantizer: lower is better.
            (Codec::Avif, false) => steps(8, 60, 4),
            (Codec::Avif, true) => vec![48.0, 32.0, 20.0],
            // Butteraugli distance: lower is better.
            (Codec::Jxl, false) => {
                vec![15.0, 11.0, 8.0, 5.6, 4.0, 2.8, 2.0, 1.4, 1.0, 0.7, 0.5, 0.3]
            }
            (Codec::Jxl, true) => vec![6.0, 2.5, 1.0],
            // Target bits per pixel.
            (Codec::Jpeg2000, false) => vec![
                0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 2.5, 3.0,
            ],
            (Codec::Jpeg2000, true) => vec![0.25, 0.5, 1.0],
            (Codec::Hevc, false) => steps(5, 95, 5),
            (Codec::Hevc, true) => vec![20.0, 50.0, 80.0],
            // kbit/s.
            (Codec::Opus, false) => vec![6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0, 64.0],
            (Codec::Opus, true) => vec![8.0, 16.0, 32.0],
            (Codec::Mp3, false) => vec![8.0, 16.0, 24.0, 32.0, 40.0, 48.0, 56.0, 64.0, 80.0, 96.0],
            (Codec::Mp3, true) => vec![16.0, 32.0, 64.0],
            (Codec::Flac, _) => vec![8.0],
        }
    }

    /// The setting as points record it.
    pub fn setting(self, v: f64) -> String {
        match self {
            Codec::Ipc => unreachable!("ipc settings are levels"),
            Codec::Jpeg | Codec::Webp | Codec::Hevc => format!("q={v}"),
            Codec::Avif => format!("quantizer={v}"),
            Codec::Jxl => format!("distance={v}"),
            Codec::Jpeg2000 => format!("target_bpp={v}"),
            Codec::Opus | Codec::Mp3 => format!("kbps={v}"),
            Codec::Flac => format!("level={v}"),
        }
    }
}

/// The classical codecs' tools found on the PATH.
#[derive(Debug, Default, Clone)]
pub struct Tools {
    found: Vec<(&'static str, PathBuf)>,
}

impl Tools {
    /// Looks up every tool of `codecs`; returns the tools and, for each codec with a
    /// missing tool, why it is skipped.
    pub fn find(codecs: &[Codec]) -> (Tools, Vec<(Codec, String)>) {
        let mut tools = Tools::default();
        let mut missing = Vec::new();
        for &c in codecs {
            let mut lacks = Vec::new();
            for alternatives in c.tools() {
                match alternatives
                    .iter()
                    .find_map(|name| which(name).map(|p| (*name, p)))
                {
                    Some(found) => tools.found.push(found),
                    None => lacks.push(alternatives.join(" or ")),
                }
            }
            if !lacks.is_empty() {
                missing.push((
                    c,
                    format!(
                        "{} not installed (scripts/install-codecs installs it)",
                        lacks.join(", ")
                    ),
                ));
            }
        }
        (tools, missing)
    }

    fn path(&self, name: &str) -> Option<&Path> {
        self.found
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, p)| p.as_path())
    }

    fn command(&self, name: &str) -> Result<Command> {
        let path = self
            .path(name)
            .ok_or_else(|| anyhow!("{name} is not installed"))?;
        let mut c = Command::new(path);
        c.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        Ok(c)
    }
}

/// The executable `name` on the PATH, if any.
fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        p.is_file()
    }
}

/// Runs a tool to completion and returns its wall time in seconds; a non-zero exit
/// status is an error quoting the end of its standard error.
fn run(mut cmd: Command) -> Result<f64> {
    let program = Path::new(cmd.get_program())
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let start = Instant::now();
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {program}"))?;
    let seconds = start.elapsed().as_secs_f64();
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail[tail.len().saturating_sub(2)..].join(" / ");
        bail!("{program} failed ({}): {tail}", out.status);
    }
    Ok(seconds)
}

fn size(p: &Path) -> Result<u64> {
    Ok(std::fs::metadata(p)
        .with_context(|| format!("the encoder wrote no {}", p.display()))?
        .len())
}

/// An image ready for the tools: the same 8-bit RGB pixels as PPM and as PNG (cjpeg
/// and opj_compress read PPM; avifenc and heif-enc read PNG).
pub struct ImageInput<'a> {
    pub ppm: &'a Path,
    pub png: &'a Path,
    pub width: usize,
    pub height: usize,
}

/// What one classical-codec run gives.
pub struct Coded<T> {
    pub bytes: u64,
    pub decoded: T,
    pub encode_s: f64,
    pub decode_s: f64,
}

/// Encodes and decodes `input` with an image codec at parameter `v` in `dir` (a fresh
/// folder); returns the decoded 8-bit RGB pixels. `single_thread` keeps each tool on
/// one thread, so that parallel jobs do not oversubscribe the cores.
pub fn code_image(
    codec: Codec,
    v: f64,
    input: &ImageInput,
    dir: &Path,
    tools: &Tools,
    single_thread: bool,
) -> Result<Coded<Vec<u8>>> {
    let threads = if single_thread { "1" } else { "0" };
    let (coded, decoded, encode_s, decode_s) = match codec {
        Codec::Jpeg => {
            let coded = dir.join("out.jpg");
            let decoded = dir.join("out.ppm");
            let mut e = tools.command("cjpeg")?;
            e.arg("-quality")
                .arg(format!("{v}"))
                .arg("-optimize")
                .arg("-outfile")
                .arg(&coded)
                .arg(input.ppm);
            let mut d = tools.command("djpeg")?;
            d.arg("-pnm").arg("-outfile").arg(&decoded).arg(&coded);
            (coded, decoded, run(e)?, run(d)?)
        }
        Codec::Webp => {
            let coded = dir.join("out.webp");
            let decoded = dir.join("out.png");
            let mut e = tools.command("cwebp")?;
            e.arg("-quiet")
                .arg("-q")
                .arg(format!("{v}"))
                .arg(input.png)
                .arg("-o")
                .arg(&coded);
            let mut d = tools.command("dwebp")?;
            d.arg("-quiet").arg(&coded).arg("-o").arg(&decoded);
            (coded, decoded, run(e)?, run(d)?)
        }
        Codec::Avif => {
            let coded = dir.join("out.avif");
            let decoded = dir.join("out.png");
            let q = format!("{v}");
            // avifenc 0.11 has no -q: the quantizer is pinned with --min = --max.
            let mut e = tools.command("avifenc")?;
            e.args(["-y", "444", "-s", "6", "--min", &q, "--max", &q, "-j"])
                .arg(if single_thread { "1" } else { "all" })
                .arg(input.png)
                .arg(&coded);
            let mut d = tools.command("avifdec")?;
            d.arg("-j")
                .arg(if single_thread { "1" } else { "all" })
                .arg(&coded)
                .arg(&decoded);
            (coded, decoded, run(e)?, run(d)?)
        }
        Codec::Jxl => {
            let coded = dir.join("out.jxl");
            let decoded = dir.join("out.png");
            let mut e = tools.command("cjxl")?;
            e.arg(input.png)
                .arg(&coded)
                .arg("-d")
                .arg(format!("{v}"))
                .arg(format!("--num_threads={threads}"))
                .arg("--quiet");
            let mut d = tools.command("djxl")?;
            d.arg(&coded)
                .arg(&decoded)
                .arg(format!("--num_threads={threads}"));
            (coded, decoded, run(e)?, run(d)?)
        }
        Codec::Jpeg2000 => {
            let coded = dir.join("out.j2k");
            let decoded = dir.join("out.ppm");
            // -r is a compression ratio against the raw 24 bits per pixel.
            let ratio = 24.0 / v;
            let mut e = tools.command("opj_compress")?;
            e.arg("-i")
                .arg(input.ppm)
                .arg("-o")
                .arg(&coded)
                .arg("-r")
                .arg(format!("{ratio}"));
            let mut d = tools.command("opj_decompress")?;
            d.arg("-i").arg(&coded).arg("-o").arg(&decoded);
            (coded, decoded, run(e)?, run(d)?)
        }
        Codec::Hevc => {
            let coded = dir.join("out.heic");
            let decoded = dir.join("out.png");
            let mut e = tools.command("heif-enc")?;
            e.arg("-q").arg(format!("{v}")).args(["-p", "chroma=444"]);
            if single_thread {
                e.args(["-p", "x265:pools=1", "-p", "x265:frame-threads=1"]);
            }
            e.arg("-o").arg(&coded).arg(input.png);
            let dec = if tools.path("heif-dec").is_some() {
                "heif-dec"
            } else {
                "heif-convert"
            };
            let mut d = tools.command(dec)?;
            d.arg(&coded).arg(&decoded);
            (coded, decoded, run(e)?, run(d)?)
        }
        _ => bail!("{} is not an image codec", codec.name()),
    };
    let bytes = size(&coded)?;
    let pixels = read_decoded_image(&decoded, input.width, input.height)?;
    Ok(Coded {
        bytes,
        decoded: pixels,
        encode_s,
        decode_s,
    })
}

/// Reads a decoder's output (PNG or PPM/PGM) as 8-bit RGB of the expected size.
fn read_decoded_image(path: &Path, width: usize, height: usize) -> Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("the decoder wrote no {}", path.display()))?;
    let (w, h, rgb) = if bytes.starts_with(b"P5") || bytes.starts_with(b"P6") {
        read_pnm(&bytes).context("cannot read the decoder's PNM output")?
    } else {
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .context("cannot read the decoder's PNG output")?;
        let rgb = img.to_rgb8();
        (rgb.width() as usize, rgb.height() as usize, rgb.into_raw())
    };
    if (w, h) != (width, height) {
        bail!("the decoder gave {w}x{h} pixels for a {width}x{height} image");
    }
    Ok(rgb)
}

/// Parses binary PGM (P5) or PPM (P6) with a maximum value of at most 255 into 8-bit
/// RGB (grey replicated). Header fields are whitespace-separated and may be
/// interleaved with `#` comments.
pub fn read_pnm(bytes: &[u8]) -> Result<(usize, usize, Vec<u8>)> {
    let channels = match bytes.get(..2) {
        Some(b"P5") => 1,
        Some(b"P6") => 3,
        _ => bail!("not a binary PGM or PPM file"),
    };
    let mut pos = 2;
    let mut fields = [0usize; 3];
    for f in &mut fields {
        loop {
            match bytes.get(pos) {
                Some(b'#') => {
                    while bytes.get(pos).is_some_and(|&b| b != b'\n') {
                        pos += 1;
                    }
                }
                Some(b) if b.is_ascii_whitespace() => pos += 1,
                Some(_) => break,
                None => bail!("the header is truncated"),
            }
        }
        let start = pos;
        while bytes.get(pos).is_some_and(u8::is_ascii_digit) {
            pos += 1;
        }
        *f = std::str::from_utf8(&bytes[start..pos])
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("a header field is not a number"))?;
    }
    // Exactly one whitespace byte separates the header from the samples.
    if !bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        bail!("the header is malformed");
    }
    pos += 1;
    let [w, h, maxval] = fields;
    if maxval == 0 || maxval > 255 {
        bail!("maximum sample value {maxval} (8-bit files are read)");
    }
    let n = w
        .checked_mul(h)
        .and_then(|p| p.checked_mul(channels))
        .ok_or_else(|| anyhow!("{w}x{h} is too large"))?;
    let data = bytes
        .get(pos..)
        .filter(|d| d.len() >= n)
        .map(|d| &d[..n])
        .ok_or_else(|| anyhow!("the samples are truncated"))?;
    let scale = |v: u8| -> u8 {
        if maxval == 255 {
            v
        } else {
            ((u32::from(v.min(maxval as u8)) * 255 + maxval as u32 / 2) / maxval as u32) as u8
        }
    };
    let rgb = if channels == 3 {
        data.iter().map(|&v| scale(v)).collect()
    } else {
        data.iter().flat_map(|&v| [scale(v); 3]).collect()
    };
    Ok((w, h, rgb))
}

/// Writes 8-bit RGB as binary PPM.
pub fn write_ppm(path: &Path, rgb: &[u8], width: usize, height: usize) -> Result<()> {
    let mut bytes = format!("P6\n{width} {height}\n255\n").into_bytes();
    bytes.extend_from_slice(rgb);
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Audio ready for the tools: a 16-bit PCM WAV of the reference samples.
pub struct AudioInput<'a> {
    pub wav: &'a Path,
    pub sample_rate: u32,
    pub channels: u16,
    /// The reference samples in [-1, 1], interleaved.
    pub samples: &'a [f32],
}

/// The longest decoder delay searched for, in frames (MP3 decoders add 529 to 1105
/// samples at usual settings).
const MAX_DELAY: isize = 4096;
/// The most frames a decoder's output is searched for coming early.
const MAX_EARLY: isize = 64;

/// Encodes and decodes audio with an audio codec at parameter `v` in `dir`; returns the
/// decoded samples aligned to the reference.
pub fn code_audio(
    codec: Codec,
    v: f64,
    input: &AudioInput,
    dir: &Path,
    tools: &Tools,
) -> Result<Coded<Vec<f32>>> {
    let decoded = dir.join("decoded.wav");
    let (coded, encode_s, decode_s) = match codec {
        Codec::Opus => {
            let coded = dir.join("out.opus");
            let mut e = tools.command("opusenc")?;
            e.arg("--quiet")
                .arg("--bitrate")
                .arg(format!("{v}"))
                .arg(input.wav)
                .arg(&coded);
            // Opus runs at 48 kHz inside; opusdec resamples back to the input's rate
            // and trims the pre-skip, so the output lines up with the input.
            let mut d = tools.command("opusdec")?;
            d.arg("--quiet")
                .arg("--rate")
                .arg(input.sample_rate.to_string())
                .arg(&coded)
                .arg(&decoded);
            (coded, run(e)?, run(d)?)
        }
        Codec::Mp3 => {
            let coded = dir.join("out.mp3");
            let mut e = tools.command("lame")?;
            // Without --resample, lame lowers the sample rate at low bit rates.
            e.arg("--quiet")
                .arg("-b")
                .arg(format!("{v}"))
                .arg("--cbr")
                .arg("--resample")
                .arg(format!("{}", f64::from(input.sample_rate) / 1000.0))
                .arg(input.wav)
                .arg(&coded);
            let mut d = tools.command("lame")?;
            d.arg("--quiet").arg("--decode").arg(&coded).arg(&decoded);
            (coded, run(e)?, run(d)?)
        }
        Codec::Flac => {
            let coded = dir.join("out.flac");
            let mut e = tools.command("flac")?;
            e.arg("--silent")
                .arg(format!("-{v}"))
                .arg("-f")
                .arg("-o")
                .arg(&coded)
                .arg(input.wav);
            let mut d = tools.command("flac")?;
            d.arg("--silent")
                .arg("-d")
                .arg("-f")
                .arg("-o")
                .arg(&decoded)
                .arg(&coded);
            (coded, run(e)?, run(d)?)
        }
        _ => bail!("{} is not an audio codec", codec.name()),
    };
    let bytes = size(&coded)?;
    let mut samples = read_decoded_wav(&decoded, input.sample_rate, input.channels)?;
    if codec != Codec::Flac {
        // The MP3 decoder's output starts late (encoder delay plus the decoder's own
        // 528 + 1 samples); Opus's can start a sample early (its resampling back from
        // 48 kHz). Either is aligned to the reference before measuring.
        let ch = usize::from(input.channels);
        let lag = super::metrics::find_delay(input.samples, &samples, ch, -MAX_EARLY..=MAX_DELAY);
        super::metrics::align(&mut samples, ch, lag);
    }
    Ok(Coded {
        bytes,
        decoded: samples,
        encode_s,
        decode_s,
    })
}

fn read_decoded_wav(path: &Path, rate: u32, channels: u16) -> Result<Vec<f32>> {
    let context = || format!("cannot read the decoder's output {}", path.display());
    let file = std::fs::File::open(path).with_context(context)?;
    let reader = ipc_wav::WavReader::new(std::io::BufReader::new(file)).with_context(context)?;
    let format = reader.format();
    if format.sample_rate != rate || format.channels != channels {
        bail!(
            "the decoder gave {} Hz, {} channels for {rate} Hz, {channels} channels",
            format.sample_rate,
            format.channels
        );
    }
    Ok(reader.read_all(u64::MAX).with_context(context)?.samples)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pnm_headers_with_comments_and_grey() {
        let mut p6 = b"P6\n# made by a test\n2 1\n255\n".to_vec();
        p6.extend([1, 2, 3, 4, 5, 6]);
        assert_eq!(read_pnm(&p6).unwrap(), (2, 1, vec![1, 2, 3, 4, 5, 6]));
        let mut p5 = b"P5 1 2 15 ".to_vec();
        p5.extend([15, 0]);
        assert_eq!(read_pnm(&p5).unwrap(), (1, 2, vec![255, 255, 255, 0, 0, 0]));
    }

    #[test]
    fn malformed_pnm_is_an_error() {
        for bad in [
            &b""[..],
            b"P6",
            b"P6\n2 1\n255\n\x01",
            b"P6\n2 1\n65535\n",
            b"P6\n99999999999999999999 1\n255\n",
            b"P6\n18446744073709551615 18446744073709551615\n255\n",
            b"P3\n1 1\n255\n1 2 3",
            b"P6\nx 1\n255\n",
        ] {
            assert!(read_pnm(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn codec_names() {
        for c in Codec::ALL {
            assert_eq!(Codec::from_id(c.id()), Some(c));
        }
        assert_eq!(Codec::from_id("J2K"), Some(Codec::Jpeg2000));
        assert_eq!(Codec::from_id("png"), None);
        for c in Codec::ALL {
            if c != Codec::Ipc {
                assert!(!c.sweep(false).is_empty());
                assert!(c.sweep(true).len() <= 3);
            }
        }
    }
}
