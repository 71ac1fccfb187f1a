//! Decode speed with a representative pack (64 frequencies per axis, width 128, 5 layers,
//! rank 8, 32x32 tiles) on a 768x512 image, in both orientations of the modulated layer
//! (`shared-input`, `instance-input`; spec/model-pack.md §4.2).
//!
//! `cargo bench --bench decode` reports, for each orientation `O`:
//! - `decode-O/768x512`: whole-file decode (parse, entropy decode, synthesis, 8-bit
//!   output), throughput in pixels (Melem/s = Mpixel/s);
//! - `synthesis-O/768x512`: synthesis alone, throughput in floating-point operations
//!   (Gelem/s = GFLOP/s; 2 FLOP per MAC);
//! - `entropy-O/768x512`: entropy decoding of V alone, throughput in V elements.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipc_codec::pack::synthetic::SyntheticPack;
use ipc_codec::rng::SplitMix64;
use ipc_codec::synthesis::TileSynthesizer;
use ipc_codec::{encode_quantised, DecodeOptions, Decoder, Geometry, ModelPack};

const WIDTH: u32 = 768;
const HEIGHT: u32 = 512;

fn bench(c: &mut Criterion) {
    for spec in [
        SyntheticPack::representative_image(),
        SyntheticPack::representative_image().instance_input(),
    ] {
        bench_pack(c, &spec);
    }
}

fn bench_pack(c: &mut Criterion, spec: &SyntheticPack) {
    let pack = ModelPack::from_safetensors(&spec.build().to_safetensors().unwrap()).unwrap();
    let name = spec.orientation.name();
    let cfg = pack.config();
    let tiles =
        (WIDTH as usize).div_ceil(cfg.tile_width) * (HEIGHT as usize).div_ceil(cfg.tile_height);
    let v_len = cfg.v_len();
    let mut rng = SplitMix64(5);
    // Values spread like a coarse quality level: mostly small, some escapes.
    let q: Vec<i32> = (0..tiles * v_len)
        .map(|_| {
            let r = rng.next_u64();
            ((r % 9) as i32 - 4) * i32::from(r % 7 != 0) + i32::from(r % 97 == 0) * 40
        })
        .collect();
    let level = 2;
    let file = encode_quantised(
        &pack,
        Geometry::Image {
            width: WIDTH,
            height: HEIGHT,
            channels: 3,
            bit_depth: 8,
        },
        level,
        None,
        &q,
    )
    .unwrap();
    // Multiply-accumulates per output pixel that synthesis spends per file: the
    // modulated layer plus every later layer; earlier layers are computed once per pack.
    let macs = TileSynthesizer::new(&pack).macs_per_sample();
    let padded_pixels = (tiles * cfg.tile_samples()) as u64;
    eprintln!(
        "pack ({name}): width {} layers {} rank {} tile {}x{}; {} MAC/pixel; file {} bytes ({:.3} bpp)",
        cfg.width,
        cfg.layers,
        cfg.rank,
        cfg.tile_width,
        cfg.tile_height,
        macs,
        file.len(),
        file.len() as f64 * 8.0 / f64::from(WIDTH * HEIGHT)
    );

    let decoder = Decoder::with_options(&pack, DecodeOptions::default());
    let mut g = c.benchmark_group(format!("decode-{name}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(WIDTH * HEIGHT)));
    g.bench_function("768x512", |b| b.iter(|| decoder.decode(&file).unwrap()));
    g.finish();

    let synth = TileSynthesizer::new(&pack);
    let step = cfg.quality_levels[usize::from(level)].step_q16 as f32 / 65536.0;
    let v: Vec<f32> = q.iter().map(|&x| x as f32 * step).collect();
    let mut out = vec![0f32; tiles * synth.outputs_per_tile()];
    let mut g = c.benchmark_group(format!("synthesis-{name}"));
    g.sample_size(10);
    g.throughput(Throughput::Elements(2 * macs * padded_pixels));
    g.bench_function("768x512", |b| b.iter(|| synth.render(&v, &mut out, 0)));
    g.finish();

    let model = pack.v_model(usize::from(level)).unwrap();
    let payload =
        &file[ipc_codec::container::HEADER_LEN..file.len() - ipc_codec::container::TRAILER_LEN];
    let mut g = c.benchmark_group(format!("entropy-{name}"));
    g.sample_size(20);
    g.throughput(Throughput::Elements(q.len() as u64));
    g.bench_function("768x512", |b| {
        b.iter(|| model.decode(payload, q.len()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
