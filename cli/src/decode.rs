//! `ipc-codec decode`.

use std::io::{self, IsTerminal, Write};
use std::path::Path;

use anyhow::{Context, Result};
use image::codecs::png::PngEncoder;
use ipc_codec::{DecodeOptions, Decoded, DecodedAudio, Decoder, Error, Limits, Modality};

use crate::atomic::{refuse_overwriting_input, AtomicFile};
use crate::cli::{DecodeArgs, OutputFormat};
use crate::failure::{one_line, Failure};
use crate::input::{load_pack, Source};
use crate::packs::BuiltIn;

/// Where the decoded signal goes: a file (written atomically) or standard output.
#[derive(Debug, Clone, Copy)]
enum Sink<'a> {
    Stdout,
    File(&'a Path),
}

impl<'a> Sink<'a> {
    fn new(arg: &'a Path) -> Sink<'a> {
        if arg.as_os_str() == "-" {
            Sink::Stdout
        } else {
            Sink::File(arg)
        }
    }
}

pub fn run(args: &DecodeArgs) -> Result<()> {
    let limits = Limits {
        max_pixels: args.max_pixels,
        max_samples: args.max_samples,
        ..Limits::default()
    };
    refuse_overwriting_input(&args.input, &args.output)?;
    let source = Source::new(&args.input);
    let sink = Sink::new(&args.output);
    let bytes = source.read_ipc(&limits).map_err(hint_at_limit_flags)?;
    let container = source
        .verify(&bytes, &limits)
        .map_err(hint_at_limit_flags)?;
    let header = &container.header;
    let modality = header.geometry.modality();
    let format = choose_format(sink, args.format, modality, &source)?;

    // The decoder checks the pack too, but only after the output file is checked; a
    // wrong pack is common enough to be told first, and in words that fit how the pack
    // was chosen.
    let (pack, pack_name) = match &args.model {
        Some(path) => {
            let pack = load_pack(path)?;
            if header.pack_id != pack.id() {
                return Err(Error::WrongPack {
                    needed: header.pack_id,
                    supplied: pack.id(),
                })
                .with_context(|| {
                    format!(
                        "cannot decode {} with model pack {} ({})",
                        source.name(),
                        path.display(),
                        pack.config().name
                    )
                });
            }
            (pack, path.display().to_string())
        }
        None => {
            let builtin = BuiltIn::for_modality(modality);
            let pack = builtin.load()?;
            if pack.id() != header.pack_id {
                return Err(Failure::pack(format!(
                    "{} needs model pack {}, which is not built in (the built-in {} pack is \
                     {}); give it with --model PACK",
                    source.name(),
                    header.pack_id,
                    modality.name(),
                    pack.id()
                ))
                .into());
            }
            (pack, builtin.describe())
        }
    };
    let context = || {
        format!(
            "cannot decode {} with model pack {} ({})",
            source.name(),
            pack_name,
            pack.config().name
        )
    };
    if matches!(sink, Sink::Stdout) && io::stdout().is_terminal() {
        return Err(Failure::usage(format!(
            "refusing to write {format} data to a terminal; redirect standard output or give -o FILE"
        ))
        .into());
    }

    let decoder = Decoder::with_options(
        &pack,
        DecodeOptions {
            limits,
            threads: args.threads,
        },
    );
    match sink {
        Sink::File(path) => {
            let write_context = || format!("cannot write {}", path.display());
            // Checked first, so that an unwritable output is reported before decoding;
            // the file itself is created only once the image or audio is decoded
            // (src/signals.rs).
            AtomicFile::check_writable(path).with_context(write_context)?;
            let decoded = decoder.decode_container(&container).with_context(context)?;
            let mut out = AtomicFile::create(path).with_context(write_context)?;
            encode(decoded, out.writer()).with_context(write_context)?;
            out.commit().with_context(write_context)?;
        }
        Sink::Stdout => {
            let decoded = decoder.decode_container(&container).with_context(context)?;
            // Both writers know every length before they start, so the output streams.
            let mut stdout = io::BufWriter::new(io::stdout().lock());
            encode(decoded, &mut stdout)
                .and_then(|()| Ok(stdout.flush()?))
                .context("cannot write to standard output")?;
        }
    }
    Ok(())
}

/// Adds to a pixel or sample limit error the flag that raises the limit.
fn hint_at_limit_flags(err: anyhow::Error) -> anyhow::Error {
    let flag = match err.downcast_ref::<Error>() {
        Some(Error::LimitExceeded { what, .. }) if what.contains("pixels") => "--max-pixels",
        Some(Error::LimitExceeded { what, .. }) if what.contains("samples") => "--max-samples",
        _ => return err,
    };
    Failure::unsupported(format!("{} (raise it with {flag})", one_line(&err))).into()
}

/// Picks the output format from `--format`, OUT's extension, or the modality (for
/// standard output), and checks that it fits the file.
fn choose_format(
    sink: Sink<'_>,
    flag: Option<OutputFormat>,
    modality: Modality,
    source: &Source<'_>,
) -> Result<OutputFormat> {
    let from_ext = match sink {
        Sink::File(p) => OutputFormat::from_extension(p),
        Sink::Stdout => None,
    };
    let name = |sink: Sink<'_>| match sink {
        Sink::File(p) => p.display().to_string(),
        Sink::Stdout => "-".into(),
    };
    let format = match (flag, from_ext) {
        (Some(f), Some(Ok(e))) if f != e => {
            return Err(Failure::usage(format!(
                "--format {} does not fit the output name {}",
                f.to_string().to_lowercase(),
                name(sink)
            ))
            .into())
        }
        (Some(f), _) => f,
        (None, Some(Ok(e))) => e,
        (None, Some(Err(ext))) => {
            return Err(Failure::usage(format!(
                "cannot tell the output format from the extension .{ext} of {}; \
                 name it .png or .wav, or give --format",
                name(sink)
            ))
            .into())
        }
        (None, None) => match sink {
            Sink::Stdout => default_format(modality),
            Sink::File(p) => {
                return Err(Failure::usage(format!(
                    "cannot tell the output format from {}; name it .png or .wav, or give --format",
                    p.display()
                ))
                .into())
            }
        },
    };
    if format != default_format(modality) {
        let what = match modality {
            Modality::Image => "an image",
            Modality::Audio => "audio",
        };
        return Err(Failure::usage(format!(
            "{} holds {what}, which is written as {}, not {format} (output {})",
            source.name(),
            default_format(modality),
            name(sink)
        ))
        .into());
    }
    Ok(format)
}

fn default_format(modality: Modality) -> OutputFormat {
    match modality {
        Modality::Image => OutputFormat::Png,
        Modality::Audio => OutputFormat::Wav,
    }
}

/// Writes a decoded signal as PNG (images) or 16-bit PCM WAV (audio).
fn encode<W: Write>(decoded: Decoded, out: &mut W) -> Result<()> {
    match decoded {
        Decoded::Image(image) => {
            image
                .into_dynamic_image()
                .write_with_encoder(PngEncoder::new(out))?;
        }
        Decoded::Audio(audio) => write_wav(&audio, out)?,
    }
    Ok(())
}

fn write_wav<W: Write>(audio: &DecodedAudio, out: &mut W) -> Result<()> {
    ipc_wav::write_pcm16(
        out,
        u16::from(audio.channels),
        audio.sample_rate,
        &audio.samples,
    )?;
    Ok(())
}
