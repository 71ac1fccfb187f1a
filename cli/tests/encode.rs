//! End-to-end tests of `ipc-codec encode`: small PNG, JPEG and WAV inputs are written
//! to a fresh temporary directory and encoded by the binary, mostly with synthetic
//! packs that carry encoder tensors (seeded, not trained), so that the tests do not
//! depend on the shipped weights and stay fast in debug builds.

use std::ffi::OsString;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{DynamicImage, ImageBuffer, ImageFormat, Luma, LumaA, Rgb, Rgba};
use ipc_codec::edge_filter::EdgeFilterKind;
use ipc_codec::pack::synthetic::SyntheticPack;
use ipc_codec::{Decoded, Decoder, Geometry, Header, ModelPack};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ipc-codec");

macro_rules! args {
    ($($a:expr),* $(,)?) => { [$(OsString::from($a)),*] };
}

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ipc-codec-encode-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A working directory with synthetic image and audio packs that can encode.
struct Fixture {
    dir: TempDir,
    image_pack: ModelPack,
    audio_pack: ModelPack,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new();
        let write = |name: &str, shape: SyntheticPack| {
            let bytes = shape.build_with_encoders().to_pack_file().unwrap();
            fs::write(dir.join(name), &bytes).unwrap();
            ModelPack::from_pack_file(&bytes).unwrap()
        };
        let image_pack = write("image.ipcpack", SyntheticPack::small_image());
        let audio_pack = write("audio.ipcpack", SyntheticPack::small_audio());
        Fixture {
            dir,
            image_pack,
            audio_pack,
        }
    }

    fn image_pack_path(&self) -> PathBuf {
        self.dir.join("image.ipcpack")
    }

    fn audio_pack_path(&self) -> PathBuf {
        self.dir.join("audio.ipcpack")
    }

    fn write_image(&self, name: &str, image: &DynamicImage, format: ImageFormat) -> PathBuf {
        let path = self.dir.join(name);
        image.save_with_format(&path, format).unwrap();
        path
    }

    /// Writes a WAV of `frames` frames whose channel `c` is a tone at `220 * (c + 1)` Hz.
    fn write_wav(&self, name: &str, spec: hound::WavSpec, frames: usize) -> PathBuf {
        let path = self.dir.join(name);
        let mut w = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..frames {
            for c in 0..spec.channels {
                let t = i as f64 / f64::from(spec.sample_rate);
                let x = 0.5 * (2.0 * std::f64::consts::PI * 220.0 * f64::from(c + 1) * t).sin();
                match spec.sample_format {
                    hound::SampleFormat::Float => w.write_sample(x as f32).unwrap(),
                    hound::SampleFormat::Int => {
                        let full = f64::from(1u32 << (spec.bits_per_sample - 1)) - 1.0;
                        w.write_sample((x * full).round() as i32).unwrap()
                    }
                }
            }
        }
        w.finalize().unwrap();
        path
    }

    /// Runs `encode IN -o OUT --model PACK --quiet EXTRA...` and expects success.
    fn encode(&self, input: &Path, output: &Path, pack: &Path, extra: &[&str]) -> Output {
        let mut a = vec!["--quiet"];
        a.extend_from_slice(extra);
        let out = self.try_encode(input, output, pack, &a);
        assert_success(&out);
        out
    }

    /// Runs `encode IN -o OUT --model PACK EXTRA...`, whatever its outcome.
    fn try_encode(&self, input: &Path, output: &Path, pack: &Path, extra: &[&str]) -> Output {
        let mut a = args!["encode", input, "-o", output, "--model", pack].to_vec();
        a.extend(extra.iter().map(OsString::from));
        run(&a, None)
    }
}

fn rgb(width: u32, height: u32) -> ImageBuffer<Rgb<u8>, Vec<u8>> {
    ImageBuffer::from_fn(width, height, |x, y| {
        Rgb([(x * 6) as u8, (y * 10) as u8, ((x + y) * 3) as u8])
    })
}

fn rgba(width: u32, height: u32, alpha: impl Fn(u32, u32) -> u8) -> DynamicImage {
    DynamicImage::ImageRgba8(ImageBuffer::from_fn(width, height, |x, y| {
        let Rgb([r, g, b]) = *rgb(width, height).get_pixel(x, y);
        Rgba([r, g, b, alpha(x, y)])
    }))
}

fn wav_spec(sample_rate: u32, channels: u16, bits: u16, float: bool) -> hound::WavSpec {
    hound::WavSpec {
        channels,
        sample_rate,
        bits_per_sample: bits,
        sample_format: if float {
            hound::SampleFormat::Float
        } else {
            hound::SampleFormat::Int
        },
    }
}

fn run(args: &[OsString], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ipc-codec binary runs");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.unwrap_or_default().to_vec();
    let writer = std::thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[track_caller]
fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}, stderr: {}",
        out.status,
        text(&out.stderr)
    );
}

/// Asserts the exit status and a one-line `ipc-codec: ...` error; returns the line.
#[track_caller]
fn assert_fails(out: &Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr is not one line: {stderr:?}");
    assert!(lines[0].starts_with("ipc-codec: "), "stderr: {stderr:?}");
    assert!(out.stdout.is_empty(), "stdout: {:?}", text(&out.stdout));
    lines[0].to_string()
}

fn header(path: &Path) -> Header {
    Header::parse(&fs::read(path).unwrap()).unwrap()
}

#[test]
fn encodes_an_rgb8_png_that_decodes_to_the_same_size() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    fx.encode(&input, &output, &fx.image_pack_path(), &[]);
    let h = header(&output);
    assert_eq!(
        h.geometry,
        Geometry::Image {
            width: 40,
            height: 24,
            channels: 3,
            bit_depth: 8
        }
    );
    assert_eq!(h.pack_id, fx.image_pack.id());
    // The default is the middle level of the pack's 3.
    assert_eq!(h.quality_level, 1);
    let Decoded::Image(img) = Decoder::new(&fx.image_pack)
        .decode(&fs::read(&output).unwrap())
        .unwrap()
    else {
        panic!("image expected")
    };
    assert_eq!((img.width, img.height), (40, 24));
    assert_eq!(
        fx.dir.entries(),
        ["audio.ipcpack", "image.ipcpack", "in.png", "out.ipc"]
    );
}

#[test]
fn files_are_version_2_unless_version_1_is_asked_for() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let (v2, v1) = (fx.dir.join("v2.ipc"), fx.dir.join("v1.ipc"));
    fx.encode(&input, &v2, &fx.image_pack_path(), &[]);
    fx.encode(
        &input,
        &v1,
        &fx.image_pack_path(),
        &["--format-version", "1"],
    );
    let (h2, h1) = (header(&v2), header(&v1));
    // Version 2 lets the encoder choose an edge filter for the image; version 1 has none.
    assert_eq!(h2.version, 2);
    assert_eq!((h1.version, h1.edge_filter), (1, EdgeFilterKind::Off));
    // Both decode.
    for path in [&v1, &v2] {
        Decoder::new(&fx.image_pack)
            .decode(&fs::read(path).unwrap())
            .unwrap();
    }
    let out = fx.try_encode(
        &input,
        &fx.dir.join("v3.ipc"),
        &fx.image_pack_path(),
        &["--format-version", "3"],
    );
    let message = assert_fails(&out, 2);
    assert!(message.contains("format-version"), "{message}");
}

#[test]
fn grey_and_16_bit_pngs_keep_channels_and_depth() {
    let fx = Fixture::new();
    let cases: [(&str, DynamicImage, u8, u8); 4] = [
        (
            "grey8.png",
            DynamicImage::ImageLuma8(ImageBuffer::from_fn(40, 24, |x, y| {
                Luma([(x * 5 + y) as u8])
            })),
            1,
            8,
        ),
        (
            "grey16.png",
            DynamicImage::ImageLuma16(ImageBuffer::from_fn(40, 24, |x, y| {
                Luma([(x * 1500 + y * 7) as u16])
            })),
            1,
            16,
        ),
        (
            "rgb16.png",
            DynamicImage::ImageRgb16(ImageBuffer::from_fn(40, 24, |x, y| {
                Rgb([(x * 1500) as u16, (y * 2500) as u16, 40000])
            })),
            3,
            16,
        ),
        (
            "greya8.png",
            DynamicImage::ImageLumaA8(ImageBuffer::from_fn(40, 24, |x, _| {
                LumaA([(x * 5) as u8, 255])
            })),
            1,
            8,
        ),
    ];
    for (name, image, channels, bit_depth) in cases {
        let input = fx.write_image(name, &image, ImageFormat::Png);
        let output = fx.dir.join("out.ipc");
        fx.encode(&input, &output, &fx.image_pack_path(), &[]);
        assert_eq!(
            header(&output).geometry,
            Geometry::Image {
                width: 40,
                height: 24,
                channels,
                bit_depth
            },
            "{name}"
        );
    }
}

#[test]
fn opaque_alpha_is_dropped_and_transparency_needs_ignore_alpha() {
    let fx = Fixture::new();
    let output = fx.dir.join("out.ipc");
    let opaque = fx.write_image("opaque.png", &rgba(40, 24, |_, _| 255), ImageFormat::Png);
    let out = fx.encode(&opaque, &output, &fx.image_pack_path(), &["--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["alpha_dropped"], true);
    assert_eq!(v["channels"], 3);

    let holes = fx.write_image(
        "holes.png",
        &rgba(40, 24, |x, y| if x < 3 && y < 2 { 0 } else { 255 }),
        ImageFormat::Png,
    );
    fs::remove_file(&output).unwrap();
    let out = run(
        &args![
            "encode",
            &holes,
            "-o",
            &output,
            "--model",
            fx.image_pack_path()
        ],
        None,
    );
    let line = assert_fails(&out, 4);
    assert!(line.contains("transparent pixels (6 of 960)"), "{line}");
    assert!(line.contains("--ignore-alpha"), "{line}");
    assert!(!output.exists());
    fx.encode(&holes, &output, &fx.image_pack_path(), &["--ignore-alpha"]);
    assert!(matches!(
        header(&output).geometry,
        Geometry::Image { channels: 3, .. }
    ));
}

#[test]
fn jpeg_input_is_read_by_content_whatever_its_name() {
    let fx = Fixture::new();
    let image = DynamicImage::ImageRgb8(rgb(40, 24));
    let mut jpeg = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut jpeg), ImageFormat::Jpeg)
        .unwrap();
    // A misleading extension: the content decides.
    let input = fx.dir.join("photo.png");
    fs::write(&input, &jpeg).unwrap();
    let output = fx.dir.join("out.ipc");
    fx.encode(&input, &output, &fx.image_pack_path(), &[]);
    assert_eq!(
        header(&output).geometry,
        Geometry::Image {
            width: 40,
            height: 24,
            channels: 3,
            bit_depth: 8
        }
    );
    let grey = DynamicImage::ImageLuma8(ImageBuffer::from_fn(40, 24, |x, _| Luma([x as u8 * 6])));
    let input = fx.write_image("grey.jpg", &grey, ImageFormat::Jpeg);
    fx.encode(&input, &output, &fx.image_pack_path(), &[]);
    assert!(matches!(
        header(&output).geometry,
        Geometry::Image { channels: 1, .. }
    ));
}

#[test]
fn wav_inputs_of_every_sample_format() {
    let fx = Fixture::new();
    // 0.2 s at 16 kHz.
    for (name, channels, bits, float) in [
        ("mono16.wav", 1u16, 16u16, false),
        ("stereo24.wav", 2, 24, false),
        ("float.wav", 1, 32, true),
        ("u8.wav", 3, 8, false),
        ("int32.wav", 1, 32, false),
    ] {
        let input = fx.write_wav(name, wav_spec(16_000, channels, bits, float), 3200);
        let output = fx.dir.join("out.ipc");
        fx.encode(&input, &output, &fx.audio_pack_path(), &[]);
        let h = header(&output);
        assert_eq!(
            h.geometry,
            Geometry::Audio {
                sample_rate: 16_000,
                frames: 3200,
                channels: channels as u8,
                bit_depth: 16
            },
            "{name}"
        );
        assert_eq!(h.pack_id, fx.audio_pack.id());
        let Decoded::Audio(pcm) = Decoder::new(&fx.audio_pack)
            .decode(&fs::read(&output).unwrap())
            .unwrap()
        else {
            panic!("audio expected")
        };
        assert_eq!(pcm.samples.len(), 3200 * usize::from(channels));
    }
}

#[test]
fn a_wav_at_another_rate_is_resampled_and_says_so() {
    let fx = Fixture::new();
    let input = fx.write_wav("cd.wav", wav_spec(44_100, 1, 16, false), 8820);
    let output = fx.dir.join("out.ipc");
    let out = run(
        &args!["encode", &input, "-o", &output, "-m", fx.audio_pack_path()],
        None,
    );
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("resampled from 44100 Hz to 16000 Hz"),
        "{stderr}"
    );
    assert_eq!(
        header(&output).geometry,
        Geometry::Audio {
            sample_rate: 16_000,
            frames: 3200,
            channels: 1,
            bit_depth: 16
        }
    );
    let out = fx.encode(&input, &output, &fx.audio_pack_path(), &["--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["resampled"], true);
    assert_eq!(v["input_sample_rate"], 44_100);
    assert_eq!(v["sample_rate"], 16_000);
    assert_eq!(v["frames"], 3200);
}

#[test]
fn reads_stdin_and_writes_stdout() {
    let fx = Fixture::new();
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(rgb(40, 24))
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    let out = run(
        &args![
            "encode",
            "-",
            "-o",
            "-",
            "--model",
            fx.image_pack_path(),
            "--json"
        ],
        Some(&png),
    );
    assert_success(&out);
    let h = Header::parse(&out.stdout).unwrap();
    assert_eq!(h.file_len(), out.stdout.len() as u64);
    // With the file on standard output, the JSON goes to standard error.
    let v: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(v["input"], "-");
    assert_eq!(v["output"], "-");
    assert_eq!(v["bytes"], out.stdout.len());
}

#[test]
fn json_report_has_every_field() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    let out = run(
        &args![
            "encode",
            &input,
            "-o",
            &output,
            "-m",
            fx.image_pack_path(),
            "--json",
            "--effort",
            "2",
            "--quality",
            "2"
        ],
        None,
    );
    assert_success(&out);
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let bytes = fs::metadata(&output).unwrap().len();
    assert_eq!(v["input"], input.display().to_string());
    assert_eq!(v["output"], output.display().to_string());
    assert_eq!(v["kind"], "image");
    assert_eq!(
        (v["width"].clone(), v["height"].clone()),
        (40.into(), 24.into())
    );
    assert_eq!(v["bytes"], bytes);
    let bpp = v["bpp"].as_f64().unwrap();
    assert!((bpp - bytes as f64 * 8.0 / 960.0).abs() < 1e-9, "{bpp}");
    assert!(v["psnr_db"].as_f64().unwrap() > 0.0);
    assert_eq!(v["quality_level"], 2);
    assert_eq!(v["method"], "hyper");
    assert_eq!(v["effort"], 2);
    assert_eq!(v["trials"], 1);
    assert!(v["encode_seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(v["pack_id"], fx.image_pack.id().to_string());
    assert_eq!(v["pack_name"], fx.image_pack.config().name);

    // Audio reports kbit/s, and the meta method is available in this pack.
    let input = fx.write_wav("in.wav", wav_spec(16_000, 2, 16, false), 3200);
    let out = fx.encode(
        &input,
        &output,
        &fx.audio_pack_path(),
        &["--json", "--method", "meta"],
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["kind"], "audio");
    assert_eq!(v["channels"], 2);
    assert_eq!(v["frames"], 3200);
    assert_eq!(v["method"], "meta");
    let kbps = v["kbps"].as_f64().unwrap();
    let bytes = fs::metadata(&output).unwrap().len();
    assert!(
        (kbps - bytes as f64 * 8.0 / 0.2 / 1000.0).abs() < 1e-9,
        "{kbps}"
    );
}

#[test]
fn summary_line_unless_quiet() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    let a = args!["encode", &input, "-o", &output, "-m", fx.image_pack_path()];
    let out = run(&a, None);
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in ["bytes", "bpp", "PSNR", "dB", "quality level 1"] {
        assert!(stderr.contains(part), "{stderr}");
    }
    assert!(out.stdout.is_empty());
    let mut quiet = a.to_vec();
    quiet.push("--quiet".into());
    let out = run(&quiet, None);
    assert_success(&out);
    assert!(out.stderr.is_empty() && out.stdout.is_empty());
}

#[test]
fn rate_targets_pick_consistent_levels() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    let level = |flag: &str, value: &str| {
        fx.encode(&input, &output, &fx.image_pack_path(), &[flag, value]);
        header(&output).quality_level
    };
    // The synthetic pack has levels 0 to 2.
    assert_eq!(level("--target-bpp", "1e6"), 2);
    assert_eq!(level("--target-bpp", "1e-6"), 0);
    assert_eq!(level("--target-psnr", "1e6"), 2);
    assert_eq!(level("--target-psnr", "1e-6"), 0);
    assert_eq!(level("--quality", "0"), 0);
    let audio = fx.write_wav("in.wav", wav_spec(16_000, 1, 16, false), 3200);
    fx.encode(
        &audio,
        &output,
        &fx.audio_pack_path(),
        &["--target-kbps", "1e6"],
    );
    assert_eq!(header(&output).quality_level, 1);
}

/// Runs encode with `extra` arguments and expects a one-line failure with `code`; no
/// output may be left behind.
fn encode_fails(
    fx: &Fixture,
    input: &Path,
    pack: Option<&Path>,
    extra: &[&str],
    code: i32,
) -> String {
    let before = fx.dir.entries();
    let mut a = args!["encode", input, "-o", fx.dir.join("out.ipc")].to_vec();
    if let Some(p) = pack {
        a.extend(args!["--model", p]);
    }
    a.extend(extra.iter().map(OsString::from));
    let out = run(&a, None);
    let line = assert_fails(&out, code);
    assert_eq!(fx.dir.entries(), before, "files left behind");
    line
}

#[test]
fn input_problems_are_one_line_errors() {
    let fx = Fixture::new();
    let pack = fx.image_pack_path();
    let line = encode_fails(&fx, &fx.dir.join("absent.png"), Some(&pack), &[], 1);
    assert!(line.contains("absent.png"), "{line}");

    let gif = fx.dir.join("anim.gif");
    fs::write(&gif, b"GIF89a\x01\x00\x01\x00\x00\x00\x00;").unwrap();
    let line = encode_fails(&fx, &gif, Some(&pack), &[], 4);
    assert!(line.contains("unsupported input format"), "{line}");
    let empty = fx.dir.join("empty.png");
    fs::write(&empty, b"").unwrap();
    let line = encode_fails(&fx, &empty, Some(&pack), &[], 4);
    assert!(line.contains("unsupported input format"), "{line}");

    // Right signature, damaged body.
    let mut png = Vec::new();
    DynamicImage::ImageRgb8(rgb(40, 24))
        .write_to(&mut std::io::Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    let broken = fx.dir.join("broken.png");
    fs::write(&broken, &png[..png.len() / 2]).unwrap();
    let line = encode_fails(&fx, &broken, Some(&pack), &[], 3);
    assert!(line.contains("broken.png"), "{line}");

    let wav = fx.write_wav("in.wav", wav_spec(16_000, 1, 16, false), 3200);
    let mut bytes = fs::read(&wav).unwrap();
    bytes.truncate(30);
    let broken = fx.dir.join("broken.wav");
    fs::write(&broken, &bytes).unwrap();
    let line = encode_fails(&fx, &broken, Some(&fx.audio_pack_path()), &[], 3);
    assert!(line.contains("broken.wav"), "{line}");
    let empty_wav = fx.write_wav("empty.wav", wav_spec(16_000, 1, 16, false), 0);
    let line = encode_fails(&fx, &empty_wav, Some(&fx.audio_pack_path()), &[], 3);
    assert!(line.contains("no audio"), "{line}");
}

#[test]
fn pack_level_and_flag_problems_are_one_line_errors() {
    let fx = Fixture::new();
    let png = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let wav = fx.write_wav("in.wav", wav_spec(16_000, 1, 16, false), 3200);
    let image_pack = fx.image_pack_path();
    let audio_pack = fx.audio_pack_path();

    // A pack for the other modality.
    let line = encode_fails(&fx, &png, Some(&audio_pack), &[], 5);
    assert!(
        line.contains("codes audio") && line.contains("image"),
        "{line}"
    );
    let line = encode_fails(&fx, &wav, Some(&image_pack), &[], 5);
    assert!(
        line.contains("codes image") && line.contains("audio"),
        "{line}"
    );
    // A pack without encoder tensors.
    let bare = fx.dir.join("bare.ipcpack");
    fs::write(
        &bare,
        SyntheticPack::small_image().build().to_pack_file().unwrap(),
    )
    .unwrap();
    encode_fails(&fx, &png, Some(&bare), &[], 5);
    fs::remove_file(&bare).unwrap();

    let line = encode_fails(&fx, &png, Some(&image_pack), &["--quality", "3"], 2);
    assert!(line.contains("levels 0 to 2"), "{line}");
    let line = encode_fails(
        &fx,
        &png,
        Some(&image_pack),
        &["--quality", "1", "--target-bpp", "1"],
        2,
    );
    assert!(line.contains("--target-bpp"), "{line}");
    let line = encode_fails(&fx, &wav, Some(&audio_pack), &["--target-bpp", "1"], 2);
    assert!(line.contains("--target-kbps"), "{line}");
    encode_fails(&fx, &png, Some(&image_pack), &["--target-bpp", "-1"], 2);
    let line = encode_fails(&fx, &png, Some(&image_pack), &["--device", "cuda"], 2);
    assert!(line.contains("cuda"), "{line}");
    let line = encode_fails(&fx, &png, Some(&image_pack), &["--max-pixels", "100"], 4);
    assert!(
        line.contains("960") && line.contains("--max-pixels"),
        "{line}"
    );
    let line = encode_fails(&fx, &wav, Some(&audio_pack), &["--max-samples", "1000"], 4);
    assert!(
        line.contains("3200") && line.contains("--max-samples"),
        "{line}"
    );
}

#[test]
fn unwritable_output_is_reported_before_encoding() {
    let fx = Fixture::new();
    let png = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let out = run(
        &args![
            "encode",
            &png,
            "-o",
            fx.dir.join("no-such-dir").join("out.ipc"),
            "-m",
            fx.image_pack_path()
        ],
        None,
    );
    let line = assert_fails(&out, 1);
    assert!(
        line.contains("cannot write") && line.contains("no-such-dir"),
        "{line}"
    );
}

#[test]
fn a_file_made_with_another_pack_needs_model_to_decode() {
    let fx = Fixture::new();
    let png = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    fx.encode(&png, &output, &fx.image_pack_path(), &[]);
    let out = run(
        &args!["decode", &output, "-o", fx.dir.join("back.png")],
        None,
    );
    let line = assert_fails(&out, 5);
    assert!(line.contains(&fx.image_pack.id().to_string()), "{line}");
    assert!(line.contains("--model"), "{line}");
    let out = run(
        &args![
            "decode",
            &output,
            "-o",
            fx.dir.join("back.png"),
            "-m",
            fx.image_pack_path()
        ],
        None,
    );
    assert_success(&out);
    assert_eq!(
        image::open(fx.dir.join("back.png"))
            .unwrap()
            .to_rgb8()
            .dimensions(),
        (40, 24)
    );
}

#[test]
fn help_shows_the_commands_without_flags() {
    let out = run(&args!["--help"], None);
    assert_success(&out);
    let s = text(&out.stdout);
    for example in [
        "ipc-codec encode photo.png -o photo.ipc\n",
        "ipc-codec encode voice.wav -o voice.ipc\n",
        "ipc-codec decode photo.ipc -o photo.png\n",
    ] {
        assert!(s.contains(example), "{example}");
    }
    let out = run(&args!["encode", "--help"], None);
    assert_success(&out);
    let s = text(&out.stdout);
    assert!(
        s.contains("Examples:") && s.contains("--ignore-alpha"),
        "{s}"
    );
}

/// `encode` then `decode` with no --model: the built-in packs are used both ways.
fn round_trip_with_built_in_packs(input: &Path, decoded: &Path, dir: &TempDir) {
    let ipc = dir.join("rt.ipc");
    let out = run(&args!["encode", input, "-o", &ipc], None);
    assert_success(&out);
    let out = run(&args!["decode", &ipc, "-o", decoded], None);
    assert_success(&out);
    let out = run(&args!["info", &ipc], None);
    assert_success(&out);
    assert!(text(&out.stdout).contains("pack built in:  yes"));
}

#[test]
fn image_round_trip_with_no_model_flags() {
    let fx = Fixture::new();
    let png = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let back = fx.dir.join("back.png");
    round_trip_with_built_in_packs(&png, &back, &fx.dir);
    assert_eq!(image::open(&back).unwrap().to_rgb8().dimensions(), (40, 24));
}

#[test]
fn wav_round_trip_with_no_model_flags() {
    let fx = Fixture::new();
    let wav = fx.write_wav("in.wav", wav_spec(16_000, 1, 16, false), 3200);
    let back = fx.dir.join("back.wav");
    round_trip_with_built_in_packs(&wav, &back, &fx.dir);
    let r = hound::WavReader::open(&back).unwrap();
    assert_eq!((r.spec().sample_rate, r.duration()), (16_000, 3200));
}

#[test]
fn the_output_is_never_the_input() {
    let fx = Fixture::new();
    let png = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let original = fs::read(&png).unwrap();
    fs::hard_link(&png, fx.dir.join("hard.png")).unwrap();
    let mut same = vec![
        png.clone(),
        fx.dir.0.join(".").join("in.png"),
        fx.dir.join("hard.png"),
    ];
    #[cfg(unix)]
    {
        std::os::unix::fs::symlink(&png, fx.dir.join("soft.png")).unwrap();
        same.push(fx.dir.join("soft.png"));
    }
    for output in &same {
        let out = fx.try_encode(&png, output, &fx.image_pack_path(), &[]);
        let line = assert_fails(&out, 2);
        assert!(line.contains("same file"), "{line}");
        assert_eq!(fs::read(&png).unwrap(), original, "input changed");
    }

    let ipc = fx.dir.join("x.ipc");
    fx.encode(&png, &ipc, &fx.image_pack_path(), &[]);
    let coded = fs::read(&ipc).unwrap();
    let out = run(
        &args!["decode", &ipc, "-o", &ipc, "-m", fx.image_pack_path()],
        None,
    );
    let line = assert_fails(&out, 2);
    assert!(line.contains("same file"), "{line}");
    assert_eq!(fs::read(&ipc).unwrap(), coded, "input changed");
    // Nothing was left beside them.
    assert!(
        fx.dir.entries().iter().all(|n| !n.contains(".tmp-")),
        "{:?}",
        fx.dir.entries()
    );
}

#[test]
fn missed_targets_are_reported_and_strict_targets_fail() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    let json = |flags: &[&str]| -> Value {
        let mut extra = vec!["--json"];
        extra.extend_from_slice(flags);
        let mut a = args![
            "encode",
            &input,
            "-o",
            &output,
            "--model",
            fx.image_pack_path()
        ]
        .to_vec();
        a.extend(extra.iter().map(OsString::from));
        let out = run(&a, None);
        assert_success(&out);
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let v = json(&["--target-bpp", "1e-6"]);
    assert_eq!(v["target"]["kind"], "bpp");
    assert_eq!(v["target"]["value"], 1e-6);
    assert_eq!(v["target_met"], false);
    assert_eq!(v["quality_level"], 0);
    let v = json(&["--target-psnr", "1e6"]);
    assert_eq!(v["target"]["kind"], "psnr_db");
    assert_eq!(v["target_met"], false);
    let v = json(&["--target-bpp", "1e6"]);
    assert_eq!(v["target_met"], true);
    let v = json(&["--quality", "1"]);
    assert!(v.get("target_met").is_none() && v.get("target").is_none());

    // The summary line says it too.
    let mut a = args![
        "encode",
        &input,
        "-o",
        &output,
        "--model",
        fx.image_pack_path()
    ]
    .to_vec();
    a.extend(args!["--target-bpp", "1e-6"]);
    let out = run(&a, None);
    assert_success(&out);
    let line = text(&out.stderr);
    assert!(
        line.contains("target of at most 0.000001 bpp not met"),
        "{line}"
    );

    // --strict-target: exit status 6, one line, nothing written (an existing output is
    // left as it was).
    fs::write(&output, b"before").unwrap();
    a.push("--strict-target".into());
    let out = run(&a, None);
    let line = assert_fails(&out, 6);
    assert!(
        line.contains("not met") && line.contains("nothing written"),
        "{line}"
    );
    assert_eq!(fs::read(&output).unwrap(), b"before");
    assert!(fx.dir.entries().iter().all(|n| !n.contains(".tmp-")));
    let mut met = args![
        "encode",
        &input,
        "-o",
        &output,
        "--model",
        fx.image_pack_path()
    ]
    .to_vec();
    met.extend(args!["--target-bpp", "1e6", "--strict-target", "--quiet"]);
    assert_success(&run(&met, None));
    assert_ne!(fs::read(&output).unwrap(), b"before");
}

#[test]
fn effort_is_bounded_and_progress_can_be_asked_for() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(40, 24).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    for bad in ["1001", "1000000", "-1", "lots"] {
        let out = fx.try_encode(
            &input,
            &output,
            &fx.image_pack_path(),
            &[&format!("--effort={bad}")],
        );
        let line = assert_fails(&out, 2);
        assert!(line.contains("--effort"), "{line}");
    }
    let out = run(
        &args![
            "bench",
            "rd",
            "--images",
            fx.dir.0.as_path(),
            "--out",
            fx.dir.join("rd"),
            "--effort",
            "0,5000"
        ],
        None,
    );
    assert_fails(&out, 2);
    assert!(!output.exists());

    // Standard error is a pipe here: no bar, but --progress prints lines.
    let out = fx.try_encode(
        &input,
        &output,
        &fx.image_pack_path(),
        &["--effort", "3", "--progress"],
    );
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("encoding: trial 1, level") && stderr.contains("3/3 steps"),
        "{stderr}"
    );
    let out = fx.try_encode(&input, &output, &fx.image_pack_path(), &["--effort", "3"]);
    assert!(!text(&out.stderr).contains("encoding:"));
}

/// SIGTERM during an encode leaves neither an output nor a temporary file (the
/// temporary file is created only once the encoded bytes are ready, and a signal
/// handler removes it if one comes while it is written). SIGINT takes the same handler,
/// but a test cannot rely on it: a shell runs background jobs with SIGINT ignored, and
/// the encoder keeps an inherited "ignore".
#[cfg(unix)]
#[test]
fn an_interrupted_encode_leaves_nothing() {
    let fx = Fixture::new();
    let input = fx.write_image("in.png", &rgb(512, 512).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    let mut child = Command::new(BIN)
        .args(args![
            "encode",
            &input,
            "-o",
            &output,
            "-m",
            fx.image_pack_path(),
            "--effort",
            "1000",
            "-j",
            "1"
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let running = child.try_wait().unwrap().is_none();
    assert!(
        running,
        "the encode ended before the signal; give it more work"
    );
    let pid = child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    // It must end at once; never wait for the whole encode.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the encode did not end on SIGTERM");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert!(!status.success(), "{status:?}");
    assert_eq!(
        fx.dir.entries(),
        ["audio.ipcpack", "image.ipcpack", "in.png"]
    );
}

/// A PNG, JPEG or WAV file whose data ends early is an invalid input (exit status 3),
/// never an encode of what was read.
#[test]
fn truncated_inputs_are_errors() {
    let fx = Fixture::new();
    let png = fx.write_image("in.png", &rgb(64, 48).into(), ImageFormat::Png);
    let jpg = fx.write_image("in.jpg", &rgb(64, 48).into(), ImageFormat::Jpeg);
    let wav = fx.write_wav("in.wav", wav_spec(16_000, 1, 16, false), 8000);
    for (full, pack) in [
        (&png, fx.image_pack_path()),
        (&jpg, fx.image_pack_path()),
        (&wav, fx.audio_pack_path()),
    ] {
        let bytes = fs::read(full).unwrap();
        for cut in [bytes.len() / 2, bytes.len() - 2] {
            let name = format!("cut-{cut}-{}", full.file_name().unwrap().to_string_lossy());
            let path = fx.dir.join(&name);
            fs::write(&path, &bytes[..cut]).unwrap();
            let output = fx.dir.join("out.ipc");
            let out = fx.try_encode(&path, &output, &pack, &[]);
            let line = assert_fails(&out, 3);
            assert!(line.contains(&name), "{line}");
            assert!(!output.exists());
            // From standard input too.
            let out = run(
                &args!["encode", "-", "-o", &output, "-m", &pack],
                Some(&bytes[..cut]),
            );
            assert_fails(&out, 3);
        }
        fx.encode(full, &fx.dir.join("whole.ipc"), &pack, &[]);
    }
}

/// The pixel limit counts what the encoder allocates: the image padded to whole tiles
/// (8x8 in the synthetic pack), so a strip costs its padded size.
#[test]
fn limits_count_the_padded_tiles() {
    let fx = Fixture::new();
    let strip = fx.write_image("strip.png", &rgb(2000, 1).into(), ImageFormat::Png);
    let output = fx.dir.join("out.ipc");
    let out = fx.try_encode(
        &strip,
        &output,
        &fx.image_pack_path(),
        &["--max-pixels", "10000"],
    );
    let line = assert_fails(&out, 4);
    assert!(
        line.contains("padded to whole tiles is 16000") && line.contains("--max-pixels"),
        "{line}"
    );
    fx.encode(
        &strip,
        &output,
        &fx.image_pack_path(),
        &["--max-pixels", "16000"],
    );
}

/// CRC-32 of PNG chunks (ISO 3309, as PNG §5.5 specifies), bit by bit.
fn png_crc(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(&(data.len() as u32).to_be_bytes());
    let start = out.len();
    out.extend_from_slice(kind);
    out.extend_from_slice(data);
    let crc = png_crc(&out[start..]);
    out.extend_from_slice(&crc.to_be_bytes());
}

/// A PNG that declares 100000 x 100000 RGB pixels (30 GB decoded) in a few bytes: with
/// the pixel limit raised past it, it is refused for want of memory (exit status 4),
/// not left to abort the process when the allocation fails.
#[cfg(target_os = "linux")]
#[test]
fn an_image_larger_than_memory_is_refused_not_aborted() {
    let fx = Fixture::new();
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&100_000u32.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png_chunk(&mut png, b"IHDR", &ihdr);
    png_chunk(
        &mut png,
        b"IDAT",
        &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01],
    );
    png_chunk(&mut png, b"IEND", &[]);
    let path = fx.dir.join("bomb.png");
    fs::write(&path, &png).unwrap();
    let output = fx.dir.join("out.ipc");
    let out = fx.try_encode(
        &path,
        &output,
        &fx.image_pack_path(),
        &["--max-pixels", "100000000000"],
    );
    let line = assert_fails(&out, 4);
    assert!(line.contains("memory"), "{line}");
}

/// Float samples outside [-1, 1] are clipped, and the user is told how many.
#[test]
fn clipped_float_samples_are_reported() {
    let fx = Fixture::new();
    let path = fx.dir.join("loud.wav");
    let mut w = hound::WavWriter::create(&path, wav_spec(16_000, 1, 32, true)).unwrap();
    for i in 0..1600 {
        w.write_sample(if i % 100 == 0 { 1.5f32 } else { 0.25 })
            .unwrap();
    }
    w.finalize().unwrap();
    let output = fx.dir.join("out.ipc");
    let out = fx.encode(&path, &output, &fx.audio_pack_path(), &["--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clipped_samples"], 16);
    let mut a = args!["encode", &path, "-o", &output, "-m", fx.audio_pack_path()].to_vec();
    a.push("--effort=0".into());
    let out = run(&a, None);
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("16 float samples outside [-1, 1] clipped"),
        "{stderr}"
    );
    // Nothing said when nothing was clipped.
    let quiet = fx.write_wav("ok.wav", wav_spec(16_000, 1, 32, true), 1600);
    let out = fx.encode(&quiet, &output, &fx.audio_pack_path(), &["--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["clipped_samples"], 0);
}

/// A WAV file built by hand (for what hound does not write): RIFF header, a `fmt `
/// chunk with format tag `tag`, and a `data` chunk whose size field is `data_size`.
fn raw_wav(tag: u16, rate: u32, bits: u16, data: &[u8], data_size: u32) -> Vec<u8> {
    let align = bits / 8;
    let mut f = b"RIFF".to_vec();
    f.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    f.extend_from_slice(b"WAVEfmt ");
    f.extend_from_slice(&16u32.to_le_bytes());
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&1u16.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    f.extend_from_slice(&align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f.extend_from_slice(b"data");
    f.extend_from_slice(&data_size.to_le_bytes());
    f.extend_from_slice(data);
    f
}

/// A 64-bit float WAV is a valid file: it encodes exactly as the same samples in
/// 32-bit floats do (every value here is exact in both).
#[test]
fn a_64_bit_float_wav_encodes() {
    let fx = Fixture::new();
    let values: Vec<f64> = (0..3200)
        .map(|i| f64::from((i * 37) % 1024) / 1024.0 - 0.5)
        .collect();
    let f64_data: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let f32_data: Vec<u8> = values
        .iter()
        .flat_map(|&v| (v as f32).to_le_bytes())
        .collect();
    let wide = fx.dir.join("f64.wav");
    fs::write(
        &wide,
        raw_wav(3, 16_000, 64, &f64_data, f64_data.len() as u32),
    )
    .unwrap();
    let narrow = fx.dir.join("f32.wav");
    fs::write(
        &narrow,
        raw_wav(3, 16_000, 32, &f32_data, f32_data.len() as u32),
    )
    .unwrap();
    let (a, b) = (fx.dir.join("a.ipc"), fx.dir.join("b.ipc"));
    let out = fx.encode(&wide, &a, &fx.audio_pack_path(), &["--json"]);
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["input_sample_format"], "64-bit float", "{v}");
    fx.encode(&narrow, &b, &fx.audio_pack_path(), &[]);
    assert_eq!(fs::read(&a).unwrap(), fs::read(&b).unwrap());
}

/// A WAV written to a pipe (ffmpeg leaves its sizes at 0xFFFFFFFF, others at 0, SoX at
/// 0x7FFFF000) is read to its end, from a file or from standard input, and encodes
/// exactly as the same audio with its sizes filled in; the sample limit still holds.
#[test]
fn a_wav_written_to_a_pipe_encodes() {
    let fx = Fixture::new();
    let whole = fx.write_wav("whole.wav", wav_spec(16_000, 1, 16, false), 3200);
    let reference = fx.dir.join("reference.ipc");
    fx.encode(&whole, &reference, &fx.audio_pack_path(), &[]);
    let bytes = fs::read(&whole).unwrap();
    let data_at = bytes.windows(4).position(|w| w == b"data").unwrap();
    for size in [0u32, u32::MAX, 0x7FFF_F000] {
        let mut streamed = bytes.clone();
        streamed[4..8].copy_from_slice(&size.to_le_bytes());
        streamed[data_at + 4..data_at + 8].copy_from_slice(&size.to_le_bytes());
        let path = fx.dir.join("streamed.wav");
        fs::write(&path, &streamed).unwrap();
        let output = fx.dir.join("streamed.ipc");
        fx.encode(&path, &output, &fx.audio_pack_path(), &[]);
        assert_eq!(
            fs::read(&output).unwrap(),
            fs::read(&reference).unwrap(),
            "{size:#x}"
        );
        let out = run(
            &args![
                "encode",
                "-",
                "-o",
                "-",
                "-m",
                fx.audio_pack_path(),
                "--quiet"
            ],
            Some(&streamed),
        );
        assert_success(&out);
        assert_eq!(
            out.stdout,
            fs::read(&reference).unwrap(),
            "{size:#x}, stdin"
        );

        let line = encode_fails(
            &fx,
            &path,
            Some(&fx.audio_pack_path()),
            &["--max-samples", "3000"],
            4,
        );
        assert!(line.contains("--max-samples"), "{line}");
        fs::remove_file(&path).unwrap();
        fs::remove_file(&output).unwrap();
    }
}

/// Valid WAV files of a kind that is not read (A-law, 16-bit floats) are unsupported
/// (exit status 4) with a message that says what they are; a damaged one is invalid
/// (exit status 3).
#[test]
fn other_kinds_of_wav_are_unsupported_and_damaged_ones_invalid() {
    let fx = Fixture::new();
    for (tag, bits, what) in [(6u16, 8u16, "A-law"), (3, 16, "16-bit float")] {
        let path = fx.dir.join("other.wav");
        fs::write(&path, raw_wav(tag, 8000, bits, &[0; 64], 64)).unwrap();
        let line = encode_fails(&fx, &path, Some(&fx.audio_pack_path()), &[], 4);
        assert!(line.contains(what) && line.contains("other.wav"), "{line}");
        fs::remove_file(&path).unwrap();
    }
    let mut bad_align = raw_wav(1, 8000, 16, &[0; 64], 64);
    bad_align[32] = 5;
    let path = fx.dir.join("bad.wav");
    fs::write(&path, bad_align).unwrap();
    let line = encode_fails(&fx, &path, Some(&fx.audio_pack_path()), &[], 3);
    assert!(line.contains("block alignment"), "{line}");
    let nan: Vec<u8> = [0.5f32, f32::NAN]
        .iter()
        .flat_map(|v| v.to_le_bytes())
        .collect();
    fs::write(&path, raw_wav(3, 16_000, 32, &nan, 8)).unwrap();
    let line = encode_fails(&fx, &path, Some(&fx.audio_pack_path()), &[], 3);
    assert!(line.contains("sample 1"), "{line}");
}
