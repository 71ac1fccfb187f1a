//! Model packs: the shared network, Fourier features and entropy tables that every
//! `.ipc` file names by content hash (spec/model-pack.md).
//!
//! A pack file is one zstd frame holding a safetensors file (spec/model-pack.md §2).
//! The configuration is JSON under the safetensors metadata key `ipc.config`.

use std::collections::HashMap;
use std::io::Read;

use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use serde::{Deserialize, Serialize};

use crate::entropy::{EntropyError, FrequencyTable, VModel, MAX_TABLE_ENTRIES};
use crate::ids::Modality;
pub use crate::ids::PackId;

// Seeded test packs, for this crate's tests and, through the `test-support` feature,
// for other packages' tests and benches; never in a program's decoder.
#[cfg(any(test, feature = "test-support"))]
pub mod synthetic;

/// Metadata key holding the configuration JSON (spec/model-pack.md §3).
pub const CONFIG_KEY: &str = "ipc.config";
/// The pack format version this crate reads and writes (spec/model-pack.md §3).
pub const PACK_FORMAT_VERSION: u32 = 1;
/// Largest decompressed pack accepted, so a hostile pack cannot exhaust memory.
pub const MAX_PACK_BYTES: u64 = 512 << 20;

/// Limits on configuration values (spec/model-pack.md §3.2). They bound every
/// allocation the decoder makes from a pack.
const MAX_WIDTH: usize = 4096;
const MAX_LAYERS: usize = 64;
const MAX_RANK: usize = 1024;
const MAX_FREQUENCIES: usize = 8192;
const MAX_TILE_SAMPLES: usize = 1 << 20;
/// Bound on samples per tile times the widest activation, which sizes the per-pack
/// synthesis buffers (spec/model-pack.md §3.2).
const MAX_TILE_ACTIVATIONS: usize = 1 << 26;
const MAX_QUALITY_LEVELS: usize = 256;

/// Errors reading or validating a model pack.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PackError {
    /// The zstd frame could not be decompressed.
    #[error("not a zstd-compressed model pack: {0}")]
    Compression(std::io::Error),
    /// The decompressed pack is larger than [`MAX_PACK_BYTES`].
    #[error("decompressed pack exceeds {MAX_PACK_BYTES} bytes")]
    TooLarge,
    /// The safetensors container is malformed.
    #[error("malformed safetensors data: {0}")]
    Safetensors(String),
    /// The configuration is missing or not valid JSON of the expected shape.
    #[error("bad configuration: {0}")]
    Config(String),
    /// A tensor is missing or has the wrong dtype or shape.
    #[error("tensor {name}: {problem}")]
    Tensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// An entropy table is invalid.
    #[error("entropy table: {0}")]
    Entropy(#[from] EntropyError),
    /// Writing a pack failed.
    #[error("cannot serialise pack: {0}")]
    Write(String),
}

/// One quality level a pack offers (spec/model-pack.md §3.1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualityLevel {
    /// Default quantisation step of V, unsigned Q16.16.
    pub step_q16: u32,
    /// Free-form label, e.g. the lambda it was trained for.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub label: String,
}

impl QualityLevel {
    /// The step as a number (spec/bitstream.md §3.4).
    pub fn step(&self) -> f64 {
        crate::container::step_from_q16(self.step_q16)
    }
}

/// Which factor of the modulated weight sits on the layer's input side
/// (spec/model-pack.md §3.1 `orientation`, §4.2). Row convention throughout:
/// `z = h · Ŵ + b` with `h` the layer's input row vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum Orientation {
    /// `Ŵ = norm(U V)`: `U` `[in_m, r]` shared, `V` `[r, out_m]` per tile. The factor
    /// next to the input is shared, so `h · U` is the same for every tile and every
    /// tile is drawn from the same `r` patterns. The orientation of format-version-1
    /// packs written before the field existed; the default when it is absent.
    #[default]
    #[serde(rename = "shared-input")]
    SharedInput,
    /// `Ŵ = norm(V U)`: `V` `[in_m, r]` per tile, `U` `[r, out_m]` shared: the
    /// orientation of Instance Pattern Composers (the seed's `W = U V` in the column
    /// convention). The tile's V chooses `r` combinations of the layer's input patterns.
    #[serde(rename = "instance-input")]
    InstanceInput,
}

impl Orientation {
    /// The name used in the configuration JSON.
    pub fn name(self) -> &'static str {
        match self {
            Orientation::SharedInput => "shared-input",
            Orientation::InstanceInput => "instance-input",
        }
    }

    fn is_default(&self) -> bool {
        *self == Orientation::SharedInput
    }
}

/// Which layers scale their normalised weight by a learned gain per output unit
/// (spec/model-pack.md §3.1 `weight_gain`, §4.2): `Ŵ_l = norm(W_l) · diag(g_l)`, with
/// `g_l` the tensor `layers.{l}.gain`. Weight normalisation fixes every column's norm
/// to 1; the gain gives a layer back its scale, which small outputs such as speech
/// samples need.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum WeightGain {
    /// No gains: `Ŵ_l = norm(W_l)`. The default when the field is absent.
    #[default]
    #[serde(rename = "none")]
    None,
    /// A gain on the last layer only: one scale per output channel.
    #[serde(rename = "output")]
    Output,
    /// A gain on every layer, the modulated one included.
    #[serde(rename = "every-layer")]
    EveryLayer,
}

impl WeightGain {
    /// The name used in the configuration JSON.
    pub fn name(self) -> &'static str {
        match self {
            WeightGain::None => "none",
            WeightGain::Output => "output",
            WeightGain::EveryLayer => "every-layer",
        }
    }

    fn is_default(&self) -> bool {
        *self == WeightGain::None
    }
}

/// The pack configuration (spec/model-pack.md §3.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PackConfig {
    /// Pack format version, [`PACK_FORMAT_VERSION`].
    pub format_version: u32,
    /// Human-readable name.
    pub name: String,
    /// `"image"` or `"audio"`.
    pub modality: String,
    /// Coordinate dimensions: 2 for images, 1 for audio.
    pub coord_dim: usize,
    /// Output channels of the network: 3 for images, 1 for audio.
    pub out_channels: usize,
    /// Fourier frequencies per axis (length of tensor `fourier.frequencies`).
    pub frequencies: usize,
    /// Hidden width d of the MLP.
    pub width: usize,
    /// Width of the hidden layers before the modulated layer (`out_l` for `l < m`, so
    /// also `in_m`, the number of patterns V combines; spec/model-pack.md §3.1). Absent
    /// in the JSON means [`PackConfig::width`], so packs written before the field keep
    /// their bytes; [`PackConfig::pre_layer_width`] gives the width either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_width: Option<usize>,
    /// Number of linear layers.
    pub layers: usize,
    /// Index of the modulated layer, whose weight is U V or V U ([`Orientation`]).
    pub modulated_layer: usize,
    /// Rank r of the modulated weight; V is [`PackConfig::v_shape`].
    pub rank: usize,
    /// Which factor is on the modulated layer's input side. Absent in the JSON means
    /// [`Orientation::SharedInput`], so packs written before the field keep their bytes.
    #[serde(default, skip_serializing_if = "Orientation::is_default")]
    pub orientation: Orientation,
    /// Tile width in samples (audio: chunk length).
    pub tile_width: usize,
    /// Tile height in samples (audio: 1).
    pub tile_height: usize,
    /// Added to every output: 0.5 for images, 0 for audio.
    pub output_offset: f32,
    /// Whether each output unit's weight vector is scaled to unit L2 norm.
    pub weight_norm: bool,
    /// Which layers carry a learned gain after normalisation. Absent in the JSON means
    /// [`WeightGain::None`], so packs written before the field keep their bytes.
    #[serde(default, skip_serializing_if = "WeightGain::is_default")]
    pub weight_gain: WeightGain,
    /// Sample rate the audio pack was trained for; absent for images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// The quality levels, index = `quality_level` in `.ipc` headers.
    pub quality_levels: Vec<QualityLevel>,
    /// Free-form description (training data, command).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
}

impl PackConfig {
    /// The modality as an enum.
    pub fn modality(&self) -> Result<Modality, PackError> {
        match self.modality.as_str() {
            "image" => Ok(Modality::Image),
            "audio" => Ok(Modality::Audio),
            m => Err(PackError::Config(format!("unknown modality {m:?}"))),
        }
    }

    /// Input width of the first layer: cos and sin of every axis and frequency.
    pub fn feature_dim(&self) -> usize {
        2 * self.coord_dim * self.frequencies
    }

    /// Samples per tile.
    pub fn tile_samples(&self) -> usize {
        self.tile_width * self.tile_height
    }

    /// Width of the hidden layers before the modulated layer: `pre_width`, or `width`
    /// where the pack does not give it (spec/model-pack.md §3.1).
    pub fn pre_layer_width(&self) -> usize {
        self.pre_width.unwrap_or(self.width)
    }

    /// `(inputs, outputs)` of layer `l` (spec/model-pack.md §4): layers before the
    /// modulated layer `m` are `pre_width` wide, the others `width`.
    pub fn layer_shape(&self, l: usize) -> (usize, usize) {
        let m = self.modulated_layer;
        let inputs = if l == 0 {
            self.feature_dim()
        } else if l <= m {
            self.pre_layer_width()
        } else {
            self.width
        };
        let outputs = if l + 1 == self.layers {
            self.out_channels
        } else if l < m {
            self.pre_layer_width()
        } else {
            self.width
        };
        (inputs, outputs)
    }

    /// `(rows, columns)` of one tile's V, row-major (spec/model-pack.md §4):
    /// `[r, out_m]` for [`Orientation::SharedInput`], `[in_m, r]` for
    /// [`Orientation::InstanceInput`].
    pub fn v_shape(&self) -> (usize, usize) {
        let (inputs, outputs) = self.layer_shape(self.modulated_layer);
        match self.orientation {
            Orientation::SharedInput => (self.rank, outputs),
            Orientation::InstanceInput => (inputs, self.rank),
        }
    }

    /// Whether layer `l` has a `layers.{l}.gain` tensor ([`WeightGain`]).
    pub fn has_gain(&self, l: usize) -> bool {
        match self.weight_gain {
            WeightGain::None => false,
            WeightGain::Output => l + 1 == self.layers,
            WeightGain::EveryLayer => l < self.layers,
        }
    }

    /// Elements of one tile's V.
    pub fn v_len(&self) -> usize {
        let (rows, cols) = self.v_shape();
        rows * cols
    }

    /// One entropy context per rank index of V: element `(i, j)` of a `[r, out_m]` V
    /// (shared-input) uses table `i`, of an `[in_m, r]` V (instance-input) table `j`.
    /// The layout of `entropy.contexts` that the project's trainer writes
    /// (spec/model-pack.md §5).
    pub fn rank_contexts(&self) -> Vec<u16> {
        let (rows, cols) = self.v_shape();
        (0..rows * cols)
            .map(|e| match self.orientation {
                Orientation::SharedInput => (e / cols) as u16,
                Orientation::InstanceInput => (e % cols) as u16,
            })
            .collect()
    }

    /// Shape of the shared factor `layers.{m}.u`: `[in_m, r]` or `[r, out_m]`.
    pub fn u_shape(&self) -> (usize, usize) {
        let (inputs, outputs) = self.layer_shape(self.modulated_layer);
        match self.orientation {
            Orientation::SharedInput => (inputs, self.rank),
            Orientation::InstanceInput => (self.rank, outputs),
        }
    }

    /// Checks every rule of spec/model-pack.md §3.2.
    pub fn validate(&self) -> Result<(), PackError> {
        let bad = |m: String| Err(PackError::Config(m));
        if self.format_version != PACK_FORMAT_VERSION {
            return bad(format!(
                "pack format version {} (this build reads {PACK_FORMAT_VERSION})",
                self.format_version
            ));
        }
        let modality = self.modality()?;
        let (coord_dim, out_channels) = match modality {
            Modality::Image => (2, 3),
            Modality::Audio => (1, 1),
        };
        if self.coord_dim != coord_dim || self.out_channels != out_channels {
            return bad(format!(
                "{} packs need coord_dim {coord_dim} and out_channels {out_channels}",
                modality.name()
            ));
        }
        if !(1..=MAX_FREQUENCIES).contains(&self.frequencies) {
            return bad(format!(
                "frequencies {} not in 1..={MAX_FREQUENCIES}",
                self.frequencies
            ));
        }
        if !(1..=MAX_WIDTH).contains(&self.width) {
            return bad(format!("width {} not in 1..={MAX_WIDTH}", self.width));
        }
        if let Some(w) = self.pre_width {
            if !(1..=MAX_WIDTH).contains(&w) {
                return bad(format!("pre_width {w} not in 1..={MAX_WIDTH}"));
            }
        }
        if !(2..=MAX_LAYERS).contains(&self.layers) {
            return bad(format!("layers {} not in 2..={MAX_LAYERS}", self.layers));
        }
        if self.modulated_layer + 1 >= self.layers {
            return bad(format!(
                "modulated_layer {} must be below the last layer {}",
                self.modulated_layer,
                self.layers - 1
            ));
        }
        if !(1..=MAX_RANK).contains(&self.rank) {
            return bad(format!("rank {} not in 1..={MAX_RANK}", self.rank));
        }
        if self.rank * self.width > u16::MAX as usize + 1 {
            return bad(format!(
                "rank x width {} exceeds 65536",
                self.rank * self.width
            ));
        }
        // Rule 9, second half: V's own element count (in_m x r in the instance-input
        // orientation, which differs from r x d when the first layer is modulated).
        if self.v_len() > u16::MAX as usize + 1 {
            let (rows, cols) = self.v_shape();
            return bad(format!("V of {rows} x {cols} elements exceeds 65536"));
        }
        if self.tile_width == 0
            || self.tile_height == 0
            || self.tile_width > u16::MAX as usize
            || self.tile_height > u16::MAX as usize
            || self.tile_samples() > MAX_TILE_SAMPLES
            || (modality == Modality::Audio && self.tile_height != 1)
        {
            return bad(format!(
                "tile {}x{} is not allowed",
                self.tile_width, self.tile_height
            ));
        }
        let widest = self
            .feature_dim()
            .max(self.width)
            .max(self.pre_layer_width());
        if self.tile_samples() * widest > MAX_TILE_ACTIVATIONS {
            return bad(format!(
                "tile of {} samples x {widest} activations exceeds {MAX_TILE_ACTIVATIONS}",
                self.tile_samples()
            ));
        }
        if !self.output_offset.is_finite() {
            return bad("output_offset is not finite".into());
        }
        if self.quality_levels.is_empty() || self.quality_levels.len() > MAX_QUALITY_LEVELS {
            return bad(format!(
                "{} quality levels (need 1..={MAX_QUALITY_LEVELS})",
                self.quality_levels.len()
            ));
        }
        if let Some(q) = self.quality_levels.iter().position(|q| q.step_q16 == 0) {
            return bad(format!("quality level {q} has step 0"));
        }
        if modality == Modality::Audio && self.sample_rate.is_none_or(|r| r == 0) {
            return bad("audio packs need a non-zero sample_rate".into());
        }
        if self.weight_gain != WeightGain::None && !self.weight_norm {
            return bad(format!(
                "weight_gain {:?} needs weight_norm true",
                self.weight_gain.name()
            ));
        }
        Ok(())
    }
}

/// A linear layer, weight stored `[inputs, outputs]` row-major so that `y = x W + b`.
#[derive(Debug, Clone, PartialEq)]
pub struct Linear {
    /// Inputs.
    pub inputs: usize,
    /// Outputs.
    pub outputs: usize,
    /// `inputs x outputs` row-major.
    pub weight: Vec<f32>,
    /// `outputs`.
    pub bias: Vec<f32>,
    /// `outputs`: the learned gain of each normalised column, where the pack's
    /// [`WeightGain`] gives this layer one ([`PackConfig::has_gain`]).
    pub gain: Option<Vec<f32>>,
}

/// The modulated layer's shared parts: `U` and the bias (spec/model-pack.md §4).
#[derive(Debug, Clone, PartialEq)]
pub struct ModulatedLinear {
    /// Inputs (in_m).
    pub inputs: usize,
    /// Outputs (the hidden width).
    pub outputs: usize,
    /// Rank r.
    pub rank: usize,
    /// U, row-major, [`PackConfig::u_shape`]: `inputs x rank` or `rank x outputs`.
    pub u: Vec<f32>,
    /// `outputs`.
    pub bias: Vec<f32>,
    /// `outputs`: the learned gain of each column of `norm(W_m)`, where the pack's
    /// [`WeightGain`] gives the modulated layer one.
    pub gain: Option<Vec<f32>>,
}

/// The entropy model of V at every quality level (spec/model-pack.md §5).
#[derive(Debug, Clone)]
pub struct EntropyTables {
    /// Per-element context (table index), in V's shape ([`PackConfig::v_shape`]).
    pub contexts: Vec<u16>,
    /// For each quality level, its frequency tables.
    pub levels: Vec<Vec<FrequencyTable>>,
    /// For each quality level, its neighbour tables (spec/model-pack.md §5.1):
    /// `NEIGHBOUR_CLASSES` per table of `levels`, table `context * 16 + class`. `None`:
    /// the pack codes files without neighbour contexts only.
    pub neighbour: Option<Vec<Vec<FrequencyTable>>>,
}

/// Everything a pack holds, in memory; what the trainer fills in and [`ModelPack`] reads.
#[derive(Debug, Clone)]
pub struct PackContents {
    /// Configuration.
    pub config: PackConfig,
    /// Fourier frequencies, `frequencies` values.
    pub frequencies: Vec<f32>,
    /// The layers; the modulated one's entry is `None` here and lives in `modulated`.
    pub layers: Vec<Option<Linear>>,
    /// The modulated layer.
    pub modulated: ModulatedLinear,
    /// Entropy tables.
    pub entropy: EntropyTables,
    /// Further tensors the decoder does not use (hypernetwork, V0, ...), name -> (shape, f32 data).
    /// Their names must start with `encoder.` (spec/model-pack.md §4).
    pub extra: Vec<(String, Vec<usize>, Vec<f32>)>,
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i32_bytes(v: impl IntoIterator<Item = i32>) -> Vec<u8> {
    v.into_iter().flat_map(|x| x.to_le_bytes()).collect()
}

impl PackContents {
    /// The `layers.{l}.gain` tensor of layer `l` with `outputs` units, if the
    /// configuration gives the layer a gain; an error if `gain` does not match it.
    #[allow(clippy::type_complexity)]
    fn gain_tensor(
        &self,
        l: usize,
        outputs: usize,
        gain: Option<&[f32]>,
    ) -> Result<Option<(String, Dtype, Vec<usize>, Vec<u8>)>, PackError> {
        match (self.config.has_gain(l), gain) {
            (false, None) => Ok(None),
            (true, Some(g)) if g.len() == outputs => Ok(Some((
                format!("layers.{l}.gain"),
                Dtype::F32,
                vec![outputs],
                f32_bytes(g),
            ))),
            (true, Some(g)) => Err(PackError::Write(format!(
                "layer {l} has {} gains for {outputs} outputs",
                g.len()
            ))),
            (true, None) => Err(PackError::Write(format!(
                "weight_gain {:?} needs a gain on layer {l}",
                self.config.weight_gain.name()
            ))),
            (false, Some(_)) => Err(PackError::Write(format!(
                "layer {l} has a gain but weight_gain is {:?}",
                self.config.weight_gain.name()
            ))),
        }
    }

    /// Serialises to the decompressed safetensors bytes (spec/model-pack.md §2–§5).
    pub fn to_safetensors(&self) -> Result<Vec<u8>, PackError> {
        self.config.validate()?;
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        owned.push((
            "fourier.frequencies".into(),
            Dtype::F32,
            vec![self.frequencies.len()],
            f32_bytes(&self.frequencies),
        ));
        let m = self.config.modulated_layer;
        for (l, layer) in self.layers.iter().enumerate() {
            if l == m {
                let u = &self.modulated;
                let (u_rows, u_cols) = self.config.u_shape();
                owned.push((
                    format!("layers.{l}.u"),
                    Dtype::F32,
                    vec![u_rows, u_cols],
                    f32_bytes(&u.u),
                ));
                owned.push((
                    format!("layers.{l}.bias"),
                    Dtype::F32,
                    vec![u.outputs],
                    f32_bytes(&u.bias),
                ));
                owned.extend(self.gain_tensor(l, u.outputs, u.gain.as_deref())?);
                continue;
            }
            let layer = layer
                .as_ref()
                .ok_or_else(|| PackError::Write(format!("layer {l} is missing")))?;
            owned.push((
                format!("layers.{l}.weight"),
                Dtype::F32,
                vec![layer.inputs, layer.outputs],
                f32_bytes(&layer.weight),
            ));
            owned.push((
                format!("layers.{l}.bias"),
                Dtype::F32,
                vec![layer.outputs],
                f32_bytes(&layer.bias),
            ));
            owned.extend(self.gain_tensor(l, layer.outputs, layer.gain.as_deref())?);
        }
        let e = &self.entropy;
        owned.push((
            "entropy.contexts".into(),
            Dtype::I32,
            {
                let (rows, cols) = self.config.v_shape();
                vec![rows, cols]
            },
            i32_bytes(e.contexts.iter().map(|&c| i32::from(c))),
        ));
        let neighbour = e.neighbour.iter().flat_map(|levels| {
            levels
                .iter()
                .enumerate()
                .map(|(q, tables)| (format!("entropy.level{q}.neighbour"), tables))
        });
        let plain = e
            .levels
            .iter()
            .enumerate()
            .map(|(q, tables)| (format!("entropy.level{q}"), tables));
        for (prefix, tables) in plain.chain(neighbour) {
            let mut offsets = vec![0i32];
            let mut counts = Vec::new();
            for t in tables {
                counts.extend(t.counts.iter().map(|&c| c as i32));
                offsets.push(counts.len() as i32);
            }
            owned.push((
                format!("{prefix}.min"),
                Dtype::I32,
                vec![tables.len()],
                i32_bytes(tables.iter().map(|t| t.min)),
            ));
            owned.push((
                format!("{prefix}.offsets"),
                Dtype::I32,
                vec![offsets.len()],
                i32_bytes(offsets),
            ));
            owned.push((
                format!("{prefix}.counts"),
                Dtype::I32,
                vec![counts.len()],
                i32_bytes(counts),
            ));
        }
        for (name, shape, data) in &self.extra {
            if !name.starts_with("encoder.") {
                return Err(PackError::Write(format!(
                    "extra tensor {name} must start with 'encoder.'"
                )));
            }
            owned.push((name.clone(), Dtype::F32, shape.clone(), f32_bytes(data)));
        }
        let views = owned
            .iter()
            .map(|(name, dtype, shape, data)| {
                TensorView::new(*dtype, shape.clone(), data)
                    .map(|v| (name.clone(), v))
                    .map_err(|e| PackError::Write(format!("{name}: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let config =
            serde_json::to_string(&self.config).map_err(|e| PackError::Write(e.to_string()))?;
        let metadata = HashMap::from([(CONFIG_KEY.to_string(), config)]);
        let bytes = safetensors::serialize(views, &Some(metadata))
            .map_err(|e| PackError::Write(e.to_string()))?;
        // Round-trip through the reader so a pack that is written can always be read.
        ModelPack::from_safetensors(&bytes)?;
        Ok(bytes)
    }

    /// Serialises to a pack file: the safetensors bytes in one zstd frame (spec/model-pack.md §2).
    pub fn to_pack_file(&self) -> Result<Vec<u8>, PackError> {
        let raw = self.to_safetensors()?;
        zstd::bulk::compress(&raw, 19).map_err(|e| PackError::Write(e.to_string()))
    }
}

/// A validated model pack, ready for decoding. Shared layers are stored with weight
/// normalisation already applied, since it does not depend on the instance.
#[derive(Debug, Clone)]
pub struct ModelPack {
    id: PackId,
    contents: PackContents,
    /// Layers before and after the modulated one, normalised (`None` at the modulated index).
    normalised: Vec<Option<Linear>>,
    /// Entropy models per quality level.
    v_models: Vec<VModel>,
}

impl ModelPack {
    /// Reads a pack file (zstd frame around safetensors) from bytes.
    pub fn from_pack_file(bytes: &[u8]) -> Result<ModelPack, PackError> {
        Self::from_reader(bytes)
    }

    /// Reads a pack file from any reader, decompressing at most [`MAX_PACK_BYTES`].
    pub fn from_reader(reader: impl Read) -> Result<ModelPack, PackError> {
        let decoder = zstd::stream::read::Decoder::new(reader).map_err(PackError::Compression)?;
        let mut raw = Vec::new();
        decoder
            .take(MAX_PACK_BYTES + 1)
            .read_to_end(&mut raw)
            .map_err(PackError::Compression)?;
        if raw.len() as u64 > MAX_PACK_BYTES {
            return Err(PackError::TooLarge);
        }
        Self::from_safetensors(&raw)
    }

    /// Reads decompressed safetensors bytes.
    pub fn from_safetensors(raw: &[u8]) -> Result<ModelPack, PackError> {
        let st =
            SafeTensors::deserialize(raw).map_err(|e| PackError::Safetensors(e.to_string()))?;
        let (_, metadata) =
            SafeTensors::read_metadata(raw).map_err(|e| PackError::Safetensors(e.to_string()))?;
        let config_json = metadata
            .metadata()
            .as_ref()
            .and_then(|m| m.get(CONFIG_KEY))
            .ok_or_else(|| PackError::Config(format!("metadata key {CONFIG_KEY} is missing")))?;
        let config: PackConfig =
            serde_json::from_str(config_json).map_err(|e| PackError::Config(e.to_string()))?;
        config.validate()?;

        let frequencies = read_f32(&st, "fourier.frequencies", &[config.frequencies])?;
        if let Some(f) = frequencies.iter().find(|f| !f.is_finite()) {
            return Err(PackError::Tensor {
                name: "fourier.frequencies".into(),
                problem: format!("non-finite value {f}"),
            });
        }
        let m = config.modulated_layer;
        let mut layers = Vec::with_capacity(config.layers);
        let mut modulated = None;
        for l in 0..config.layers {
            let (inputs, outputs) = config.layer_shape(l);
            let bias = read_f32(&st, &format!("layers.{l}.bias"), &[outputs])?;
            let gain = if config.has_gain(l) {
                Some(read_f32(&st, &format!("layers.{l}.gain"), &[outputs])?)
            } else {
                None
            };
            if l == m {
                let (u_rows, u_cols) = config.u_shape();
                let u = read_f32(&st, &format!("layers.{l}.u"), &[u_rows, u_cols])?;
                modulated = Some(ModulatedLinear {
                    inputs,
                    outputs,
                    rank: config.rank,
                    u,
                    bias,
                    gain,
                });
                layers.push(None);
            } else {
                let weight = read_f32(&st, &format!("layers.{l}.weight"), &[inputs, outputs])?;
                layers.push(Some(Linear {
                    inputs,
                    outputs,
                    weight,
                    bias,
                    gain,
                }));
            }
        }
        let modulated = modulated.expect("validate() puts the modulated layer inside the network");

        let levels_n = config.quality_levels.len();
        let (v_rows, v_cols) = config.v_shape();
        let contexts_raw = read_i32(&st, "entropy.contexts", &[v_rows, v_cols])?;
        let mut levels = Vec::with_capacity(levels_n);
        for q in 0..levels_n {
            levels.push(read_tables(&st, &format!("entropy.level{q}"))?);
        }
        // §5.1: neighbour tables are optional, but a pack has them at every level or at
        // none.
        let has_neighbour = |q: usize| {
            st.names()
                .iter()
                .any(|n| n.starts_with(&format!("entropy.level{q}.neighbour.")))
        };
        let neighbour = if has_neighbour(0) {
            let mut all = Vec::with_capacity(levels_n);
            for q in 0..levels_n {
                all.push(read_tables(&st, &format!("entropy.level{q}.neighbour"))?);
            }
            Some(all)
        } else if let Some(q) = (1..levels_n).find(|&q| has_neighbour(q)) {
            return Err(PackError::Tensor {
                name: format!("entropy.level{q}.neighbour.min"),
                problem: "neighbour tables at this level but not at level 0".into(),
            });
        } else {
            None
        };
        let table_count = levels[0].len();
        if let Some(q) = levels.iter().position(|t| t.len() != table_count) {
            return Err(PackError::Tensor {
                name: format!("entropy.level{q}.min"),
                problem: format!("{} tables, level 0 has {table_count}", levels[q].len()),
            });
        }
        let contexts = contexts_raw
            .iter()
            .map(|&c| {
                u16::try_from(c)
                    .ok()
                    .filter(|&c| usize::from(c) < table_count)
                    .ok_or_else(|| PackError::Tensor {
                        name: "entropy.contexts".into(),
                        problem: format!(
                            "context {c} does not name one of the {table_count} tables"
                        ),
                    })
            })
            .collect::<Result<Vec<u16>, _>>()?;
        let mut v_models = Vec::with_capacity(levels_n);
        for (q, tables) in levels.iter().enumerate() {
            let model = VModel::new(contexts.clone(), tables)?;
            v_models.push(match &neighbour {
                Some(n) => model
                    .with_neighbour_tables(&n[q])
                    .map_err(|e| PackError::Tensor {
                        name: format!("entropy.level{q}.neighbour.min"),
                        problem: e.to_string(),
                    })?,
                None => model,
            });
        }

        // In name order: the safetensors index is a hash map, and the first bad tensor
        // named in an error must not depend on its iteration order.
        let mut encoder_tensors: Vec<_> = st
            .iter()
            .filter(|(name, _)| name.starts_with("encoder."))
            .collect();
        encoder_tensors.sort_by(|a, b| a.0.cmp(b.0));
        let extra = encoder_tensors
            .into_iter()
            .map(|(name, view)| {
                let shape = view.shape().to_vec();
                read_f32(&st, name, &shape).map(|data| (name.to_string(), shape, data))
            })
            .collect::<Result<Vec<_>, _>>()?;

        let contents = PackContents {
            config,
            frequencies,
            layers,
            modulated,
            entropy: EntropyTables {
                contexts,
                levels,
                neighbour,
            },
            extra,
        };
        let normalised = contents
            .layers
            .iter()
            .map(|l| {
                l.as_ref().map(|l| {
                    let mut l = l.clone();
                    if contents.config.weight_norm {
                        normalise_columns(&mut l.weight, l.inputs, l.outputs);
                    }
                    // §4.2: Ŵ_l = norm(W_l) · diag(g_l), folded in once here.
                    if let Some(gain) = &l.gain {
                        for row in l.weight.chunks_exact_mut(l.outputs) {
                            for (x, &g) in row.iter_mut().zip(gain) {
                                *x *= g;
                            }
                        }
                    }
                    l
                })
            })
            .collect();
        Ok(ModelPack {
            id: PackId::of_content(raw),
            contents,
            normalised,
            v_models,
        })
    }

    /// The content hash that `.ipc` files name.
    pub fn id(&self) -> PackId {
        self.id
    }

    /// The configuration.
    pub fn config(&self) -> &PackConfig {
        &self.contents.config
    }

    /// All tensors as stored (before normalisation).
    pub fn contents(&self) -> &PackContents {
        &self.contents
    }

    /// Shared layer `l` with weight normalisation and its gain applied; `None` for the
    /// modulated layer.
    pub fn normalised_layer(&self, l: usize) -> Option<&Linear> {
        self.normalised.get(l).and_then(Option::as_ref)
    }

    /// The entropy model of V at a quality level.
    pub fn v_model(&self, level: usize) -> Option<&VModel> {
        self.v_models.get(level)
    }
}

/// Scales each output unit's incoming weights (a column of the `inputs x outputs`
/// matrix) to unit L2 norm (docs/method.md §2; spec/model-pack.md §4.2). A zero column stays zero.
pub fn normalise_columns(w: &mut [f32], inputs: usize, outputs: usize) {
    debug_assert_eq!(w.len(), inputs * outputs);
    let mut sq = vec![0f64; outputs];
    for row in w.chunks_exact(outputs) {
        for (s, &x) in sq.iter_mut().zip(row) {
            *s += f64::from(x) * f64::from(x);
        }
    }
    let scale: Vec<f32> = sq
        .iter()
        .map(|&s| {
            if s > 0.0 {
                (1.0 / s.sqrt()) as f32
            } else {
                0.0
            }
        })
        .collect();
    for row in w.chunks_exact_mut(outputs) {
        for (x, &k) in row.iter_mut().zip(&scale) {
            *x *= k;
        }
    }
}

fn tensor<'a>(
    st: &'a SafeTensors<'a>,
    name: &str,
    dtype: Dtype,
    shape: &[usize],
) -> Result<TensorView<'a>, PackError> {
    let t = st.tensor(name).map_err(|_| PackError::Tensor {
        name: name.into(),
        problem: "missing".into(),
    })?;
    if t.dtype() != dtype || t.shape() != shape {
        return Err(PackError::Tensor {
            name: name.into(),
            problem: format!(
                "is {:?} {:?}, expected {:?} {:?}",
                t.dtype(),
                t.shape(),
                dtype,
                shape
            ),
        });
    }
    Ok(t)
}

fn read_f32(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<f32>, PackError> {
    let t = tensor(st, name, Dtype::F32, shape)?;
    let v: Vec<f32> = t
        .data()
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    if v.iter().any(|x| !x.is_finite()) {
        return Err(PackError::Tensor {
            name: name.into(),
            problem: "holds a non-finite value".into(),
        });
    }
    Ok(v)
}

fn read_i32(st: &SafeTensors<'_>, name: &str, shape: &[usize]) -> Result<Vec<i32>, PackError> {
    let t = tensor(st, name, Dtype::I32, shape)?;
    Ok(t.data()
        .chunks_exact(4)
        .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

fn read_i32_any_len(st: &SafeTensors<'_>, name: &str) -> Result<Vec<i32>, PackError> {
    let len = st
        .tensor(name)
        .map(|t| t.shape().to_vec())
        .map_err(|_| PackError::Tensor {
            name: name.into(),
            problem: "missing".into(),
        })?;
    if len.len() != 1 {
        return Err(PackError::Tensor {
            name: name.into(),
            problem: format!("must be one-dimensional, is {len:?}"),
        });
    }
    read_i32(st, name, &len)
}

/// Reads one set of tables (`{prefix}.min`, `.offsets`, `.counts`): a quality level's
/// tables or its neighbour tables (spec/model-pack.md §5, §5.1).
fn read_tables(st: &SafeTensors<'_>, prefix: &str) -> Result<Vec<FrequencyTable>, PackError> {
    let name = |s: &str| format!("{prefix}.{s}");
    let mins = read_i32_any_len(st, &name("min"))?;
    let offsets = read_i32(st, &name("offsets"), &[mins.len() + 1])?;
    let counts = read_i32_any_len(st, &name("counts"))?;
    let problem = |problem: String| PackError::Tensor {
        name: name("offsets"),
        problem,
    };
    if mins.is_empty() || mins.len() > u16::MAX as usize + 1 {
        return Err(problem(format!("{} tables (need 1..=65536)", mins.len())));
    }
    if offsets[0] != 0 || offsets[mins.len()] as usize != counts.len() {
        return Err(problem(
            "must start at 0 and end at the length of counts".into(),
        ));
    }
    let mut tables = Vec::with_capacity(mins.len());
    for (t, &min) in mins.iter().enumerate() {
        let (a, b) = (offsets[t], offsets[t + 1]);
        if a < 0
            || b < a
            || b as usize > counts.len()
            || (b - a) < 2
            || (b - a) as usize > MAX_TABLE_ENTRIES
        {
            return Err(problem(format!(
                "table {t} spans {a}..{b} (needs 2..=65536 entries)"
            )));
        }
        let slice = &counts[a as usize..b as usize];
        if slice.iter().any(|&c| c < 0) {
            return Err(PackError::Tensor {
                name: name("counts"),
                problem: format!("table {t} has a negative count"),
            });
        }
        tables.push(FrequencyTable {
            min,
            counts: slice.iter().map(|&c| c as u32).collect(),
        });
    }
    Ok(tables)
}

#[cfg(test)]
mod tests {
    use super::synthetic::SyntheticPack;
    use super::*;

    fn config_json(raw: &[u8]) -> String {
        let (_, metadata) = SafeTensors::read_metadata(raw).unwrap();
        metadata.metadata().as_ref().unwrap()[CONFIG_KEY].clone()
    }

    /// Replaces the configuration JSON of a safetensors pack (tensors unchanged).
    fn with_config(contents: &PackContents, edit: impl Fn(&str) -> String) -> Vec<u8> {
        let raw = contents.to_safetensors().unwrap();
        let json = config_json(&raw);
        let st = SafeTensors::deserialize(&raw).unwrap();
        let mut meta = HashMap::new();
        meta.insert(CONFIG_KEY.to_string(), edit(&json));
        safetensors::serialize(st.tensors(), &Some(meta)).unwrap()
    }

    /// The first bad encoder tensor an error names is the first in name order, on
    /// every load (the safetensors index is a randomly seeded hash map).
    #[test]
    fn encoder_tensor_errors_name_the_first_in_name_order() {
        let valid = SyntheticPack::small_image()
            .build()
            .to_safetensors()
            .unwrap();
        let st = SafeTensors::deserialize(&valid).unwrap();
        // Encoder tensors of the wrong type (I32), which the reader refuses.
        let data = [0u8; 4];
        let mut tensors: Vec<(String, safetensors::tensor::TensorView<'_>)> = st.tensors();
        for name in [
            "encoder.z",
            "encoder.m",
            "encoder.b",
            "encoder.q",
            "encoder.f",
        ] {
            let view = safetensors::tensor::TensorView::new(Dtype::I32, vec![1], &data).unwrap();
            tensors.push((name.to_string(), view));
        }
        let meta = HashMap::from([(CONFIG_KEY.to_string(), config_json(&valid))]);
        let raw = safetensors::serialize(tensors, &Some(meta)).unwrap();
        for _ in 0..20 {
            assert!(matches!(
                ModelPack::from_safetensors(&raw),
                Err(PackError::Tensor { name, .. }) if name == "encoder.b"
            ));
        }
    }

    #[test]
    fn shared_input_packs_keep_their_bytes() {
        // The field is left out for the default, so packs written before it existed
        // serialise (and hash) exactly as before.
        let raw = SyntheticPack::small_image()
            .build()
            .to_safetensors()
            .unwrap();
        assert!(!config_json(&raw).contains("orientation"));
        let pack = ModelPack::from_safetensors(&raw).unwrap();
        assert_eq!(pack.config().orientation, Orientation::SharedInput);
        assert_eq!(pack.config().u_shape(), (16, 4));
        assert_eq!(pack.config().v_shape(), (4, 16));
    }

    #[test]
    fn instance_input_round_trips() {
        let contents = SyntheticPack::small_image().instance_input().build();
        let raw = contents.to_safetensors().unwrap();
        assert!(config_json(&raw).contains(r#""orientation":"instance-input""#));
        let pack = ModelPack::from_safetensors(&raw).unwrap();
        let cfg = pack.config();
        assert_eq!(cfg.orientation, Orientation::InstanceInput);
        assert_eq!((cfg.u_shape(), cfg.v_shape()), ((4, 16), (16, 4)));
        assert_eq!(pack.contents().modulated.u, contents.modulated.u);
        assert_eq!(pack.contents().entropy.contexts.len(), 64);
        // The first layer modulated: V has the Fourier features as rows.
        let first = SyntheticPack {
            modulated_layer: 0,
            ..SyntheticPack::small_image().instance_input()
        };
        let pack = ModelPack::from_safetensors(&first.build().to_safetensors().unwrap()).unwrap();
        assert_eq!(pack.config().v_shape(), (32, 4));
    }

    #[test]
    fn pre_width_sets_the_layers_before_the_modulated_one() {
        // spec/model-pack.md §4: in_l = p for 1 <= l <= m, out_l = p for l < m.
        let spec = SyntheticPack {
            layers: 5,
            modulated_layer: 2,
            ..SyntheticPack::small_image()
                .instance_input()
                .with_pre_width(24)
        };
        let pack = ModelPack::from_safetensors(&spec.build().to_safetensors().unwrap()).unwrap();
        let cfg = pack.config();
        assert_eq!(cfg.pre_width, Some(24));
        let shapes: Vec<_> = (0..5).map(|l| cfg.layer_shape(l)).collect();
        assert_eq!(shapes, [(32, 24), (24, 24), (24, 16), (16, 16), (16, 3)]);
        assert_eq!((cfg.v_shape(), cfg.u_shape()), ((24, 4), (4, 16)));
        assert_eq!(pack.contents().entropy.contexts.len(), 24 * 4);
        // Shared-input: U takes the wide input, V keeps [r, d].
        let shared = SyntheticPack::small_image().with_pre_width(24);
        let pack = ModelPack::from_safetensors(&shared.build().to_safetensors().unwrap()).unwrap();
        assert_eq!(
            (pack.config().u_shape(), pack.config().v_shape()),
            ((24, 4), (4, 16))
        );
        // Absent, the field is not written and means `width`, so older packs keep their
        // bytes and shapes.
        let plain = SyntheticPack::small_image().build();
        let raw = plain.to_safetensors().unwrap();
        assert!(!String::from_utf8_lossy(&raw).contains("pre_width"));
        assert_eq!(
            ModelPack::from_safetensors(&raw)
                .unwrap()
                .config()
                .layer_shape(0),
            (32, 16)
        );
    }

    #[test]
    fn bad_pre_widths_are_rejected() {
        let contents = SyntheticPack::small_image().with_pre_width(24).build();
        for bad in ["0", "4097", "-1", "2.5", "\"24\""] {
            let raw = with_config(&contents, |j| {
                j.replace("\"pre_width\":24", &format!("\"pre_width\":{bad}"))
            });
            assert!(
                matches!(ModelPack::from_safetensors(&raw), Err(PackError::Config(_))),
                "pre_width {bad}"
            );
        }
    }

    #[test]
    fn bad_orientations_are_rejected() {
        let contents = SyntheticPack::small_image().instance_input().build();
        let raw = with_config(&contents, |j| j.replace("instance-input", "sideways"));
        assert!(matches!(
            ModelPack::from_safetensors(&raw),
            Err(PackError::Config(m)) if m.contains("sideways")
        ));
        // The tensors of an instance-input pack under a shared-input configuration: U
        // has the other shape.
        let raw = with_config(&contents, |j| {
            j.replace(r#""orientation":"instance-input","#, "")
        });
        assert!(matches!(
            ModelPack::from_safetensors(&raw),
            Err(PackError::Tensor { name, .. }) if name == "layers.1.u"
        ));
        // V of more than 65536 elements (the first layer modulated, 8192 features).
        let big = PackConfig {
            frequencies: 4096,
            modulated_layer: 0,
            rank: 16,
            tile_width: 2,
            tile_height: 2,
            ..contents.config.clone()
        };
        assert!(matches!(big.validate(), Err(PackError::Config(m)) if m.contains("V of")));
    }
}
