//! End-to-end tests of the `ipc-codec` command-line tool: synthetic packs and files are
//! written to a fresh temporary directory, the binary is run on them, and its output is
//! compared with the library's decoder.

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use ipc_codec::pack::synthetic::SyntheticPack;
use ipc_codec::rng::SplitMix64;
use ipc_codec::{encode_quantised, Decoded, Decoder, Geometry, ImagePixels, ModelPack};

const BIN: &str = env!("CARGO_BIN_EXE_ipc-codec");

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ipc-codec-cli-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn write(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let path = self.join(name);
        fs::write(&path, bytes).unwrap();
        path
    }

    /// The names of everything in the directory, sorted.
    fn entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// Asserts that the directory holds exactly `names` (no output, no temp file).
    fn assert_holds(&self, names: &[&str]) {
        let mut expected: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        expected.sort();
        assert_eq!(self.entries(), expected, "contents of {}", self.0.display());
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A pack file, the pack it holds, and a directory to work in.
struct Fixture {
    dir: TempDir,
    pack: ModelPack,
}

impl Fixture {
    fn new(shape: SyntheticPack) -> Fixture {
        let dir = TempDir::new();
        let bytes = shape.build().to_pack_file().unwrap();
        let pack = ModelPack::from_pack_file(&bytes).unwrap();
        dir.write("pack.ipcpack", &bytes);
        Fixture { dir, pack }
    }

    fn image() -> Fixture {
        Fixture::new(SyntheticPack::small_image())
    }

    fn audio() -> Fixture {
        Fixture::new(SyntheticPack::small_audio())
    }

    fn pack_path(&self) -> PathBuf {
        self.dir.join("pack.ipcpack")
    }

    /// Encodes seeded pseudo-random V for `geometry` at quality level 1.
    fn encode(&self, geometry: Geometry, seed: u64) -> Vec<u8> {
        let cfg = self.pack.config();
        let tiles = geometry.tile_count(cfg.tile_width as u64, cfg.tile_height as u64);
        let mut rng = SplitMix64(seed);
        let v: Vec<i32> = (0..tiles as usize * cfg.v_len())
            .map(|_| (rng.next_u64() % 9) as i32 - 4)
            .collect();
        encode_quantised(&self.pack, geometry, 1, None, &v).unwrap()
    }

    fn decode_with_library(&self, file: &[u8]) -> Decoded {
        Decoder::new(&self.pack).decode(file).unwrap()
    }
}

fn rgb8(width: u32, height: u32) -> Geometry {
    Geometry::Image {
        width,
        height,
        channels: 3,
        bit_depth: 8,
    }
}

fn stereo(frames: u32) -> Geometry {
    Geometry::Audio {
        sample_rate: 16_000,
        frames,
        channels: 2,
        bit_depth: 16,
    }
}

/// Runs the binary with `args`, feeding `stdin` (or nothing).
fn run<S: AsRef<std::ffi::OsStr>>(args: &[S], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the ipc-codec binary runs");
    let mut pipe = child.stdin.take().unwrap();
    let input = stdin.unwrap_or_default().to_vec();
    // A thread, so that a large output cannot block the child while we write.
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
    assert!(out.stderr.is_empty(), "stderr: {}", text(&out.stderr));
}

/// Asserts the exit status and that standard error is exactly one line
/// `ipc-codec: ...`; returns that line.
#[track_caller]
fn assert_fails(out: &Output, code: i32) -> String {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert!(stderr.ends_with('\n'), "stderr: {stderr:?}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "stderr is not one line: {stderr:?}");
    assert!(lines[0].starts_with("ipc-codec: "), "stderr: {stderr:?}");
    assert!(
        !lines[0].contains("Error {"),
        "debug formatting: {stderr:?}"
    );
    lines[0].to_string()
}

#[test]
fn decodes_rgb8_image_to_png_equal_to_the_library() {
    let fx = Fixture::image();
    // 20 x 12 is not a multiple of the 8 x 8 tiles, so padding is cropped.
    let file = fx.encode(rgb8(20, 12), 1);
    let input = fx.dir.write("in.ipc", &file);
    let output = fx.dir.join("out.png");
    let out = run(
        &[
            "decode".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
            "--model".as_ref(),
            fx.pack_path().as_os_str(),
        ],
        None,
    );
    assert_success(&out);
    assert!(out.stdout.is_empty());
    fx.dir.assert_holds(&["in.ipc", "out.png", "pack.ipcpack"]);

    let Decoded::Image(expected) = fx.decode_with_library(&file) else {
        panic!("image expected")
    };
    let png = image::open(&output).unwrap();
    let png = png.as_rgb8().expect("8-bit RGB PNG");
    assert_eq!(png.dimensions(), (20, 12));
    assert_eq!(
        ImagePixels::U8(png.as_raw().clone()),
        expected.pixels,
        "pixels differ from Decoder::decode"
    );
}

#[test]
fn decodes_grey16_image_to_16_bit_png() {
    let fx = Fixture::image();
    let file = fx.encode(
        Geometry::Image {
            width: 13,
            height: 9,
            channels: 1,
            bit_depth: 16,
        },
        2,
    );
    let input = fx.dir.write("grey.ipc", &file);
    let output = fx.dir.join("grey.PNG");
    let out = run(
        &[
            "decode".as_ref(),
            input.as_os_str(),
            "--output".as_ref(),
            output.as_os_str(),
            "-m".as_ref(),
            fx.pack_path().as_os_str(),
            "--threads".as_ref(),
            "2".as_ref(),
        ],
        None,
    );
    assert_success(&out);
    let Decoded::Image(expected) = fx.decode_with_library(&file) else {
        panic!("image expected")
    };
    let png = image::open(&output).unwrap();
    let png = png.as_luma16().expect("16-bit grey PNG");
    assert_eq!(png.dimensions(), (13, 9));
    assert_eq!(ImagePixels::U16(png.as_raw().clone()), expected.pixels);
}

#[test]
fn decodes_audio_to_16_bit_wav_equal_to_the_library() {
    let fx = Fixture::audio();
    let file = fx.encode(stereo(200), 3);
    let input = fx.dir.write("in.ipc", &file);
    let output = fx.dir.join("out.wav");
    let out = run(
        &[
            "decode".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
            "--model".as_ref(),
            fx.pack_path().as_os_str(),
        ],
        None,
    );
    assert_success(&out);
    fx.dir.assert_holds(&["in.ipc", "out.wav", "pack.ipcpack"]);

    let Decoded::Audio(expected) = fx.decode_with_library(&file) else {
        panic!("audio expected")
    };
    let mut wav = hound::WavReader::open(&output).unwrap();
    let spec = wav.spec();
    assert_eq!(spec.channels, 2);
    assert_eq!(spec.sample_rate, 16_000);
    assert_eq!(spec.bits_per_sample, 16);
    assert_eq!(spec.sample_format, hound::SampleFormat::Int);
    let samples: Vec<i16> = wav.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(samples.len(), 400);
    assert_eq!(samples, expected.samples);
}

#[test]
fn decodes_from_stdin_to_stdout() {
    // Image: PNG by default for standard output.
    let fx = Fixture::image();
    let file = fx.encode(rgb8(16, 8), 4);
    let pack = fx.pack_path();
    let out = run(
        &[
            "decode".as_ref(),
            "-".as_ref(),
            "-o".as_ref(),
            "-".as_ref(),
            "--model".as_ref(),
            pack.as_os_str(),
        ],
        Some(&file),
    );
    assert_success(&out);
    let Decoded::Image(expected) = fx.decode_with_library(&file) else {
        panic!("image expected")
    };
    let png = image::load_from_memory_with_format(&out.stdout, image::ImageFormat::Png).unwrap();
    assert_eq!(ImagePixels::U8(png.to_rgb8().into_raw()), expected.pixels);
    fx.dir.assert_holds(&["pack.ipcpack"]);

    // --format png is accepted too; --format wav does not fit an image.
    let args = |format: &str| {
        vec![
            "decode".into(),
            "-".into(),
            "-o".into(),
            "-".into(),
            "--format".into(),
            format.into(),
            "--model".into(),
            pack.clone().into_os_string(),
        ]
    };
    let out = run(&args("png"), Some(&file));
    assert_success(&out);
    let out = run(&args("wav"), Some(&file));
    let line = assert_fails(&out, 2);
    assert!(line.contains("image") && line.contains("PNG"), "{line}");
    assert!(out.stdout.is_empty());

    // Audio: WAV by default for standard output.
    let fx = Fixture::audio();
    let file = fx.encode(stereo(100), 5);
    let out = run(
        &[
            "decode".as_ref(),
            "-".as_ref(),
            "-o".as_ref(),
            "-".as_ref(),
            "--model".as_ref(),
            fx.pack_path().as_os_str(),
        ],
        Some(&file),
    );
    assert_success(&out);
    let Decoded::Audio(expected) = fx.decode_with_library(&file) else {
        panic!("audio expected")
    };
    let wav = hound::WavReader::new(Cursor::new(out.stdout)).unwrap();
    assert_eq!(wav.spec().channels, 2);
    let samples: Vec<i16> = wav.into_samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(samples, expected.samples);
}

#[test]
fn info_shows_every_header_field_and_the_pack() {
    let fx = Fixture::image();
    let file = fx.encode(rgb8(20, 12), 6);
    let input = fx.dir.write("in.ipc", &file);
    let out = run(&["info".as_ref(), input.as_os_str()], None);
    assert_success(&out);
    let s = text(&out.stdout);
    let pack_id = fx.pack.id().to_string();
    for needle in [
        "format version: 2",
        "coding tools:   edge filter (tile edges smoothed, spec §8.5)",
        "modality:       image",
        "20 x 12 pixels, RGB (3 channels), 8 bits per sample",
        "tile size:      8 x 8",
        "tile grid:      3 x 2 (6 tiles)",
        "quality level:  1",
        "step:           0.25 (Q16.16 16384 = 0x00004000)",
        &format!("payload:        {} bytes", file.len() - 54),
        &format!("total:          {} bytes", file.len()),
        "bits per pixel: ",
        "checksum:       ok",
        "status:         ok",
        &format!("pack needed:    {pack_id}"),
    ] {
        assert!(s.contains(needle), "{needle:?} missing from:\n{s}");
    }
    assert!(!s.contains("pack supplied"), "{s}");

    // With --model: the pack's name and that it matches.
    let out = run(
        &[
            "info".as_ref(),
            input.as_os_str(),
            "--model".as_ref(),
            fx.pack_path().as_os_str(),
        ],
        None,
    );
    assert_success(&out);
    let s = text(&out.stdout);
    assert!(s.contains("synthetic-image-s1"), "{s}");
    assert!(s.contains(&format!("pack supplied:  {pack_id}")), "{s}");
    assert!(s.contains("matches"), "{s}");

    // From standard input.
    let out = run(&["info", "-"], Some(&file));
    assert_success(&out);
    assert!(text(&out.stdout).contains("file:           -\n"));
}

#[test]
fn info_describes_audio_in_kbit_per_second() {
    let fx = Fixture::audio();
    let file = fx.encode(stereo(200), 7);
    let input = fx.dir.write("in.ipc", &file);
    let out = run(&["info".as_ref(), input.as_os_str()], None);
    assert_success(&out);
    let s = text(&out.stdout);
    for needle in [
        "modality:       audio",
        "16000 Hz, 2 channels, 16 bits per sample, 200 frames (0.0125 s)",
        "tile size:      64 samples",
        "tile grid:      4 chunks x 2 channels (8 tiles)",
        "kbit/s",
    ] {
        assert!(s.contains(needle), "{needle:?} missing from:\n{s}");
    }
}

#[test]
fn info_json_parses_and_holds_the_fields() {
    let fx = Fixture::image();
    let file = fx.encode(rgb8(20, 12), 8);
    let input = fx.dir.write("in.ipc", &file);
    let out = run(
        &[
            "info".as_ref(),
            input.as_os_str(),
            "--json".as_ref(),
            "--model".as_ref(),
            fx.pack_path().as_os_str(),
        ],
        None,
    );
    assert_success(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("valid JSON");
    assert_eq!(v["format_version"], 2);
    assert_eq!(v["coding_tools"], serde_json::json!(["edge-filter"]));
    assert_eq!(v["modality"], "image");
    assert_eq!(v["geometry"]["width"], 20);
    assert_eq!(v["geometry"]["height"], 12);
    assert_eq!(v["geometry"]["channels"], 3);
    assert_eq!(v["geometry"]["bit_depth"], 8);
    assert_eq!(v["tile"]["width"], 8);
    assert_eq!(v["tile"]["grid_x"], 3);
    assert_eq!(v["tile"]["grid_y"], 2);
    assert_eq!(v["tile"]["count"], 6);
    assert_eq!(v["quality_level"], 1);
    assert_eq!(v["step_q16"], 16384);
    assert_eq!(v["step"], 0.25);
    assert_eq!(v["payload_bytes"], file.len() - 54);
    assert_eq!(v["total_bytes"], file.len());
    let bpp = v["bits_per_pixel"].as_f64().unwrap();
    assert!((bpp - file.len() as f64 * 8.0 / 240.0).abs() < 1e-9);
    assert_eq!(v["checksum"]["status"], "ok");
    assert_eq!(v["damaged"], false);
    assert_eq!(v["pack_id"], fx.pack.id().to_string());
    assert_eq!(v["model"]["name"], "synthetic-image-s1");
    assert_eq!(v["model"]["id"], fx.pack.id().to_string());
    assert_eq!(v["model"]["matches"], true);
}

#[test]
fn info_on_a_damaged_file_shows_the_header_and_fails() {
    let fx = Fixture::image();
    let mut file = fx.encode(rgb8(20, 12), 9);
    file[60] ^= 0x10; // in the payload
    let input = fx.dir.write("bad.ipc", &file);
    let out = run(&["info".as_ref(), input.as_os_str()], None);
    let line = assert_fails(&out, 3);
    assert!(line.contains("checksum"), "{line}");
    let s = text(&out.stdout);
    assert!(s.contains("20 x 12 pixels"), "{s}");
    assert!(s.contains("checksum:       MISMATCH"), "{s}");
    assert!(s.contains("status:         DAMAGED"), "{s}");

    let out = run(
        &["info".as_ref(), input.as_os_str(), "--json".as_ref()],
        None,
    );
    assert_fails(&out, 3);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["damaged"], true);
    assert_eq!(v["checksum"]["status"], "mismatch");
    assert_eq!(v["geometry"]["width"], 20);

    // A truncated file still shows its header.
    let good = fx.encode(rgb8(20, 12), 9);
    let input = fx.dir.write("short.ipc", &good[..good.len() - 10]);
    let out = run(&["info".as_ref(), input.as_os_str()], None);
    let line = assert_fails(&out, 3);
    assert!(line.contains("truncated"), "{line}");
    assert!(text(&out.stdout).contains("not checked"));
}

#[test]
fn info_with_the_wrong_pack_names_both_ids_and_fails() {
    let fx = Fixture::image();
    let audio = Fixture::audio();
    let file = fx.encode(rgb8(16, 16), 10);
    let input = fx.dir.write("in.ipc", &file);
    let out = run(
        &[
            "info".as_ref(),
            input.as_os_str(),
            "--model".as_ref(),
            audio.pack_path().as_os_str(),
        ],
        None,
    );
    let line = assert_fails(&out, 5);
    assert!(line.contains(&fx.pack.id().to_string()), "{line}");
    assert!(line.contains(&audio.pack.id().to_string()), "{line}");
    assert!(text(&out.stdout).contains("does NOT match"));
}

/// Runs `decode IN -o OUT --model PACK` and checks that it fails with `code` and one
/// line, and that the directory still holds only `before`.
#[track_caller]
fn decode_fails(
    dir: &TempDir,
    input: &Path,
    output: &Path,
    pack: &Path,
    code: i32,
    before: &[&str],
) -> String {
    let out = run(
        &[
            "decode".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
            "--model".as_ref(),
            pack.as_os_str(),
        ],
        None,
    );
    let line = assert_fails(&out, code);
    assert!(out.stdout.is_empty());
    dir.assert_holds(before);
    line
}

#[test]
fn missing_input_file_is_reported() {
    let fx = Fixture::image();
    let line = decode_fails(
        &fx.dir,
        &fx.dir.join("nope.ipc"),
        &fx.dir.join("out.png"),
        &fx.pack_path(),
        1,
        &["pack.ipcpack"],
    );
    assert!(line.contains("nope.ipc"), "{line}");

    let out = run(
        &["info".as_ref(), fx.dir.join("nope.ipc").as_os_str()],
        None,
    );
    assert_fails(&out, 1);
}

#[test]
fn truncated_file_is_reported() {
    let fx = Fixture::image();
    let file = fx.encode(rgb8(20, 12), 11);
    let input = fx.dir.write("in.ipc", &file[..file.len() - 1]);
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.png"),
        &fx.pack_path(),
        3,
        &["in.ipc", "pack.ipcpack"],
    );
    assert!(line.contains("truncated"), "{line}");

    // Too short for a header, and not an .ipc file at all.
    let input = fx.dir.write("in.ipc", &file[..20]);
    decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.png"),
        &fx.pack_path(),
        3,
        &["in.ipc", "pack.ipcpack"],
    );
    let input = fx.dir.write("in.ipc", b"P6\n1 1\n255\n\0\0\0");
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.png"),
        &fx.pack_path(),
        3,
        &["in.ipc", "pack.ipcpack"],
    );
    assert!(line.contains("not an .ipc file"), "{line}");
}

#[test]
fn wrong_pack_names_both_ids() {
    let fx = Fixture::image();
    let audio = Fixture::audio();
    let input = fx.dir.write("in.ipc", &fx.encode(rgb8(20, 12), 12));
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.png"),
        &audio.pack_path(),
        5,
        &["in.ipc", "pack.ipcpack"],
    );
    assert!(line.contains(&fx.pack.id().to_string()), "{line}");
    assert!(line.contains(&audio.pack.id().to_string()), "{line}");
}

#[test]
fn unreadable_or_missing_pack_is_reported() {
    let fx = Fixture::image();
    let input = fx.dir.write("in.ipc", &fx.encode(rgb8(8, 8), 13));
    let junk = fx.dir.write("junk.ipcpack", b"not a pack at all");
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.png"),
        &junk,
        5,
        &["in.ipc", "junk.ipcpack", "pack.ipcpack"],
    );
    assert!(line.contains("junk.ipcpack"), "{line}");
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.png"),
        &fx.dir.join("absent.ipcpack"),
        5,
        &["in.ipc", "junk.ipcpack", "pack.ipcpack"],
    );
    assert!(line.contains("absent.ipcpack"), "{line}");
}

#[test]
fn missing_model_says_which_pack_is_needed() {
    let fx = Fixture::image();
    let input = fx.dir.write("in.ipc", &fx.encode(rgb8(8, 8), 14));
    let out = run(
        &[
            "decode".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            fx.dir.join("out.png").as_os_str(),
        ],
        None,
    );
    // The synthetic pack is not built in.
    let line = assert_fails(&out, 5);
    assert!(line.contains(&fx.pack.id().to_string()), "{line}");
    assert!(line.contains("--model"), "{line}");
    fx.dir.assert_holds(&["in.ipc", "pack.ipcpack"]);
}

#[test]
fn output_into_a_missing_directory_or_onto_a_directory_is_reported() {
    let fx = Fixture::image();
    let input = fx.dir.write("in.ipc", &fx.encode(rgb8(8, 8), 15));
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("no-such-dir").join("out.png"),
        &fx.pack_path(),
        1,
        &["in.ipc", "pack.ipcpack"],
    );
    assert!(line.contains("cannot write"), "{line}");
    assert!(line.contains("no-such-dir"), "{line}");

    // The temporary file is made, then the rename onto a directory fails: it must go.
    fs::create_dir(fx.dir.join("taken.png")).unwrap();
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("taken.png"),
        &fx.pack_path(),
        1,
        &["in.ipc", "pack.ipcpack", "taken.png"],
    );
    assert!(line.contains("taken.png"), "{line}");
}

#[test]
fn output_extension_must_fit_the_modality() {
    let fx = Fixture::image();
    let input = fx.dir.write("in.ipc", &fx.encode(rgb8(8, 8), 16));
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.wav"),
        &fx.pack_path(),
        2,
        &["in.ipc", "pack.ipcpack"],
    );
    assert!(line.contains("image") && line.contains("PNG"), "{line}");
    decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.jpg"),
        &fx.pack_path(),
        2,
        &["in.ipc", "pack.ipcpack"],
    );

    let fx = Fixture::audio();
    let input = fx.dir.write("in.ipc", &fx.encode(stereo(64), 17));
    let line = decode_fails(
        &fx.dir,
        &input,
        &fx.dir.join("out.png"),
        &fx.pack_path(),
        2,
        &["in.ipc", "pack.ipcpack"],
    );
    assert!(line.contains("audio") && line.contains("WAV"), "{line}");
}

#[test]
fn a_failed_decode_keeps_the_old_output_and_a_good_one_replaces_it() {
    let fx = Fixture::image();
    let audio = Fixture::audio();
    let input = fx.dir.write("in.ipc", &fx.encode(rgb8(8, 8), 18));
    let output = fx.dir.write("out.png", b"old contents");
    decode_fails(
        &fx.dir,
        &input,
        &output,
        &audio.pack_path(),
        5,
        &["in.ipc", "out.png", "pack.ipcpack"],
    );
    assert_eq!(fs::read(&output).unwrap(), b"old contents");

    let out = run(
        &[
            "decode".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            output.as_os_str(),
            "--model".as_ref(),
            fx.pack_path().as_os_str(),
        ],
        None,
    );
    assert_success(&out);
    assert!(image::open(&output).is_ok());
    fx.dir.assert_holds(&["in.ipc", "out.png", "pack.ipcpack"]);
}

#[test]
fn limits_are_enforced() {
    let fx = Fixture::image();
    let input = fx.dir.write("in.ipc", &fx.encode(rgb8(20, 12), 19));
    let out = run(
        &[
            "decode".as_ref(),
            input.as_os_str(),
            "-o".as_ref(),
            fx.dir.join("out.png").as_os_str(),
            "--model".as_ref(),
            fx.pack_path().as_os_str(),
            "--max-pixels".as_ref(),
            "100".as_ref(),
        ],
        None,
    );
    let line = assert_fails(&out, 4);
    assert!(line.contains("240"), "{line}");
    fx.dir.assert_holds(&["in.ipc", "pack.ipcpack"]);
}

#[test]
fn usage_errors_are_one_line_with_status_2() {
    let out = run(&["decode", "x.ipc", "--bogus"], None);
    let line = assert_fails(&out, 2);
    assert!(line.contains("--bogus"), "{line}");
    let out = run(&["decode", "x.ipc"], None);
    let line = assert_fails(&out, 2);
    assert!(line.contains("--output"), "{line}");
    let out = run(
        &["decode", "x.ipc", "-o", "y.png", "--threads", "many"],
        None,
    );
    assert_fails(&out, 2);
}

#[test]
fn help_has_examples() {
    for args in [
        &["--help"][..],
        &["encode", "--help"],
        &["decode", "--help"],
        &["info", "--help"],
    ] {
        let out = run(args, None);
        assert_success(&out);
        let s = text(&out.stdout);
        assert!(s.contains("Examples:"), "{args:?}:\n{s}");
    }
}
