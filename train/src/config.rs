//! Training configuration, read from TOML. Every shipped pack has its config checked in
//! under `train/configs/`, so retraining is one command.

use std::path::{Path, PathBuf};

use ipc_codec::entropy::{TileGrid, NEIGHBOUR_CLASSES};
use ipc_codec::pack::{Orientation, PackConfig, QualityLevel, WeightGain, PACK_FORMAT_VERSION};
use ipc_codec::Modality;

use crate::data::HoldoutBy;
use serde::{Deserialize, Serialize};

/// Errors in a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML is malformed or has unknown or missing keys.
    #[error("config {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message (names the key and line).
        message: String,
    },
    /// A value is out of range or inconsistent with another.
    #[error("config: {0}")]
    Invalid(String),
}

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Pack name, written into the pack.
    pub name: String,
    /// `"image"` or `"audio"`.
    pub modality: String,
    /// Seed of initialisation, data sampling and noise.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// The synthesis network.
    pub model: ModelConfig,
    /// How V is predicted.
    pub encoder: EncoderConfig,
    /// Quantisation and rate.
    pub rate: RateConfig,
    /// Optimisation schedule.
    pub train: ScheduleConfig,
    /// Training data.
    pub data: DataConfig,
}

fn default_seed() -> u64 {
    1
}

/// The synthesis network (docs/method.md §2–3; spec/model-pack.md §3).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Fourier frequencies per axis, log-spaced from 1 to `max_frequency`.
    pub frequencies: usize,
    /// Largest frequency (sigma).
    pub max_frequency: f64,
    /// Hidden width d.
    pub width: usize,
    /// Width of the layers before the modulated one, which is also the number of
    /// patterns V combines in the instance-input orientation (spec/model-pack.md §3.1:
    /// `pre_width`); absent: `width`. The pack computes those layers once, not per
    /// tile, so a wider one costs decoding only the modulated layer's `in_m · r`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pre_width: Option<usize>,
    /// Linear layers.
    pub layers: usize,
    /// Index of the modulated layer (docs/method.md §3: the second layer, index 1, is best).
    #[serde(default = "default_modulated")]
    pub modulated_layer: usize,
    /// Rank r of V.
    pub rank: usize,
    /// Which factor of the modulated weight sits on the layer's input side
    /// (spec/model-pack.md §3.1): `"instance-input"` (IPC's own, `Ŵ = norm(V U)` with V
    /// `[in_m, r]` per tile) or `"shared-input"` (`Ŵ = norm(U V)`, V `[r, d]`, the
    /// first packs' orientation and the default when absent, so older configs and
    /// checkpoints keep their meaning).
    #[serde(default)]
    pub orientation: Orientation,
    /// `[width, height]` of a tile; audio `[chunk, 1]`.
    pub tile: [usize; 2],
    /// Audio sample rate.
    #[serde(default)]
    pub sample_rate: Option<u32>,
    /// Scale each output unit's weights to unit norm in every layer (docs/method.md §2). Without
    /// a learned gain this fixes activation magnitudes, which suits images; audio, whose
    /// samples are small, may train better without it.
    #[serde(default = "default_weight_norm")]
    pub weight_norm: bool,
    /// Which layers learn a gain per output unit after the normalisation
    /// (spec/model-pack.md §4.2): `"none"` (the default), `"output"` (the last layer) or
    /// `"every-layer"`. Needs `weight_norm`. Each gain starts at its column's norm in the
    /// initial weights, so a network with gains starts as the one without normalisation.
    #[serde(default)]
    pub weight_gain: WeightGain,
}

fn default_weight_norm() -> bool {
    true
}

fn default_modulated() -> usize {
    1
}

/// How V is obtained for an instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    /// A transformer predicts V in one pass.
    Hyper,
    /// CAVIA inner steps from a learned V0.
    Meta,
}

/// The rule of one CAVIA inner step (docs/method.md §5; exported as
/// `encoder.meta.norm_scaled`, spec/model-pack.md §4.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum InnerStep {
    /// `V <- V - eps ||V||_F^2 grad_V L`: independent of V's scale, which weight
    /// normalisation makes irrelevant to the output.
    #[default]
    NormScaled,
    /// `V <- V - eps grad_V L`: for packs without weight normalisation, where a V0 near
    /// zero must still be able to move.
    Plain,
}

/// The V predictor: the transformer hypernetwork and the meta-learning inner loop.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EncoderConfig {
    /// Which predictor is trained.
    pub method: Method,
    /// Image patch side / audio samples per data token.
    #[serde(default = "default_patch")]
    pub patch: usize,
    /// Transformer width.
    #[serde(default = "default_dim")]
    pub dim: usize,
    /// Transformer blocks.
    #[serde(default = "default_depth")]
    pub depth: usize,
    /// Attention heads.
    #[serde(default = "default_heads")]
    pub heads: usize,
    /// Inner steps of meta-learning.
    #[serde(default = "default_inner_steps")]
    pub inner_steps: usize,
    /// Inner step size eps (docs/method.md §5: 0.01).
    #[serde(default = "default_inner_lr")]
    pub inner_lr: f64,
    /// How an inner step moves V (docs/method.md §5): scaled by `||V||_F^2` (the
    /// paper's rule, for weight-normalised packs) or a plain gradient step.
    #[serde(default)]
    pub inner_step: InnerStep,
    /// Skip second-order terms in the outer update.
    #[serde(default)]
    pub first_order: bool,
    /// Give the hypernetwork the quality level (a learned embedding added to the weight
    /// tokens). Without it the levels differ by their quantisation step alone, so a
    /// finer level is a finer rounding of the same V: rate and quality rise with the
    /// level by construction. With it, and one lambda for every level, the network
    /// learns to rescale V per level and undo the steps.
    #[serde(default = "default_level_conditioning")]
    pub level_conditioning: bool,
    /// With `method = "hyper"`: after the main steps, this many further steps
    /// meta-learn an initial V0 (all else frozen), so that the pack offers both
    /// encoding methods.
    #[serde(default)]
    pub meta_steps: usize,
    /// Adam learning rate of the meta stage (V0 and the inner step size).
    #[serde(default = "default_meta_lr")]
    pub meta_lr: f64,
}

fn default_meta_lr() -> f64 {
    0.01
}

fn default_level_conditioning() -> bool {
    true
}

fn default_patch() -> usize {
    8
}
fn default_dim() -> usize {
    128
}
fn default_depth() -> usize {
    2
}
fn default_heads() -> usize {
    4
}
fn default_inner_steps() -> usize {
    2
}
fn default_inner_lr() -> f64 {
    0.01
}

/// How quantisation is simulated while training.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QuantProxy {
    /// Additive uniform noise of one step.
    Noise,
    /// Rounding with a straight-through gradient.
    Ste,
}

/// One quality level: the quantisation step of V and the rate weight it is trained for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LevelConfig {
    /// Quantisation step of V.
    pub step: f64,
    /// Weight of bits per sample against MSE in the loss.
    pub lambda: f64,
}

/// Quantisation, entropy model and quality levels.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateConfig {
    /// Quality levels, coarsest first (index = quality level in files).
    pub levels: Vec<LevelConfig>,
    /// Quantisation proxy.
    #[serde(default = "default_proxy")]
    pub proxy: QuantProxy,
    /// Largest half-width of an exported frequency table, in steps; values beyond
    /// take the escape code.
    #[serde(default = "default_table_half_width")]
    pub table_half_width: usize,
    /// How the exported entropy tables are made.
    #[serde(default)]
    pub tables: TableFit,
    /// Training tiles (or chunks) whose V the `fitted` tables are counted on.
    #[serde(default = "default_fit_instances")]
    pub fit_instances: usize,
    /// With `fitted` tables and a value above 0, also export neighbour tables
    /// (spec/model-pack.md §5.1), counted on blocks of adjacent training tiles:
    /// `neighbour_block` x `neighbour_block` tiles of an image, or as many consecutive
    /// chunks of audio. 0: no neighbour tables.
    #[serde(default)]
    pub neighbour_block: usize,
}

impl RateConfig {
    /// The grid of one fitting block for neighbour tables, if they are asked for:
    /// `neighbour_block` squared tiles, as a square (images) or a row (audio, whose
    /// tiles have no upper neighbour within one channel).
    pub fn neighbour_grid(&self, modality: Modality) -> Option<TileGrid> {
        let b = self.neighbour_block;
        (b > 0 && self.tables == TableFit::Fitted).then(|| match modality {
            Modality::Image => TileGrid {
                columns: b,
                rows: b,
            },
            Modality::Audio => TileGrid {
                columns: b * b,
                rows: 1,
            },
        })
    }
}

/// How the exported entropy tables of V are made (spec/model-pack.md §5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TableFit {
    /// One table per rank index, the training entropy model's Laplace densities
    /// discretised at each level's step.
    #[default]
    Learned,
    /// One table per element of V, counted at each level's step on the quantised V the
    /// encoder predicts for `rate.fit_instances` training tiles (add-one smoothing).
    /// Training's rate term is still the learned model; only the export differs.
    Fitted,
}

fn default_proxy() -> QuantProxy {
    QuantProxy::Noise
}
fn default_table_half_width() -> usize {
    64
}
fn default_fit_instances() -> usize {
    8192
}

/// Optimisation schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleConfig {
    /// Optimiser steps.
    pub steps: usize,
    /// Instances (tiles or chunks) per step.
    pub batch: usize,
    /// Adam learning rate (a tenth of it for the last tenth of the steps).
    pub lr: f64,
    /// Steps between held-out evaluations.
    #[serde(default = "default_eval_every")]
    pub eval_every: usize,
    /// Steps between checkpoints.
    #[serde(default = "default_checkpoint_every")]
    pub checkpoint_every: usize,
    /// Held-out instances per evaluation.
    #[serde(default = "default_eval_instances")]
    pub eval_instances: usize,
    /// Whole held-out files (the first ones in file-name order) that every evaluation
    /// also encodes with the library encoder, for whole-file rate and PSNR; 0 turns
    /// this off.
    #[serde(default = "default_eval_files")]
    pub eval_files: usize,
    /// CPU threads for libtorch (0: all cores).
    #[serde(default)]
    pub threads: usize,
}

fn default_eval_every() -> usize {
    500
}
fn default_checkpoint_every() -> usize {
    1000
}
fn default_eval_instances() -> usize {
    256
}
fn default_eval_files() -> usize {
    6
}

/// Training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Folder of images or WAVs, relative to the config file.
    pub dir: PathBuf,
    /// Photos are downscaled so that their shorter side is at most this.
    #[serde(default = "default_short_side")]
    pub max_short_side: u32,
    /// Fraction of files kept out of training for evaluation.
    #[serde(default = "default_holdout")]
    pub holdout_fraction: f64,
    /// What the held-out split draws for audio: `"file"` (default) or `"speaker"`
    /// (whole voices, by the file-name prefix before `__`; see
    /// `scripts/fetch-training-data --more-speech`).
    #[serde(default)]
    pub holdout_by: HoldoutBy,
}

fn default_short_side() -> u32 {
    384
}
fn default_holdout() -> f64 {
    0.05
}

impl EncoderConfig {
    /// The defaults a config file gets for `method` when it sets nothing else.
    pub fn defaults(method: Method) -> EncoderConfig {
        EncoderConfig {
            method,
            patch: default_patch(),
            dim: default_dim(),
            depth: default_depth(),
            heads: default_heads(),
            inner_steps: default_inner_steps(),
            inner_lr: default_inner_lr(),
            inner_step: InnerStep::default(),
            first_order: false,
            level_conditioning: default_level_conditioning(),
            meta_steps: 0,
            meta_lr: default_meta_lr(),
        }
    }
}

impl RateConfig {
    /// `levels` with every other field at the default a config file gets.
    pub fn with_levels(levels: Vec<LevelConfig>) -> RateConfig {
        RateConfig {
            levels,
            proxy: default_proxy(),
            table_half_width: default_table_half_width(),
            tables: TableFit::default(),
            fit_instances: default_fit_instances(),
            neighbour_block: 0,
        }
    }
}

impl ScheduleConfig {
    /// `steps`, `batch` and `lr` with every other field at the default a config file
    /// gets.
    pub fn with_steps(steps: usize, batch: usize, lr: f64) -> ScheduleConfig {
        ScheduleConfig {
            steps,
            batch,
            lr,
            eval_every: default_eval_every(),
            checkpoint_every: default_checkpoint_every(),
            eval_instances: default_eval_instances(),
            eval_files: default_eval_files(),
            threads: 0,
        }
    }
}

impl DataConfig {
    /// Data in `dir` with every other field at the default a config file gets.
    pub fn in_dir(dir: impl Into<PathBuf>) -> DataConfig {
        DataConfig {
            dir: dir.into(),
            max_short_side: default_short_side(),
            holdout_fraction: default_holdout(),
            holdout_by: HoldoutBy::default(),
        }
    }
}

impl TrainConfig {
    /// Reads and validates a config; `data.dir` is resolved against the file's folder.
    pub fn load(path: &Path) -> Result<TrainConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let mut config = Self::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        if config.data.dir.is_relative() {
            let base = path.parent().unwrap_or(Path::new("."));
            config.data.dir = base.join(&config.data.dir);
        }
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn parse(text: &str) -> Result<TrainConfig, ConfigError> {
        let config: TrainConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<text>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// The modality.
    pub fn modality(&self) -> Modality {
        if self.modality == "audio" {
            Modality::Audio
        } else {
            Modality::Image
        }
    }

    /// Samples per tile.
    pub fn tile_samples(&self) -> usize {
        self.model.tile[0] * self.model.tile[1]
    }

    /// Output channels: 3 for images, 1 for audio.
    pub fn channels(&self) -> usize {
        match self.modality() {
            Modality::Image => 3,
            Modality::Audio => 1,
        }
    }

    /// Coordinate dimensions: 2 for images, 1 for audio.
    pub fn coord_dim(&self) -> usize {
        if self.channels() == 3 {
            2
        } else {
            1
        }
    }

    /// The configuration of the pack this model exports to (spec/model-pack.md §3.1),
    /// with `description`. Shapes the trainer needs (V's, U's, each layer's) come from
    /// it, so that training and the pack follow one definition.
    pub fn pack_config(&self, description: &str) -> PackConfig {
        let m = &self.model;
        let image = self.channels() == 3;
        PackConfig {
            format_version: PACK_FORMAT_VERSION,
            name: self.name.clone(),
            modality: self.modality.clone(),
            coord_dim: self.coord_dim(),
            out_channels: self.channels(),
            frequencies: m.frequencies,
            width: m.width,
            pre_width: m.pre_width,
            layers: m.layers,
            modulated_layer: m.modulated_layer,
            rank: m.rank,
            orientation: m.orientation,
            tile_width: m.tile[0],
            tile_height: m.tile[1],
            output_offset: if image { 0.5 } else { 0.0 },
            weight_norm: m.weight_norm,
            weight_gain: m.weight_gain,
            sample_rate: m.sample_rate,
            quality_levels: self
                .rate
                .levels
                .iter()
                .map(|l| QualityLevel {
                    step_q16: crate::export::step_q16(l.step),
                    label: format!("lambda={}", l.lambda),
                })
                .collect(),
            description: description.to_string(),
        }
    }

    /// `(rows, columns)` of one instance's V, as in the pack
    /// (`ipc_codec::pack::PackConfig::v_shape`): `[r, out_m]` shared-input, `[in_m, r]`
    /// instance-input. The tch model keeps V in this layout, `[batch, rows, columns]`.
    pub fn v_shape(&self) -> (usize, usize) {
        self.pack_config("").v_shape()
    }

    /// Checks ranges and consistency; the pack-level rules are checked again by
    /// `ipc_codec::pack::PackConfig::validate` at export.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        let m = &self.model;
        let e = &self.encoder;
        if m.weight_gain != WeightGain::None && !m.weight_norm {
            return bad(format!(
                "model.weight_gain = {:?} needs model.weight_norm = true",
                m.weight_gain.name()
            ));
        }
        match self.modality.as_str() {
            "image" => {}
            "audio" => {
                if m.tile[1] != 1 {
                    return bad("audio tiles are [chunk, 1]".into());
                }
                if m.sample_rate.is_none() {
                    return bad("audio needs model.sample_rate".into());
                }
            }
            other => {
                return bad(format!(
                    "modality must be \"image\" or \"audio\", not {other:?}"
                ))
            }
        }
        if m.frequencies == 0 || m.max_frequency < 1.0 {
            return bad("model.frequencies must be >= 1 and model.max_frequency >= 1".into());
        }
        if m.width == 0 || m.rank == 0 || m.layers < 2 || m.modulated_layer + 1 >= m.layers {
            return bad(format!(
                "model: width {} rank {} layers {} modulated_layer {} (need width, rank >= 1, layers >= 2, modulated_layer < layers - 1)",
                m.width, m.rank, m.layers, m.modulated_layer
            ));
        }
        if m.pre_width == Some(0) {
            return bad("model.pre_width must be >= 1".into());
        }
        if m.tile[0] == 0 || m.tile[1] == 0 {
            return bad("model.tile must be positive".into());
        }
        if e.method == Method::Hyper {
            let tokens_ok = match self.modality() {
                Modality::Image => m.tile[0] % e.patch == 0 && m.tile[1] % e.patch == 0,
                Modality::Audio => m.tile[0] % e.patch == 0,
            };
            if e.patch == 0 || !tokens_ok {
                return bad(format!(
                    "encoder.patch {} must divide the tile {:?}",
                    e.patch, m.tile
                ));
            }
            if e.heads == 0 || e.dim % e.heads != 0 || e.depth == 0 {
                return bad(format!(
                    "encoder: dim {} must be a multiple of heads {}, depth >= 1",
                    e.dim, e.heads
                ));
            }
        }
        if e.method == Method::Meta && (e.inner_steps == 0 || e.inner_lr <= 0.0) {
            return bad(
                "encoder.inner_steps >= 1 and encoder.inner_lr > 0 for method = \"meta\"".into(),
            );
        }
        let r = &self.rate;
        if r.levels.is_empty() || r.levels.len() > 255 {
            return bad("rate.levels needs 1 to 255 levels".into());
        }
        for (i, l) in r.levels.iter().enumerate() {
            if !(l.step > 0.0 && l.step * 65536.0 <= u32::MAX as f64) || l.lambda < 0.0 {
                return bad(format!(
                    "rate.levels[{i}]: step must be in (0, 65536) and lambda >= 0"
                ));
            }
        }
        if r.table_half_width == 0 || r.table_half_width > 30_000 {
            return bad("rate.table_half_width must be in 1..=30000".into());
        }
        if r.tables == TableFit::Fitted {
            // One table per element; a table index is 16 bits (spec/model-pack.md §5).
            let elements = self.v_shape().0 * self.v_shape().1;
            if elements > 65_536 {
                return bad(format!(
                    "rate.tables = \"fitted\" gives one table per element of V, and V has \
                     {elements} (at most 65536)"
                ));
            }
            if r.fit_instances == 0 || r.fit_instances > 1 << 20 {
                return bad("rate.fit_instances must be in 1..=1048576".into());
            }
            let block = r.neighbour_block.saturating_mul(r.neighbour_block);
            if r.neighbour_block > 64 || (block > 0 && r.fit_instances < block) {
                return bad(format!(
                    "rate.neighbour_block must be at most 64, and its {block} tiles at most \
                     rate.fit_instances ({})",
                    r.fit_instances
                ));
            }
            if elements.saturating_mul(NEIGHBOUR_CLASSES) > 65_536 && block > 0 {
                return bad(format!(
                    "neighbour tables are {NEIGHBOUR_CLASSES} per element of V, and V has \
                     {elements} (at most 4096)"
                ));
            }
        } else if r.neighbour_block > 0 {
            return bad("rate.neighbour_block needs rate.tables = \"fitted\"".into());
        }
        let t = &self.train;
        if t.batch == 0 || t.lr <= 0.0 || t.eval_every == 0 || t.checkpoint_every == 0 {
            return bad(
                "train: batch, lr, eval_every and checkpoint_every must be positive".into(),
            );
        }
        if !(0.0..1.0).contains(&self.data.holdout_fraction) {
            return bad("data.holdout_fraction must be in [0, 1)".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every config the project ships (the packs' and the study's) is valid.
    /// The constructors give exactly what a config file that leaves the fields out
    /// gets, so a config built from a pack (`encode::config_of_pack`) means what the
    /// same text would.
    #[test]
    fn constructors_match_the_file_defaults() {
        let minimal = r#"
name = "t"
modality = "image"
[model]
frequencies = 4
max_frequency = 8.0
width = 16
layers = 3
rank = 2
tile = [8, 8]
[encoder]
method = "hyper"
[rate]
levels = [{ step = 1, lambda = 0.001 }]
[train]
steps = 3
batch = 2
lr = 0.001
[data]
dir = "d"
"#;
        let c = TrainConfig::parse(minimal).unwrap();
        assert_eq!(c.encoder, EncoderConfig::defaults(Method::Hyper));
        assert_eq!(
            c.rate,
            RateConfig::with_levels(vec![LevelConfig {
                step: 1.0,
                lambda: 0.001
            }])
        );
        assert_eq!(c.train, ScheduleConfig::with_steps(3, 2, 0.001));
        assert_eq!(c.data, DataConfig::in_dir("d"));
        let meta = TrainConfig::parse(&minimal.replace("\"hyper\"", "\"meta\"")).unwrap();
        assert_eq!(meta.encoder, EncoderConfig::defaults(Method::Meta));
    }

    #[test]
    fn neighbour_tables_need_fitted_tables_and_enough_instances() {
        let base = TrainConfig::parse(
            &std::fs::read_to_string(
                Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/image.toml"),
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            base.rate.neighbour_grid(Modality::Image),
            Some(TileGrid {
                columns: 8,
                rows: 8
            })
        );
        assert_eq!(
            base.rate.neighbour_grid(Modality::Audio),
            Some(TileGrid {
                columns: 64,
                rows: 1
            })
        );
        let mut learned = base.clone();
        learned.rate.tables = TableFit::Learned;
        let err = learned.validate().unwrap_err().to_string();
        assert!(err.contains("neighbour_block needs"), "{err}");
        let mut few = base.clone();
        few.rate.fit_instances = 63;
        let err = few.validate().unwrap_err().to_string();
        assert!(err.contains("rate.neighbour_block"), "{err}");
        let mut none = base;
        none.rate.neighbour_block = 0;
        assert_eq!(none.rate.neighbour_grid(Modality::Image), None);
    }

    #[test]
    fn shipped_configs_are_valid() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs");
        let mut seen = 0;
        for dir in [root.clone(), root.join("study")] {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.extension().is_some_and(|e| e == "toml") {
                    TrainConfig::load(&path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
                    seen += 1;
                }
            }
        }
        assert!(seen >= 15, "{seen} configs");
    }

    const EXAMPLE: &str = r#"
name = "t"
modality = "image"
[model]
frequencies = 8
max_frequency = 16.0
width = 16
layers = 4
rank = 4
tile = [8, 8]
[encoder]
method = "hyper"
patch = 4
dim = 16
heads = 2
[rate]
levels = [{ step = 0.5, lambda = 0.01 }, { step = 0.25, lambda = 0.002 }]
[train]
steps = 10
batch = 4
lr = 0.001
[data]
dir = "data"
"#;

    #[test]
    fn example_parses_with_defaults() {
        let c = TrainConfig::parse(EXAMPLE).unwrap();
        assert_eq!(c.model.modulated_layer, 1);
        assert_eq!(c.encoder.depth, 2);
        assert_eq!(c.rate.proxy, QuantProxy::Noise);
        assert_eq!(c.seed, 1);
    }

    #[test]
    fn mistakes_are_named() {
        let unknown = EXAMPLE.replace("rank = 4", "rank = 4\nrnak = 5");
        assert!(TrainConfig::parse(&unknown)
            .unwrap_err()
            .to_string()
            .contains("rnak"));
        let patch = EXAMPLE.replace("patch = 4", "patch = 3");
        assert!(TrainConfig::parse(&patch)
            .unwrap_err()
            .to_string()
            .contains("patch"));
        let layer = EXAMPLE.replace("layers = 4", "layers = 4\nmodulated_layer = 3");
        assert!(TrainConfig::parse(&layer)
            .unwrap_err()
            .to_string()
            .contains("modulated_layer"));
        let step = EXAMPLE.replace("step = 0.5", "step = 0.0");
        assert!(TrainConfig::parse(&step)
            .unwrap_err()
            .to_string()
            .contains("step"));
    }
}
