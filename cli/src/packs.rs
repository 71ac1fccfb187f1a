//! The default model packs, built into the binary so that `encode` and `decode` work
//! without `--model`. They are kept compressed and only the one a command needs is
//! decompressed and validated.

use anyhow::{Context, Result};
use ipc_codec::{Modality, ModelPack, PackId};

use crate::failure::Failure;

/// A model pack compiled into the binary.
pub struct BuiltIn {
    /// The file it was built from, under `packs/`.
    pub file_name: &'static str,
    bytes: &'static [u8],
}

pub const IMAGE: BuiltIn = BuiltIn {
    file_name: "image.ipcpack",
    bytes: include_bytes!("../../packs/image.ipcpack"),
};

pub const SPEECH: BuiltIn = BuiltIn {
    file_name: "speech.ipcpack",
    bytes: include_bytes!("../../packs/speech.ipcpack"),
};

impl BuiltIn {
    /// The built-in pack for a modality (audio is coded with the speech pack).
    pub fn for_modality(modality: Modality) -> &'static BuiltIn {
        match modality {
            Modality::Image => &IMAGE,
            Modality::Audio => &SPEECH,
        }
    }

    /// The built-in pack whose id is `id`, among those for `modality`, loaded.
    pub fn find(modality: Modality, id: PackId) -> Option<(&'static BuiltIn, ModelPack)> {
        let b = BuiltIn::for_modality(modality);
        let pack = b.load().ok()?;
        (pack.id() == id).then_some((b, pack))
    }

    /// Decompresses and validates the pack. A failure means the binary was built from
    /// a broken pack file, so it is reported as a pack failure.
    pub fn load(&self) -> Result<ModelPack> {
        ModelPack::from_pack_file(self.bytes).with_context(|| {
            Failure::pack(format!("cannot read the built-in pack {}", self.file_name))
        })
    }

    /// How messages name it.
    pub fn describe(&self) -> String {
        format!("built-in {}", self.file_name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_packs_load_and_code_their_modality() {
        for m in [Modality::Image, Modality::Audio] {
            let pack = BuiltIn::for_modality(m).load().unwrap();
            assert_eq!(pack.config().modality().unwrap(), m);
        }
        assert!(SPEECH.load().unwrap().config().sample_rate.is_some());
    }
}
