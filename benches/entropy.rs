//! Entropy-coding throughput of V (spec/bitstream.md §7): encoding and decoding the
//! quantised V of a 768x512 image with the representative pack's tables, in V elements
//! per second, with each element's own table (version 1, and version 2 without
//! flags) and with neighbour contexts (version 2, §7.5).
//!
//! `cargo bench --bench entropy` reports `entropy/encode`, `entropy/decode`,
//! `entropy/encode-neighbour` and `entropy/decode-neighbour`.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ipc_codec::entropy::{PayloadCoding, TileGrid};
use ipc_codec::pack::synthetic::SyntheticPack;
use ipc_codec::rng::SplitMix64;
use ipc_codec::ModelPack;

fn bench(c: &mut Criterion) {
    let pack = ModelPack::from_safetensors(
        &SyntheticPack::representative_image()
            .with_neighbour_tables()
            .build()
            .to_safetensors()
            .unwrap(),
    )
    .unwrap();
    let cfg = pack.config();
    let grid = TileGrid {
        columns: 768usize.div_ceil(cfg.tile_width),
        rows: 512usize.div_ceil(cfg.tile_height),
    };
    let count = grid.tiles() * cfg.v_len();
    let mut rng = SplitMix64(9);
    // Mostly small values with some escapes, like a middle quality level.
    let q: Vec<i32> = (0..count)
        .map(|_| {
            let r = rng.next_u64();
            ((r % 9) as i32 - 4) * i32::from(r % 7 != 0) + i32::from(r % 97 == 0) * 40
        })
        .collect();
    let model = pack.v_model(2).unwrap();
    let mut group = c.benchmark_group("entropy");
    group.throughput(Throughput::Elements(count as u64));
    for (name, coding) in [
        ("", PayloadCoding::PerElement),
        ("-neighbour", PayloadCoding::NeighbourContexts),
    ] {
        let payload = model.encode_tiles(&q, grid, coding).unwrap();
        group.bench_function(format!("encode{name}"), |b| {
            b.iter(|| model.encode_tiles(&q, grid, coding).unwrap())
        });
        group.bench_function(format!("decode{name}"), |b| {
            b.iter(|| model.decode_tiles(&payload, grid, coding).unwrap())
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
