//! Arbitrary bytes through the whole decoder: container parsing, limits, pack checks,
//! entropy decoding and synthesis. The pack is the conformance image pack; inputs that
//! name it (seeded from codec-tests/vectors) reach the payload decoder.
#![no_main]

use std::sync::OnceLock;

use ipc_codec::{DecodeOptions, Decoder, Limits, ModelPack};
use libfuzzer_sys::fuzz_target;

fn packs() -> &'static [ModelPack] {
    static PACKS: OnceLock<Vec<ModelPack>> = OnceLock::new();
    PACKS.get_or_init(|| {
        [
            include_bytes!("../../codec-tests/packs/synthetic-image.ipcpack").as_slice(),
            include_bytes!("../../codec-tests/packs/synthetic-audio.ipcpack").as_slice(),
        ]
        .iter()
        .map(|b| ModelPack::from_pack_file(b).expect("conformance pack"))
        .collect()
    })
}

fuzz_target!(|data: &[u8]| {
    // Small limits keep each run fast; the limit checks themselves are under test too.
    let options = DecodeOptions {
        limits: Limits {
            max_pixels: 1 << 16,
            max_samples: 1 << 16,
            max_payload_bytes: 1 << 20,
            max_v_elements: 1 << 18,
        },
        threads: 1,
    };
    for pack in packs() {
        let decoder = Decoder::with_options(pack, options);
        let _ = decoder.decode(data);
        let _ = decoder.decode_reader(data);
    }
});
