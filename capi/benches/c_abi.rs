//! Time per call of the C ABI's decode functions with the shipped packs
//! (`packs/image.ipcpack`, `packs/speech.ipcpack`): what a program linking
//! `libipccodec` pays per file, pack handle set-up included where the library does it.
//!
//! `cargo bench -p ipc-codec-capi --bench c_abi` reports `ipc_decode_image8/WxH` and
//! `ipc_decode_audio16/1s` (files of small random V, which decode as fast as any).

use criterion::{criterion_group, criterion_main, Criterion};
use ipc_codec::rng::SplitMix64;
use ipc_codec::{encode_quantised, Geometry, ModelPack};
use ipccodec::{ipc_decode_audio16, ipc_decode_image8, ipc_pack_free, ipc_pack_load, IPC_OK};

const IMAGE_PACK: &[u8] = include_bytes!("../../packs/image.ipcpack");
const SPEECH_PACK: &[u8] = include_bytes!("../../packs/speech.ipcpack");

/// A file of `geometry` with small random V (values in -2..=2), at level 1.
fn file(pack_bytes: &[u8], geometry: Geometry) -> Vec<u8> {
    let pack = ModelPack::from_pack_file(pack_bytes).unwrap();
    let cfg = pack.config();
    let tiles = geometry.tile_count(cfg.tile_width as u64, cfg.tile_height as u64);
    let mut rng = SplitMix64(7);
    let q: Vec<i32> = (0..tiles as usize * cfg.v_len())
        .map(|_| (rng.next_u64() % 5) as i32 - 2)
        .collect();
    encode_quantised(&pack, geometry, 1, None, &q).unwrap()
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipc_decode_image8");
    g.sample_size(20);
    let mut pack = std::ptr::null_mut();
    // SAFETY: valid pointers and lengths; the pack is freed below.
    assert_eq!(
        unsafe { ipc_pack_load(IMAGE_PACK.as_ptr(), IMAGE_PACK.len(), &mut pack) },
        IPC_OK
    );
    for (w, h) in [(64u32, 64u32), (768, 512)] {
        let geometry = Geometry::Image {
            width: w,
            height: h,
            channels: 3,
            bit_depth: 8,
        };
        let data = file(IMAGE_PACK, geometry);
        let mut pixels = vec![0u8; (w * h * 3) as usize];
        g.bench_function(format!("{w}x{h}"), |b| {
            b.iter(|| {
                // SAFETY: every pointer is valid for the length given.
                let status = unsafe {
                    ipc_decode_image8(
                        pack,
                        data.as_ptr(),
                        data.len(),
                        pixels.as_mut_ptr(),
                        pixels.len(),
                    )
                };
                assert_eq!(status, IPC_OK);
            })
        });
    }
    // SAFETY: from ipc_pack_load, freed once.
    unsafe { ipc_pack_free(pack) };
    g.finish();

    let mut g = c.benchmark_group("ipc_decode_audio16");
    g.sample_size(20);
    let mut pack = std::ptr::null_mut();
    // SAFETY: as above.
    assert_eq!(
        unsafe { ipc_pack_load(SPEECH_PACK.as_ptr(), SPEECH_PACK.len(), &mut pack) },
        IPC_OK
    );
    let data = file(
        SPEECH_PACK,
        Geometry::Audio {
            sample_rate: 16_000,
            frames: 16_000,
            channels: 1,
            bit_depth: 16,
        },
    );
    let mut samples = vec![0i16; 16_000];
    g.bench_function("1s", |b| {
        b.iter(|| {
            // SAFETY: every pointer is valid for the length given.
            let status = unsafe {
                ipc_decode_audio16(
                    pack,
                    data.as_ptr(),
                    data.len(),
                    samples.as_mut_ptr(),
                    samples.len(),
                )
            };
            assert_eq!(status, IPC_OK);
        })
    });
    // SAFETY: from ipc_pack_load, freed once.
    unsafe { ipc_pack_free(pack) };
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
