//! `ipc-codec encode`.

use std::io::{self, IsTerminal, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use ipc_codec::encoder::{
    EncodeError, Encoded, Encoder, EncoderConfig, Method, Progress, RateTarget, Signal,
};
use ipc_codec::{Limits, Modality, ModelPack};
use serde_json::{json, Value};

use crate::atomic::{refuse_overwriting_input, AtomicFile};
use crate::cli::{Device, EncodeArgs};
use crate::failure::Failure;
use crate::input::load_pack;
use crate::media::{read_image, read_wav, Input, InputFormat};
use crate::packs::BuiltIn;

/// Standard input beyond the largest raw image or WAV data the limits allow (16-bit
/// RGBA, 32-bit samples) is refused; the margin covers headers and metadata.
fn stdin_cap(args: &EncodeArgs) -> u64 {
    args.max_pixels
        .saturating_mul(8)
        .max(args.max_samples.saturating_mul(4))
        .saturating_add(64 << 20)
}

/// What was read, for the summary.
enum Described {
    Image {
        dropped_alpha: bool,
    },
    Audio {
        resampled_from: Option<u32>,
        sample_format: String,
        clipped: u64,
    },
}

pub fn run(args: &EncodeArgs) -> Result<()> {
    check_device(args.device)?;
    let target = rate_target(args)?;
    let to_stdout = args.output.as_os_str() == "-";
    if to_stdout && io::stdout().is_terminal() {
        return Err(Failure::usage(
            "refusing to write .ipc data to a terminal; redirect standard output or give -o FILE",
        )
        .into());
    }

    refuse_overwriting_input(&args.input, &args.output)?;
    // The rename at the end would fail, but only after all the work.
    if !to_stdout && args.output.is_dir() {
        return Err(anyhow::anyhow!(
            "cannot write {}: it is a directory",
            args.output.display()
        ));
    }
    let input = Input::open(&args.input, stdin_cap(args))?;
    let modality = input.format.modality();
    let (pack, pack_source) = match &args.model {
        Some(path) => (load_pack(path)?, path.display().to_string()),
        None => {
            let b = BuiltIn::for_modality(modality);
            (b.load()?, b.describe())
        }
    };
    check_pack_fits(&pack, &pack_source, modality, input.format, &input.name)?;
    check_target(target, &pack, modality)?;

    let limits = Limits {
        max_pixels: args.max_pixels,
        max_samples: args.max_samples,
        ..Limits::default()
    };
    let encoder = make_encoder(
        &pack,
        EncoderConfig {
            method: Method::from(args.method),
            effort: args.effort,
            threads: args.threads,
            limits,
            version_1: args.format_version == 1,
            ..EncoderConfig::default()
        },
        args.device,
    )
    .with_context(|| format!("cannot encode with model pack {pack_source}"))?;
    // What the user asked for, beyond a level: reported as met or missed.
    let requested = target.filter(|t| !matches!(t, RateTarget::Quality(_)));
    let target = target.unwrap_or(RateTarget::Quality(encoder.default_level()));

    let input_name = input.name.clone();
    let (signal, described) = match input.format {
        InputFormat::Png | InputFormat::Jpeg => {
            let read = read_image(input, args.max_pixels, args.ignore_alpha)?;
            (
                Signal::Image(read.signal),
                Described::Image {
                    dropped_alpha: read.dropped_alpha,
                },
            )
        }
        InputFormat::Wav => {
            let read = read_wav(input, args.max_samples, pack.config().sample_rate)?;
            (
                Signal::Audio(read.signal),
                Described::Audio {
                    resampled_from: read.resampled_from,
                    sample_format: read.sample_format,
                    clipped: read.clipped,
                },
            )
        }
    };
    if let (
        Described::Audio {
            resampled_from,
            clipped,
            ..
        },
        Signal::Audio(a),
    ) = (&described, &signal)
    {
        if !args.quiet && !args.json {
            if let Some(from) = resampled_from {
                eprintln!(
                    "{input_name}: resampled from {from} Hz to {} Hz, the rate of the model pack",
                    a.sample_rate
                );
            }
            if *clipped > 0 {
                eprintln!("{input_name}: {clipped} float samples outside [-1, 1] clipped to it");
            }
        }
    }

    // Checked before the work, so that an unwritable output is reported at once; the
    // file itself is created only when its bytes are ready (src/signals.rs).
    if !to_stdout {
        AtomicFile::check_writable(&args.output)
            .with_context(|| format!("cannot write {}", args.output.display()))?;
    }

    let bar = progress_bar(args);
    let mut lines = ProgressLines::new(args);
    let start = Instant::now();
    let encoded = encoder
        .encode(&signal, target, &mut |p: Progress| {
            bar.set_message(format!("trial {}, level {}", p.trial, p.quality_level));
            bar.set_length(p.total as u64);
            bar.set_position(p.done as u64);
            if let Some(lines) = &mut lines {
                lines.update(&p);
            }
        })
        .map_err(|e| encode_failure(e, &input_name, &pack_source));
    bar.finish_and_clear();
    let encoded = encoded?;
    let seconds = start.elapsed().as_secs_f64();
    let outcome = requested.map(|t| TargetOutcome::of(t, &encoded));
    if let Some(o) = outcome.filter(|o| !o.met && args.strict_target) {
        return Err(Failure::target_missed(format!(
            "{input_name}: {} (--strict-target; nothing written)",
            o.describe()
        ))
        .into());
    }

    match to_stdout {
        false => {
            let context = || format!("cannot write {}", args.output.display());
            let mut file = AtomicFile::create(&args.output).with_context(context)?;
            file.writer()
                .write_all(&encoded.file)
                .with_context(context)?;
            file.commit().with_context(context)?;
        }
        true => {
            let mut stdout = io::stdout().lock();
            stdout
                .write_all(&encoded.file)
                .and_then(|()| stdout.flush())
                .context("cannot write to standard output")?;
        }
    }

    let report = Report {
        args,
        input: &input_name,
        signal: &signal,
        described: &described,
        encoded: &encoded,
        pack: &pack,
        pack_source: &pack_source,
        levels: encoder.levels(),
        seconds,
        target: outcome,
    };
    if args.json {
        let text = serde_json::to_string_pretty(&report.json()).expect("JSON values serialise");
        let written = if to_stdout {
            writeln!(io::stderr().lock(), "{text}")
        } else {
            let mut stdout = io::stdout().lock();
            writeln!(stdout, "{text}").and_then(|()| stdout.flush())
        };
        written.context("cannot write the JSON report")?;
    } else if !args.quiet {
        eprintln!("{}", report.line());
    }
    Ok(())
}

/// Refuses `--device cuda` in a build without GPU support, before any work.
fn check_device(device: Device) -> Result<()> {
    match device {
        Device::Cpu => Ok(()),
        #[cfg(feature = "train")]
        Device::Cuda => Ok(()),
        #[cfg(not(feature = "train"))]
        Device::Cuda => Err(Failure::usage(
            "--device cuda needs an ipc-codec built with GPU support: `cargo build --release \
             -p ipc-codec-cli --features train` (libtorch: scripts/setup-libtorch --cuda)",
        )
        .into()),
    }
}

/// The encoder for the chosen device: the pure-Rust one on the CPU, the libtorch
/// backend on a GPU.
fn make_encoder(pack: &ModelPack, config: EncoderConfig, device: Device) -> Result<Encoder<'_>> {
    match device {
        Device::Cpu => Ok(Encoder::new(pack, config)?),
        #[cfg(feature = "train")]
        Device::Cuda => crate::gpu::cuda_encoder(pack, config),
        #[cfg(not(feature = "train"))]
        Device::Cuda => unreachable!("refused by check_device"),
    }
}

/// The rate target the flags ask for (clap lets at most one through), if any.
fn rate_target(args: &EncodeArgs) -> Result<Option<RateTarget>> {
    let positive = |flag: &str, x: f64| -> Result<f64> {
        if x.is_finite() && x > 0.0 {
            Ok(x)
        } else {
            Err(Failure::usage(format!("{flag} {x}: give a positive number")).into())
        }
    };
    Ok(if let Some(q) = args.quality {
        Some(RateTarget::Quality(q))
    } else if let Some(x) = args.target_bpp {
        Some(RateTarget::BitsPerPixel(positive("--target-bpp", x)?))
    } else if let Some(x) = args.target_kbps {
        Some(RateTarget::KilobitsPerSecond(positive("--target-kbps", x)?))
    } else if let Some(y) = args.target_psnr {
        Some(RateTarget::Psnr(positive("--target-psnr", y)?))
    } else {
        None
    })
}

/// Refuses a pack for the other modality before the input is read.
fn check_pack_fits(
    pack: &ModelPack,
    pack_source: &str,
    modality: Modality,
    format: InputFormat,
    input: &str,
) -> Result<()> {
    let codes = pack
        .config()
        .modality()
        .map_err(|e| Failure::pack(format!("model pack {pack_source} cannot be used: {e}")))?;
    if codes != modality {
        let what = match modality {
            Modality::Image => "an image",
            Modality::Audio => "audio",
        };
        return Err(Failure::pack(format!(
            "model pack {pack_source} ({}) codes {}, but {input} is {what} ({})",
            pack.config().name,
            codes.name(),
            format.name()
        ))
        .into());
    }
    Ok(())
}

/// Refuses a level the pack lacks, or a rate target for the other modality, before
/// the input is read.
fn check_target(target: Option<RateTarget>, pack: &ModelPack, modality: Modality) -> Result<()> {
    let levels = pack.config().quality_levels.len();
    match (target, modality) {
        (Some(RateTarget::Quality(q)), _) if usize::from(q) >= levels => {
            Err(Failure::usage(format!(
                "--quality {q} is out of range: model pack {} ({}) has levels 0 to {}",
                pack.id(),
                pack.config().name,
                levels - 1
            ))
            .into())
        }
        (Some(RateTarget::BitsPerPixel(_)), Modality::Audio) => {
            Err(Failure::usage("--target-bpp is for images; give audio --target-kbps").into())
        }
        (Some(RateTarget::KilobitsPerSecond(_)), Modality::Image) => {
            Err(Failure::usage("--target-kbps is for audio; give images --target-bpp").into())
        }
        _ => Ok(()),
    }
}

fn encode_failure(e: EncodeError, input: &str, pack_source: &str) -> anyhow::Error {
    let context = format!("cannot encode {input} with model pack {pack_source}");
    match e {
        EncodeError::LimitExceeded { what, .. } => {
            let advice = if what.contains("elements of V") {
                "no flag raises it: this model pack's V is too large for the signal"
            } else if what.contains("audio") {
                "raise it with --max-samples"
            } else {
                "raise it with --max-pixels"
            };
            Failure::unsupported(format!("{context}: {e} ({advice})")).into()
        }
        e => anyhow::Error::new(e).context(context),
    }
}

fn progress_bar(args: &EncodeArgs) -> ProgressBar {
    if args.quiet || !io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let template = if args.effort == 0 {
        "{spinner} encoding {elapsed}"
    } else {
        "{spinner} {msg} {bar:24} {pos}/{len} steps {elapsed}"
    };
    let bar = ProgressBar::new(args.effort as u64)
        .with_style(ProgressStyle::with_template(template).expect("valid template"));
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `--progress` where standard error is not a terminal: one plain line per second at
/// most, and one when a trial ends.
struct ProgressLines {
    start: Instant,
    last: Option<Instant>,
}

impl ProgressLines {
    fn new(args: &EncodeArgs) -> Option<ProgressLines> {
        (args.progress && !args.quiet && !io::stderr().is_terminal()).then(|| ProgressLines {
            start: Instant::now(),
            last: None,
        })
    }

    fn update(&mut self, p: &Progress) {
        let now = Instant::now();
        let due = self
            .last
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due || p.done == p.total {
            self.last = Some(now);
            eprintln!(
                "encoding: trial {}, level {}: {}/{} steps, {:.1} s",
                p.trial,
                p.quality_level,
                p.done,
                p.total,
                now.duration_since(self.start).as_secs_f64()
            );
        }
    }
}

/// What `encode` tells the user when it is done.
struct Report<'a> {
    args: &'a EncodeArgs,
    input: &'a str,
    signal: &'a Signal,
    described: &'a Described,
    encoded: &'a Encoded,
    pack: &'a ModelPack,
    pack_source: &'a str,
    levels: usize,
    seconds: f64,
    target: Option<TargetOutcome>,
}

/// Whether a rate or PSNR target was reached (`--target-*`).
#[derive(Debug, Clone, Copy)]
struct TargetOutcome {
    target: RateTarget,
    met: bool,
}

impl TargetOutcome {
    /// A missed rate target means that even the coarsest level is above it, a missed
    /// PSNR target that even the finest is below it (`Encoder::encode`'s search).
    fn of(target: RateTarget, encoded: &Encoded) -> TargetOutcome {
        let met = match target {
            RateTarget::BitsPerPixel(x) | RateTarget::KilobitsPerSecond(x) => encoded.rate <= x,
            RateTarget::Psnr(y) => encoded.psnr >= y,
            RateTarget::Quality(_) => true,
        };
        TargetOutcome { target, met }
    }

    /// The target as the flag gives it: kind and value.
    fn kind_and_value(&self) -> (&'static str, f64) {
        match self.target {
            RateTarget::BitsPerPixel(x) => ("bpp", x),
            RateTarget::KilobitsPerSecond(x) => ("kbps", x),
            RateTarget::Psnr(y) => ("psnr_db", y),
            RateTarget::Quality(q) => ("quality", f64::from(q)),
        }
    }

    fn describe(&self) -> String {
        let target = match self.target {
            RateTarget::BitsPerPixel(x) => format!("target of at most {x} bpp"),
            RateTarget::KilobitsPerSecond(x) => format!("target of at most {x} kbit/s"),
            RateTarget::Psnr(y) => format!("target of at least {y} dB PSNR"),
            RateTarget::Quality(q) => format!("quality level {q}"),
        };
        match (self.met, &self.target) {
            (true, _) => format!("{target} met"),
            (false, RateTarget::Psnr(_)) => {
                format!("{target} not met, even at the finest level")
            }
            (false, _) => format!("{target} not met, even at the coarsest level"),
        }
    }
}

impl Report<'_> {
    fn output_name(&self) -> String {
        path_arg(&self.args.output)
    }

    fn line(&self) -> String {
        let e = self.encoded;
        let rate = match self.signal {
            Signal::Image(_) => format!("{:.4} bpp", e.rate),
            Signal::Audio(_) => format!("{:.3} kbit/s", e.rate),
        };
        let trials = if e.trials == 1 {
            String::new()
        } else {
            format!(", {} trials", e.trials)
        };
        let target = match &self.target {
            Some(t) => format!(", {}", t.describe()),
            None => String::new(),
        };
        format!(
            "{}: {} bytes, {rate}, PSNR {:.2} dB, quality level {} of 0..{}{trials}{target}, \
             {:.2} s",
            self.output_name(),
            e.file.len(),
            e.psnr,
            e.quality_level,
            self.levels - 1,
            self.seconds
        )
    }

    fn json(&self) -> Value {
        let e = self.encoded;
        let input = if self.args.input.as_os_str() == "-" {
            "-".to_string()
        } else {
            self.input.to_string()
        };
        let mut v = json!({
            "input": input,
            "output": self.output_name(),
            "bytes": e.file.len(),
            // Infinite (a lossless result) has no JSON number; it becomes null.
            "psnr_db": e.psnr,
            "quality_level": e.quality_level,
            "levels": self.levels,
            "method": Method::from(self.args.method).to_string(),
            "effort": self.args.effort,
            "trials": e.trials,
            "encode_seconds": self.seconds,
            "pack_id": self.pack.id().to_string(),
            "pack_name": self.pack.config().name,
            "pack": self.pack_source,
        });
        if let Some(t) = &self.target {
            let (kind, value) = t.kind_and_value();
            v["target"] = json!({ "kind": kind, "value": value });
            v["target_met"] = json!(t.met);
        }
        match (self.signal, self.described) {
            (Signal::Image(i), Described::Image { dropped_alpha }) => {
                v["kind"] = json!("image");
                v["width"] = json!(i.width);
                v["height"] = json!(i.height);
                v["channels"] = json!(i.channels);
                v["bit_depth"] = json!(i.bit_depth);
                v["alpha_dropped"] = json!(dropped_alpha);
                v["bpp"] = json!(e.rate);
            }
            (
                Signal::Audio(a),
                Described::Audio {
                    resampled_from,
                    sample_format,
                    clipped,
                },
            ) => {
                v["kind"] = json!("audio");
                v["frames"] = json!(a.frames());
                v["channels"] = json!(a.channels);
                v["sample_rate"] = json!(a.sample_rate);
                v["input_sample_rate"] = json!(resampled_from.unwrap_or(a.sample_rate));
                v["resampled"] = json!(resampled_from.is_some());
                v["input_sample_format"] = json!(sample_format);
                v["clipped_samples"] = json!(clipped);
                v["kbps"] = json!(e.rate);
            }
            _ => unreachable!("the description is made with the signal"),
        }
        v
    }
}

fn path_arg(p: &Path) -> String {
    p.display().to_string()
}
