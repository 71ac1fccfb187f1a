//! The command line.

use std::fmt;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use ipc_codec::Limits;

const MAIN_AFTER_HELP: &str = "\
Examples:
  ipc-codec decode photo.ipc -o photo.png --model image.ipcpack
  ipc-codec decode speech.ipc -o speech.wav --model audio.ipcpack
  ipc-codec info photo.ipc
  cat photo.ipc | ipc-codec decode - -o - --model image.ipcpack > photo.png

Exit status:
  0  success
  1  other failure, mostly I/O (missing input, unwritable output)
  2  usage error (bad arguments, output format does not fit the file, no --model)
  3  the input is not a valid .ipc file (truncated, damaged, malformed)
  4  the file uses an unsupported feature or exceeds a limit
  5  the model pack cannot be read or is not the one the file needs";

const DECODE_AFTER_HELP: &str = "\
Images are written as PNG (8- or 16-bit, grey or RGB, as the file says), audio as
16-bit PCM WAV with the file's channels and sample rate. The output appears only when
it is complete: it is written to a temporary file beside OUT and renamed over OUT.

Examples:
  ipc-codec decode photo.ipc -o photo.png --model image.ipcpack
  ipc-codec decode speech.ipc -o speech.wav --model audio.ipcpack --threads 4
  ipc-codec decode - -o - --model image.ipcpack < photo.ipc > photo.png
  ipc-codec decode photo.ipc -o - --format png --model image.ipcpack | display -
  ipc-codec decode big.ipc -o big.png --model image.ipcpack --max-pixels 100000000";

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

/// Decode and inspect .ipc neural image and audio files.
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
    /// Decode an .ipc file to PNG (images) or WAV (audio)
    #[command(after_help = DECODE_AFTER_HELP)]
    Decode(DecodeArgs),
    /// Show an .ipc file's header, sizes, rate, checksum status and model pack
    #[command(after_help = INFO_AFTER_HELP)]
    Info(InfoArgs),
    /// Train a model pack from a TOML config (builds with the `train` feature, libtorch)
    #[command(after_help = TRAIN_AFTER_HELP)]
    Train(TrainArgs),
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

    /// The model pack the file was made with (required until default packs are built in)
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

    /// Also check the file against this model pack and show its name
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
