//! The decoder's error type: one enum whose variants are the categories a caller acts on
//! differently (corrupt input, unsupported feature, exceeded limit, wrong model pack, I/O).

use crate::entropy::EntropyError;
use crate::ids::PackId;
use crate::pack::PackError;

/// Everything that can go wrong while reading or decoding an `.ipc` file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The input is not a valid `.ipc` file: truncated, damaged or malformed.
    #[error("invalid .ipc data: {0}")]
    Format(#[from] FormatError),
    /// The file is well formed but uses something this decoder does not implement
    /// (a newer format version, a reserved field, alpha).
    #[error("unsupported .ipc feature: {0}")]
    Unsupported(String),
    /// Decoding would exceed a limit set in [`Limits`](crate::Limits).
    #[error("{what} is {value}, above the limit of {limit}")]
    LimitExceeded {
        /// The quantity that is too large.
        what: &'static str,
        /// Its value in this file.
        value: u64,
        /// The configured limit.
        limit: u64,
    },
    /// The file was made with another model pack than the one supplied.
    #[error("this file needs model pack {needed}, but the pack supplied is {supplied}")]
    WrongPack {
        /// The pack the file names in its header.
        needed: PackId,
        /// The pack the decoder holds.
        supplied: PackId,
    },
    /// The file names the right pack but does not fit it (modality, tile size, quality level).
    #[error("file does not fit model pack {pack}: {reason}")]
    PackMismatch {
        /// The pack in use.
        pack: PackId,
        /// What does not fit.
        reason: String,
    },
    /// The model pack itself could not be read.
    #[error("invalid model pack: {0}")]
    Pack(#[from] PackError),
    /// Reading the input failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The caller's arguments do not fit the call, whatever the file: a buffer of the
    /// wrong size, a V of the wrong length, the wrong decode function for the file.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl Error {
    /// A short stable identifier of the error, used by the conformance manifest
    /// (`codec-tests/manifest.json`) and the C ABI.
    pub fn code(&self) -> &'static str {
        match self {
            Error::Format(f) => f.code(),
            Error::Unsupported(_) => "unsupported",
            Error::LimitExceeded { .. } => "limit-exceeded",
            Error::WrongPack { .. } => "wrong-pack",
            Error::PackMismatch { .. } => "pack-mismatch",
            Error::Pack(_) => "invalid-pack",
            Error::Io(_) => "io",
            Error::InvalidArgument(_) => "invalid-argument",
        }
    }
}

/// Ways in which bytes fail to be a valid `.ipc` file (spec/bitstream.md §5).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// The first four bytes are not the `.ipc` signature.
    #[error("not an .ipc file (bad signature)")]
    BadMagic,
    /// The data ends before the structure it declares.
    #[error("file is truncated: {needed} bytes needed, {available} present")]
    Truncated {
        /// Bytes the header says the file has.
        needed: u64,
        /// Bytes actually present.
        available: u64,
    },
    /// Bytes follow the checksum.
    #[error("{0} unexpected bytes after the end of the file")]
    TrailingData(u64),
    /// The CRC-32 over header and payload does not match.
    #[error(
        "checksum mismatch (stored {stored:08x}, computed {computed:08x}): the file is damaged"
    )]
    Checksum {
        /// The checksum stored in the file.
        stored: u32,
        /// The checksum of the bytes read.
        computed: u32,
    },
    /// A header field holds a value the syntax does not allow.
    #[error("header field {field} has invalid value {value}")]
    Field {
        /// The field's name as in spec/bitstream.md.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The payload length is not a whole number of 32-bit words.
    #[error("payload length {0} is not a multiple of 4")]
    PayloadAlignment(u64),
    /// The entropy-coded payload could not be decoded.
    #[error("entropy-coded payload is corrupt: {0}")]
    Payload(#[from] EntropyError),
}

impl FormatError {
    /// See [`Error::code`].
    pub fn code(&self) -> &'static str {
        match self {
            FormatError::BadMagic => "bad-magic",
            FormatError::Truncated { .. } => "truncated",
            FormatError::TrailingData(_) => "trailing-data",
            FormatError::Checksum { .. } => "checksum",
            FormatError::Field { .. } => "invalid-field",
            FormatError::PayloadAlignment(_) => "payload-alignment",
            FormatError::Payload(_) => "corrupt-payload",
        }
    }
}
