//! `ipc-codec info`.

use std::fmt::Write as _;
use std::io::{self, Write};
use std::path::Path;

use anyhow::{Context, Result};
use ipc_codec::container::{step_from_q16, Container};
use ipc_codec::edge_filter::EdgeFilterKind;
use ipc_codec::entropy::PayloadCoding;
use ipc_codec::{Error, FormatError, Geometry, Header, Limits, ModelPack};
use serde_json::{json, Value};

use crate::cli::InfoArgs;
use crate::input::{load_pack, Inspected, Source};
use crate::packs::BuiltIn;

/// What the checksum check found.
enum Checksum {
    Ok(u32),
    Mismatch {
        stored: u32,
        computed: u32,
    },
    /// The file is incomplete, so there is no trailer to check.
    Unchecked,
}

/// The pack given with `--model`, compared with the file.
struct PackCheck<'a> {
    path: &'a Path,
    pack: ModelPack,
    /// `None` if the pack fits the file, else why not.
    problem: Option<Error>,
}

pub fn run(args: &InfoArgs) -> Result<()> {
    let source = Source::new(&args.input);
    // Nothing is decoded, so only the payload (read into memory) is limited.
    let limits = Limits {
        max_pixels: u64::MAX,
        max_samples: u64::MAX,
        ..Limits::default()
    };
    let file = source.read_for_inspection(&limits)?;
    let (checksum, damage) = check(&file, &limits);
    let model = match &args.model {
        Some(path) => {
            let pack = load_pack(path)?;
            let problem = pack_problem(&file.header, &pack);
            Some(PackCheck {
                path,
                pack,
                problem,
            })
        }
        None => None,
    };

    let built_in = BuiltIn::find(file.header.geometry.modality(), file.header.pack_id)
        .map(|(b, pack)| (b.file_name, pack.config().name.clone()));
    let name = match source {
        Source::Stdin => "-".to_string(),
        Source::File(p) => p.display().to_string(),
    };
    let out = if args.json {
        let mut s = serde_json::to_string_pretty(&to_json(
            &name,
            &file,
            &checksum,
            damage.as_ref(),
            model.as_ref(),
            built_in.as_ref(),
        ))
        .expect("JSON values serialise");
        s.push('\n');
        s
    } else {
        to_text(
            &name,
            &file,
            &checksum,
            damage.as_ref(),
            model.as_ref(),
            built_in.as_ref(),
        )
    };
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to standard output")?;

    // The description is out; now fail if the file is damaged or the pack is wrong.
    if let Some(e) = damage {
        return Err(e).context(source.name());
    }
    if let Some(PackCheck {
        path,
        pack,
        problem: Some(e),
    }) = model
    {
        return Err(e).with_context(|| {
            format!(
                "model pack {} ({}) does not fit {}",
                path.display(),
                pack.config().name,
                source.name()
            )
        });
    }
    Ok(())
}

/// Verifies length and checksum (with `Container::parse`) and says what is wrong, if anything.
fn check(file: &Inspected, limits: &Limits) -> (Checksum, Option<Error>) {
    let header = &file.header;
    if !file.is_complete() {
        let damage = FormatError::Truncated {
            needed: header.file_len(),
            available: file.bytes.len() as u64,
        };
        return (Checksum::Unchecked, Some(damage.into()));
    }
    let stored = file.stored_checksum().expect("the file is complete");
    match Container::parse(&file.bytes, limits) {
        Ok(_) if file.trailing > 0 => (
            Checksum::Ok(stored),
            Some(FormatError::TrailingData(file.trailing).into()),
        ),
        Ok(_) => (Checksum::Ok(stored), None),
        Err(Error::Format(FormatError::Checksum { stored, computed })) => (
            Checksum::Mismatch { stored, computed },
            Some(FormatError::Checksum { stored, computed }.into()),
        ),
        Err(e) => (Checksum::Unchecked, Some(e)),
    }
}

/// The checks a decoder makes of the pack (spec/bitstream.md §5.4), without decoding.
fn pack_problem(header: &Header, pack: &ModelPack) -> Option<Error> {
    ipc_codec::decoder::check_pack(header, pack).err()
}

/// Bits per pixel (images) or kbit/s (audio) of `bytes`.
fn rate(header: &Header, bytes: u64) -> f64 {
    ipc_codec::metrics::file_rate(&header.geometry, bytes)
}

fn to_text(
    name: &str,
    file: &Inspected,
    checksum: &Checksum,
    damage: Option<&Error>,
    model: Option<&PackCheck<'_>>,
    built_in: Option<&(&str, String)>,
) -> String {
    let h = &file.header;
    let mut s = String::new();
    let mut line = |key: &str, value: String| {
        let _ = writeln!(s, "{:<16}{value}", format!("{key}:"));
    };
    line("file", name.to_string());
    line("format version", file.bytes[4].to_string());
    line("coding tools", coding_tools(h));
    line("modality", h.geometry.modality().name().to_string());
    let (nx, ny) = h.tile_grid();
    let payload = u64::from(h.payload_len);
    let total = h.file_len();
    match h.geometry {
        Geometry::Image {
            width,
            height,
            channels,
            bit_depth,
        } => {
            let kind = if channels == 1 { "grey" } else { "RGB" };
            line(
                "geometry",
                format!(
                    "{width} x {height} pixels, {kind} ({channels} channel{}), {bit_depth} bits per sample",
                    plural(channels.into())
                ),
            );
            line(
                "tile size",
                format!("{} x {} pixels", h.tile_width, h.tile_height),
            );
            line(
                "tile grid",
                format!("{nx} x {ny} ({} tiles)", h.tile_count()),
            );
        }
        Geometry::Audio {
            sample_rate,
            frames,
            channels,
            bit_depth,
        } => {
            line(
                "geometry",
                format!(
                    "{sample_rate} Hz, {channels} channel{}, {bit_depth} bits per sample, \
                     {frames} frames ({} s)",
                    plural(channels.into()),
                    f64::from(frames) / f64::from(sample_rate)
                ),
            );
            line("tile size", format!("{} samples (chunk)", h.tile_width));
            line(
                "tile grid",
                format!(
                    "{nx} chunk{} x {ny} channel{} ({} tiles)",
                    plural(nx),
                    plural(ny),
                    h.tile_count()
                ),
            );
        }
    }
    line("quality level", h.quality_level.to_string());
    line(
        "step",
        format!(
            "{} (Q16.16 {} = {:#010x})",
            step_from_q16(h.step_q16),
            h.step_q16,
            h.step_q16
        ),
    );
    line("payload", format!("{payload} bytes"));
    line("total", format!("{total} bytes"));
    match h.geometry {
        Geometry::Image { .. } => line(
            "bits per pixel",
            format!("{:.4} (payload {:.4})", rate(h, total), rate(h, payload)),
        ),
        Geometry::Audio { .. } => line(
            "bitrate",
            format!(
                "{:.3} kbit/s (payload {:.3} kbit/s)",
                rate(h, total),
                rate(h, payload)
            ),
        ),
    }
    line(
        "checksum",
        match checksum {
            Checksum::Ok(crc) => format!("ok (CRC-32 {crc:08x})"),
            Checksum::Mismatch { stored, computed } => {
                format!("MISMATCH (stored {stored:08x}, computed {computed:08x})")
            }
            Checksum::Unchecked => "not checked (the file is incomplete)".into(),
        },
    );
    line(
        "status",
        match damage {
            None => "ok".into(),
            Some(e) => format!("DAMAGED: {}", inner_message(e)),
        },
    );
    line("pack needed", h.pack_id.to_string());
    line(
        "pack built in",
        match built_in {
            Some((file, name)) => format!("yes ({file}, \"{name}\")"),
            None => "no (decoding needs --model)".into(),
        },
    );
    if let Some(m) = model {
        let verdict = match &m.problem {
            None => "matches".to_string(),
            Some(Error::WrongPack { .. }) => "does NOT match".to_string(),
            Some(e) => format!("same id but does NOT fit: {}", inner_message(e)),
        };
        line(
            "pack supplied",
            format!(
                "{} \"{}\" ({}): {verdict}",
                m.pack.id(),
                m.pack.config().name,
                m.path.display()
            ),
        );
    }
    s
}

fn to_json(
    name: &str,
    file: &Inspected,
    checksum: &Checksum,
    damage: Option<&Error>,
    model: Option<&PackCheck<'_>>,
    built_in: Option<&(&str, String)>,
) -> Value {
    let h = &file.header;
    let (nx, ny) = h.tile_grid();
    let payload = u64::from(h.payload_len);
    let total = h.file_len();
    let geometry = match h.geometry {
        Geometry::Image {
            width,
            height,
            channels,
            bit_depth,
        } => json!({
            "width": width,
            "height": height,
            "channels": channels,
            "bit_depth": bit_depth,
        }),
        Geometry::Audio {
            sample_rate,
            frames,
            channels,
            bit_depth,
        } => json!({
            "sample_rate": sample_rate,
            "frames": frames,
            "channels": channels,
            "bit_depth": bit_depth,
            "duration_s": f64::from(frames) / f64::from(sample_rate),
        }),
    };
    let checksum = match checksum {
        Checksum::Ok(crc) => json!({ "status": "ok", "stored": format!("{crc:08x}") }),
        Checksum::Mismatch { stored, computed } => json!({
            "status": "mismatch",
            "stored": format!("{stored:08x}"),
            "computed": format!("{computed:08x}"),
        }),
        Checksum::Unchecked => json!({ "status": "unchecked" }),
    };
    let mut v = json!({
        "file": name,
        "format_version": file.bytes[4],
        "coding_tools": tool_names(h),
        "modality": h.geometry.modality().name(),
        "geometry": geometry,
        "tile": {
            "width": h.tile_width,
            "height": h.tile_height,
            "grid_x": nx,
            "grid_y": ny,
            "count": h.tile_count(),
        },
        "quality_level": h.quality_level,
        "step_q16": h.step_q16,
        "step": step_from_q16(h.step_q16),
        "payload_bytes": payload,
        "total_bytes": total,
        "checksum": checksum,
        "damaged": damage.is_some(),
        "error": damage.map(inner_message),
        "pack_id": h.pack_id.to_string(),
        "pack_built_in": built_in.map(|(file, name)| json!({ "file": file, "name": name })),
        "model": model.map(|m| json!({
            "path": m.path.display().to_string(),
            "id": m.pack.id().to_string(),
            "name": m.pack.config().name,
            "matches": m.problem.is_none(),
            "problem": m.problem.as_ref().map(|e| e.to_string()),
        })),
    });
    let (key, rate_key) = match h.geometry {
        Geometry::Image { .. } => ("bits_per_pixel", "payload_bits_per_pixel"),
        Geometry::Audio { .. } => ("kbit_per_s", "payload_kbit_per_s"),
    };
    v[key] = json!(rate(h, total));
    v[rate_key] = json!(rate(h, payload));
    v
}

/// The message of a format error without the library's "invalid .ipc data: " prefix.
fn inner_message(e: &Error) -> String {
    match e {
        Error::Format(f) => f.to_string(),
        e => e.to_string(),
    }
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

/// The coding tools of a file, as short names for `--json`.
fn tool_names(h: &Header) -> Vec<&'static str> {
    let mut tools = Vec::new();
    if h.coding == PayloadCoding::NeighbourContexts {
        tools.push("neighbour-contexts");
    }
    match h.edge_filter {
        EdgeFilterKind::Off => {}
        EdgeFilterKind::Quarter => tools.push("edge-filter"),
        EdgeFilterKind::Fitted => tools.push("fitted-edge-filter"),
    }
    if h.restoration {
        tools.push("restoration-filter");
    }
    tools
}

/// The coding tools of a file, in words (spec/bitstream.md §3.1, §7.5, §8.5 to §8.7).
fn coding_tools(h: &Header) -> String {
    let mut tools = Vec::new();
    if h.coding == PayloadCoding::NeighbourContexts {
        tools.push("neighbour contexts (tables chosen by the left and upper tiles' V, spec §7.5)");
    }
    match h.edge_filter {
        EdgeFilterKind::Off => {}
        EdgeFilterKind::Quarter => tools.push("edge filter (tile edges smoothed, spec §8.5)"),
        EdgeFilterKind::Fitted => tools.push(
            "fitted edge filter (three samples either side of tile edges corrected by taps fitted to this signal, spec §8.6)",
        ),
    }
    if h.restoration {
        tools.push(
            "restoration filter (every sample corrected by taps fitted to this signal, spec §8.7)",
        );
    }
    if tools.is_empty() {
        "none (version 1 coding: one table per element of V, no edge filter)".into()
    } else {
        tools.join("; ")
    }
}
