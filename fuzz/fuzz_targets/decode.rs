//! Arbitrary bytes through the whole decoder: container parsing, limits, pack checks,
//! entropy decoding (both payload codings of spec/bitstream.md §7), synthesis and the
//! filters (§8.5, and §8.6 and §8.7 with their blocks of taps). The packs are the conformance packs; inputs that name one (seeded from
//! codec-tests/vectors) reach the payload decoder. Each input is also decoded with its
//! checksum made right, so that mutated payloads get past the CRC. The in-memory and
//! streaming decoders must agree on every input.
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
            include_bytes!("../../codec-tests/packs/synthetic-image-neighbour.ipcpack").as_slice(),
            include_bytes!("../../codec-tests/packs/synthetic-audio-neighbour.ipcpack").as_slice(),
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
    let mut fixed = data.to_vec();
    if fixed.len() >= 54 {
        let body = fixed.len() - 4;
        let crc = crc32fast::hash(&fixed[..body]);
        fixed[body..].copy_from_slice(&crc.to_le_bytes());
    }
    for input in [data, &fixed[..]] {
        for pack in packs() {
            let decoder = Decoder::with_options(pack, options);
            // The in-memory and the streaming decoder must agree: the same signal, or an
            // error of the same category.
            match (decoder.decode(input), decoder.decode_reader(input)) {
                (Ok(a), Ok(b)) => assert!(a == b, "the two decoders decode differently"),
                (Err(a), Err(b)) => assert_eq!(a.code(), b.code(), "{a} / {b}"),
                (a, b) => panic!("the decoders disagree: {:?} / {:?}", a.err(), b.err()),
            }
        }
    }
});
