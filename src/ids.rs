//! The small value types every layer names: a pack's identity and a signal's
//! modality. A leaf module, so that the file format (`container`), the model pack
//! (`pack`) and the errors (`error`) can all use them without depending on each other
//! in a circle.

use std::fmt;

use sha2::{Digest, Sha256};

/// The identity of a pack: the first 16 bytes of the SHA-256 of its decompressed
/// safetensors bytes (spec/model-pack.md §6).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PackId([u8; 16]);

impl PackId {
    /// Wraps raw identifier bytes.
    pub fn from_bytes(b: [u8; 16]) -> PackId {
        PackId(b)
    }

    /// The raw identifier bytes.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// Computes the identifier of decompressed pack content.
    pub fn of_content(safetensors_bytes: &[u8]) -> PackId {
        let digest = Sha256::digest(safetensors_bytes);
        let mut id = [0u8; 16];
        id.copy_from_slice(&digest[..16]);
        PackId(id)
    }
}

impl fmt::Display for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        Hex(&self.0).fmt(f)
    }
}

impl fmt::Debug for PackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PackId({self})")
    }
}

/// What the file holds (spec/bitstream.md §3, field `modality`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modality {
    /// A still image.
    Image,
    /// A sampled audio signal.
    Audio,
}

impl Modality {
    /// Its code in a file's header (spec/bitstream.md §3).
    pub(crate) fn code(self) -> u8 {
        match self {
            Modality::Image => 1,
            Modality::Audio => 2,
        }
    }

    /// The name used in pack configurations and in `ipc-codec info`.
    pub fn name(self) -> &'static str {
        match self {
            Modality::Image => "image",
            Modality::Audio => "audio",
        }
    }
}

/// Displays a byte string as lowercase hex.
struct Hex<'a>(pub &'a [u8]);

impl fmt::Display for Hex<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}
