//! `ipc-codec encode --device cuda`: the libtorch encoder backend of `ipc-train` on the
//! GPU (built with the `train` feature). Everything but V's prediction and refinement
//! (input, tiling, rate control, entropy coding, checks) stays the CPU encoder's.

use anyhow::Result;
use ipc_codec::encoder::{Encoder, EncoderConfig};
use ipc_codec::ModelPack;
use ipc_train::device::{select, DeviceChoice};
use ipc_train::encode::TorchBackend;

use crate::failure::Failure;

/// An encoder whose V comes from the tch model on the first CUDA GPU.
pub fn cuda_encoder(pack: &ModelPack, config: EncoderConfig) -> Result<Encoder<'_>> {
    let device = select(DeviceChoice::Cuda).map_err(|e| Failure::usage(e.to_string()))?;
    let backend = TorchBackend::new(pack, config.method, config.effort, device)?;
    Ok(Encoder::with_backend(pack, config, Box::new(backend))?)
}
