//! # ipc-codec
//!
//! A neural image and audio codec built on Instance Pattern Composers (Kim et al.,
//! CVPR 2023). A file (`.ipc`, specified in `spec/bitstream.md`) carries, for each tile
//! of the signal, a small quantised matrix V; the decoder rebuilds the signal by
//! evaluating a coordinate MLP whose modulated layer has a low-rank weight made of V
//! and a shared factor U (`norm(V U)` with V on the layer's input side in IPC's
//! orientation, `norm(U V)` in the first packs': [`pack::Orientation`]), with U, the
//! other layers, the Fourier features and the entropy model taken from a model pack
//! (`spec/model-pack.md`) that the file names by content hash.
//!
//! This crate is the codec library, in pure Rust (no libtorch, no CLI dependencies,
//! nothing beyond the format's own needs with `default-features = false`):
//! - decoding: [`Decoder`], [`container`] (the file format), [`entropy`], [`synthesis`]
//!   and [`pack`] (model packs), what a program that shows `.ipc` files links (the C
//!   ABI, `ipc-codec-capi`, wraps exactly this);
//! - encoding: [`encoder`] (tiling, the hypernetwork and meta-learned initialisation,
//!   quantisation-aware refinement, rate control), used by `ipc-codec encode`;
//! - [`metrics`], the PSNR and rate figures every part of the project reports, and
//!   [`parallel`], its one thread pool.
//!
//! Training (libtorch) lives in `ipc-train`, the command line in `ipc-codec-cli`.
//!
//! ```
//! use ipc_codec::{pack::synthetic::SyntheticPack, Decoded, Decoder, Geometry, ModelPack};
//!
//! # fn main() -> Result<(), ipc_codec::Error> {
//! // A trained pack is read with `ModelPack::from_pack_file(&std::fs::read(path)?)`;
//! // here a small seeded test pack stands in for it.
//! let pack = ModelPack::from_safetensors(&SyntheticPack::small_image().build().to_safetensors()?)?;
//! # let file = ipc_codec::encode_quantised(&pack, Geometry::Image {
//! #     width: 16, height: 8, channels: 3, bit_depth: 8 }, 0, None, &[1; 2 * 4 * 16])?;
//! let decoder = Decoder::new(&pack);
//! let Decoded::Image(image) = decoder.decode(&file)? else { panic!("not an image") };
//! assert_eq!((image.width, image.height, image.channels), (16, 8, 3));
//! # Ok(()) }
//! ```
//!
//! Errors say which category a failure belongs to: [`Error::Format`] (corrupt input),
//! [`Error::Unsupported`], [`Error::LimitExceeded`] (see [`Limits`]),
//! [`Error::WrongPack`], [`Error::Io`] and [`Error::InvalidArgument`] (the caller's
//! mistake, not the file's).
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod container;
pub mod decoder;
pub mod edge_filter;
pub mod encoder;
pub mod entropy;
pub mod error;
mod gemm;
mod ids;
pub mod metrics;
pub mod pack;
pub mod parallel;
pub mod restoration;
pub mod rng;
pub mod synthesis;

pub use container::{Geometry, Header, Modality};
pub use decoder::{
    DecodeOptions, Decoded, DecodedAudio, DecodedImage, Decoder, ImagePixels, Limits,
};
pub use encoder::{encode_quantised, encode_quantised_as, FileFormat};
pub use error::{Error, FormatError};
pub use pack::{ModelPack, PackError, PackId};
