//! `ipc-codec train`: runs `ipc_train::trainer::run` with a progress bar.

use std::time::Duration;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ipc_train::config::TrainConfig;
use ipc_train::device::{select, DeviceChoice};
use ipc_train::trainer::{run as train_run, LevelEval, RunOptions};

use crate::cli::TrainArgs;
use crate::failure::Failure;

fn eval_lines(step: usize, eval: &[LevelEval], image: bool) -> String {
    let unit = if image { "bpp" } else { "bits/sample" };
    let file_unit = if image { "bpp" } else { "kbit/s" };
    let mut s = format!("held-out at step {step} (tiles: mean per-tile PSNR, payload bits; files: whole files, real bytes, whole-signal PSNR):");
    for e in eval {
        s += &format!(
            "\n  level {}: step {:.4}  tiles {:.2} dB {:.3} bits/element {:.4} {unit}",
            e.level, e.step, e.psnr, e.bits_per_element, e.bits_per_sample
        );
        if let (Some(rate), Some(psnr)) = (e.file_rate, e.file_psnr) {
            s += &format!("  files {psnr:.2} dB {rate:.4} {file_unit}");
        }
    }
    s
}

pub fn run(args: &TrainArgs) -> Result<()> {
    let mut config = TrainConfig::load(&args.config).map_err(|e| Failure::usage(e.to_string()))?;
    if let Some(threads) = args.threads {
        config.train.threads = threads;
    }
    let choice: DeviceChoice = args
        .device
        .parse()
        .map_err(|e: ipc_train::device::ParseDeviceChoiceError| Failure::usage(e.to_string()))?;
    let device = select(choice).map_err(|e| Failure::usage(e.to_string()))?;
    let total = args.steps.unwrap_or(config.train.steps) as u64;
    let bar = ProgressBar::new(total);
    if args.quiet {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} {msg} [{per_sec} elapsed {elapsed_precise} ETA {eta_precise}]",
        )
        .expect("valid template"),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    let image = config.channels() == 3;
    eprintln!(
        "training {} ({}) on {:?}: {} steps of {} instances",
        config.name, config.modality, device, total, config.train.batch
    );
    let options = RunOptions {
        steps: args.steps,
        out: args.out.clone(),
        resume: args.resume.clone(),
        grow_from: args.grow_from.clone(),
        device,
    };
    let report = train_run(
        &config,
        &options,
        |s| {
            bar.set_position(s.step as u64);
            bar.set_message(format!(
                "loss {:.5} PSNR {:.2} dB {:.3} bits/elem",
                s.loss, s.psnr, s.bits_per_element
            ));
        },
        |step, eval| {
            // A hidden bar prints nothing, not even its println.
            if args.quiet {
                eprintln!("{}", eval_lines(step, eval, image));
            } else {
                bar.println(eval_lines(step, eval, image));
            }
        },
    )
    .with_context(|| format!("training {}", args.config.display()))?;
    bar.finish_and_clear();
    eprintln!(
        "wrote {} ({} bytes, pack {}); {} steps, {:.2} steps/s, {:.1} instances/s",
        args.out.display(),
        report.pack_bytes,
        report.pack_id,
        report.steps,
        report.steps_per_second,
        report.instances_per_second
    );
    eprintln!("{}", eval_lines(report.steps, &report.eval, image));
    if let Some(path) = &args.report {
        let json = serde_json::to_string_pretty(&report)? + "\n";
        std::fs::write(path, json).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
