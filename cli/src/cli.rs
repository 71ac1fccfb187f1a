//! The command line.

use std::fmt;
use std::path::PathBuf;

use clap::{ArgGroup, Args, Parser, Subcommand, ValueEnum};
use ipc_codec::encoder::Method;
use ipc_codec::Limits;

/// Refinement steps when `--effort` is not given. With the stop-9 image pack, 20 steps
/// give +0.7 dB at 0.5 bpp and +0.4 dB at 1 bpp over none on the 13 held-out training
/// photos, at slightly fewer bits (+0.8 / +0.4 dB on Kodak, docs/results.md), and the
/// default encode of a 768x512 photo takes 3.9 s on two cores (within the 5 s budget);
/// `--effort 0` is the one-pass encoder (0.34 s on one core).
pub const DEFAULT_EFFORT: usize = 20;

/// The most refinement steps `--effort` accepts: each step costs about what a decode
/// does three times over, so 1000 steps are about 3.5 minutes for a 768x512 photo on two
/// cores (DEFAULT_EFFORT's 20 take 4.2 s), and quality has long stopped rising by then.
pub const MAX_EFFORT: usize = 1000;

/// Parses `--effort`: a number of steps from 0 to [`MAX_EFFORT`].
pub fn parse_effort(text: &str) -> Result<usize, String> {
    let n: usize = text
        .trim()
        .parse()
        .map_err(|_| format!("{text:?} is not a number of steps"))?;
    if n > MAX_EFFORT {
        return Err(format!(
            "at most {MAX_EFFORT} steps (about 3.5 minutes for 768x512)"
        ));
    }
    Ok(n)
}

const MAIN_AFTER_HELP: &str = "\
The default image and speech model packs are built in; --model picks another.

Examples:
  ipc-codec encode photo.png -o photo.ipc
  ipc-codec encode voice.wav -o voice.ipc
  ipc-codec decode photo.ipc -o photo.png
  ipc-codec encode photo.png -o small.ipc --target-bpp 0.5
  ipc-codec info photo.ipc
  cat photo.ipc | ipc-codec decode - -o - > photo.png

Exit status:
  0  success
  1  other failure, mostly I/O (missing input, unwritable output)
  2  usage error (bad arguments, output format does not fit the file, no such level)
  3  the input is damaged or malformed (.ipc file, or PNG, JPEG or WAV for encode)
  4  unsupported input (format, feature, transparency) or a limit is exceeded
  5  the model pack cannot be read, does not code this kind of signal, or is not the
     one the file needs
  6  encode --strict-target: the rate or PSNR target was not reached (nothing written)";

const ENCODE_AFTER_HELP: &str = "\
The input format is found from the file's content: PNG (grey or RGB, 8 or 16 bits),
JPEG, or WAV (1- to 32-bit integer or 32- or 64-bit float, 1 to 255 channels; a WAV
written to a pipe, with its sizes left unset, is read to its end).
Without --model, images use the built-in image pack and WAV files the built-in speech
pack. A WAV file at another sample rate than the pack's is resampled to it first
(band-limited), and the file records the pack's rate.

The .ipc format holds no alpha channel. An image whose alpha is opaque everywhere is
coded without it; one with transparent pixels is refused, unless --ignore-alpha is
given, which drops the alpha channel and codes the colour as stored.

The rate is chosen by one of --quality (a level: 0 is the smallest file, higher is
better; default the pack's middle level), --target-bpp (images) or --target-kbps
(audio): the best level within that rate, or --target-psnr: the smallest level that
reaches that PSNR. The last three encode several levels to find it.

The output appears only when it is complete (written beside OUT, then renamed). A
summary goes to standard error, or with --json one JSON object to standard output
(to standard error when OUT is '-').

Examples:
  ipc-codec encode photo.png -o photo.ipc
  ipc-codec encode voice.wav -o voice.ipc
  ipc-codec encode photo.jpg -o photo.ipc --quality 6 --effort 20
  ipc-codec encode photo.png -o photo.ipc --target-psnr 30 --json
  ipc-codec encode logo.png -o logo.ipc --ignore-alpha
  ipc-codec encode music.wav -o music.ipc --model speech.ipcpack --target-kbps 16
  cat photo.png | ipc-codec encode - -o - > photo.ipc";

const DECODE_AFTER_HELP: &str = "\
Images are written as PNG (8- or 16-bit, grey or RGB, as the file says), audio as
16-bit PCM WAV with the file's channels and sample rate. The output appears only when
it is complete: it is written to a temporary file beside OUT and renamed over OUT.

Without --model, the built-in pack the file names is used; a file made with another
pack needs that pack given with --model.

Examples:
  ipc-codec decode photo.ipc -o photo.png
  ipc-codec decode voice.ipc -o voice.wav --threads 4
  ipc-codec decode photo.ipc -o photo.png --model my-image.ipcpack
  ipc-codec decode - -o - < photo.ipc > photo.png
  ipc-codec decode photo.ipc -o - --format png | display -
  ipc-codec decode big.ipc -o big.png --max-pixels 100000000";

const INFO_AFTER_HELP: &str = "\
Shows every header field, the sizes and rate, whether the checksum holds, and the id of
the model pack the file needs. A damaged file (bad checksum, truncated, trailing bytes)
is still described, then reported on standard error with a non-zero exit status; so is
a --model pack that is not the one the file needs.

Examples:
  ipc-codec info photo.ipc
  ipc-codec info photo.ipc --model image.ipcpack
  ipc-codec info photo.ipc --json | jq .pack_id
  ipc-codec info - < photo.ipc";

/// Encode, decode and inspect .ipc neural image and audio files.
#[derive(Debug, Parser)]
#[command(
    name = "ipc-codec",
    version,
    propagate_version = true,
    arg_required_else_help = true,
    after_help = MAIN_AFTER_HELP
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Encode a PNG or JPEG image or a WAV file into an .ipc file
    #[command(after_help = ENCODE_AFTER_HELP)]
    Encode(EncodeArgs),
    /// Decode an .ipc file to PNG (images) or WAV (audio)
    #[command(after_help = DECODE_AFTER_HELP)]
    Decode(DecodeArgs),
    /// Show an .ipc file's header, sizes, rate, checksum status and model pack
    #[command(after_help = INFO_AFTER_HELP)]
    Info(InfoArgs),
    /// Train a model pack from a TOML config (builds with the `train` feature, libtorch)
    #[command(after_help = TRAIN_AFTER_HELP)]
    Train(TrainArgs),
    /// Benchmarks: rate-distortion against classical codecs
    Bench(BenchArgs),
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub command: BenchCommand,
}

#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Rate-distortion of ipc and classical codecs on a folder of images and/or WAV clips
    #[command(after_help = BENCH_RD_AFTER_HELP)]
    Rd(RdArgs),
}

const BENCH_RD_AFTER_HELP: &str = "\
Every ipc quality level (at each --effort) and a dense quality sweep of each classical
codec code every PNG/JPEG image of --images and every WAV clip of --audio; each result
is decoded and measured: whole-file bytes (bits per pixel, kbit/s), PSNR on 8-bit RGB
(mean of the per-image values), MS-SSIM (RGB), SNR, PSNR (peak 1) and STOI
(intelligibility, up to 1) for audio, and the
encode and decode times. Classical codecs run as the tools of their Debian packages
(scripts/install-codecs installs them); a codec whose tool is missing is reported and
skipped. Audio is compared at the speech pack's sample rate (16 kHz).

--out receives points.json and points.csv (every point), summary.md (PSNR at 0.25, 0.5
and 1 bpp, BD-rates against JPEG and ipc) and the RD plots rd-images.svg/.png and
rd-audio.svg/.png. Points already in --out are not measured again, so an interrupted run
resumes where it stopped. --report FILE also writes the results document (command,
machine, date, tables, plots beside it).

Codecs (--codecs): ipc, jpeg, webp, avif, jxl, jpeg2000, hevc, opus, mp3, flac.

Examples:
  ipc-codec bench rd --images kodak --audio speech --out rd
  ipc-codec bench rd --images kodak --out rd --codecs ipc,jpeg,avif --effort 0,20
  ipc-codec bench rd --images kodak --out /tmp/smoke --quick";

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("inputs").args(["images", "audio"]).required(true).multiple(true)))]
pub struct RdArgs {
    /// Folder of PNG or JPEG images
    #[arg(long, value_name = "DIR")]
    pub images: Option<PathBuf>,

    /// Folder of WAV clips
    #[arg(long, value_name = "DIR")]
    pub audio: Option<PathBuf>,

    /// Output folder (created; points already there are reused)
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,

    /// Codecs to run, comma-separated [default: all]
    #[arg(long, value_name = "LIST", value_delimiter = ',')]
    pub codecs: Option<Vec<String>>,

    /// Smoke test: 2 images cropped to 192x192, 2 clips cut to 2 s, 3 settings per codec,
    /// 3 ipc levels
    #[arg(long)]
    pub quick: bool,

    /// Files coded at once [default: the number of cores]; with more than one, every
    /// encoder and decoder runs on one thread
    #[arg(short = 'j', long, value_name = "N")]
    pub jobs: Option<usize>,

    /// ipc refinement steps (0 to 1000 each), comma-separated: one RD curve each
    #[arg(long, value_name = "LIST", value_delimiter = ',', default_value = "0", value_parser = parse_effort)]
    pub effort: Vec<usize>,

    /// How ipc predicts V
    #[arg(long, value_enum, default_value_t = MethodArg::Hyper)]
    pub method: MethodArg,

    /// Image model pack for ipc [default: the built-in image pack]
    #[arg(long, value_name = "PACK")]
    pub model: Option<PathBuf>,

    /// Audio model pack for ipc [default: the built-in speech pack]
    #[arg(long, value_name = "PACK")]
    pub audio_model: Option<PathBuf>,

    /// Also write the results document here (Markdown; plots go beside it)
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// No progress bar
    #[arg(long)]
    pub quiet: bool,
}

const TRAIN_AFTER_HELP: &str = "\
Trains the model a config describes (train/configs/*.toml), showing step, loss, PSNR,
bits per element of V, steps/s and ETA, evaluates on held-out data every
train.eval_every steps (V really quantised and entropy-coded), writes a checkpoint
beside the pack every train.checkpoint_every steps, and writes the pack at the end.
CPU runs are deterministic for a seed. Available when ipc-codec is built with
`--features train` (libtorch; see scripts/setup-libtorch).

Examples:
  ipc-codec train --config train/configs/image.toml --out image.ipcpack
  ipc-codec train --config train/configs/image.toml --steps 200 --out /tmp/smoke.ipcpack
  ipc-codec train --config train/configs/image.toml --resume image.ckpt.safetensors --out image.ipcpack
  ipc-codec train --config wider.toml --grow-from image.ckpt.safetensors --out wider.ipcpack
  ipc-codec train --config train/configs/speech.toml --device cuda --out speech.ipcpack";

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training configuration (TOML)
    #[arg(short, long, value_name = "FILE")]
    pub config: PathBuf,

    /// Train this many steps in total (overrides train.steps)
    #[arg(long, value_name = "N")]
    pub steps: Option<usize>,

    /// Where to write the pack; the checkpoint goes beside it (PACK.ckpt.safetensors)
    #[arg(short, long, value_name = "PACK")]
    pub out: PathBuf,

    /// Continue from a checkpoint written by an earlier run of the same config
    #[arg(long, value_name = "CKPT")]
    pub resume: Option<PathBuf>,

    /// Start a new run from the weights of a checkpoint of the same or a smaller model
    /// (the config may raise model.pre_width and model.rank, and change the quality
    /// levels, whose per-level parameters then start fresh; the grown network starts
    /// out computing what the saved one did)
    #[arg(long, value_name = "CKPT", conflicts_with = "resume")]
    pub grow_from: Option<PathBuf>,

    /// Device: cpu, cuda or auto (a GPU when there is one)
    #[arg(long, default_value = "cpu", value_name = "DEVICE")]
    pub device: String,

    /// CPU threads for libtorch (overrides train.threads; 0: all cores)
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,

    /// Write the final held-out figures and throughput as JSON to this file
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,

    /// No progress bar; evaluations and the summary are still printed
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
#[command(group(
    ArgGroup::new("rate").args(["quality", "target_bpp", "target_kbps", "target_psnr"])
))]
pub struct EncodeArgs {
    /// PNG, JPEG or WAV file (told apart by content), or '-' for standard input
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Output .ipc file, or '-' for standard output
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,

    /// Model pack [default: the built-in image or speech pack, by the input]
    #[arg(short, long, value_name = "PACK")]
    pub model: Option<PathBuf>,

    /// Quality level, higher is better [default: the pack's middle level]
    #[arg(long, value_name = "Q")]
    pub quality: Option<u8>,

    /// The best level whose file has at most X bits per pixel (images)
    #[arg(long, value_name = "X")]
    pub target_bpp: Option<f64>,

    /// The best level whose file has at most X kbit/s (audio)
    #[arg(long, value_name = "X")]
    pub target_kbps: Option<f64>,

    /// The smallest level whose decoded PSNR reaches Y dB
    #[arg(long, value_name = "Y")]
    pub target_psnr: Option<f64>,

    /// Fail (exit status 6, no output written) when no level reaches the --target-*
    /// given; without it the nearest level is written and the summary and --json say
    /// that the target was missed
    #[arg(long)]
    pub strict_target: bool,

    /// Bitstream version to write: 2 (neighbour contexts when the pack has their
    /// tables, the edge filter that suits the signal, the fixed one or taps fitted to
    /// it, and a restoration filter fitted to it when it pays) or 1 (for decoders older
    /// than version 2)
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u8).range(1..=2))]
    pub format_version: u8,

    /// How V is predicted: hyper (the pack's hypernetwork, one pass) or meta (the
    /// meta-learned start adapted by gradient steps)
    #[arg(long, value_enum, default_value_t = MethodArg::Hyper)]
    pub method: MethodArg,

    /// Refinement steps (0 to 1000): more effort, higher quality at the same rate, slower
    #[arg(long, value_name = "N", default_value_t = DEFAULT_EFFORT, value_parser = parse_effort)]
    pub effort: usize,

    /// Report progress on standard error even when it is not a terminal (a line about
    /// every second); on a terminal a progress bar is shown anyway
    #[arg(long, conflicts_with = "quiet")]
    pub progress: bool,

    /// Encoder threads; 0 uses every core
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Where to encode
    #[arg(long, value_enum, default_value_t = Device::Cpu)]
    pub device: Device,

    /// No progress bar and no summary; errors are still reported
    #[arg(long)]
    pub quiet: bool,

    /// Print the result as one JSON object (standard output, or standard error when OUT is '-')
    #[arg(long)]
    pub json: bool,

    /// Drop the alpha channel of an image with transparent pixels instead of refusing it
    #[arg(long)]
    pub ignore_alpha: bool,

    /// Refuse images of more pixels (width x height) than this
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_pixels)]
    pub max_pixels: u64,

    /// Refuse audio of more samples (frames x channels, also after resampling) than this
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_samples)]
    pub max_samples: u64,
}

/// `--method`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MethodArg {
    Hyper,
    Meta,
}

impl From<MethodArg> for Method {
    fn from(m: MethodArg) -> Method {
        match m {
            MethodArg::Hyper => Method::Hyper,
            MethodArg::Meta => Method::Meta,
        }
    }
}

/// `--device`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Device {
    /// The CPU (pure Rust)
    Cpu,
    /// An NVIDIA GPU (needs a build with --features train)
    Cuda,
}

#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// The .ipc file, or '-' for standard input
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Output file (OUT.png for images, OUT.wav for audio), or '-' for standard output
    #[arg(short, long, value_name = "OUT")]
    pub output: PathBuf,

    /// Output format [default: from OUT's extension; for '-', png for images and wav for audio]
    #[arg(short, long, value_enum)]
    pub format: Option<OutputFormat>,

    /// The model pack the file was made with [default: the built-in pack the file names]
    #[arg(short, long, value_name = "PACK")]
    pub model: Option<PathBuf>,

    /// Synthesis threads; 0 uses every core
    #[arg(short = 'j', long, value_name = "N", default_value_t = 0)]
    pub threads: usize,

    /// Refuse images of more pixels (width x height) than this
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_pixels)]
    pub max_pixels: u64,

    /// Refuse audio of more samples (frames x channels) than this
    #[arg(long, value_name = "N", default_value_t = Limits::default().max_samples)]
    pub max_samples: u64,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    /// The .ipc file, or '-' for standard input
    #[arg(value_name = "IN")]
    pub input: PathBuf,

    /// Also check the file against this model pack and show its name (without it, says
    /// whether the pack the file needs is built in)
    #[arg(short, long, value_name = "PACK")]
    pub model: Option<PathBuf>,

    /// Print one JSON object instead of text
    #[arg(long)]
    pub json: bool,
}

/// What `decode` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Png,
    Wav,
}

impl OutputFormat {
    /// The format a file name's extension (case-insensitive) asks for, if any;
    /// `Err` holds an extension that names no format.
    pub fn from_extension(path: &std::path::Path) -> Option<Result<OutputFormat, String>> {
        let ext = path.extension()?.to_string_lossy().to_ascii_lowercase();
        Some(match ext.as_str() {
            "png" => Ok(OutputFormat::Png),
            "wav" | "wave" => Ok(OutputFormat::Wav),
            _ => Err(ext),
        })
    }
}

impl fmt::Display for OutputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            OutputFormat::Png => "PNG",
            OutputFormat::Wav => "WAV",
        })
    }
}
