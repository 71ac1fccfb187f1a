//! Reading `.ipc` files and model packs, always with bounded memory.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::Path;

use anyhow::{Context, Result};
use ipc_codec::container::{Container, HEADER_LEN, TRAILER_LEN};
use ipc_codec::decoder::read_ipc;
use ipc_codec::{Error, Header, Limits, ModelPack};

use crate::failure::Failure;

/// Where an `.ipc` file comes from: a path, or standard input for `-`.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    Stdin,
    File(&'a Path),
}

impl<'a> Source<'a> {
    pub fn new(arg: &'a Path) -> Source<'a> {
        if arg.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(arg)
        }
    }

    /// How messages name the input.
    pub fn name(&self) -> String {
        match self {
            Source::Stdin => "standard input".into(),
            Source::File(p) => p.display().to_string(),
        }
    }

    fn open(&self) -> Result<Box<dyn Read + 'static>> {
        Ok(match self {
            Source::Stdin => Box::new(io::stdin().lock()),
            Source::File(p) => Box::new(BufReader::new(
                File::open(p).with_context(|| format!("cannot open {}", p.display()))?,
            )),
        })
    }

    /// Reads one complete file with [`read_ipc`] (header first, then no more than the
    /// header declares once the limits are checked); [`Source::verify`] then splits and
    /// verifies it.
    pub fn read_ipc(&self, limits: &Limits) -> Result<Vec<u8>> {
        let mut reader = self.open()?;
        read_ipc(&mut reader, limits).with_context(|| format!("cannot read {}", self.name()))
    }

    /// Splits and verifies (checksum included) a file from [`Source::read_ipc`] with
    /// [`Container::parse`], once, so that a damaged file is reported before any work
    /// and the decoder need not check it again ([`ipc_codec::Decoder::decode_container`]).
    pub fn verify<'b>(&self, bytes: &'b [u8], limits: &Limits) -> Result<Container<'b>> {
        Container::parse(bytes, limits).with_context(|| format!("cannot read {}", self.name()))
    }

    /// Reads a file for inspection: like [`read_ipc`], but a file that is too short or
    /// has trailing bytes is still returned, with what was found, so that its header
    /// can be shown. Only a header that cannot be parsed, or a payload above the limit,
    /// is an error.
    pub fn read_for_inspection(&self, limits: &Limits) -> Result<Inspected> {
        let mut reader = self.open()?;
        let name = self.name();
        let mut bytes = Vec::with_capacity(HEADER_LEN);
        (&mut reader)
            .take(HEADER_LEN as u64)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name}"))?;
        let header = Header::parse(&bytes).with_context(|| format!("cannot read {name}"))?;
        if u64::from(header.payload_len) > limits.max_payload_bytes {
            return Err(Error::LimitExceeded {
                what: "payload size",
                value: header.payload_len.into(),
                limit: limits.max_payload_bytes,
            })
            .with_context(|| format!("cannot read {name}"));
        }
        let total = header.file_len();
        (&mut reader)
            .take(total - HEADER_LEN as u64)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {name}"))?;
        // Count, without keeping, whatever follows the declared end.
        let trailing = if (bytes.len() as u64) < total {
            0
        } else {
            io::copy(&mut reader, &mut io::sink()).with_context(|| format!("cannot read {name}"))?
        };
        Ok(Inspected {
            header,
            bytes,
            trailing,
        })
    }
}

/// What [`Source::read_for_inspection`] found.
#[derive(Debug)]
pub struct Inspected {
    /// The parsed header.
    pub header: Header,
    /// The bytes of the file up to its declared length (fewer if it is truncated).
    pub bytes: Vec<u8>,
    /// How many bytes follow the declared end.
    pub trailing: u64,
}

impl Inspected {
    /// Whether the whole declared file is present.
    pub fn is_complete(&self) -> bool {
        self.bytes.len() as u64 == self.header.file_len()
    }

    /// The checksum stored in the file's trailer, if it is present.
    pub fn stored_checksum(&self) -> Option<u32> {
        if !self.is_complete() {
            return None;
        }
        let t = &self.bytes[self.bytes.len() - TRAILER_LEN..];
        Some(u32::from_le_bytes([t[0], t[1], t[2], t[3]]))
    }
}

/// Reads a model pack file (decompression is bounded by the library). Every failure,
/// including a missing file, is a model pack failure (exit status 5).
pub fn load_pack(path: &Path) -> Result<ModelPack> {
    let what = || Failure::pack(format!("cannot read model pack {}", path.display()));
    let file = File::open(path).with_context(what)?;
    ModelPack::from_reader(BufReader::new(file)).with_context(what)
}
