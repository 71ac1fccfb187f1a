//! `ipc-codec bench`: runs the benchmark harness of the `ipc-codec-bench` package with
//! the command's arguments, the CLI's model pack reading and its built-in packs.

use std::path::Path;

use anyhow::Result;
use ipc_bench::RdOptions;
use ipc_codec::{Modality, ModelPack};

use crate::cli::{BenchArgs, BenchCommand, RdArgs};
use crate::input::load_pack;
use crate::packs::BuiltIn;

pub fn run(args: &BenchArgs) -> Result<()> {
    match &args.command {
        BenchCommand::Rd(a) => ipc_bench::rd(&rd_options(a), &pack_for),
    }
}

fn rd_options(args: &RdArgs) -> RdOptions {
    RdOptions {
        images: args.images.clone(),
        audio: args.audio.clone(),
        out: args.out.clone(),
        codecs: args.codecs.clone(),
        quick: args.quick,
        jobs: args.jobs,
        effort: args.effort.clone(),
        method: args.method.into(),
        model: args.model.clone(),
        audio_model: args.audio_model.clone(),
        report: args.report.clone(),
        quiet: args.quiet,
    }
}

/// The pack file given with --model or --audio-model (a failure is a pack failure),
/// else the built-in pack of the modality; with how messages name it.
fn pack_for(path: Option<&Path>, modality: Modality) -> Result<(ModelPack, String)> {
    match path {
        Some(p) => Ok((load_pack(p)?, p.display().to_string())),
        None => {
            let b = BuiltIn::for_modality(modality);
            Ok((b.load()?, b.describe()))
        }
    }
}
