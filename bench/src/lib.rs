//! The rate-distortion benchmark of ipc against classical codecs, which `ipc-codec
//! bench rd` runs: [`rd`] with its [`RdOptions`].
//!
//! The run: list the inputs, load the packs, find the tools, make one task per (file,
//! codec, setting) not yet in the output folder's cache (ipc's setting names the
//! encoder's revision, so an upgraded encoder is measured again), code the files on `--jobs`
//! worker threads (a worker takes a whole file, prepares it once and runs its tasks),
//! save the points every few seconds and at the end, then write the summary, the plots
//! and, if asked, the results document.

mod codecs;
mod curves;
mod metrics;
mod plot;
mod report;
pub mod stoi;
mod store;

use std::collections::HashMap;
use std::fmt;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ipc_codec::encoder::{
    AudioSignal, Encoder, EncoderConfig, ImageSignal, Method, RateTarget, Signal,
};
use ipc_codec::metrics::bits_per_sample;
use ipc_codec::{DecodeOptions, Decoded, Decoder, ImagePixels, Limits, Modality, ModelPack};
use ipc_wav::resample::read_resampled;

use codecs::{AudioInput, Codec, ImageInput, Tools};
use store::{Kind, Point, Store};

/// What `bench rd` runs: the arguments of `ipc-codec bench rd` (its help says more).
#[derive(Debug, Clone)]
pub struct RdOptions {
    /// Folder of PNG or JPEG images.
    pub images: Option<PathBuf>,
    /// Folder of WAV clips.
    pub audio: Option<PathBuf>,
    /// Output folder (created; points already there are reused).
    pub out: PathBuf,
    /// Codec ids to run; `None` for all.
    pub codecs: Option<Vec<String>>,
    /// Smoke test: few files, cropped or cut, and few settings.
    pub quick: bool,
    /// Files coded at once; `None` for the number of cores.
    pub jobs: Option<usize>,
    /// ipc refinement steps: one RD curve each.
    pub effort: Vec<usize>,
    /// How ipc predicts V.
    pub method: Method,
    /// Image model pack file for ipc; `None` for the default one.
    pub model: Option<PathBuf>,
    /// Audio model pack file for ipc; `None` for the default one.
    pub audio_model: Option<PathBuf>,
    /// Also write the results document here (plots go beside it).
    pub report: Option<PathBuf>,
    /// No progress bar.
    pub quiet: bool,
}

/// How [`rd`] obtains a model pack: the pack file given for a modality
/// ([`RdOptions::model`], [`RdOptions::audio_model`]), or with `None` the default pack
/// of that modality; with how messages name it. A pack file that cannot be read stops
/// the run; a default pack that cannot be loaded skips ipc, reported.
pub type PackLoader<'a> = dyn Fn(Option<&Path>, Modality) -> Result<(ModelPack, String)> + 'a;

/// An error of the benchmark's own, with what kind it is, so that a caller can tell
/// the user's mistakes from an unusable model pack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BenchError {
    /// What kind of error it is.
    pub kind: BenchErrorKind,
    /// What went wrong.
    pub message: String,
}

/// The kinds of [`BenchError`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BenchErrorKind {
    /// The options are wrong (an unknown codec, no inputs, ...).
    Usage,
    /// A model pack codes another modality.
    Pack,
}

impl BenchError {
    fn usage(message: impl Into<String>) -> BenchError {
        BenchError {
            kind: BenchErrorKind::Usage,
            message: message.into(),
        }
    }

    fn pack(message: impl Into<String>) -> BenchError {
        BenchError {
            kind: BenchErrorKind::Pack,
            message: message.into(),
        }
    }
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for BenchError {}

/// The whole chain of causes on one line, `context: cause: cause`, leaving out a cause
/// whose text the previous message already contains (library errors quote their
/// source): how the failures and skipped codecs are reported, and how the `ipc-codec`
/// command reports its errors.
pub fn one_line(err: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in err.chain() {
        let text = cause.to_string();
        let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if text.is_empty() || parts.last().is_some_and(|p| p.contains(&text)) {
            continue;
        }
        parts.push(text);
    }
    parts.join(": ")
}

/// Side of the centre crop of images in --quick mode: the smallest size MS-SSIM's five
/// scales allow, rounded up, so that quick runs still measure it.
const QUICK_SIDE: u32 = 192;
/// Seconds of each clip in --quick mode.
const QUICK_SECONDS: u32 = 2;
/// Files per kind in --quick mode.
const QUICK_FILES: usize = 2;
/// Audio is compared at this rate when no audio pack is loaded.
const DEFAULT_AUDIO_RATE: u32 = 16_000;
/// How often the points are saved while the run goes on.
const SAVE_EVERY: Duration = Duration::from_secs(10);

/// One ipc configuration: a pack that could build an encoder.
struct IpcSetup {
    pack: ModelPack,
    source: String,
}

/// What a task runs.
#[derive(Debug, Clone, Copy)]
enum Setting {
    Ipc { level: u8, effort: usize },
    Tool(Codec, f64),
}

#[derive(Debug, Clone)]
struct Task {
    setting: Setting,
    codec: String,
    series: String,
    label: String,
}

/// A file and its tasks still to measure.
struct FileJob {
    kind: Kind,
    path: PathBuf,
    /// The file's name in the points (with the --quick variant).
    key: String,
    tasks: Vec<Task>,
}

/// Shared state of the workers.
struct Shared {
    store: Mutex<(Store, Instant)>,
    failures: Mutex<Vec<String>>,
    measured: Mutex<usize>,
}

/// Runs the rate-distortion benchmark: measures what is not yet in the output folder,
/// then writes the points, the summary, the plots and, if asked, the results document.
/// Wrong options and a pack of the wrong modality are [`BenchError`]s; a run with
/// failed points writes everything and then fails.
pub fn rd(args: &RdOptions, load_pack: &PackLoader) -> Result<()> {
    let codecs = selected_codecs(args)?;
    if args.effort.is_empty() {
        return Err(BenchError::usage("--effort needs at least one value").into());
    }
    let jobs = match args.jobs {
        Some(0) => return Err(BenchError::usage("--jobs 0: give at least 1").into()),
        Some(n) => n,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let method = args.method;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let store = Store::load(&args.out)?;

    let images = match &args.images {
        Some(d) => list_files(d, &["png", "jpg", "jpeg"], args.quick)?,
        None => Vec::new(),
    };
    let clips = match &args.audio {
        Some(d) => list_files(d, &["wav"], args.quick)?,
        None => Vec::new(),
    };

    let mut skipped: Vec<(String, String)> = Vec::new();
    let want_ipc = codecs.contains(&Codec::Ipc);
    let single = jobs > 1;
    let image_ipc = if want_ipc && !images.is_empty() {
        ipc_setup(
            load_pack,
            args.model.as_deref(),
            Modality::Image,
            method,
            &args.effort,
            &mut skipped,
        )?
    } else {
        None
    };
    let audio_ipc = if !clips.is_empty() {
        // The audio pack also fixes the sample rate of the comparison.
        ipc_setup(
            load_pack,
            args.audio_model.as_deref(),
            Modality::Audio,
            method,
            &args.effort,
            &mut skipped,
        )?
    } else {
        None
    };
    let audio_rate = audio_ipc
        .as_ref()
        .and_then(|s| s.pack.config().sample_rate)
        .unwrap_or(DEFAULT_AUDIO_RATE);
    let audio_ipc = audio_ipc.filter(|_| want_ipc);

    let classical: Vec<Codec> = codecs
        .iter()
        .copied()
        .filter(|&c| {
            c != Codec::Ipc
                && ((c.codes(Kind::Image) && !images.is_empty())
                    || (c.codes(Kind::Audio) && !clips.is_empty()))
        })
        .collect();
    let (tools, missing) = Tools::find(&classical);
    for (c, why) in &missing {
        skipped.push((c.name().to_string(), why.clone()));
    }
    for (c, why) in &skipped {
        eprintln!("bench rd: skipping {c}: {why}");
    }
    let available: Vec<Codec> = classical
        .into_iter()
        .filter(|c| !missing.iter().any(|(m, _)| m == c))
        .collect();

    // Every task, less those already measured.
    let mut file_jobs = Vec::new();
    let mut all_keys: HashMap<Kind, Vec<String>> = HashMap::new();
    for (kind, files, ipc) in [
        (Kind::Image, &images, &image_ipc),
        (Kind::Audio, &clips, &audio_ipc),
    ] {
        let tasks = kind_tasks(
            kind,
            &available,
            ipc.as_ref(),
            &args.effort,
            method,
            args.quick,
        );
        for path in files {
            let key = file_key(path, kind, args.quick);
            all_keys.entry(kind).or_default().push(key.clone());
            let pack_id = ipc
                .as_ref()
                .map(|s| s.pack.id().to_string())
                .unwrap_or_default();
            let pending: Vec<Task> = tasks
                .iter()
                .filter(|t| {
                    let pack = if t.codec == "ipc" {
                        pack_id.as_str()
                    } else {
                        ""
                    };
                    !store.contains(&store::key(&t.codec, &t.label, &key, pack))
                })
                .cloned()
                .collect();
            if !pending.is_empty() {
                file_jobs.push(FileJob {
                    kind,
                    path: path.clone(),
                    key,
                    tasks: pending,
                });
            }
        }
    }
    let total: usize = file_jobs.iter().map(|j| j.tasks.len()).sum();
    let cached = store.points.len();

    let bar = if args.quiet || !std::io::stderr().is_terminal() {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total as u64).with_style(
            ProgressStyle::with_template(
                "{bar:30} {pos}/{len} points {elapsed} (ETA {eta}) {wide_msg}",
            )
            .expect("valid template"),
        )
    };
    bar.enable_steady_tick(Duration::from_millis(500));
    let shared = Shared {
        store: Mutex::new((store, Instant::now())),
        failures: Mutex::new(Vec::new()),
        measured: Mutex::new(0),
    };
    let file_count = file_jobs.len();
    let ctx = WorkerContext {
        tools: &tools,
        image_ipc: image_ipc.as_ref(),
        audio_ipc: audio_ipc.as_ref(),
        method,
        single,
        quick: args.quick,
        audio_rate,
        out: &args.out,
        skipped: &skipped,
        bar: &bar,
        shared: &shared,
    };
    // Each worker keeps its engines (the packs' synthesis state) between files.
    ipc_codec::parallel::for_each_group(
        file_jobs.into_iter(),
        file_count,
        jobs.max(1),
        |job, engines: &mut Engines| run_file_or_fail(&ctx, &job, engines),
    );
    bar.finish_and_clear();

    let (store, _) = shared.store.into_inner().expect("not poisoned");
    store.save(&args.out, &skipped)?;
    let failures = shared.failures.into_inner().expect("not poisoned");
    let measured = shared.measured.into_inner().expect("not poisoned");

    let inputs = report::Inputs {
        image_files: all_keys.remove(&Kind::Image).unwrap_or_default(),
        audio_files: all_keys.remove(&Kind::Audio).unwrap_or_default(),
        image_pack: image_ipc
            .as_ref()
            .map(|s| (s.pack.id().to_string(), s.source.clone())),
        audio_pack: audio_ipc
            .as_ref()
            .map(|s| (s.pack.id().to_string(), s.source.clone())),
        skipped: skipped.clone(),
        failures: failures.clone(),
        quick: args.quick,
        jobs,
    };
    report::write_outputs(&store, &inputs, &args.out, args.report.as_deref())?;
    eprintln!(
        "bench rd: {measured} points measured, {} from earlier runs, {} failed, {} codecs skipped; results in {}",
        cached.min(store.points.len()),
        failures.len(),
        skipped.len(),
        args.out.display()
    );
    if !failures.is_empty() {
        bail!(
            "{} points failed (listed in {}); the first: {}",
            failures.len(),
            args.out.join("summary.md").display(),
            failures[0]
        );
    }
    Ok(())
}

fn selected_codecs(args: &RdOptions) -> Result<Vec<Codec>> {
    let Some(list) = &args.codecs else {
        return Ok(Codec::ALL.to_vec());
    };
    let mut out = Vec::new();
    for name in list {
        let c = Codec::from_id(name).ok_or_else(|| {
            let known: Vec<&str> = Codec::ALL.iter().map(|c| c.id()).collect();
            BenchError::usage(format!(
                "--codecs: unknown codec {name:?} (known: {})",
                known.join(", ")
            ))
        })?;
        if !out.contains(&c) {
            out.push(c);
        }
    }
    Ok(out)
}

/// The files of `dir` with one of `extensions` (case-insensitive), sorted by name; the
/// first two in --quick mode.
fn list_files(dir: &Path, extensions: &[&str], quick: bool) -> Result<Vec<PathBuf>> {
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    let mut files = Vec::new();
    for e in entries {
        let path = e
            .with_context(|| format!("cannot read {}", dir.display()))?
            .path();
        let ext = path
            .extension()
            .map(|e| e.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if path.is_file() && extensions.contains(&ext.as_str()) {
            files.push(path);
        }
    }
    files.sort();
    if files.is_empty() {
        return Err(BenchError::usage(format!(
            "{} holds no {} files",
            dir.display(),
            extensions.join("/")
        ))
        .into());
    }
    if quick {
        files.truncate(QUICK_FILES);
    }
    Ok(files)
}

/// The setting of an ipc point. It names the encoder's revision, so that points cached
/// by an older encoder are measured again and left out of the report
/// ([`by_this_encoder`]).
fn ipc_label(level: usize, effort: usize, method: Method) -> String {
    let mut label = format!(
        "level={level} effort={effort} encoder={}",
        ipc_codec::encoder::ENCODER_REVISION
    );
    if method != Method::Hyper {
        label.push_str(&format!(" method={method}"));
    }
    label
}

/// Whether an ipc setting ([`ipc_label`]) was measured with this encoder revision.
fn by_this_encoder(setting: &str) -> bool {
    let this = format!("encoder={}", ipc_codec::encoder::ENCODER_REVISION);
    setting.split_whitespace().any(|w| w == this)
}

fn file_key(path: &Path, kind: Kind, quick: bool) -> String {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    match (quick, kind) {
        (false, _) => name,
        (true, Kind::Image) => format!("{name}@crop{QUICK_SIDE}"),
        (true, Kind::Audio) => format!("{name}@first{QUICK_SECONDS}s"),
    }
}

/// The pack for ipc on one modality, if it can encode with every effort asked for. A
/// pack given with --model that cannot be read is an error, a default pack that cannot
/// be loaded or one that cannot encode (for instance without the encoder tensors)
/// skips ipc, reported.
fn ipc_setup(
    load_pack: &PackLoader,
    path: Option<&Path>,
    modality: Modality,
    method: Method,
    efforts: &[usize],
    skipped: &mut Vec<(String, String)>,
) -> Result<Option<IpcSetup>> {
    let what = match modality {
        Modality::Image => "ipc (images)",
        Modality::Audio => "ipc (audio)",
    };
    let (pack, source) = match load_pack(path, modality) {
        Ok(loaded) => loaded,
        Err(e) if path.is_none() => {
            skipped.push((what.into(), one_line(&e)));
            return Ok(None);
        }
        Err(e) => return Err(e),
    };
    match pack.config().modality() {
        Ok(m) if m == modality => {}
        _ => {
            return Err(BenchError::pack(format!(
                "model pack {source} does not code {}",
                match modality {
                    Modality::Image => "images",
                    Modality::Audio => "audio",
                }
            ))
            .into())
        }
    }
    for &effort in efforts {
        let config = EncoderConfig {
            method,
            effort,
            threads: 1,
            limits: Limits::default(),
            version_1: false,
            ..EncoderConfig::default()
        };
        if let Err(e) = Encoder::new(&pack, config) {
            skipped.push((
                what.into(),
                format!("model pack {source} cannot encode: {e}"),
            ));
            return Ok(None);
        }
    }
    Ok(Some(IpcSetup { pack, source }))
}

fn ipc_series(effort: usize, method: Method) -> String {
    match method {
        Method::Hyper => format!("ipc effort {effort}"),
        m => format!("ipc {m} effort {effort}"),
    }
}

fn kind_tasks(
    kind: Kind,
    codecs: &[Codec],
    ipc: Option<&IpcSetup>,
    efforts: &[usize],
    method: Method,
    quick: bool,
) -> Vec<Task> {
    let mut tasks = Vec::new();
    if let Some(s) = ipc {
        let levels = s.pack.config().quality_levels.len();
        let mut chosen: Vec<usize> = (0..levels).collect();
        if quick {
            chosen = vec![0, (levels - 1) / 2, levels - 1];
            chosen.dedup();
        }
        for &effort in efforts {
            for &level in &chosen {
                let label = ipc_label(level, effort, method);
                tasks.push(Task {
                    setting: Setting::Ipc {
                        level: level as u8,
                        effort,
                    },
                    codec: "ipc".into(),
                    series: ipc_series(effort, method),
                    label,
                });
            }
        }
    }
    for &c in codecs.iter().filter(|c| c.codes(kind)) {
        for v in c.sweep(quick) {
            tasks.push(Task {
                setting: Setting::Tool(c, v),
                codec: c.name().into(),
                series: c.name().into(),
                label: c.setting(v),
            });
        }
    }
    tasks
}

struct WorkerContext<'a> {
    tools: &'a Tools,
    image_ipc: Option<&'a IpcSetup>,
    audio_ipc: Option<&'a IpcSetup>,
    method: Method,
    single: bool,
    quick: bool,
    audio_rate: u32,
    out: &'a Path,
    skipped: &'a [(String, String)],
    bar: &'a ProgressBar,
    shared: &'a Shared,
}

impl WorkerContext<'_> {
    fn threads(&self) -> usize {
        if self.single {
            1
        } else {
            0
        }
    }

    fn fail(&self, what: String) {
        self.bar.println(format!("bench rd: {what}"));
        self.shared
            .failures
            .lock()
            .expect("not poisoned")
            .push(what);
    }

    fn record(&self, point: Point) {
        *self.shared.measured.lock().expect("not poisoned") += 1;
        let mut guard = self.shared.store.lock().expect("not poisoned");
        let (store, last) = &mut *guard;
        store.insert(point);
        if last.elapsed() >= SAVE_EVERY {
            *last = Instant::now();
            if let Err(e) = store.save(self.out, self.skipped) {
                self.bar.println(format!("bench rd: {}", one_line(&e)));
            }
        }
    }
}

/// Encoders and decoders a worker keeps between files (building one prepares the
/// pack's synthesis state).
#[derive(Default)]
struct Engines<'p> {
    encoders: HashMap<(Kind, usize), Encoder<'p>>,
    decoders: HashMap<Kind, Decoder<'p>>,
}

fn run_file_or_fail<'p>(ctx: &'p WorkerContext<'p>, job: &FileJob, engines: &mut Engines<'p>) {
    if let Err(e) = run_file(ctx, job, engines) {
        // The file itself could not be prepared: every task of it fails.
        let why = one_line(&e);
        for t in &job.tasks {
            ctx.fail(format!("{} {} {}: {why}", t.codec, t.label, job.key));
            ctx.bar.inc(1);
        }
    }
}

/// A prepared image: the reference pixels and the files the tools read.
struct PreparedImage {
    rgb: Vec<u8>,
    width: usize,
    height: usize,
    ppm: PathBuf,
    png: PathBuf,
}

/// A prepared clip: the reference samples (16-bit values in [-1, 1]) and their WAV.
struct PreparedAudio {
    samples: Vec<f32>,
    channels: u16,
    wav: PathBuf,
}

fn run_file<'p>(
    ctx: &'p WorkerContext<'p>,
    job: &FileJob,
    engines: &mut Engines<'p>,
) -> Result<()> {
    let dir = tempfile::Builder::new()
        .prefix("ipc-bench-rd-")
        .tempdir()
        .context("cannot create a temporary folder")?;
    match job.kind {
        Kind::Image => {
            let img = prepare_image(&job.path, ctx.quick, dir.path())?;
            for t in &job.tasks {
                ctx.bar
                    .set_message(format!("{} {} {}", t.codec, t.label, job.key));
                let result = match t.setting {
                    Setting::Ipc { level, effort } => ipc_image(ctx, engines, &img, level, effort),
                    Setting::Tool(codec, v) => tool_image(ctx, codec, v, &img, dir.path()),
                };
                finish(ctx, job, t, result);
            }
        }
        Kind::Audio => {
            let clip = prepare_audio(&job.path, ctx.quick, ctx.audio_rate, dir.path())?;
            for t in &job.tasks {
                ctx.bar
                    .set_message(format!("{} {} {}", t.codec, t.label, job.key));
                let result = match t.setting {
                    Setting::Ipc { level, effort } => ipc_audio(ctx, engines, &clip, level, effort),
                    Setting::Tool(codec, v) => tool_audio(ctx, codec, v, &clip, dir.path()),
                };
                finish(ctx, job, t, result);
            }
        }
    }
    Ok(())
}

/// What a task measured, before it becomes a [`Point`].
struct Measured {
    bytes: u64,
    psnr: f64,
    ms_ssim: Option<f64>,
    snr: Option<f64>,
    stoi: Option<f64>,
    encode_s: f64,
    decode_s: f64,
    pack: String,
}

fn finish(ctx: &WorkerContext, job: &FileJob, t: &Task, result: Result<(Measured, f64)>) {
    ctx.bar.inc(1);
    match result {
        Ok((m, rate)) => ctx.record(Point {
            kind: job.kind,
            codec: t.codec.clone(),
            series: t.series.clone(),
            setting: t.label.clone(),
            file: job.key.clone(),
            pack: m.pack,
            bytes: m.bytes,
            rate,
            psnr: m.psnr,
            ms_ssim: m.ms_ssim,
            snr: m.snr,
            stoi: m.stoi,
            encode_s: m.encode_s,
            decode_s: m.decode_s,
        }),
        Err(e) => ctx.fail(format!(
            "{} {} {}: {}",
            t.codec,
            t.label,
            job.key,
            one_line(&e)
        )),
    }
}

fn prepare_image(path: &Path, quick: bool, dir: &Path) -> Result<PreparedImage> {
    let name = path.display();
    let img = image::ImageReader::open(path)
        .with_context(|| format!("cannot open {name}"))?
        .with_guessed_format()
        .with_context(|| format!("cannot read {name}"))?
        .decode()
        .with_context(|| format!("cannot read {name}"))?;
    // Every codec codes the same 8-bit RGB pixels (grey is replicated, 16-bit
    // rounded, alpha dropped), and PSNR is measured on them.
    let mut rgb = img.to_rgb8();
    if quick {
        let (w, h) = (rgb.width().min(QUICK_SIDE), rgb.height().min(QUICK_SIDE));
        let (x, y) = ((rgb.width() - w) / 2, (rgb.height() - h) / 2);
        rgb = image::imageops::crop_imm(&rgb, x, y, w, h).to_image();
    }
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let ppm = dir.join("input.ppm");
    let png = dir.join("input.png");
    codecs::write_ppm(&ppm, rgb.as_raw(), width, height)?;
    rgb.save_with_format(&png, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", png.display()))?;
    Ok(PreparedImage {
        rgb: rgb.into_raw(),
        width,
        height,
        ppm,
        png,
    })
}

fn image_measures(img: &PreparedImage, decoded: &[u8]) -> (f64, Option<f64>) {
    (
        metrics::psnr_u8(&img.rgb, decoded),
        metrics::ms_ssim_rgb(&img.rgb, decoded, img.width, img.height),
    )
}

fn tool_image(
    ctx: &WorkerContext,
    codec: Codec,
    v: f64,
    img: &PreparedImage,
    dir: &Path,
) -> Result<(Measured, f64)> {
    let run_dir = tempfile::Builder::new().prefix("run-").tempdir_in(dir)?;
    let input = ImageInput {
        ppm: &img.ppm,
        png: &img.png,
        width: img.width,
        height: img.height,
    };
    let c = codecs::code_image(codec, v, &input, run_dir.path(), ctx.tools, ctx.single)?;
    let (psnr, ms_ssim) = image_measures(img, &c.decoded);
    let rate = bits_per_sample(c.bytes, (img.width * img.height) as u64);
    Ok((
        Measured {
            bytes: c.bytes,
            psnr,
            ms_ssim,
            snr: None,
            stoi: None,
            encode_s: c.encode_s,
            decode_s: c.decode_s,
            pack: String::new(),
        },
        rate,
    ))
}

/// The worker's encoder and decoder for one kind and effort, built on first use.
fn engines_for<'p>(
    ctx: &WorkerContext<'p>,
    engines: &mut Engines<'p>,
    kind: Kind,
    effort: usize,
) -> Result<()> {
    let setup = match kind {
        Kind::Image => ctx.image_ipc,
        Kind::Audio => ctx.audio_ipc,
    }
    .ok_or_else(|| anyhow!("no pack for ipc"))?;
    if let std::collections::hash_map::Entry::Vacant(slot) = engines.encoders.entry((kind, effort))
    {
        let config = EncoderConfig {
            method: ctx.method,
            effort,
            threads: ctx.threads(),
            limits: Limits::default(),
            version_1: false,
            ..EncoderConfig::default()
        };
        slot.insert(Encoder::new(&setup.pack, config)?);
    }
    engines.decoders.entry(kind).or_insert_with(|| {
        Decoder::with_options(
            &setup.pack,
            DecodeOptions {
                limits: Limits::default(),
                threads: ctx.threads(),
            },
        )
    });
    Ok(())
}

/// Encodes with the library at one level and decodes the file; the encode time
/// includes the encoder's own check decode, as `ipc-codec encode` does it.
fn ipc_code<'p>(
    ctx: &WorkerContext<'p>,
    engines: &mut Engines<'p>,
    kind: Kind,
    signal: &Signal,
    level: u8,
    effort: usize,
) -> Result<(Vec<u8>, Decoded, f64, f64)> {
    engines_for(ctx, engines, kind, effort)?;
    let encoder = &engines.encoders[&(kind, effort)];
    let start = Instant::now();
    let encoded = encoder.encode(signal, RateTarget::Quality(level), &mut |_| {})?;
    let encode_s = start.elapsed().as_secs_f64();
    let start = Instant::now();
    let decoded = engines.decoders[&kind].decode(&encoded.file)?;
    let decode_s = start.elapsed().as_secs_f64();
    Ok((encoded.file, decoded, encode_s, decode_s))
}

fn ipc_image<'p>(
    ctx: &WorkerContext<'p>,
    engines: &mut Engines<'p>,
    img: &PreparedImage,
    level: u8,
    effort: usize,
) -> Result<(Measured, f64)> {
    let signal = Signal::Image(ImageSignal {
        width: img.width as u32,
        height: img.height as u32,
        channels: 3,
        bit_depth: 8,
        samples: img.rgb.iter().map(|&v| f32::from(v) / 255.0).collect(),
    });
    let (file, decoded, encode_s, decode_s) =
        ipc_code(ctx, engines, Kind::Image, &signal, level, effort)?;
    let pixels = match decoded {
        Decoded::Image(d) if d.channels == 3 => match d.pixels {
            ImagePixels::U8(p) => p,
            ImagePixels::U16(_) => bail!("ipc decoded 16-bit samples for an 8-bit image"),
        },
        _ => bail!("ipc decoded something other than an RGB image"),
    };
    if pixels.len() != img.rgb.len() {
        bail!("ipc decoded {} samples for {}", pixels.len(), img.rgb.len());
    }
    let (psnr, ms_ssim) = image_measures(img, &pixels);
    let rate = bits_per_sample(file.len() as u64, (img.width * img.height) as u64);
    let pack = ctx
        .image_ipc
        .map(|s| s.pack.id().to_string())
        .unwrap_or_default();
    Ok((
        Measured {
            bytes: file.len() as u64,
            psnr,
            ms_ssim,
            snr: None,
            stoi: None,
            encode_s,
            decode_s,
            pack,
        },
        rate,
    ))
}

fn prepare_audio(path: &Path, quick: bool, rate: u32, dir: &Path) -> Result<PreparedAudio> {
    let name = path.display();
    let file = std::fs::File::open(path).with_context(|| format!("cannot open {name}"))?;
    let read = read_resampled(
        std::io::BufReader::new(file),
        Limits::default().max_samples,
        u16::from(u8::MAX),
        Some(rate),
    )
    .with_context(|| format!("cannot read {name}"))?;
    let channels = usize::from(read.format.channels);
    let mut samples = read.samples;
    if quick {
        samples.truncate(rate as usize * QUICK_SECONDS as usize * channels);
    }
    // The reference is the clip as 16-bit samples at the comparison rate: what every
    // codec, ipc included, is given and what its output is measured against.
    let pcm: Vec<i16> = samples
        .iter()
        .map(|&s| (f64::from(s) * 32768.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect();
    let wav = dir.join("input.wav");
    let file =
        std::fs::File::create(&wav).with_context(|| format!("cannot write {}", wav.display()))?;
    ipc_wav::write_pcm16(
        std::io::BufWriter::new(file),
        read.format.channels,
        rate,
        &pcm,
    )
    .with_context(|| format!("cannot write {}", wav.display()))?;
    Ok(PreparedAudio {
        samples: pcm.iter().map(|&s| f32::from(s) / 32768.0).collect(),
        channels: read.format.channels,
        wav,
    })
}

fn kbps(bytes: u64, frames: usize, rate: u32) -> f64 {
    ipc_codec::metrics::kbit_per_second(bytes, frames as u64, rate)
}

fn tool_audio(
    ctx: &WorkerContext,
    codec: Codec,
    v: f64,
    clip: &PreparedAudio,
    dir: &Path,
) -> Result<(Measured, f64)> {
    let run_dir = tempfile::Builder::new().prefix("run-").tempdir_in(dir)?;
    let input = AudioInput {
        wav: &clip.wav,
        sample_rate: ctx.audio_rate,
        channels: clip.channels,
        samples: &clip.samples,
    };
    let c = codecs::code_audio(codec, v, &input, run_dir.path(), ctx.tools)?;
    Ok(audio_point(
        ctx,
        clip,
        &c.decoded,
        c.bytes,
        (c.encode_s, c.decode_s),
        String::new(),
    ))
}

/// The point of a clip coded in `bytes` and decoded to `decoded`: SNR, PSNR and STOI
/// against the clip, and the rate in kbit/s. `times` are the encode and decode seconds.
fn audio_point(
    ctx: &WorkerContext,
    clip: &PreparedAudio,
    decoded: &[f32],
    bytes: u64,
    times: (f64, f64),
    pack: String,
) -> (Measured, f64) {
    let channels = usize::from(clip.channels);
    let q = metrics::audio_quality(&clip.samples, decoded);
    let stoi = metrics::stoi(&clip.samples, decoded, channels, ctx.audio_rate);
    let frames = clip.samples.len() / channels;
    (
        Measured {
            bytes,
            psnr: q.psnr,
            ms_ssim: None,
            snr: Some(q.snr),
            stoi: Some(stoi),
            encode_s: times.0,
            decode_s: times.1,
            pack,
        },
        kbps(bytes, frames, ctx.audio_rate),
    )
}

fn ipc_audio<'p>(
    ctx: &WorkerContext<'p>,
    engines: &mut Engines<'p>,
    clip: &PreparedAudio,
    level: u8,
    effort: usize,
) -> Result<(Measured, f64)> {
    let signal = Signal::Audio(AudioSignal {
        sample_rate: ctx.audio_rate,
        channels: clip.channels as u8,
        samples: clip.samples.clone(),
    });
    let (file, decoded, encode_s, decode_s) =
        ipc_code(ctx, engines, Kind::Audio, &signal, level, effort)?;
    let Decoded::Audio(d) = decoded else {
        bail!("ipc decoded an image from audio");
    };
    let samples: Vec<f32> = d.samples.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let pack = ctx
        .audio_ipc
        .map(|s| s.pack.id().to_string())
        .unwrap_or_default();
    Ok(audio_point(
        ctx,
        clip,
        &samples,
        file.len() as u64,
        (encode_s, decode_s),
        pack,
    ))
}
