//! The packs shipped in packs/ load, fit the size budget (under 8 MB each), offer at
//! least six quality levels, and decode: every level of each pack codes and decodes a
//! file of all-zero V; both encoding methods work on both packs and the levels are
//! ordered.

use std::path::Path;

use ipc_codec::{encode_quantised, Decoded, Decoder, Geometry, ModelPack};

fn load(name: &str) -> (ModelPack, usize) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("packs")
        .join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (ModelPack::from_pack_file(&bytes).unwrap(), bytes.len())
}

fn check(name: &str, modality: &str, geometry: Geometry) {
    let (pack, size) = load(name);
    let cfg = pack.config();
    assert!(size < 8 << 20, "{name} is {size} bytes");
    assert_eq!(cfg.modality, modality);
    assert!(
        cfg.quality_levels.len() >= 6,
        "{name}: {} levels",
        cfg.quality_levels.len()
    );
    let tiles = geometry.tile_count(cfg.tile_width as u64, cfg.tile_height as u64) as usize;
    let v = vec![0i32; tiles * cfg.v_len()];
    let decoder = Decoder::new(&pack);
    for level in 0..cfg.quality_levels.len() as u8 {
        let file = encode_quantised(&pack, geometry, level, None, &v).unwrap();
        match (decoder.decode(&file).unwrap(), geometry) {
            (Decoded::Image(img), Geometry::Image { width, height, .. }) => {
                assert_eq!((img.width, img.height), (width, height))
            }
            (Decoded::Audio(a), Geometry::Audio { frames, .. }) => {
                assert_eq!(a.samples.len(), frames as usize)
            }
            _ => panic!("{name}: wrong modality decoded"),
        }
    }
}

#[test]
fn image_pack() {
    let g = Geometry::Image {
        width: 70,
        height: 45,
        channels: 3,
        bit_depth: 8,
    };
    check("image.ipcpack", "image", g);
}

#[test]
fn speech_pack() {
    let g = Geometry::Audio {
        sample_rate: 16_000,
        frames: 3000,
        channels: 1,
        bit_depth: 16,
    };
    check("speech.ipcpack", "audio", g);
    let (pack, _) = load("speech.ipcpack");
    assert_eq!(pack.config().sample_rate, Some(16_000));
}

/// Rate rises with the quality level and quality does not fall (within a small
/// tolerance for the rounding of V), for both encoding methods, on the project's sample
/// image (fixtures/sample.png) and a harmonic test tone. The ordering is the pack's, so
/// it is checked on version-1 files (V alone); version 2, whose filters the encoder fits
/// to each file, must then decode at least as well from the same V.
#[test]
fn levels_are_ordered_and_both_methods_encode() {
    use ipc_codec::encoder::{
        AudioSignal, Encoder, EncoderConfig, ImageSignal, Method, RateTarget, Signal,
    };
    let png = image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/sample.png"))
        .unwrap()
        .to_rgb8();
    let image = Signal::Image(ImageSignal {
        width: png.width(),
        height: png.height(),
        channels: 3,
        bit_depth: 8,
        samples: png.as_raw().iter().map(|&b| f32::from(b) / 255.0).collect(),
    });
    let tone = Signal::Audio(AudioSignal {
        sample_rate: 16_000,
        channels: 1,
        samples: (0..8000)
            .map(|i| {
                let t = i as f32 / 16_000.0;
                (1..6)
                    .map(|h| {
                        0.3 / h as f32 * (2.0 * std::f32::consts::PI * 140.0 * h as f32 * t).sin()
                    })
                    .sum::<f32>()
                    * (0.5 + 0.5 * (2.0 * std::f32::consts::PI * 3.0 * t).sin())
            })
            .collect(),
    });
    for (name, signal, methods) in [
        ("image.ipcpack", image, &[Method::Hyper, Method::Meta][..]),
        ("speech.ipcpack", tone, &[Method::Hyper, Method::Meta][..]),
    ] {
        let (pack, _) = load(name);
        for &method in methods {
            let encode_all = |version_1: bool| {
                let encoder = Encoder::new(
                    &pack,
                    EncoderConfig {
                        method,
                        version_1,
                        ..Default::default()
                    },
                )
                .unwrap_or_else(|e| panic!("{name} {method}: {e}"));
                (0..encoder.levels() as u8)
                    .map(|q| {
                        encoder
                            .encode(&signal, RateTarget::Quality(q), &mut |_| {})
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            };
            let results = encode_all(true);
            for (v1, v2) in results.iter().zip(encode_all(false)) {
                // Effort 0: the same V; the filters are kept only where they gain.
                assert!(
                    v2.psnr >= v1.psnr - 1e-9,
                    "{name} {method} level {}: version 2 {:.3} dB, version 1 {:.3} dB",
                    v1.quality_level,
                    v2.psnr,
                    v1.psnr
                );
            }
            for pair in results.windows(2) {
                assert!(
                    pair[1].rate > pair[0].rate && pair[1].psnr > pair[0].psnr - 0.3,
                    "{name} {method}: level {} ({:.3}, {:.2} dB) then {} ({:.3}, {:.2} dB)",
                    pair[0].quality_level,
                    pair[0].rate,
                    pair[0].psnr,
                    pair[1].quality_level,
                    pair[1].rate,
                    pair[1].psnr
                );
            }
        }
    }
}
