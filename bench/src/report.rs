//! What a run writes besides the points: the Markdown summary, the RD plots and the
//! results document (`--report`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};

use super::curves::{bd_rate, quality_at, RdPoint};
use super::plot::{self, Chart, Curve};
use super::store::{self, parse_csv, Kind, Point, Store};

/// The published Kodak curves kept in the project (data/published/README.md).
const PUBLISHED_KODAK: &str = include_str!("../../data/published/kodak_rd.csv");

/// The one command that regenerates docs/results.md (run from the repository root,
/// with the data sets of the project's shared folder beside it).
pub const REGENERATE: &str = "cargo run --release -p ipc-codec-cli -- bench rd \
--images ../shared/data/kodak --audio ../shared/data/eval-speech --out target/bench-rd \
--effort 0,20 --report docs/results.md";

/// Image rates at which PSNR is tabled (bits per pixel).
const IMAGE_RATES: [f64; 3] = [0.25, 0.5, 1.0];
/// Audio rates at which SNR is tabled (kbit/s).
const AUDIO_RATES: [f64; 3] = [8.0, 16.0, 32.0];

/// What the run was, for the documents.
pub struct Inputs {
    pub image_files: Vec<String>,
    pub audio_files: Vec<String>,
    /// (pack id, where it came from).
    pub image_pack: Option<(String, String)>,
    pub audio_pack: Option<(String, String)>,
    pub skipped: Vec<(String, String)>,
    pub failures: Vec<String>,
    pub quick: bool,
    pub jobs: usize,
}

/// One setting of one curve, averaged over the files.
#[derive(Debug, Clone)]
struct Agg {
    setting: String,
    rate: f64,
    psnr: f64,
    ms_ssim: Option<f64>,
    snr: Option<f64>,
    stoi: Option<f64>,
    encode_s: f64,
    decode_s: f64,
}

#[derive(Debug, Clone)]
struct Series {
    name: String,
    points: Vec<Agg>,
}

impl Series {
    fn rd(&self) -> Vec<RdPoint> {
        self.points
            .iter()
            .map(|a| RdPoint {
                rate: a.rate,
                quality: a.psnr,
            })
            .collect()
    }
}

/// Mean of values where an infinite one (lossless) makes the mean infinite.
fn mean(values: impl Iterator<Item = f64>) -> f64 {
    let v: Vec<f64> = values.collect();
    v.iter().sum::<f64>() / v.len().max(1) as f64
}

fn mean_opt(values: impl Iterator<Item = Option<f64>>) -> Option<f64> {
    let v: Option<Vec<f64>> = values.collect();
    v.filter(|v| !v.is_empty()).map(|v| mean(v.into_iter()))
}

/// The curves of `kind` over exactly `files`: a setting counts only when every file
/// was measured with it (a mean over fewer files would not be comparable), and ipc
/// points only with the pack and the encoder revision of this run. Rates and qualities are means of the
/// per-file values.
fn aggregate(store: &Store, kind: Kind, files: &[String], pack: Option<&str>) -> Vec<Series> {
    let mut groups: BTreeMap<(String, String), Vec<&Point>> = BTreeMap::new();
    for p in &store.points {
        if p.kind != kind || !files.contains(&p.file) {
            continue;
        }
        if p.codec == "ipc"
            && (Some(p.pack.as_str()) != pack || !crate::by_this_encoder(&p.setting))
        {
            continue;
        }
        groups
            .entry((p.series.clone(), p.setting.clone()))
            .or_default()
            .push(p);
    }
    let mut series: BTreeMap<String, Vec<Agg>> = BTreeMap::new();
    for ((name, setting), pts) in groups {
        if pts.len() != files.len() {
            continue;
        }
        let agg = Agg {
            setting,
            rate: mean(pts.iter().map(|p| p.rate)),
            psnr: mean(pts.iter().map(|p| p.psnr)),
            ms_ssim: mean_opt(pts.iter().map(|p| p.ms_ssim)),
            snr: mean_opt(pts.iter().map(|p| p.snr)),
            stoi: mean_opt(pts.iter().map(|p| p.stoi)),
            encode_s: mean(pts.iter().map(|p| p.encode_s)),
            decode_s: mean(pts.iter().map(|p| p.decode_s)),
        };
        series.entry(name).or_default().push(agg);
    }
    let mut out: Vec<Series> = series
        .into_iter()
        .map(|(name, mut points)| {
            points.sort_by(|a, b| a.rate.total_cmp(&b.rate));
            Series { name, points }
        })
        .collect();
    // ipc first, then the others by name.
    out.sort_by_key(|s| (!s.name.starts_with("ipc"), s.name.clone()));
    out
}

/// The published curves, by codec, in file order.
fn published() -> Result<Vec<(String, String, Vec<RdPoint>)>> {
    let records = parse_csv(PUBLISHED_KODAK)?;
    let mut out: Vec<(String, String, Vec<RdPoint>)> = Vec::new();
    for r in records.iter().skip(1) {
        if r.len() != 5 {
            continue;
        }
        let (Ok(rate), Ok(quality)) = (r[2].parse::<f64>(), r[3].parse::<f64>()) else {
            continue;
        };
        let point = RdPoint { rate, quality };
        match out.iter_mut().find(|(c, _, _)| *c == r[0]) {
            Some((_, _, pts)) => pts.push(point),
            None => out.push((r[0].clone(), r[4].clone(), vec![point])),
        }
    }
    Ok(out)
}

fn db(x: Option<f64>) -> String {
    match x {
        Some(v) if v.is_finite() => format!("{v:.2}"),
        Some(v) if v > 0.0 => "lossless".into(),
        _ => "—".into(),
    }
}

/// A STOI value to three places, or a dash.
fn score(x: Option<f64>) -> String {
    x.filter(|v| v.is_finite())
        .map_or("—".into(), |v| format!("{v:.3}"))
}

fn pct(x: Option<f64>) -> String {
    x.map_or("—".into(), |v| format!("{v:+.1}%"))
}

fn secs(x: f64) -> String {
    if x >= 10.0 {
        format!("{x:.1}")
    } else {
        format!("{x:.3}")
    }
}

/// A reference curve for BD-rates, and its name.
type Reference = Option<(String, Vec<RdPoint>)>;

/// The classical (`jpeg`: JPEG or Opus) and ipc reference curves for BD-rates.
fn references(series: &[Series], jpeg: &str) -> (Option<Vec<RdPoint>>, Reference) {
    let j = series.iter().find(|s| s.name == jpeg).map(Series::rd);
    let i = series
        .iter()
        .find(|s| s.name.starts_with("ipc"))
        .map(|s| (s.name.clone(), s.rd()));
    (j, i)
}

fn image_section(store: &Store, inputs: &Inputs, plot_stem: &str) -> Result<String> {
    let files = &inputs.image_files;
    let pack = inputs.image_pack.as_ref().map(|(id, _)| id.as_str());
    let series = aggregate(store, Kind::Image, files, pack);
    let mut s = String::new();
    let _ = writeln!(s, "![PSNR against bits per pixel]({plot_stem}.svg)\n");
    let (jpeg, ipc) = references(&series, "JPEG");
    let ipc_name = ipc.as_ref().map_or("ipc".to_string(), |(n, _)| n.clone());
    let _ = writeln!(
        s,
        "Mean over {} images. PSNR in dB at the given bits per pixel, interpolated in \
         log-bpp between measured points (— outside a codec's measured range). BD-rate: \
         Bjøntegaard delta rate against our JPEG and against {ipc_name} (negative: fewer \
         bits for the same PSNR; — where the PSNR ranges do not overlap). Times are \
         seconds per image.\n",
        files.len()
    );
    let _ = writeln!(
        s,
        "| codec | PSNR @ 0.25 bpp | @ 0.5 bpp | @ 1 bpp | MS-SSIM @ 0.5 bpp | BD-rate vs JPEG | BD-rate vs {ipc_name} | encode s | decode s | points |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for se in &series {
        let rd = se.rd();
        let ms: Vec<RdPoint> = se
            .points
            .iter()
            .filter_map(|a| {
                a.ms_ssim.map(|m| RdPoint {
                    rate: a.rate,
                    quality: m,
                })
            })
            .collect();
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            se.name,
            db(quality_at(&rd, IMAGE_RATES[0])),
            db(quality_at(&rd, IMAGE_RATES[1])),
            db(quality_at(&rd, IMAGE_RATES[2])),
            quality_at(&ms, 0.5).map_or("—".into(), |v| format!("{v:.4}")),
            pct(jpeg.as_ref().and_then(|j| bd_rate(j, &rd))),
            pct(ipc.as_ref().and_then(|(_, i)| bd_rate(i, &rd))),
            secs(mean(se.points.iter().map(|a| a.encode_s))),
            secs(mean(se.points.iter().map(|a| a.decode_s))),
            se.points.len(),
        );
    }
    let published = published()?;
    let _ = writeln!(
        s,
        "\nPublished figures on Kodak (the authors' numbers, not measured here; \
         data/published/README.md cites them), against our measured curves:\n"
    );
    let _ = writeln!(
        s,
        "| codec (published) | PSNR @ 0.25 bpp | @ 0.5 bpp | @ 1 bpp | BD-rate vs our JPEG | BD-rate vs {ipc_name} |"
    );
    let _ = writeln!(s, "|---|---:|---:|---:|---:|---:|");
    for (name, _, rd) in &published {
        let _ = writeln!(
            s,
            "| {name} | {} | {} | {} | {} | {} |",
            db(quality_at(rd, IMAGE_RATES[0])),
            db(quality_at(rd, IMAGE_RATES[1])),
            db(quality_at(rd, IMAGE_RATES[2])),
            pct(jpeg.as_ref().and_then(|j| bd_rate(j, rd))),
            pct(ipc.as_ref().and_then(|(_, i)| bd_rate(i, rd))),
        );
    }
    let _ = writeln!(
        s,
        "\n<details><summary>Every setting (means over the images)</summary>\n"
    );
    let _ = writeln!(
        s,
        "| codec | setting | bpp | PSNR | MS-SSIM | encode s | decode s |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|");
    for se in &series {
        for a in &se.points {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {} | {} | {} | {} |",
                se.name,
                a.setting,
                a.rate,
                db(Some(a.psnr)),
                a.ms_ssim.map_or("—".into(), |v| format!("{v:.4}")),
                secs(a.encode_s),
                secs(a.decode_s)
            );
        }
    }
    let _ = writeln!(s, "\n</details>\n");
    Ok(s)
}

fn audio_section(store: &Store, inputs: &Inputs, plot_stem: &str) -> String {
    let files = &inputs.audio_files;
    let pack = inputs.audio_pack.as_ref().map(|(id, _)| id.as_str());
    let series = aggregate(store, Kind::Audio, files, pack);
    let mut s = String::new();
    let _ = writeln!(s, "![PSNR against kbit/s]({plot_stem}.svg)\n");
    let (opus, ipc) = references(&series, "Opus");
    let ipc_name = ipc.as_ref().map_or("ipc".to_string(), |(n, _)| n.clone());
    let _ = writeln!(
        s,
        "Mean over {} clips. SNR in dB and STOI (short-time objective intelligibility, \
         up to 1: how much of the speech stays intelligible, which SNR does not say for \
         perceptual codecs) at the given bit rates (interpolated in log-rate; — outside \
         the measured range); BD-rates on PSNR (peak 1) against Opus and {ipc_name}. \
         Times are seconds per clip.\n",
        files.len()
    );
    let _ = writeln!(
        s,
        "| codec | SNR @ 8 kbit/s | @ 16 kbit/s | @ 32 kbit/s | STOI @ 8 kbit/s | @ 16 kbit/s | @ 32 kbit/s | BD-rate vs Opus | BD-rate vs {ipc_name} | encode s | decode s | points |"
    );
    let _ = writeln!(
        s,
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for se in &series {
        let rd = se.rd();
        let snr: Vec<RdPoint> = se
            .points
            .iter()
            .filter_map(|a| {
                a.snr.map(|q| RdPoint {
                    rate: a.rate,
                    quality: q,
                })
            })
            .collect();
        let stoi: Vec<RdPoint> = se
            .points
            .iter()
            .filter_map(|a| {
                a.stoi.map(|q| RdPoint {
                    rate: a.rate,
                    quality: q,
                })
            })
            .collect();
        // Every setting must have it, or the curve would be another one.
        let stoi_at = |r: f64| {
            if stoi.len() == se.points.len() {
                score(quality_at(&stoi, r))
            } else {
                "—".into()
            }
        };
        let lossless = se.points.iter().all(|a| a.psnr == f64::INFINITY);
        let at = |r: f64| {
            if lossless {
                "lossless".to_string()
            } else {
                db(quality_at(&snr, r))
            }
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            se.name,
            at(AUDIO_RATES[0]),
            at(AUDIO_RATES[1]),
            at(AUDIO_RATES[2]),
            stoi_at(AUDIO_RATES[0]),
            stoi_at(AUDIO_RATES[1]),
            stoi_at(AUDIO_RATES[2]),
            pct(opus.as_ref().and_then(|o| bd_rate(o, &rd))),
            pct(ipc.as_ref().and_then(|(_, i)| bd_rate(i, &rd))),
            secs(mean(se.points.iter().map(|a| a.encode_s))),
            secs(mean(se.points.iter().map(|a| a.decode_s))),
            se.points.len(),
        );
    }
    let _ = writeln!(
        s,
        "\n<details><summary>Every setting (means over the clips)</summary>\n"
    );
    let _ = writeln!(
        s,
        "| codec | setting | kbit/s | SNR | PSNR | STOI | encode s | decode s |"
    );
    let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|");
    for se in &series {
        for a in &se.points {
            let _ = writeln!(
                s,
                "| {} | {} | {:.3} | {} | {} | {} | {} | {} |",
                se.name,
                a.setting,
                a.rate,
                db(a.snr),
                db(Some(a.psnr)),
                score(a.stoi),
                secs(a.encode_s),
                secs(a.decode_s)
            );
        }
    }
    let _ = writeln!(s, "\n</details>\n");
    s
}

fn status_section(inputs: &Inputs) -> String {
    let mut s = String::new();
    if !inputs.skipped.is_empty() {
        let _ = writeln!(s, "Skipped codecs:\n");
        for (c, why) in &inputs.skipped {
            let _ = writeln!(s, "- {c}: {why}");
        }
        s.push('\n');
    }
    if !inputs.failures.is_empty() {
        let _ = writeln!(s, "Failed points:\n");
        for f in &inputs.failures {
            let _ = writeln!(s, "- {f}");
        }
        s.push('\n');
    }
    s
}

fn charts(store: &Store, inputs: &Inputs, kind: Kind) -> Result<Option<(String, Vec<u8>)>> {
    let (files, pack) = match kind {
        Kind::Image => (&inputs.image_files, &inputs.image_pack),
        Kind::Audio => (&inputs.audio_files, &inputs.audio_pack),
    };
    if files.is_empty() {
        return Ok(None);
    }
    let series = aggregate(store, kind, files, pack.as_ref().map(|(id, _)| id.as_str()));
    let mut curves: Vec<Curve> = series
        .iter()
        .map(|s| Curve {
            name: s.name.clone(),
            points: s.points.iter().map(|a| (a.rate, a.psnr)).collect(),
            published: false,
        })
        .collect();
    let measured_max = curves
        .iter()
        .flat_map(|c| c.points.iter())
        .filter(|p| p.1.is_finite())
        .map(|p| p.0)
        .fold(0.0, f64::max);
    let (title, x_label, x_max) = match kind {
        // Published Kodak curves belong on a Kodak-sized chart of up to 2 bpp.
        Kind::Image => {
            if !inputs.quick {
                for (name, _, pts) in published()? {
                    curves.push(Curve {
                        name,
                        points: pts.iter().map(|p| (p.rate, p.quality)).collect(),
                        published: true,
                    });
                }
            }
            (
                "Images: PSNR (RGB) against rate",
                "bits per pixel",
                if measured_max > 0.0 {
                    measured_max.min(2.0) * 1.02
                } else {
                    2.0
                },
            )
        }
        Kind::Audio => (
            "Audio: PSNR (peak 1) against rate",
            "kbit/s",
            if measured_max > 0.0 {
                measured_max * 1.02
            } else {
                64.0
            },
        ),
    };
    let text = plot::font_available();
    let chart = Chart {
        title,
        x_label,
        y_label: "PSNR (dB)",
        x_max,
        curves: &curves,
    };
    plot::render(&chart, text).map(Some)
}

/// Writes summary.md and the plots into `out`, and the results document to `report`.
pub fn write_outputs(
    store: &Store,
    inputs: &Inputs,
    out: &Path,
    report: Option<&Path>,
) -> Result<()> {
    if !plot::font_available() {
        eprintln!(
            "bench rd: no DejaVu Sans font found (scripts/install-codecs installs \
             fonts-dejavu-core); the plots are drawn without text"
        );
    }
    let mut plots = Vec::new();
    for (kind, stem) in [(Kind::Image, "rd-images"), (Kind::Audio, "rd-audio")] {
        if let Some((svg, png)) = charts(store, inputs, kind)? {
            store::write_atomic(&out.join(format!("{stem}.svg")), svg.as_bytes())?;
            store::write_atomic(&out.join(format!("{stem}.png")), &png)?;
            plots.push((kind, stem, svg, png));
        }
    }
    let body = |image_stem: &str, audio_stem: &str| -> Result<String> {
        let mut s = String::new();
        if !inputs.image_files.is_empty() {
            let _ = writeln!(s, "## Images\n");
            s.push_str(&image_section(store, inputs, image_stem)?);
        }
        if !inputs.audio_files.is_empty() {
            let _ = writeln!(s, "## Audio\n");
            s.push_str(&audio_section(store, inputs, audio_stem));
        }
        s.push_str(&status_section(inputs));
        Ok(s)
    };
    let mut summary = String::from("# bench rd summary\n\n");
    summary.push_str(&body("rd-images", "rd-audio")?);
    store::write_atomic(&out.join("summary.md"), summary.as_bytes())?;

    if let Some(report) = report {
        let stem = report
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "results".into());
        let dir = report
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let image_stem = format!("{stem}-images");
        let audio_stem = format!("{stem}-audio");
        for (kind, _, svg, png) in &plots {
            let s = if *kind == Kind::Image {
                &image_stem
            } else {
                &audio_stem
            };
            store::write_atomic(&dir.join(format!("{s}.svg")), svg.as_bytes())?;
            store::write_atomic(&dir.join(format!("{s}.png")), png)?;
        }
        let mut doc = String::from("# Results\n\n");
        let _ = writeln!(
            doc,
            "Regenerate everything on this page (tables and plots) with one command, from the \
             repository root (scripts/install-codecs installs the classical codecs first):\n\n\
             ```sh\n{REGENERATE}\n```\n"
        );
        doc.push_str(&preamble(inputs));
        doc.push_str(&body(&image_stem, &audio_stem)?);
        doc.push_str(METHOD_NOTES);
        store::write_atomic(report, doc.as_bytes())
            .with_context(|| format!("cannot write the report {}", report.display()))?;
    }
    Ok(())
}

const METHOD_NOTES: &str = "\
## How it is measured

- Every codec codes the same 8-bit RGB pixels (audio: the same 16-bit samples at the
  speech pack's rate, 16 kHz). Sizes are whole files as the tools write them (JPEG
  2000: a .j2k codestream; HEVC: a HEIF file; Opus: an Ogg file).
- PSNR is measured here on the decoded 8-bit RGB against the original, per image, then
  averaged over the images; audio PSNR has peak 1 on samples in [-1, 1]. MS-SSIM is
  Wang et al. (2003), five scales, 11x11 Gaussian window (sigma 1.5), the standard
  weights, computed on R, G and B separately and averaged.
- ipc: the library encoder at each quality level of the pack (`--effort` refinement
  steps, hypernetwork prediction); its encode time includes the encoder's own check
  decode. Classical codecs: JPEG `cjpeg -optimize -quality Q` (4:2:0); WebP `cwebp -q Q`;
  AVIF `avifenc -y 444 -s 6 --min Q --max Q`; JPEG XL `cjxl -d D`; JPEG 2000
  `opj_compress -r 24/bpp`; HEVC `heif-enc -q Q -p chroma=444` (x265); Opus
  `opusenc --bitrate K`, decoded with `opusdec --rate 16000`; MP3 `lame -b K --cbr
  --resample 16`, decoded with `lame --decode`; FLAC `flac -8` (lossless). The Opus and
  MP3 outputs are shifted to line up with the input first: the lag (MP3: 576 samples
  here; Opus: up to a sample) is found by cross-correlation.
- Times are wall-clock seconds of one encode or decode, tools' process start included,
  with the files coded in parallel jobs each on one thread (see Machine).
- BD-rate: Bjøntegaard (VCEG-M33): log-rate fitted as a cubic polynomial of PSNR,
  integrated over the PSNR interval both curves cover.
";

fn preamble(inputs: &Inputs) -> String {
    let mut s = String::new();
    let command: Vec<String> = std::env::args_os()
        .map(|a| shell_quote(&a.to_string_lossy()))
        .collect();
    let _ = writeln!(
        s,
        "Measured on {} (UTC) with:\n\n```sh\n{}\n```\n",
        utc_date(),
        command.join(" ")
    );
    let _ = writeln!(
        s,
        "Machine: {}; {} files coded at a time, each encoder and decoder on {}.\n",
        machine(),
        inputs.jobs,
        if inputs.jobs > 1 {
            "one thread"
        } else {
            "every core"
        }
    );
    if let Some((id, source)) = &inputs.image_pack {
        let _ = writeln!(s, "Image pack: {id} ({source}).\n");
    }
    if let Some((id, source)) = &inputs.audio_pack {
        let _ = writeln!(s, "Audio pack: {id} ({source}).\n");
    }
    if inputs.quick {
        let _ = writeln!(s, "**Quick run** (--quick): cropped images, cut clips, few settings; not for comparison.\n");
    }
    s
}

fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=,:@%+".contains(c))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

/// The CPU model and the number of logical CPUs, from /proc/cpuinfo.
fn machine() -> String {
    let info = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = info
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            (k.trim() == "model name").then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let count = info
        .lines()
        .filter(|l| l.split(':').next().is_some_and(|k| k.trim() == "processor"))
        .count();
    let count = if count > 0 {
        count
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    };
    format!("{model}, {count} logical CPUs")
}

/// Today's date (UTC) as YYYY-MM-DD.
fn utc_date() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days((secs / 86_400) as i64);
    format!("{y:04}-{m:02}-{d:02}")
}

/// The proleptic Gregorian date `days` after 1970-01-01: count whole 400-year eras
/// (146097 days each), then years within the era from a March-based year (so that the
/// leap day falls at the end), then the month from the day of that year.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468; // days since 0000-03-01
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // day of the March-based year
    let mp = (5 * doy + 2) / 153; // month from March = 0
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(59), (1970, 3, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
        assert_eq!(civil_from_days(19_723), (2024, 1, 1));
        assert_eq!(civil_from_days(-1), (1969, 12, 31));
    }

    #[test]
    fn published_curves_parse() {
        let p = published().unwrap();
        let names: Vec<&str> = p.iter().map(|(n, _, _)| n.as_str()).collect();
        for n in ["JPEG", "BPG444", "C3", "COIN++", "VC-INR"] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        // The anchors' README quotes JPEG 28.95 dB and C3 34.22 dB at 0.5 bpp.
        let at = |name: &str| {
            let (_, _, pts) = p.iter().find(|(n, _, _)| n == name).unwrap();
            quality_at(pts, 0.5).unwrap()
        };
        assert!((at("JPEG") - 28.95).abs() < 0.01, "{}", at("JPEG"));
        assert!((at("C3") - 34.22).abs() < 0.01, "{}", at("C3"));
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--out"), "--out");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }

    fn point(series: &str, setting: &str, file: &str, rate: f64, psnr: f64) -> Point {
        Point {
            kind: Kind::Image,
            codec: series.into(),
            series: series.into(),
            setting: setting.into(),
            file: file.into(),
            pack: String::new(),
            bytes: 1,
            rate,
            psnr,
            ms_ssim: Some(0.9),
            snr: None,
            stoi: None,
            encode_s: 1.0,
            decode_s: 2.0,
        }
    }

    #[test]
    fn aggregation_needs_every_file() {
        let mut store = Store::default();
        store.insert(point("JPEG", "q=50", "a", 1.0, 30.0));
        store.insert(point("JPEG", "q=50", "b", 2.0, 32.0));
        store.insert(point("JPEG", "q=90", "a", 3.0, 40.0));
        store.insert(point("JPEG", "q=10", "other", 3.0, 40.0));
        let files = vec!["a".to_string(), "b".to_string()];
        let s = aggregate(&store, Kind::Image, &files, None);
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].points.len(), 1);
        assert_eq!((s[0].points[0].rate, s[0].points[0].psnr), (1.5, 31.0));
    }

    #[test]
    fn ipc_points_of_another_encoder_revision_are_left_out() {
        let mut store = Store::default();
        let now = crate::ipc_label(4, 20, ipc_codec::encoder::Method::Hyper);
        for (setting, psnr) in [("level=4 effort=20", 20.0), (now.as_str(), 30.0)] {
            let mut p = point("ipc effort 20", setting, "a", 1.0, psnr);
            p.codec = "ipc".into();
            p.pack = "abc".into();
            store.insert(p);
        }
        let s = aggregate(&store, Kind::Image, &["a".to_string()], Some("abc"));
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].points.len(), 1);
        assert_eq!(s[0].points[0].psnr, 30.0);
    }
}
