//! Arbitrary bytes as a model pack: zstd, safetensors and configuration validation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = ipc_codec::ModelPack::from_pack_file(data);
    if let Ok(pack) = ipc_codec::ModelPack::from_safetensors(data) {
        // A pack that loads must be usable for synthesis set-up.
        let _ = ipc_codec::Decoder::new(&pack);
    }
});
