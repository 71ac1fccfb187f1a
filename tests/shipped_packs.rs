//! The packs shipped in packs/ load, fit the size budget (under 8 MB each), offer at
//! least six quality levels, and decode: every level of each pack codes and decodes a
//! file of all-zero V.

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
    let v = vec![0i32; tiles * cfg.rank * cfg.width];
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
