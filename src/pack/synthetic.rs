//! Deterministic packs with seeded random weights, for tests, benchmarks, fuzzing and
//! conformance vectors until trained packs exist. Every value is derived with integer
//! arithmetic and exactly rounded float operations, so the bytes (and the pack id)
//! are the same on every machine.

use super::{
    EntropyTables, Linear, ModulatedLinear, Orientation, PackConfig, PackContents, QualityLevel,
    WeightGain, PACK_FORMAT_VERSION,
};
use crate::container::Modality;
use crate::entropy::{FrequencyTable, NEIGHBOUR_CLASSES};
use crate::rng::SplitMix64;

/// The shape of a synthetic pack.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntheticPack {
    /// Image or audio.
    pub modality: Modality,
    /// Fourier frequencies per axis.
    pub frequencies: usize,
    /// Largest frequency; frequencies are spaced linearly from 1 (exact arithmetic).
    pub max_frequency: f32,
    /// Hidden width.
    pub width: usize,
    /// Width of the layers before the modulated layer (`None`: `width`, and no
    /// `pre_width` field in the configuration).
    pub pre_width: Option<usize>,
    /// Number of linear layers.
    pub layers: usize,
    /// Index of the modulated layer.
    pub modulated_layer: usize,
    /// Rank of V.
    pub rank: usize,
    /// Which factor of the modulated weight is on the input side.
    pub orientation: Orientation,
    /// Tile width (audio: chunk length).
    pub tile_width: usize,
    /// Tile height (audio: 1).
    pub tile_height: usize,
    /// Number of quality levels.
    pub quality_levels: usize,
    /// Seed of the weights.
    pub seed: u64,
    /// Whether the pack has neighbour tables (spec/model-pack.md §5.1).
    pub neighbour_tables: bool,
    /// Which layers carry a learned gain (spec/model-pack.md §4.2).
    pub weight_gain: WeightGain,
}

impl SyntheticPack {
    /// A small image pack: 8 frequencies, width 16, 4 layers, rank 4, 8x8 tiles.
    pub fn small_image() -> SyntheticPack {
        SyntheticPack {
            modality: Modality::Image,
            frequencies: 8,
            max_frequency: 16.0,
            width: 16,
            pre_width: None,
            layers: 4,
            modulated_layer: 1,
            rank: 4,
            orientation: Orientation::SharedInput,
            tile_width: 8,
            tile_height: 8,
            quality_levels: 3,
            seed: 1,
            neighbour_tables: false,
            weight_gain: WeightGain::None,
        }
    }

    /// A small audio pack: 16 frequencies, width 16, 3 layers, rank 4, 64-sample chunks.
    pub fn small_audio() -> SyntheticPack {
        SyntheticPack {
            modality: Modality::Audio,
            frequencies: 16,
            max_frequency: 64.0,
            width: 16,
            pre_width: None,
            layers: 3,
            modulated_layer: 1,
            rank: 4,
            orientation: Orientation::SharedInput,
            tile_width: 64,
            tile_height: 1,
            quality_levels: 2,
            seed: 2,
            neighbour_tables: false,
            weight_gain: WeightGain::None,
        }
    }

    /// A pack the size of a representative image codec: 64 frequencies per axis,
    /// width 128, 5 layers, rank 8, 32x32 tiles (the decode benchmark's pack).
    pub fn representative_image() -> SyntheticPack {
        SyntheticPack {
            modality: Modality::Image,
            frequencies: 64,
            max_frequency: 128.0,
            width: 128,
            pre_width: None,
            layers: 5,
            modulated_layer: 1,
            rank: 8,
            orientation: Orientation::SharedInput,
            tile_width: 32,
            tile_height: 32,
            quality_levels: 6,
            seed: 3,
            neighbour_tables: false,
            weight_gain: WeightGain::None,
        }
    }

    /// The same pack in the instance-input orientation (`Ŵ = norm(V U)`, V `[in_m, r]`
    /// per tile, U `[r, out_m]` shared).
    pub fn instance_input(self) -> SyntheticPack {
        SyntheticPack {
            orientation: Orientation::InstanceInput,
            ..self
        }
    }

    /// The same pack with layers `pre_width` wide before the modulated layer
    /// (spec/model-pack.md §3.1), so that V combines `pre_width` patterns in the
    /// instance-input orientation.
    pub fn with_pre_width(self, pre_width: usize) -> SyntheticPack {
        SyntheticPack {
            pre_width: Some(pre_width),
            ..self
        }
    }

    /// The same pack with neighbour tables (spec/model-pack.md §5.1), for files coded
    /// with neighbour contexts.
    pub fn with_neighbour_tables(self) -> SyntheticPack {
        SyntheticPack {
            neighbour_tables: true,
            ..self
        }
    }

    /// The same pack with gains on the layers `gain` names (spec/model-pack.md §4.2),
    /// drawn from their own seed so that the other weights are those of the pack
    /// without gains.
    pub fn with_weight_gain(self, gain: WeightGain) -> SyntheticPack {
        SyntheticPack {
            weight_gain: gain,
            ..self
        }
    }

    /// Builds the pack contents.
    pub fn build(&self) -> PackContents {
        let mut rng = SplitMix64(self.seed);
        let (coord_dim, out_channels, offset, sample_rate) = match self.modality {
            Modality::Image => (2, 3, 0.5, None),
            Modality::Audio => (1, 1, 0.0, Some(16_000)),
        };
        let config = PackConfig {
            format_version: PACK_FORMAT_VERSION,
            name: format!("synthetic-{}-s{}", self.modality.name(), self.seed),
            modality: self.modality.name().into(),
            coord_dim,
            out_channels,
            frequencies: self.frequencies,
            width: self.width,
            pre_width: self.pre_width,
            layers: self.layers,
            modulated_layer: self.modulated_layer,
            rank: self.rank,
            orientation: self.orientation,
            tile_width: self.tile_width,
            tile_height: self.tile_height,
            output_offset: offset,
            weight_norm: true,
            weight_gain: self.weight_gain,
            sample_rate,
            quality_levels: (0..self.quality_levels)
                .map(|q| QualityLevel {
                    // Coarsest first: steps 1/2, 1/4, ... of a unit (Q16.16).
                    step_q16: 1 << (15 - q.min(14)),
                    label: String::new(),
                })
                .collect(),
            description: "seeded random weights for tests; not a trained pack".into(),
        };
        let frequencies = (0..self.frequencies)
            .map(|k| {
                if self.frequencies == 1 {
                    1.0
                } else {
                    1.0 + (self.max_frequency - 1.0) * k as f32 / (self.frequencies - 1) as f32
                }
            })
            .collect();
        let mut layers = Vec::with_capacity(self.layers);
        let mut modulated = None;
        for l in 0..self.layers {
            let (inputs, outputs) = config.layer_shape(l);
            let scale = 1.0 / (inputs as f32).sqrt();
            if l == self.modulated_layer {
                modulated = Some(ModulatedLinear {
                    inputs,
                    outputs,
                    rank: self.rank,
                    u: match self.orientation {
                        Orientation::SharedInput => rng.uniform_vec(inputs * self.rank, scale),
                        Orientation::InstanceInput => {
                            rng.uniform_vec(self.rank * outputs, 1.0 / (self.rank as f32).sqrt())
                        }
                    },
                    bias: rng.uniform_vec(outputs, 0.1),
                    gain: None,
                });
                layers.push(None);
            } else {
                layers.push(Some(Linear {
                    inputs,
                    outputs,
                    weight: rng.uniform_vec(inputs * outputs, scale),
                    bias: rng.uniform_vec(outputs, 0.1),
                    gain: None,
                }));
            }
        }
        // Gains in [0.5, 1.5), from a generator of their own: the draws above stay
        // those of the pack without gains.
        let mut gain_rng = SplitMix64(self.seed ^ 0x6761_696e);
        let mut gains = |outputs: usize| {
            gain_rng
                .uniform_vec(outputs, 0.5)
                .into_iter()
                .map(|g| g + 1.0)
                .collect::<Vec<f32>>()
        };
        let mut modulated = modulated.expect("modulated_layer < layers");
        for (l, layer) in layers.iter_mut().enumerate() {
            if !config.has_gain(l) {
                continue;
            }
            match layer {
                Some(layer) => layer.gain = Some(gains(layer.outputs)),
                None => modulated.gain = Some(gains(modulated.outputs)),
            }
        }
        // One table per rank index (a row of V shared-input, a column instance-input),
        // each a two-sided geometric distribution whose spread grows with the quality
        // level (finer steps give larger integers).
        let contexts = config.rank_contexts();
        let levels = (0..self.quality_levels)
            .map(|q| {
                (0..self.rank)
                    .map(|row| geometric_table(4 << q.min(8), 700 + 20 * (row as u64 % 8)))
                    .collect()
            })
            .collect();
        // Neighbour tables: per table of a level, one per class, wider for classes of
        // larger neighbours (class 0: neighbours 0; classes 1 + 3 b + s: magnitude
        // bucket b), so that the choice of class matters to the coded bytes.
        let neighbour = self.neighbour_tables.then(|| {
            (0..self.quality_levels)
                .map(|q| {
                    (0..self.rank)
                        .flat_map(|row| {
                            (0..NEIGHBOUR_CLASSES).map(move |class| {
                                let bucket = class.saturating_sub(1) / 3 + usize::from(class > 0);
                                geometric_table(
                                    (2 << q.min(8)) + 2 * bucket as i32,
                                    500 + 60 * bucket as u64 + 20 * (row as u64 % 8),
                                )
                            })
                        })
                        .collect()
                })
                .collect()
        });
        PackContents {
            config,
            frequencies,
            layers,
            modulated,
            entropy: EntropyTables {
                contexts,
                levels,
                neighbour,
            },
            extra: Vec::new(),
        }
    }
}

impl SyntheticPack {
    /// Builds the pack contents with seeded encoder tensors as well
    /// (spec/model-pack.md §4.3): a one-block hypernetwork of width 8 with 2 heads
    /// (image patches of 4x4 pixels, audio chunks of 16 samples), a V0 with 2 inner
    /// steps, and a lambda per level. For the encoder's tests; not a trained encoder.
    pub fn build_with_encoders(&self) -> PackContents {
        let mut contents = self.build();
        let mut rng = SplitMix64(self.seed ^ 0xe4c0_de25);
        let (dim, heads) = (8usize, 2usize);
        let (token_len, tokens) = match self.modality {
            Modality::Image => (4 * 4 * 3, (self.tile_width / 4) * (self.tile_height / 4)),
            Modality::Audio => (16, self.tile_width / 16),
        };
        let mut extra: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
        let mut dense = |name: &str, inputs: usize, outputs: usize, rng: &mut SplitMix64| {
            let scale = 1.0 / (inputs as f32).sqrt();
            extra.push((
                format!("encoder.hyper.{name}.weight"),
                vec![inputs, outputs],
                rng.uniform_vec(inputs * outputs, scale),
            ));
            extra.push((
                format!("encoder.hyper.{name}.bias"),
                vec![outputs],
                rng.uniform_vec(outputs, 0.1),
            ));
        };
        dense("embed", token_len, dim, &mut rng);
        dense("blocks.0.qkv", dim, 3 * dim, &mut rng);
        dense("blocks.0.proj", dim, dim, &mut rng);
        dense("blocks.0.fc1", dim, 4 * dim, &mut rng);
        dense("blocks.0.fc2", 4 * dim, dim, &mut rng);
        let (v_rows, v_cols) = contents.config.v_shape();
        // Weight token i gives row i of V (shared-input) or column i (instance-input).
        let token_out = match self.orientation {
            Orientation::SharedInput => v_cols,
            Orientation::InstanceInput => v_rows,
        };
        dense("out", dim, token_out, &mut rng);
        for norm in ["blocks.0.ln1", "blocks.0.ln2", "out_norm"] {
            let gain = (0..dim).map(|_| 1.0 + rng.uniform(0.25)).collect();
            extra.push((format!("encoder.hyper.{norm}.weight"), vec![dim], gain));
            extra.push((
                format!("encoder.hyper.{norm}.bias"),
                vec![dim],
                rng.uniform_vec(dim, 0.1),
            ));
        }
        for (name, rows) in [
            ("positions", tokens),
            ("weight_tokens", self.rank),
            ("level_embedding", self.quality_levels),
        ] {
            extra.push((
                format!("encoder.hyper.{name}"),
                vec![rows, dim],
                rng.uniform_vec(rows * dim, 0.5),
            ));
        }
        extra.push(("encoder.hyper.heads".into(), vec![1], vec![heads as f32]));
        extra.push((
            "encoder.v0".into(),
            vec![v_rows, v_cols],
            rng.uniform_vec(v_rows * v_cols, 1.0),
        ));
        extra.push(("encoder.meta.inner_steps".into(), vec![1], vec![2.0]));
        extra.push(("encoder.meta.inner_lr".into(), vec![1], vec![0.01]));
        extra.push((
            "encoder.lambda".into(),
            vec![self.quality_levels],
            (0..self.quality_levels).map(|_| 1e-3).collect(),
        ));
        extra.sort_by(|a, b| a.0.cmp(&b.0));
        contents.extra = extra;
        contents
    }
}

/// Counts `2^30 * (decay/1024)^|k|` for `k` in `-half..=half`, then an escape count.
fn geometric_table(half: i32, decay_per_1024: u64) -> FrequencyTable {
    let mut counts: Vec<u32> = (-half..=half)
        .map(|k| {
            let mut c: u64 = 1 << 30;
            for _ in 0..k.unsigned_abs() {
                c = c * decay_per_1024 / 1024;
            }
            c.max(1) as u32
        })
        .collect();
    counts.push(1 << 10);
    FrequencyTable { min: -half, counts }
}
