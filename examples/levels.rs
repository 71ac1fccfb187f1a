//! Encodes every PNG, JPEG or WebP in a folder at every quality level of a pack and prints,
//! per level, the mean bits per pixel (whole files), the mean PSNR and the PSNR of the
//! pixels beside tile boundaries against the other pixels (tiling seams):
//!
//! ```sh
//! cargo run --release --example levels -- DIR [PACK] [--effort N] [--method hyper|meta] [--levels 0,3,9] [--format-version 1] [--edge-emphasis X]
//! ```
//!
//! The last two columns say how concentrated the error is: the share of the image's
//! squared error in its worst tenth of tiles, and the PSNR the image would have if
//! those tiles had the error of the median tile (the headroom in the hardest tiles).
//!
//! `--format-version 1` writes version-1 files (no neighbour contexts, no edge filter),
//! to compare the seams with and without the edge filters of version 2;
//! `--edge-emphasis 0` refines without weighing the samples beside tile edges more
//! (`EncoderConfig::edge_emphasis`).
//!
//! PACK defaults to `packs/image.ipcpack`. Every file is also decoded with a fresh
//! decoder and checked against the encoder's own measurement.

use std::path::PathBuf;
use std::time::Instant;

use ipc_codec::encoder::{Encoder, EncoderConfig, ImageSignal, Method, RateTarget, Signal};
use ipc_codec::{Decoded, Decoder, ModelPack};

#[path = "support/image_file.rs"]
mod image_file;
use image_file::{load, photos_in};

fn main() {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut config = EncoderConfig::default();
    let mut only: Option<Vec<u8>> = None;
    while let Some(a) = args.next() {
        match a.as_str() {
            "--effort" => {
                config.effort = args
                    .next()
                    .and_then(|x| x.parse().ok())
                    .expect("--effort N")
            }
            "--method" => {
                config.method = args
                    .next()
                    .and_then(|x| x.parse::<Method>().ok())
                    .expect("--method hyper|meta")
            }
            "--edge-emphasis" => {
                config.edge_emphasis = args
                    .next()
                    .and_then(|x| x.parse().ok())
                    .expect("--edge-emphasis X")
            }
            "--format-version" => {
                config.version_1 = args.next().as_deref() == Some("1");
            }
            "--levels" => {
                only = Some(
                    args.next()
                        .expect("--levels LIST")
                        .split(',')
                        .map(|x| x.trim().parse().expect("level number"))
                        .collect(),
                )
            }
            _ => positional.push(a),
        }
    }
    let dir = PathBuf::from(
        positional
            .first()
            .expect("usage: levels DIR [PACK] [--effort N] [--method M]"),
    );
    let pack_path = positional.get(1).map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/packs/image.ipcpack"))
    });
    let pack =
        ModelPack::from_pack_file(&std::fs::read(&pack_path).expect("pack")).expect("valid pack");
    let encoder = Encoder::new(&pack, config).expect("pack can encode");
    let decoder = Decoder::new(&pack);
    let (tw, th) = (pack.config().tile_width, pack.config().tile_height);
    let files = photos_in(&dir);
    let images: Vec<(PathBuf, ImageSignal)> = files
        .into_iter()
        .map(|p| {
            let s = load(&p);
            (p, s)
        })
        .collect();
    println!(
        "pack {} ({}), method {}, effort {}, {} images from {}",
        pack.id(),
        pack.config().name,
        config.method,
        config.effort,
        images.len(),
        dir.display()
    );
    println!("| level | mean bpp | mean PSNR (dB) | seam-pixel PSNR | other-pixel PSNR | seconds per image | error share of worst 10 % tiles | PSNR with them at the median |");
    println!("|---|---|---|---|---|---|---|---|");
    let levels = only.unwrap_or_else(|| (0..encoder.levels() as u8).collect());
    for level in levels {
        let (mut bpp, mut psnr, mut seam, mut inner, mut secs) = (0.0, 0.0, 0.0, 0.0, 0.0);
        let (mut share, mut capped) = (0.0, 0.0);
        for (path, image) in &images {
            let signal = Signal::Image(image.clone());
            let start = Instant::now();
            let e = encoder
                .encode(&signal, RateTarget::Quality(level), &mut |_| {})
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            secs += start.elapsed().as_secs_f64();
            let Decoded::Image(decoded) = decoder.decode(&e.file).expect("decodes") else {
                panic!("not an image")
            };
            let check = ipc_codec::metrics::psnr(&signal, &Decoded::Image(decoded.clone()));
            assert!(
                (check - e.psnr).abs() < 1e-9,
                "{}: decode differs",
                path.display()
            );
            let (s, i) = ipc_codec::metrics::seam_psnr(image, &decoded, tw, th);
            let (sh, cp) = worst_tiles(image, &decoded, tw, th);
            share += sh;
            capped += cp;
            bpp += e.rate;
            psnr += e.psnr;
            seam += s;
            inner += i;
        }
        let n = images.len() as f64;
        println!(
            "| {level} | {:.3} | {:.2} | {:.2} | {:.2} | {:.2} | {:.0} % | {:.2} |",
            bpp / n,
            psnr / n,
            seam / n,
            inner / n,
            secs / n,
            100.0 * share / n,
            capped / n
        );
    }
}

/// The share of the squared error in the worst tenth of the tiles (8-bit images), and
/// the PSNR with each of those tiles at the median tile's mean squared error.
fn worst_tiles(
    image: &ImageSignal,
    decoded: &ipc_codec::DecodedImage,
    tw: usize,
    th: usize,
) -> (f64, f64) {
    let ipc_codec::ImagePixels::U8(pixels) = &decoded.pixels else {
        panic!("8-bit images only")
    };
    let (w, h, c) = (
        image.width as usize,
        image.height as usize,
        usize::from(image.channels),
    );
    let (cols, rows) = (w.div_ceil(tw), h.div_ceil(th));
    let mut tiles = vec![(0f64, 0usize); cols * rows];
    for y in 0..h {
        for x in 0..w {
            let t = &mut tiles[(y / th) * cols + x / tw];
            for ch in 0..c {
                let i = (y * w + x) * c + ch;
                let e = f64::from(pixels[i]) - (f64::from(image.samples[i]) * 255.0).round();
                t.0 += e * e;
                t.1 += 1;
            }
        }
    }
    let total: f64 = tiles.iter().map(|t| t.0).sum();
    let samples: usize = tiles.iter().map(|t| t.1).sum();
    let mut mse: Vec<(f64, usize)> = tiles.iter().map(|&(s, n)| (s / n as f64, n)).collect();
    mse.sort_by(|a, b| b.0.total_cmp(&a.0));
    let worst = mse.len().div_ceil(10);
    let median = mse[mse.len() / 2].0;
    let worst_sse: f64 = mse[..worst].iter().map(|&(m, n)| m * n as f64).sum();
    let capped_sse = total - worst_sse
        + mse[..worst]
            .iter()
            .map(|&(_, n)| median * n as f64)
            .sum::<f64>();
    (
        worst_sse / total.max(f64::MIN_POSITIVE),
        ipc_codec::metrics::psnr_from_mse(capped_sse / samples as f64, 255.0),
    )
}
