//! The transformer hypernetwork that predicts V from a tile in one forward pass
//! (docs/method.md §4; the pack tensors `encoder.hyper.*`, spec/model-pack.md §4.3).
//!
//! Tokens: the tile cut into patches (images: `patch x patch` pixels, RGB interleaved
//! within a pixel, pixels row-major within the patch, patches row-major; audio:
//! `patch` consecutive samples), each embedded by a linear layer plus a learned
//! position, followed by `rank` learned weight tokens plus the embedding of the quality
//! level. Pre-LayerNorm blocks (multi-head self-attention, then a GELU MLP of four
//! times the width) transform them; weight token `i` then goes through LayerNorm and a
//! linear layer to row `i` of V.

use crate::gemm::gemm_acc;
use crate::pack::{ModelPack, Orientation};

use super::tiling::Tiles;
use super::EncodeError;

/// LayerNorm epsilon used in training (PyTorch's default).
const LAYER_NORM_EPS: f64 = 1e-5;
/// Tiles per work item.
const TILES_PER_GROUP: usize = 16;

#[derive(Debug, Clone)]
struct Dense {
    inputs: usize,
    outputs: usize,
    weight: Vec<f32>,
    bias: Vec<f32>,
}

impl Dense {
    fn load(
        pack: &ModelPack,
        name: &str,
        inputs: usize,
        outputs: usize,
    ) -> Result<Dense, EncodeError> {
        Ok(Dense {
            inputs,
            outputs,
            weight: tensor(pack, &format!("{name}.weight"), &[inputs, outputs])?.to_vec(),
            bias: tensor(pack, &format!("{name}.bias"), &[outputs])?.to_vec(),
        })
    }

    /// `out = x W + b` for `rows` rows.
    fn forward(&self, rows: usize, x: &[f32], out: &mut Vec<f32>) {
        out.resize(rows * self.outputs, 0.0);
        for r in out.chunks_exact_mut(self.outputs) {
            r.copy_from_slice(&self.bias);
        }
        gemm_acc(rows, self.inputs, self.outputs, x, &self.weight, out);
    }
}

#[derive(Debug, Clone)]
struct LayerNorm {
    gain: Vec<f32>,
    offset: Vec<f32>,
}

impl LayerNorm {
    fn load(pack: &ModelPack, name: &str, dim: usize) -> Result<LayerNorm, EncodeError> {
        Ok(LayerNorm {
            gain: tensor(pack, &format!("{name}.weight"), &[dim])?.to_vec(),
            offset: tensor(pack, &format!("{name}.bias"), &[dim])?.to_vec(),
        })
    }

    fn forward(&self, x: &[f32], out: &mut Vec<f32>) {
        let dim = self.gain.len();
        out.resize(x.len(), 0.0);
        for (row, o) in x.chunks_exact(dim).zip(out.chunks_exact_mut(dim)) {
            let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / dim as f64;
            let var = row
                .iter()
                .map(|&v| (f64::from(v) - mean).powi(2))
                .sum::<f64>()
                / dim as f64;
            let inv = 1.0 / (var + LAYER_NORM_EPS).sqrt();
            for i in 0..dim {
                o[i] = ((f64::from(row[i]) - mean) * inv) as f32 * self.gain[i] + self.offset[i];
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Block {
    ln1: LayerNorm,
    qkv: Dense,
    proj: Dense,
    ln2: LayerNorm,
    fc1: Dense,
    fc2: Dense,
}

/// The shape of a pack's hypernetwork, read from its tensors (spec/model-pack.md
/// §4.3): what the pure-Rust encoder and the libtorch backend both build from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HyperShape {
    /// Values per data token (`patch² · channels` for images, `patch` for audio).
    pub token_len: usize,
    /// Transformer width.
    pub dim: usize,
    /// Patch side (images) or samples per token (audio).
    pub patch: usize,
    /// Data tokens per tile.
    pub data_tokens: usize,
    /// Transformer blocks.
    pub depth: usize,
    /// Attention heads.
    pub heads: usize,
}

impl HyperShape {
    /// The shape of `pack`'s hypernetwork, or `None` when the pack has none; an error
    /// when its tensors do not describe one that fits the pack's tiles.
    pub fn of_pack(pack: &ModelPack) -> Result<Option<HyperShape>, EncodeError> {
        let Some(embed_shape) = tensor_shape(pack, "encoder.hyper.embed.weight") else {
            return Ok(None);
        };
        let cfg = pack.config();
        let bad = |problem: String| EncodeError::PackTensor {
            name: "encoder.hyper".into(),
            problem,
        };
        let &[token_len, dim] = embed_shape else {
            return Err(bad(format!("embed.weight has shape {embed_shape:?}")));
        };
        let patch = if cfg.coord_dim == 2 {
            (1..=cfg.tile_width)
                .find(|p| p * p * cfg.out_channels == token_len)
                .ok_or_else(|| bad(format!("token length {token_len} is no square patch")))?
        } else {
            token_len
        };
        let (tw, th) = (cfg.tile_width, cfg.tile_height);
        let tiles_whole = if cfg.coord_dim == 2 {
            tw % patch == 0 && th % patch == 0
        } else {
            tw % patch == 0
        };
        if patch == 0 || !tiles_whole {
            return Err(bad(format!(
                "patch {patch} does not divide the tile {tw}x{th}"
            )));
        }
        let data_tokens = if cfg.coord_dim == 2 {
            (tw / patch) * (th / patch)
        } else {
            tw / patch
        };
        let heads = scalar(pack, "encoder.hyper.heads")?;
        if !(heads >= 1.0 && heads.fract() == 0.0 && (dim as f32 / heads).fract() == 0.0) {
            return Err(bad(format!("{heads} heads do not divide the width {dim}")));
        }
        let depth = (0..)
            .take_while(|i| {
                tensor_shape(pack, &format!("encoder.hyper.blocks.{i}.qkv.weight")).is_some()
            })
            .count();
        Ok(Some(HyperShape {
            token_len,
            dim,
            patch,
            data_tokens,
            depth,
            heads: heads as usize,
        }))
    }
}

/// The hypernetwork of a pack.
#[derive(Debug, Clone)]
pub struct HyperNetwork {
    embed: Dense,
    positions: Vec<f32>,
    weight_tokens: Vec<f32>,
    level_embedding: Vec<f32>,
    blocks: Vec<Block>,
    out_norm: LayerNorm,
    out: Dense,
    heads: usize,
    dim: usize,
    patch: usize,
    data_tokens: usize,
    rank: usize,
    /// Weight token `i` gives column `i` of V (instance-input) rather than row `i`.
    tokens_are_columns: bool,
    levels: usize,
    tile: [usize; 2],
    channels: usize,
}

/// The `encoder.*` tensor `name`, which must have shape `shape`.
pub fn tensor<'a>(
    pack: &'a ModelPack,
    name: &str,
    shape: &[usize],
) -> Result<&'a [f32], EncodeError> {
    let (_, s, data) = pack
        .contents()
        .extra
        .iter()
        .find(|(n, _, _)| n == name)
        .ok_or_else(|| EncodeError::PackTensor {
            name: name.into(),
            problem: "missing".into(),
        })?;
    if s != shape {
        return Err(EncodeError::PackTensor {
            name: name.into(),
            problem: format!("shape {s:?}, expected {shape:?}"),
        });
    }
    Ok(data)
}

/// The shape of the `encoder.*` tensor `name`, if present.
pub fn tensor_shape<'a>(pack: &'a ModelPack, name: &str) -> Option<&'a [usize]> {
    pack.contents()
        .extra
        .iter()
        .find(|(n, _, _)| n == name)
        .map(|(_, s, _)| s.as_slice())
}

/// A scalar stored as a one-element `encoder.*` tensor.
pub fn scalar(pack: &ModelPack, name: &str) -> Result<f32, EncodeError> {
    Ok(tensor(pack, name, &[1])?[0])
}

/// Gaussian error function, Abramowitz and Stegun 7.1.26 (absolute error below 1.5e-7,
/// well inside f32 precision of the GELU it feeds).
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// GELU in its exact form `x Phi(x)`, as trained (not the tanh approximation).
fn gelu(x: f32) -> f32 {
    let x = f64::from(x);
    (0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))) as f32
}

#[derive(Default)]
struct Scratch {
    x: Vec<f32>,
    tokens: Vec<f32>,
    normed: Vec<f32>,
    qkv: Vec<f32>,
    attended: Vec<f32>,
    projected: Vec<f32>,
    hidden: Vec<f32>,
    scores: Vec<f64>,
    v_rows: Vec<f32>,
}

impl HyperNetwork {
    /// Reads the hypernetwork from a pack, or `None` when the pack has none.
    pub fn from_pack(pack: &ModelPack) -> Result<Option<HyperNetwork>, EncodeError> {
        let Some(HyperShape {
            token_len,
            dim,
            patch,
            data_tokens,
            depth,
            heads,
        }) = HyperShape::of_pack(pack)?
        else {
            return Ok(None);
        };
        let cfg = pack.config();
        let (tw, th) = (cfg.tile_width, cfg.tile_height);
        let channels = cfg.out_channels;
        let levels = cfg.quality_levels.len();
        let mut blocks = Vec::with_capacity(depth);
        for i in 0..depth {
            let p = format!("encoder.hyper.blocks.{i}");
            blocks.push(Block {
                ln1: LayerNorm::load(pack, &format!("{p}.ln1"), dim)?,
                qkv: Dense::load(pack, &format!("{p}.qkv"), dim, 3 * dim)?,
                proj: Dense::load(pack, &format!("{p}.proj"), dim, dim)?,
                ln2: LayerNorm::load(pack, &format!("{p}.ln2"), dim)?,
                fc1: Dense::load(pack, &format!("{p}.fc1"), dim, 4 * dim)?,
                fc2: Dense::load(pack, &format!("{p}.fc2"), 4 * dim, dim)?,
            });
        }
        let (v_rows, v_cols) = cfg.v_shape();
        let tokens_are_columns = cfg.orientation == Orientation::InstanceInput;
        let token_out = if tokens_are_columns { v_rows } else { v_cols };
        Ok(Some(HyperNetwork {
            embed: Dense::load(pack, "encoder.hyper.embed", token_len, dim)?,
            positions: tensor(pack, "encoder.hyper.positions", &[data_tokens, dim])?.to_vec(),
            weight_tokens: tensor(pack, "encoder.hyper.weight_tokens", &[cfg.rank, dim])?.to_vec(),
            level_embedding: tensor(pack, "encoder.hyper.level_embedding", &[levels, dim])?
                .to_vec(),
            blocks,
            out_norm: LayerNorm::load(pack, "encoder.hyper.out_norm", dim)?,
            // Weight token i -> row i of a [r, out_m] V (shared-input) or column i of an
            // [in_m, r] V (instance-input) (spec/model-pack.md §4.3).
            out: Dense::load(pack, "encoder.hyper.out", dim, token_out)?,
            heads,
            dim,
            patch,
            data_tokens,
            rank: cfg.rank,
            tokens_are_columns,
            levels,
            tile: [tw, th],
            channels,
        }))
    }

    /// Predicts the V of every tile at quality level `level` into `v` (tile after tile,
    /// in [`crate::pack::PackConfig::v_shape`]), with up to `threads` threads (0: all cores).
    pub fn predict(&self, tiles: &Tiles, level: usize, v: &mut [f32], threads: usize) {
        assert!(level < self.levels, "quality level checked by the caller");
        let v_len = self.rank * self.out.outputs;
        let per_tile = tiles.samples * tiles.channels;
        assert_eq!(v.len(), tiles.count * v_len);
        assert_eq!(tiles.channels, self.channels);
        crate::parallel::for_each_group(
            tiles
                .targets
                .chunks(TILES_PER_GROUP * per_tile)
                .zip(v.chunks_mut(TILES_PER_GROUP * v_len)),
            tiles.count.div_ceil(TILES_PER_GROUP),
            threads,
            |(x, out), scratch: &mut Scratch| self.forward_group(x, level, out, scratch),
        );
    }

    /// Cuts tile `x` (`samples x channels`) into data tokens, `data_tokens x token_len`.
    fn patches(&self, x: &[f32], out: &mut [f32]) {
        let ps = self.patch;
        let token_len = self.embed.inputs;
        if self.channels == 1 || self.tile[1] == 1 {
            out.copy_from_slice(&x[..self.data_tokens * token_len]);
            return;
        }
        let [tw, _] = self.tile;
        let per_row = tw / ps;
        let c = self.channels;
        for (token, o) in out.chunks_exact_mut(token_len).enumerate() {
            let (py, px) = (token / per_row, token % per_row);
            for iy in 0..ps {
                let s = (py * ps + iy) * tw + px * ps;
                o[iy * ps * c..(iy + 1) * ps * c].copy_from_slice(&x[s * c..(s + ps) * c]);
            }
        }
    }

    fn forward_group(&self, x: &[f32], level: usize, v: &mut [f32], s: &mut Scratch) {
        let dim = self.dim;
        let v_len = self.rank * self.out.outputs;
        let tiles = v.len() / v_len;
        let samples_len = x.len() / tiles;
        let token_len = self.embed.inputs;
        let t_data = self.data_tokens;
        let t_all = t_data + self.rank;
        let rows = tiles * t_all;

        // Token embeddings, then weight tokens (with the level's embedding).
        s.x.resize(tiles * t_data * token_len, 0.0);
        for t in 0..tiles {
            let (tile, out) = (
                &x[t * samples_len..(t + 1) * samples_len],
                &mut s.x[t * t_data * token_len..(t + 1) * t_data * token_len],
            );
            self.patches(tile, out);
        }
        let mut embedded = Vec::new();
        self.embed.forward(tiles * t_data, &s.x, &mut embedded);
        s.tokens.resize(rows * dim, 0.0);
        let level_row = &self.level_embedding[level * dim..(level + 1) * dim];
        for t in 0..tiles {
            let base = t * t_all * dim;
            for k in 0..t_data {
                for e in 0..dim {
                    s.tokens[base + k * dim + e] =
                        embedded[(t * t_data + k) * dim + e] + self.positions[k * dim + e];
                }
            }
            for i in 0..self.rank {
                let token = &mut s.tokens[base + (t_data + i) * dim..base + (t_data + i + 1) * dim];
                let weight = &self.weight_tokens[i * dim..(i + 1) * dim];
                for ((x, &w), &l) in token.iter_mut().zip(weight).zip(level_row) {
                    *x = w + l;
                }
            }
        }

        let heads = self.heads;
        let dh = dim / heads;
        let inv_sqrt = 1.0 / (dh as f64).sqrt();
        for block in &self.blocks {
            block.ln1.forward(&s.tokens, &mut s.normed);
            block.qkv.forward(rows, &s.normed, &mut s.qkv);
            s.attended.resize(rows * dim, 0.0);
            s.scores.resize(t_all, 0.0);
            for t in 0..tiles {
                let qkv = &s.qkv[t * t_all * 3 * dim..(t + 1) * t_all * 3 * dim];
                for h in 0..heads {
                    for i in 0..t_all {
                        let q = &qkv[i * 3 * dim + h * dh..i * 3 * dim + (h + 1) * dh];
                        let mut max = f64::NEG_INFINITY;
                        for j in 0..t_all {
                            let k =
                                &qkv[j * 3 * dim + dim + h * dh..j * 3 * dim + dim + (h + 1) * dh];
                            let dot: f32 = q.iter().zip(k).map(|(a, b)| a * b).sum();
                            let score = f64::from(dot) * inv_sqrt;
                            s.scores[j] = score;
                            max = max.max(score);
                        }
                        let mut total = 0.0;
                        for sc in s.scores.iter_mut() {
                            *sc = (*sc - max).exp();
                            total += *sc;
                        }
                        let out = &mut s.attended
                            [(t * t_all + i) * dim + h * dh..(t * t_all + i) * dim + (h + 1) * dh];
                        out.fill(0.0);
                        for j in 0..t_all {
                            let w = (s.scores[j] / total) as f32;
                            let vv = &qkv[j * 3 * dim + 2 * dim + h * dh
                                ..j * 3 * dim + 2 * dim + (h + 1) * dh];
                            for (o, &val) in out.iter_mut().zip(vv) {
                                *o += w * val;
                            }
                        }
                    }
                }
            }
            block.proj.forward(rows, &s.attended, &mut s.projected);
            for (x, p) in s.tokens.iter_mut().zip(&s.projected) {
                *x += p;
            }
            block.ln2.forward(&s.tokens, &mut s.normed);
            block.fc1.forward(rows, &s.normed, &mut s.hidden);
            for h in s.hidden.iter_mut() {
                *h = gelu(*h);
            }
            block.fc2.forward(rows, &s.hidden, &mut s.projected);
            for (x, p) in s.tokens.iter_mut().zip(&s.projected) {
                *x += p;
            }
        }

        // Weight tokens -> rows of V.
        s.v_rows.resize(tiles * self.rank * dim, 0.0);
        for t in 0..tiles {
            let src = &s.tokens[(t * t_all + t_data) * dim..(t + 1) * t_all * dim];
            s.v_rows[t * self.rank * dim..(t + 1) * self.rank * dim].copy_from_slice(src);
        }
        self.out_norm.forward(&s.v_rows, &mut s.normed);
        let mut out = Vec::new();
        self.out.forward(tiles * self.rank, &s.normed, &mut out);
        if self.tokens_are_columns {
            // out holds Vᵀ ([r, in_m]) per tile; V is [in_m, r] row-major.
            let (r, n) = (self.rank, self.out.outputs);
            for (vt, ot) in v.chunks_exact_mut(v_len).zip(out.chunks_exact(v_len)) {
                for i in 0..r {
                    for k in 0..n {
                        vt[k * r + i] = ot[i * n + k];
                    }
                }
            }
        } else {
            v.copy_from_slice(&out);
        }
    }
}
