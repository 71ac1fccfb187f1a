//! Encode speed of a 768x512 image with the shipped image pack (`packs/image.ipcpack`),
//! for each method and several effort levels, at the default (middle) quality level.
//!
//! `cargo bench --bench encode` reports `encode/{method}-effort{N}` with throughput in
//! pixels; images per second is the inverse of the time per iteration. Each encode
//! includes what `ipc-codec encode` does after reading the input: tiling, predicting V,
//! refinement, entropy coding and the verification decode that measures PSNR.
//!
//! The image is drawn procedurally (smooth shading, edges and fine texture), so the
//! benchmark needs no external data and never touches the evaluation sets.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipc_codec::encoder::{Encoder, EncoderConfig, ImageSignal, Method, RateTarget, Signal};
use ipc_codec::rng::SplitMix64;
use ipc_codec::ModelPack;

const WIDTH: u32 = 768;
const HEIGHT: u32 = 512;

fn test_image() -> ImageSignal {
    let mut rng = SplitMix64(42);
    let mut samples = Vec::with_capacity((WIDTH * HEIGHT * 3) as usize);
    for y in 0..HEIGHT {
        for x in 0..WIDTH {
            let (fx, fy) = (x as f32 / WIDTH as f32, y as f32 / HEIGHT as f32);
            let disc = ((fx - 0.6).powi(2) + (fy - 0.4).powi(2)).sqrt() < 0.2;
            for c in 0..3 {
                let base = 0.2 + 0.5 * fy + 0.1 * c as f32 * fx;
                let stripes = 0.08 * (x as f32 * 0.7 + c as f32).sin() * (fy * 6.0).cos();
                let v = if disc {
                    0.85 - 0.2 * c as f32 * fy
                } else {
                    base + stripes
                } + 0.02 * rng.uniform(1.0);
                samples.push((v.clamp(0.0, 1.0) * 255.0).round() / 255.0);
            }
        }
    }
    ImageSignal {
        width: WIDTH,
        height: HEIGHT,
        channels: 3,
        bit_depth: 8,
        samples,
    }
}

fn bench(c: &mut Criterion) {
    let bytes = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/packs/image.ipcpack"))
        .expect("packs/image.ipcpack");
    let pack = ModelPack::from_pack_file(&bytes).expect("shipped image pack");
    let signal = Signal::Image(test_image());
    let mut group = c.benchmark_group("encode");
    group.sample_size(10);
    group.throughput(Throughput::Elements(u64::from(WIDTH * HEIGHT)));
    for (method, efforts) in [(Method::Hyper, [0, 10, 50]), (Method::Meta, [0, 10, 50])] {
        for effort in efforts {
            let encoder = Encoder::new(
                &pack,
                EncoderConfig {
                    method,
                    effort,
                    ..Default::default()
                },
            )
            .expect("the shipped pack offers both methods");
            let level = encoder.default_level();
            group.bench_function(format!("{method}-effort{effort}"), |b| {
                b.iter(|| {
                    encoder
                        .encode(&signal, RateTarget::Quality(level), &mut |_| {})
                        .unwrap()
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
