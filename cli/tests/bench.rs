//! End-to-end tests of `ipc-codec bench rd`: small generated images and a generated WAV
//! clip, ipc with synthetic packs (seeded, not trained; they carry encoder tensors),
//! and whichever classical codecs are installed (the others must be reported as
//! skipped, so these tests pass with or without scripts/install-codecs).

use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::{ImageBuffer, Rgb};
use ipc_codec::pack::synthetic::SyntheticPack;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_ipc-codec");

/// A fresh directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("ipc-codec-bench-test-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        TempDir(path)
    }

    fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Inputs and packs for a run.
struct Fixture {
    dir: TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = TempDir::new();
        for (name, shape) in [
            ("image.ipcpack", SyntheticPack::small_image()),
            ("audio.ipcpack", SyntheticPack::small_audio()),
        ] {
            let bytes = shape.build_with_encoders().to_pack_file().unwrap();
            fs::write(dir.join(name), bytes).unwrap();
        }
        fs::create_dir_all(dir.join("images")).unwrap();
        // Three images; --quick takes the first two. Small, so that debug builds stay
        // fast (MS-SSIM is then not defined and left out).
        for (i, name) in ["a.png", "b.png", "c.png"].iter().enumerate() {
            let img = ImageBuffer::from_fn(72, 56, |x, y| {
                let t = (x as f64 / 5.0 + i as f64).sin() * 60.0 + (y as f64 / 7.0).cos() * 50.0;
                Rgb([
                    (128.0 + t) as u8,
                    (x * 3 + y) as u8,
                    (200.0 - t * 0.5) as u8,
                ])
            });
            img.save(dir.join("images").join(name)).unwrap();
        }
        fs::create_dir_all(dir.join("audio")).unwrap();
        write_wav(&dir.join("audio").join("tone.wav"), 16_000, 16_000);
        Fixture { dir }
    }

    fn out(&self) -> PathBuf {
        self.dir.join("out")
    }

    /// `bench rd --quick` on the fixture's inputs with its packs, and `extra`.
    fn bench(&self, extra: &[&str], path: Option<&Path>) -> Output {
        let mut args: Vec<OsString> = vec![
            "bench".into(),
            "rd".into(),
            "--images".into(),
            self.dir.join("images").into(),
            "--audio".into(),
            self.dir.join("audio").into(),
            "--out".into(),
            self.out().into(),
            "--quick".into(),
            "--model".into(),
            self.dir.join("image.ipcpack").into(),
            "--audio-model".into(),
            self.dir.join("audio.ipcpack").into(),
            "--quiet".into(),
        ];
        args.extend(extra.iter().map(OsString::from));
        let mut cmd = Command::new(BIN);
        cmd.args(&args);
        if let Some(p) = path {
            cmd.env("PATH", p);
        }
        cmd.output().unwrap()
    }
}

/// A 16-bit mono WAV: two tones and a little deterministic noise.
fn write_wav(path: &Path, rate: u32, frames: usize) {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    let mut s: u32 = 1;
    for i in 0..frames {
        let t = i as f64 / f64::from(rate);
        s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        let noise = (f64::from(s >> 8) / f64::from(1u32 << 24) - 0.5) * 0.02;
        let x = 0.4 * (2.0 * std::f64::consts::PI * 330.0 * t).sin()
            + 0.2 * (2.0 * std::f64::consts::PI * 1250.0 * t).sin()
            + noise;
        w.write_sample((x * 32767.0).round() as i16).unwrap();
    }
    w.finalize().unwrap();
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn assert_success(out: &Output) {
    assert!(
        out.status.success(),
        "status {:?}\nstderr: {}",
        out.status,
        text(&out.stderr)
    );
}

fn points(out: &Path) -> Vec<Value> {
    let v: Value =
        serde_json::from_str(&fs::read_to_string(out.join("points.json")).unwrap()).unwrap();
    v["points"].as_array().unwrap().clone()
}

fn skipped(out: &Path) -> Vec<String> {
    let v: Value =
        serde_json::from_str(&fs::read_to_string(out.join("points.json")).unwrap()).unwrap();
    v["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["codec"].as_str().unwrap().to_string())
        .collect()
}

fn installed(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Codec name as points record it, and the tool that shows it is installed.
const CLASSICAL: &[(&str, &str, &str)] = &[
    ("JPEG", "cjpeg", "image"),
    ("WebP", "cwebp", "image"),
    ("AVIF", "avifenc", "image"),
    ("JPEG XL", "cjxl", "image"),
    ("JPEG 2000", "opj_compress", "image"),
    ("HEVC (HEIF)", "heif-enc", "image"),
    ("Opus", "opusenc", "audio"),
    ("MP3", "lame", "audio"),
    ("FLAC", "flac", "audio"),
];

#[test]
fn quick_run_measures_every_codec_then_resumes_with_nothing_new() {
    let f = Fixture::new();
    let report = f.dir.join("doc").join("results.md");
    let out = f.bench(&["--jobs", "2", "--report", report.to_str().unwrap()], None);
    assert_success(&out);
    let stderr = text(&out.stderr);
    let pts = points(&f.out());
    let skipped = skipped(&f.out());

    // ipc: 3 levels of the image pack (0, 1, 2) on 2 images, 2 of the audio pack on the clip.
    let ipc: Vec<&Value> = pts.iter().filter(|p| p["codec"] == "ipc").collect();
    assert_eq!(ipc.len(), 3 * 2 + 2, "{ipc:?}");
    for p in &ipc {
        assert!(!p["pack"].as_str().unwrap().is_empty());
        assert_eq!(p["series"], "ipc effort 0");
        assert!(p["psnr"].as_f64().unwrap() > 0.0);
        assert!(p["bytes"].as_u64().unwrap() > 0);
    }
    let files: std::collections::BTreeSet<&str> =
        pts.iter().map(|p| p["file"].as_str().unwrap()).collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        ["a.png@crop192", "b.png@crop192", "tone.wav@first2s"]
    );

    for &(codec, tool, kind) in CLASSICAL {
        let n = pts.iter().filter(|p| p["codec"] == codec).count();
        if installed(tool) {
            let per_file = if codec == "FLAC" { 1 } else { 3 };
            let files = if kind == "image" { 2 } else { 1 };
            assert_eq!(n, per_file * files, "{codec}: {stderr}");
            assert!(!skipped.iter().any(|s| s == codec));
        } else {
            assert_eq!(n, 0);
            assert!(skipped.iter().any(|s| s == codec), "{codec} not reported");
            assert!(stderr.contains(&format!("skipping {codec}")), "{stderr}");
        }
    }
    for p in &pts {
        match p["kind"].as_str().unwrap() {
            "image" => {
                assert!(p["bpp"].as_f64().unwrap() > 0.0);
                assert!(p["kbps"].is_null());
                assert!(p["stoi"].is_null());
            }
            _ => {
                assert!(p["kbps"].as_f64().unwrap() > 0.0);
                assert!(p["snr"].is_number() || p["codec"] == "FLAC");
                let stoi = p["stoi"].as_f64().unwrap();
                // A correlation: in [-1, 1] (the synthetic pack codes noise).
                assert!((-1.0 - 1e-9..=1.0 + 1e-9).contains(&stoi), "{p}");
            }
        }
        assert!(p["encode_s"].as_f64().unwrap() >= 0.0);
    }
    // Lossless is lossless, and a delayed decoder output (MP3) is lined up before it
    // is measured: a steady tone at 64 kbit/s then comes back far above 10 dB SNR.
    if installed("flac") {
        let flac = pts.iter().find(|p| p["codec"] == "FLAC").unwrap();
        assert!(flac["psnr"].is_null() && flac["snr"].is_null());
        assert!(flac["stoi"].as_f64().unwrap() > 0.999, "{flac}");
    }
    if installed("lame") {
        let mp3 = pts
            .iter()
            .find(|p| p["codec"] == "MP3" && p["setting"] == "kbps=64")
            .unwrap();
        assert!(mp3["snr"].as_f64().unwrap() > 15.0, "{mp3}");
    }
    if installed("opusenc") {
        let opus = pts
            .iter()
            .find(|p| p["codec"] == "Opus" && p["setting"] == "kbps=32")
            .unwrap();
        assert!(opus["snr"].as_f64().unwrap() > 10.0, "{opus}");
    }

    // The CSV holds the same points.
    let csv = fs::read_to_string(f.out().join("points.csv")).unwrap();
    assert_eq!(csv.lines().count(), pts.len() + 1);
    assert!(csv.starts_with(
        "kind,codec,series,setting,file,pack,bytes,bpp,kbps,psnr,ms_ssim,snr,encode_s,decode_s,stoi\n"
    ));

    // Summary, plots and report.
    let summary = fs::read_to_string(f.out().join("summary.md")).unwrap();
    assert!(summary.contains("| ipc effort 0 |"), "{summary}");
    assert!(summary.contains("BD-rate vs JPEG"));
    for stem in ["rd-images", "rd-audio"] {
        assert!(fs::read(f.out().join(format!("{stem}.png")))
            .unwrap()
            .starts_with(b"\x89PNG"));
        assert!(fs::read_to_string(f.out().join(format!("{stem}.svg")))
            .unwrap()
            .starts_with("<svg"));
    }
    let doc = fs::read_to_string(&report).unwrap();
    assert!(
        doc.contains("bench rd --images ../shared/data/kodak"),
        "regenerate command"
    );
    assert!(doc.contains("--quick"), "the exact command line");
    assert!(doc.contains("Machine: "));
    assert!(f.dir.join("doc").join("results-images.svg").exists());

    // A second run finds everything measured.
    let before = fs::read_to_string(f.out().join("points.json")).unwrap();
    let again = f.bench(&["--jobs", "1"], None);
    assert_success(&again);
    assert!(
        text(&again.stderr).contains("bench rd: 0 points measured"),
        "{}",
        text(&again.stderr)
    );
    assert_eq!(
        points(&f.out()),
        serde_json::from_str::<Value>(&before).unwrap()["points"]
            .as_array()
            .unwrap()
            .clone()
    );

    // Also from the CSV alone.
    fs::remove_file(f.out().join("points.json")).unwrap();
    let from_csv = f.bench(&["--jobs", "1"], None);
    assert_success(&from_csv);
    assert!(
        text(&from_csv.stderr).contains("bench rd: 0 points measured"),
        "{}",
        text(&from_csv.stderr)
    );
    assert_eq!(points(&f.out()).len(), pts.len());
}

#[test]
fn missing_tools_are_reported_and_skipped() {
    let f = Fixture::new();
    let empty = f.dir.join("no-tools");
    fs::create_dir_all(&empty).unwrap();
    let out = f.bench(&["--codecs", "ipc,jpeg,opus", "--jobs", "1"], Some(&empty));
    assert_success(&out);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("skipping JPEG: cjpeg, djpeg not installed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("skipping Opus: opusenc, opusdec not installed"),
        "{stderr}"
    );
    assert_eq!(skipped(&f.out()), ["JPEG", "Opus"]);
    let pts = points(&f.out());
    assert!(!pts.is_empty() && pts.iter().all(|p| p["codec"] == "ipc"));
    let summary = fs::read_to_string(f.out().join("summary.md")).unwrap();
    assert!(
        summary.contains("- JPEG: cjpeg, djpeg not installed"),
        "{summary}"
    );
}

#[test]
fn bad_inputs_fail_cleanly() {
    let f = Fixture::new();
    // Unknown codec: a usage error.
    let out = f.bench(&["--codecs", "png"], None);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("unknown codec"));

    // A damaged image: its points fail and are listed; the others are measured.
    fs::write(
        f.dir.join("images").join("a.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    let out = f.bench(&["--codecs", "ipc", "--jobs", "1"], None);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.contains("a.png@crop192"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    let pts = points(&f.out());
    assert!(pts.iter().any(|p| p["file"] == "b.png@crop192"));
    assert!(!pts.iter().any(|p| p["file"] == "a.png@crop192"));
    assert!(fs::read_to_string(f.out().join("summary.md"))
        .unwrap()
        .contains("Failed points"));

    // A cache that is not ours is refused, not overwritten.
    fs::write(f.out().join("points.json"), b"{\"something\": 1}").unwrap();
    let out = f.bench(&["--codecs", "ipc"], None);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("is not a points file of bench rd"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(
        fs::read(f.out().join("points.json")).unwrap(),
        b"{\"something\": 1}"
    );

    // A pack for the wrong modality.
    let out = Command::new(BIN)
        .args([
            "bench", "rd", "--quiet", "--quick", "--codecs", "ipc", "--images",
        ])
        .arg(f.dir.join("images"))
        .arg("--out")
        .arg(f.dir.join("out2"))
        .arg("--model")
        .arg(f.dir.join("audio.ipcpack"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));

    // No such folder.
    let out = Command::new(BIN)
        .args(["bench", "rd", "--images", "/nonexistent/images", "--out"])
        .arg(f.dir.join("out3"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
}
