//! Writing `.ipc` files from quantised V. Predicting V from a signal (hypernetwork,
//! meta-learned steps, refinement) builds on this.

use crate::container::{write_file, Geometry, Header};
use crate::decoder::check_pack;
use crate::entropy::EntropyError;
use crate::error::{Error, FormatError};
use crate::pack::ModelPack;

/// Entropy-codes the quantised V of every tile (tile after tile, each `rank x width`
/// row-major, in the tile order of spec/bitstream.md §4) and wraps it in a container.
/// `step_q16` overrides the quality level's default dequantisation step.
pub fn encode_quantised(
    pack: &ModelPack,
    geometry: Geometry,
    quality_level: u8,
    step_q16: Option<u32>,
    v: &[i32],
) -> Result<Vec<u8>, Error> {
    let cfg = pack.config();
    let level = cfg
        .quality_levels
        .get(usize::from(quality_level))
        .ok_or_else(|| Error::PackMismatch {
            pack: pack.id(),
            reason: format!(
                "quality level {quality_level} but the pack has {}",
                cfg.quality_levels.len()
            ),
        })?;
    let header = Header {
        pack_id: pack.id(),
        geometry,
        tile_width: u16::try_from(cfg.tile_width).expect("validated pack"),
        tile_height: u16::try_from(cfg.tile_height).expect("validated pack"),
        step_q16: step_q16.unwrap_or(level.step_q16),
        quality_level,
        payload_len: 0,
    };
    // The same checks a decoder makes, so every file written can be read back.
    Header::parse(&header.to_bytes())?;
    check_pack(&header, pack)?;
    let model = pack
        .v_model(usize::from(quality_level))
        .expect("level checked above");
    let expected = header.tile_count() as usize * model.elements_per_tile();
    if v.len() != expected {
        return Err(FormatError::Payload(EntropyError::Shape {
            len: v.len(),
            per_tile: model.elements_per_tile(),
        })
        .into());
    }
    let payload = model.encode(v).map_err(FormatError::Payload)?;
    write_file(&header, &payload)
}
