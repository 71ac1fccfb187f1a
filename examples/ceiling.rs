//! How good can the pack's network be on a photo when V is free: fits every tile's V
//! by Adam on the distortion alone (no rate, no quantisation), starting from the
//! hypernetwork's prediction, and prints the whole-image PSNR of the prediction and of
//! the fitted V, both on unrounded float output over the real pixels.
//!
//! ```sh
//! cargo run --release --example ceiling -- DIR [PACK] [--iterations N] [--lr X]
//! ```
//!
//! The gap between the two says whether a flat top is the representation's (the
//! fitted V is not better either) or the prediction's (it is): the top quality levels
//! only round the predicted V more finely, so they cannot exceed its quality.

use std::path::PathBuf;

use ipc_codec::encoder::refine::{ADAM_EPS, BETA1, BETA2};
use ipc_codec::encoder::{DistortionModel, Encoder, EncoderConfig, Tiles};
use ipc_codec::synthesis::TileSynthesizer;
use ipc_codec::ModelPack;

#[path = "support/image_file.rs"]
mod image_file;
use image_file::{load, photos_in};

/// Whole-image PSNR (peak 1) from every tile's mean squared error over its real samples.
fn whole_psnr(mse: &[f64], tiles: &Tiles) -> f64 {
    let (mut sse, mut n) = (0f64, 0f64);
    for (t, &m) in mse.iter().enumerate() {
        let real: f64 = tiles.weights[t * tiles.samples..(t + 1) * tiles.samples]
            .iter()
            .map(|&w| f64::from(w))
            .sum();
        sse += m * real;
        n += real;
    }
    -10.0 * (sse / n).log10()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (mut iterations, mut lr) = (300usize, 0.01f64);
    let mut positional = Vec::new();
    while let Some(a) = args.next() {
        match a.as_str() {
            "--iterations" => iterations = args.next().and_then(|x| x.parse().ok()).expect("N"),
            "--lr" => lr = args.next().and_then(|x| x.parse().ok()).expect("X"),
            _ => positional.push(a),
        }
    }
    let dir = PathBuf::from(positional.first().expect("usage: ceiling DIR [PACK]"));
    let pack_path = positional.get(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/packs/image.ipcpack"))
    });
    let pack =
        ModelPack::from_pack_file(&std::fs::read(&pack_path).expect("pack")).expect("valid pack");
    let encoder = Encoder::new(&pack, EncoderConfig::default()).expect("pack can encode");
    let model = DistortionModel::new(TileSynthesizer::new(&pack));
    let cfg = pack.config();
    let files = photos_in(&dir);
    println!(
        "pack {}, {iterations} Adam iterations at lr {lr}",
        pack.id()
    );
    println!("| photo | predicted V (dB) | fitted V (dB) |");
    println!("|---|---:|---:|");
    let (mut sum_p, mut sum_f) = (0.0, 0.0);
    for path in &files {
        let tiles = Tiles::of_image(&load(path), cfg.tile_width, cfg.tile_height);
        let mut v = encoder.predict(&tiles, cfg.quality_levels.len() - 1);
        let mut mse = vec![0f64; tiles.count];
        let mut grad = vec![0f32; v.len()];
        model.evaluate(&v, &tiles, None, &mut mse, 0);
        let predicted = whole_psnr(&mse, &tiles);
        let (mut m1, mut m2) = (vec![0f64; v.len()], vec![0f64; v.len()]);
        for it in 1..=iterations {
            model.evaluate(&v, &tiles, Some(&mut grad), &mut mse, 0);
            let (c1, c2) = (1.0 - BETA1.powi(it as i32), 1.0 - BETA2.powi(it as i32));
            for i in 0..v.len() {
                let g = f64::from(grad[i]);
                m1[i] = BETA1 * m1[i] + (1.0 - BETA1) * g;
                m2[i] = BETA2 * m2[i] + (1.0 - BETA2) * g * g;
                v[i] -= (lr * (m1[i] / c1) / ((m2[i] / c2).sqrt() + ADAM_EPS)) as f32;
            }
        }
        model.evaluate(&v, &tiles, None, &mut mse, 0);
        let fitted = whole_psnr(&mse, &tiles);
        sum_p += predicted;
        sum_f += fitted;
        println!(
            "| {} | {predicted:.2} | {fitted:.2} |",
            path.file_stem().unwrap().to_string_lossy()
        );
    }
    let n = files.len() as f64;
    println!("| mean | {:.2} | {:.2} |", sum_p / n, sum_f / n);
}
