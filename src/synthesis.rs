//! Synthesis: evaluating the pack's MLP on every tile given its V (spec/model-pack.md §4,
//! spec/bitstream.md §8).
//!
//! Row convention throughout: `z = h · Ŵ + b`, `h` a row vector. The coordinate grid is
//! the same for every tile, so the Fourier features and the layers before the modulated
//! one (`h`, `samples x in_m`) are computed once per pack in [`TileSynthesizer::new`].
//! Per tile the modulated layer is written as `z = X · F + b` with `X` `samples x r` and
//! `F` `r x out_m` (column-scaled by weight normalisation, `s_o = 1 / ||W_m[:, o]||`,
//! times the layer's learned gain `g_o` where the pack has one; `diag(s)` below stands
//! for `diag(g_o s_o)`):
//!
//! * shared-input (`Ŵ = norm(U V)`, U `[in_m, r]` shared): `X = h U`, the same for every
//!   tile and computed once per pack, and `F = V diag(s)`;
//! * instance-input (`Ŵ = norm(V U)`, V `[in_m, r]` per tile): `X = h V` per tile and
//!   `F = U diag(s)`. Forming `V U` per tile and multiplying by it would cost
//!   `in_m · out_m` MACs per sample; the factored form costs `r · (in_m + out_m)`.
//!
//! The later shared layers then run as one large GEMM over a group of tiles.

use crate::gemm::{gemm_acc, gemm_acc_op, Operand};
use crate::pack::{ModelPack, Orientation};

/// Rows (samples) per work item: big enough for efficient GEMMs, small enough that the
/// activations stay in cache.
const TARGET_ROWS_PER_GROUP: usize = 4096;

/// Precomputed, instance-independent state for synthesising tiles with one pack.
#[derive(Debug, Clone)]
pub struct TileSynthesizer<'p> {
    pack: &'p ModelPack,
    /// Samples per tile.
    samples: usize,
    /// `h`, the modulated layer's input, `samples x in_m` row-major.
    h: Vec<f32>,
    /// Shared-input only: `h U`, `samples x rank` row-major.
    hu: Vec<f32>,
    /// Shared-input only: `U^T U`, `rank x rank`, for the column norms of `U V`.
    gram: Vec<f64>,
}

/// Per-tile working state of the modulated layer, `z = X · F + b` (module docs); what a
/// backward pass needs besides V.
#[derive(Debug, Default, Clone)]
pub(crate) struct ModulatedTile {
    /// The column scales `g_o s_o` of `F` (`out_m`; 1 without weight normalisation, 0
    /// for a zero column; `g_o` = 1 without a gain).
    pub(crate) scale: Vec<f64>,
    /// The inverse column norms `s_o` alone (`out_m`), for the backward pass.
    inv_norm: Vec<f64>,
    /// `F`, `r x out_m`.
    pub(crate) f: Vec<f32>,
    /// Instance-input only: `X = h V`, `samples x r`.
    pub(crate) x: Vec<f32>,
    /// Instance-input with weight normalisation: `Vᵀ V`, `r x r`, in f64.
    gram: Vec<f64>,
}

/// Working memory of [`TileSynthesizer::modulated_backward`], reused from tile to tile.
#[derive(Debug, Default, Clone)]
pub(crate) struct ModulatedGradScratch {
    /// `Xᵀ G`, `r x out_m`.
    df: Vec<f32>,
    /// Instance-input: `G Fᵀ`, `samples x r`.
    dx: Vec<f32>,
    /// Instance-input: `U diag(c) Uᵀ`, `r x r`.
    mm: Vec<f64>,
}

/// Normalised coordinates of tile sample `i` of `n`: the centre of the sample mapped to
/// [-1, 1] (spec/model-pack.md §4.1).
pub fn coordinate(i: usize, n: usize) -> f64 {
    (2 * i + 1) as f64 / n as f64 - 1.0
}

/// Fourier features of one coordinate vector (spec/model-pack.md §4.1): for every axis a
/// and frequency f_k, `cos(pi f_k x_a)` at index `a * K + k`, then the sines at
/// `A * K + a * K + k`.
pub fn fourier_features(coords: &[f64], frequencies: &[f32], out: &mut [f32]) {
    let k_n = frequencies.len();
    let sin_base = coords.len() * k_n;
    for (a, &x) in coords.iter().enumerate() {
        for (k, &f) in frequencies.iter().enumerate() {
            let phase = std::f64::consts::PI * f64::from(f) * x;
            out[a * k_n + k] = phase.cos() as f32;
            out[sin_base + a * k_n + k] = phase.sin() as f32;
        }
    }
}

/// Coordinates of sample `s` of a tile, in axis order (y, x) for images.
fn tile_coords(s: usize, tile_width: usize, tile_height: usize, coord_dim: usize) -> Vec<f64> {
    if coord_dim == 1 {
        vec![coordinate(s, tile_width)]
    } else {
        vec![
            coordinate(s / tile_width, tile_height),
            coordinate(s % tile_width, tile_width),
        ]
    }
}

/// Fourier features of every sample of a tile in raster order (spec/model-pack.md
/// §4.1), `[tile_width * tile_height, 2 * coord_dim * K]` row-major: the network's
/// input, the same for every tile. Training calls this too, so that it sees exactly
/// the decoder's inputs.
pub fn tile_features(
    frequencies: &[f32],
    tile_width: usize,
    tile_height: usize,
    coord_dim: usize,
) -> Vec<f32> {
    let dim = 2 * coord_dim * frequencies.len();
    let mut out = vec![0f32; tile_width * tile_height * dim];
    for (s, row) in out.chunks_exact_mut(dim).enumerate() {
        let coords = tile_coords(s, tile_width, tile_height, coord_dim);
        fourier_features(&coords, frequencies, row);
    }
    out
}

/// `max(x, 0)` in place.
pub(crate) fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

/// Copies `row` into every row of `buf` (e.g. a bias before a GEMM accumulates).
pub(crate) fn fill_rows_with(buf: &mut [f32], row: &[f32]) {
    for r in buf.chunks_exact_mut(row.len()) {
        r.copy_from_slice(row);
    }
}

impl<'p> TileSynthesizer<'p> {
    /// Computes the instance-independent parts for the pack's tile size.
    pub fn new(pack: &'p ModelPack) -> TileSynthesizer<'p> {
        let cfg = pack.config();
        let samples = cfg.tile_samples();
        let fdim = cfg.feature_dim();
        let mut h = tile_features(
            &pack.contents().frequencies,
            cfg.tile_width,
            cfg.tile_height,
            cfg.coord_dim,
        );
        let mut width = fdim;
        for l in 0..cfg.modulated_layer {
            let layer = pack.normalised_layer(l).expect("shared layer");
            let mut next = vec![0f32; samples * layer.outputs];
            fill_rows_with(&mut next, &layer.bias);
            gemm_acc(samples, width, layer.outputs, &h, &layer.weight, &mut next);
            relu(&mut next);
            h = next;
            width = layer.outputs;
        }
        let m = &pack.contents().modulated;
        let (mut hu, mut gram) = (Vec::new(), Vec::new());
        if cfg.orientation == Orientation::SharedInput {
            hu = vec![0f32; samples * m.rank];
            gemm_acc(samples, m.inputs, m.rank, &h, &m.u, &mut hu);
            gram = vec![0f64; m.rank * m.rank];
            for row in m.u.chunks_exact(m.rank) {
                accumulate_outer(row, &mut gram);
            }
        }
        TileSynthesizer {
            pack,
            samples,
            h,
            hu,
            gram,
        }
    }

    /// The pack.
    pub(crate) fn pack(&self) -> &'p ModelPack {
        self.pack
    }

    /// Samples per tile.
    pub fn samples_per_tile(&self) -> usize {
        self.samples
    }

    /// Output values per tile (samples x output channels).
    pub fn outputs_per_tile(&self) -> usize {
        self.samples * self.pack.config().out_channels
    }

    /// Elements of one V ([`crate::pack::PackConfig::v_shape`]).
    pub fn v_len(&self) -> usize {
        self.pack.config().v_len()
    }

    /// Multiply-accumulates per sample of the whole network after the per-pack
    /// precomputation: the modulated layer (`r · out_m` shared-input, `r · (in_m +
    /// out_m)` instance-input) and every later layer. Per-tile work that does not scale
    /// with the samples (column norms) is left out.
    pub fn macs_per_sample(&self) -> u64 {
        let cfg = self.pack.config();
        let (inputs, outputs) = cfg.layer_shape(cfg.modulated_layer);
        let modulated = match cfg.orientation {
            Orientation::SharedInput => cfg.rank * outputs,
            Orientation::InstanceInput => cfg.rank * (inputs + outputs),
        };
        let later: usize = (cfg.modulated_layer + 1..cfg.layers)
            .map(|l| {
                let (i, o) = cfg.layer_shape(l);
                i * o
            })
            .sum();
        (modulated + later) as u64
    }

    /// Prepares one tile's modulated layer from its V: the column scales, `F` and (for
    /// instance-input) `X = h V` (module docs; spec/model-pack.md §4.2).
    pub(crate) fn prepare_modulated(&self, v: &[f32], t: &mut ModulatedTile) {
        let cfg = self.pack.config();
        let m = &self.pack.contents().modulated;
        let (r, out) = (m.rank, m.outputs);
        debug_assert_eq!(v.len(), cfg.v_len());
        t.inv_norm.clear();
        t.inv_norm.resize(out, 1.0);
        t.f.resize(r * out, 0.0);
        match cfg.orientation {
            Orientation::SharedInput => {
                // ||(U V)[:, o]||² = v_oᵀ (UᵀU) v_o with v_o = V[:, o].
                if cfg.weight_norm {
                    for (o, s) in t.inv_norm.iter_mut().enumerate() {
                        *s = inverse_norm(quadratic_form(&self.gram, v, o, out, r));
                    }
                }
                self.apply_gain(t);
                for i in 0..r {
                    for o in 0..out {
                        t.f[i * out + o] = v[i * out + o] * t.scale[o] as f32;
                    }
                }
            }
            Orientation::InstanceInput => {
                // ||(V U)[:, o]||² = u_oᵀ (VᵀV) u_o with u_o = U[:, o].
                if cfg.weight_norm {
                    t.gram.clear();
                    t.gram.resize(r * r, 0.0);
                    for row in v.chunks_exact(r) {
                        accumulate_outer(row, &mut t.gram);
                    }
                    for (o, s) in t.inv_norm.iter_mut().enumerate() {
                        *s = inverse_norm(quadratic_form(&t.gram, &m.u, o, out, r));
                    }
                }
                self.apply_gain(t);
                for i in 0..r {
                    for o in 0..out {
                        t.f[i * out + o] = m.u[i * out + o] * t.scale[o] as f32;
                    }
                }
                t.x.clear();
                t.x.resize(self.samples * r, 0.0);
                gemm_acc(self.samples, m.inputs, r, &self.h, v, &mut t.x);
            }
        }
    }

    /// `t.scale = g_o s_o` from `t.inv_norm` and the modulated layer's gain
    /// (spec/model-pack.md §4.2: `Ŵ_m = norm(W_m) · diag(g_m)`).
    fn apply_gain(&self, t: &mut ModulatedTile) {
        t.scale.clear();
        t.scale.extend_from_slice(&t.inv_norm);
        if let Some(gain) = &self.pack.contents().modulated.gain {
            for (s, &g) in t.scale.iter_mut().zip(gain) {
                *s *= f64::from(g);
            }
        }
    }

    /// `X` of a prepared tile, `samples x r`.
    pub(crate) fn modulated_input<'a>(&'a self, t: &'a ModulatedTile) -> &'a [f32] {
        match self.pack.config().orientation {
            Orientation::SharedInput => &self.hu,
            Orientation::InstanceInput => &t.x,
        }
    }

    /// Adds `X · F` of a prepared tile to `z` (`samples x out_m`, already holding the
    /// bias).
    pub(crate) fn modulated_forward(&self, t: &ModulatedTile, z: &mut [f32]) {
        let m = &self.pack.contents().modulated;
        gemm_acc(
            self.samples,
            m.rank,
            m.outputs,
            self.modulated_input(t),
            &t.f,
            z,
        );
    }

    /// The gradient of a loss with respect to one tile's V, given `dz = dL/dz`
    /// (`samples x out_m`) for the tile prepared from `v`, into `grad` (V's shape).
    /// `work` is scratch space. Derivation (module docs' notation, `G = dz`):
    ///
    /// * shared-input: `dF = Xᵀ G`, `dV[:, o] = g_o s_o dF[:, o] - g_o s_o³ (UᵀU v_o)
    ///   (dF[:, o] · v_o)`;
    /// * instance-input: `dV = hᵀ (G Fᵀ) + V M`, `M = U diag(c) Uᵀ`, `c_o = -g_o s_o³
    ///   (u_o · (Xᵀ G)[:, o])`, the second term because `s_o` depends on V.
    ///
    /// (`g_o` = 1 where the layer has no gain.)
    ///
    /// A zero column (`s_o = 0`) contributes no gradient, as the decoder gives it none.
    pub(crate) fn modulated_backward(
        &self,
        v: &[f32],
        t: &ModulatedTile,
        dz: &[f32],
        grad: &mut [f32],
        work: &mut ModulatedGradScratch,
    ) {
        let cfg = self.pack.config();
        let m = &self.pack.contents().modulated;
        let (r, out, p) = (m.rank, m.outputs, self.samples);
        let x = self.modulated_input(t);
        // dF = Xᵀ G, r x out: needed by both orientations (for instance-input only under
        // weight normalisation).
        let need_df = cfg.orientation == Orientation::SharedInput || cfg.weight_norm;
        work.df.clear();
        work.df.resize(r * out, 0.0);
        if need_df {
            gemm_acc_op(
                r,
                p,
                out,
                Operand::Transposed(x),
                Operand::Plain(dz),
                &mut work.df,
            );
        }
        let df = &work.df[..];
        match cfg.orientation {
            Orientation::SharedInput => {
                for o in 0..out {
                    let (c, s) = (t.scale[o], t.inv_norm[o]);
                    if !cfg.weight_norm {
                        for i in 0..r {
                            grad[i * out + o] = df[i * out + o];
                        }
                        continue;
                    }
                    if c == 0.0 {
                        for i in 0..r {
                            grad[i * out + o] = 0.0;
                        }
                        continue;
                    }
                    let dot: f64 = (0..r)
                        .map(|k| f64::from(df[k * out + o]) * f64::from(v[k * out + o]))
                        .sum();
                    for i in 0..r {
                        let gv: f64 = (0..r)
                            .map(|k| self.gram[i * r + k] * f64::from(v[k * out + o]))
                            .sum();
                        grad[i * out + o] =
                            (c * f64::from(df[i * out + o]) - c * s * s * gv * dot) as f32;
                    }
                }
            }
            Orientation::InstanceInput => {
                let inputs = m.inputs;
                // M = U diag(c) Uᵀ (r x r) from the scale's dependence on V.
                let mm = &mut work.mm;
                mm.clear();
                mm.resize(r * r, 0.0);
                if cfg.weight_norm {
                    for o in 0..out {
                        let s = t.inv_norm[o];
                        if s == 0.0 {
                            continue;
                        }
                        let ds: f64 = (0..r)
                            .map(|j| f64::from(m.u[j * out + o]) * f64::from(df[j * out + o]))
                            .sum();
                        let c = -ds * t.scale[o] * s * s;
                        for i in 0..r {
                            let ui = f64::from(m.u[i * out + o]) * c;
                            for j in 0..r {
                                mm[i * r + j] += ui * f64::from(m.u[j * out + o]);
                            }
                        }
                    }
                }
                // dX = G Fᵀ (p x r), then dV = hᵀ dX (in x r).
                let dx = &mut work.dx;
                dx.clear();
                dx.resize(p * r, 0.0);
                gemm_acc_op(p, out, r, Operand::Plain(dz), Operand::Transposed(&t.f), dx);
                grad[..inputs * r].fill(0.0);
                gemm_acc_op(
                    inputs,
                    p,
                    r,
                    Operand::Transposed(&self.h),
                    Operand::Plain(dx),
                    grad,
                );
                if cfg.weight_norm {
                    for i in 0..inputs {
                        for j in 0..r {
                            let vm: f64 = (0..r)
                                .map(|k| f64::from(v[i * r + k]) * mm[k * r + j])
                                .sum();
                            grad[i * r + j] += vm as f32;
                        }
                    }
                }
            }
        }
    }

    /// Synthesises `tiles` tiles. `v` holds each tile's dequantised V
    /// ([`crate::pack::PackConfig::v_shape`], row-major), tile after tile; `out` receives
    /// each tile's samples, sample-major with the output channels interleaved. Uses up to
    /// `threads` threads (0: all cores).
    pub fn render(&self, v: &[f32], out: &mut [f32], threads: usize) {
        let v_len = self.v_len();
        let per_tile = self.outputs_per_tile();
        assert_eq!(v.len() % v_len, 0);
        let tiles = v.len() / v_len;
        assert_eq!(out.len(), tiles * per_tile);
        if tiles == 0 {
            return;
        }
        let group = (TARGET_ROWS_PER_GROUP / self.samples).max(1);
        crate::parallel::for_each_group(
            v.chunks(group * v_len)
                .zip(out.chunks_mut(group * per_tile)),
            tiles.div_ceil(group),
            threads,
            |(v_group, out_group), state: &mut ForwardState| {
                self.forward(v_group, state, out_group)
            },
        );
    }

    /// The network from the modulated layer on, for the tiles whose V are `v` (tile
    /// after tile): the output, sample-major with the output channels interleaved, into
    /// `out` (`tiles * samples * out_channels`; spec/model-pack.md §4.2–4.3). `state`
    /// keeps what a backward pass needs: each tile's prepared modulated layer and every
    /// hidden activation. Decoding and the encoder's distortion model both call this,
    /// so they evaluate one network.
    pub(crate) fn forward(&self, v: &[f32], state: &mut ForwardState, out: &mut [f32]) {
        let pack = self.pack;
        let cfg = pack.config();
        let (d, p, v_len) = (cfg.width, self.samples, self.v_len());
        let tiles = v.len() / v_len;
        let rows = tiles * p;
        let m = &pack.contents().modulated;
        // The pack guarantees a layer after the modulated one (spec/model-pack.md §3.1).
        let later = cfg.layers - cfg.modulated_layer - 1;
        debug_assert_eq!(out.len(), rows * cfg.out_channels);

        state.acts.resize_with(later, Vec::new);
        state.tiles.resize_with(tiles, ModulatedTile::default);
        state.acts[0].resize(rows * d, 0.0);
        for (t, vt) in v.chunks_exact(v_len).enumerate() {
            self.prepare_modulated(vt, &mut state.tiles[t]);
            let a = &mut state.acts[0][t * p * d..(t + 1) * p * d];
            fill_rows_with(a, &m.bias);
            self.modulated_forward(&state.tiles[t], a);
        }
        relu(&mut state.acts[0]);
        for k in 0..later {
            let layer = pack
                .normalised_layer(cfg.modulated_layer + 1 + k)
                .expect("shared layer");
            let (input, rest) = state.acts.split_at_mut(k + 1);
            let last = k + 1 == later;
            let y: &mut [f32] = if last {
                out
            } else {
                rest[0].resize(rows * layer.outputs, 0.0);
                &mut rest[0]
            };
            fill_rows_with(y, &layer.bias);
            gemm_acc(
                rows,
                layer.inputs,
                layer.outputs,
                &input[k],
                &layer.weight,
                y,
            );
            if last {
                for x in y.iter_mut() {
                    *x += cfg.output_offset;
                }
                return;
            }
            relu(y);
        }
    }
}

/// What [`TileSynthesizer::forward`] keeps of a group of tiles.
#[derive(Debug, Default)]
pub(crate) struct ForwardState {
    /// The prepared modulated layer of every tile of the group.
    pub(crate) tiles: Vec<ModulatedTile>,
    /// Post-activation outputs of the modulated layer (`acts[0]`) and of every later
    /// hidden layer, `rows x width` each.
    pub(crate) acts: Vec<Vec<f32>>,
}

/// `gram += row rowᵀ` in f64 (`row` of length r, `gram` r x r).
fn accumulate_outer(row: &[f32], gram: &mut [f64]) {
    let r = row.len();
    for i in 0..r {
        let ri = f64::from(row[i]);
        for j in 0..r {
            gram[i * r + j] += ri * f64::from(row[j]);
        }
    }
}

/// `aᵀ G a` for `a` = column `o` of the `r x cols` row-major matrix `mat`.
fn quadratic_form(gram: &[f64], mat: &[f32], o: usize, cols: usize, r: usize) -> f64 {
    let mut sq = 0f64;
    for i in 0..r {
        let ai = f64::from(mat[i * cols + o]);
        for j in 0..r {
            sq += ai * gram[i * r + j] * f64::from(mat[j * cols + o]);
        }
    }
    sq
}

/// `1 / sqrt(sq)`, or 0 when the squared norm is not positive (spec/model-pack.md §4.2:
/// a zero column stays zero).
fn inverse_norm(sq: f64) -> f64 {
    if sq > 0.0 {
        1.0 / sq.sqrt()
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::synthetic::SyntheticPack;
    use crate::rng::SplitMix64;

    /// Plain-loop evaluation of one tile, in f64, straight from the stored (not
    /// pre-normalised) tensors: the definition the fast path must match.
    fn reference_tile(pack: &ModelPack, v: &[f32]) -> Vec<f64> {
        let c = pack.contents();
        let cfg = &c.config;
        let mut out = Vec::new();
        let norm = |w: &[f64], inputs: usize, outputs: usize, gain: Option<&[f32]>| {
            let mut w = w.to_vec();
            if cfg.weight_norm {
                for o in 0..outputs {
                    let n: f64 = (0..inputs)
                        .map(|i| w[i * outputs + o].powi(2))
                        .sum::<f64>()
                        .sqrt();
                    let g = gain.map_or(1.0, |g| f64::from(g[o]));
                    for i in 0..inputs {
                        w[i * outputs + o] = if n > 0.0 {
                            g * w[i * outputs + o] / n
                        } else {
                            0.0
                        };
                    }
                }
            }
            w
        };
        for s in 0..cfg.tile_samples() {
            let coords = tile_coords(s, cfg.tile_width, cfg.tile_height, cfg.coord_dim);
            let mut x: Vec<f64> = Vec::new();
            for sin in [false, true] {
                for &xa in &coords {
                    for &f in &c.frequencies {
                        let ph = std::f64::consts::PI * f64::from(f) * xa;
                        x.push(if sin { ph.sin() } else { ph.cos() });
                    }
                }
            }
            for l in 0..cfg.layers {
                let (inputs, outputs) = cfg.layer_shape(l);
                let (w, bias): (Vec<f64>, &[f32]) = if l == cfg.modulated_layer {
                    let m = &c.modulated;
                    let mut w = vec![0f64; inputs * outputs];
                    for i in 0..inputs {
                        for o in 0..outputs {
                            // Ŵ = U V (shared-input) or V U (instance-input), both
                            // row-major with the shapes of PackConfig::{u,v}_shape.
                            w[i * outputs + o] = (0..m.rank)
                                .map(|k| match cfg.orientation {
                                    Orientation::SharedInput => {
                                        f64::from(m.u[i * m.rank + k])
                                            * f64::from(v[k * outputs + o])
                                    }
                                    Orientation::InstanceInput => {
                                        f64::from(v[i * m.rank + k])
                                            * f64::from(m.u[k * outputs + o])
                                    }
                                })
                                .sum();
                        }
                    }
                    (norm(&w, inputs, outputs, m.gain.as_deref()), &m.bias)
                } else {
                    let layer = c.layers[l].as_ref().unwrap();
                    let w: Vec<f64> = layer.weight.iter().map(|&x| f64::from(x)).collect();
                    (
                        norm(&w, inputs, outputs, layer.gain.as_deref()),
                        &layer.bias,
                    )
                };
                let mut y: Vec<f64> = (0..outputs)
                    .map(|o| {
                        f64::from(bias[o])
                            + (0..inputs).map(|i| x[i] * w[i * outputs + o]).sum::<f64>()
                    })
                    .collect();
                if l + 1 < cfg.layers {
                    y.iter_mut().for_each(|v| *v = v.max(0.0));
                } else {
                    y.iter_mut()
                        .for_each(|v| *v += f64::from(cfg.output_offset));
                }
                x = y;
            }
            out.extend(x);
        }
        out
    }

    /// The pack `spec` describes, through its safetensors bytes as a reader sees it.
    fn load(spec: &SyntheticPack) -> ModelPack {
        ModelPack::from_safetensors(&spec.build().to_safetensors().unwrap()).unwrap()
    }

    fn check(spec: SyntheticPack, tiles: usize, threads: usize) {
        let pack = load(&spec);
        let synth = TileSynthesizer::new(&pack);
        let mut rng = SplitMix64(99);
        let v: Vec<f32> = (0..tiles * synth.v_len())
            .map(|_| rng.uniform(2.0))
            .collect();
        let mut out = vec![0f32; tiles * synth.outputs_per_tile()];
        synth.render(&v, &mut out, threads);
        let mut worst = 0f64;
        for t in 0..tiles {
            let want = reference_tile(&pack, &v[t * synth.v_len()..(t + 1) * synth.v_len()]);
            let got = &out[t * synth.outputs_per_tile()..(t + 1) * synth.outputs_per_tile()];
            for (g, w) in got.iter().zip(&want) {
                worst = worst.max((f64::from(*g) - w).abs());
            }
        }
        assert!(worst <= 1e-5, "{spec:?}: max abs error {worst}");
    }

    #[test]
    fn fast_path_matches_reference_image() {
        check(SyntheticPack::small_image(), 70, 2);
        let first_layer = SyntheticPack {
            modulated_layer: 0,
            tile_width: 5,
            tile_height: 3,
            ..SyntheticPack::small_image()
        };
        check(first_layer, 9, 1);
        let deep = SyntheticPack {
            layers: 6,
            modulated_layer: 3,
            rank: 1,
            ..SyntheticPack::small_image()
        };
        check(deep, 4, 3);
    }

    #[test]
    fn fast_path_matches_reference_with_gains() {
        use crate::pack::WeightGain;
        for gain in [WeightGain::Output, WeightGain::EveryLayer] {
            check(SyntheticPack::small_image().with_weight_gain(gain), 20, 2);
            check(
                SyntheticPack::small_audio()
                    .instance_input()
                    .with_weight_gain(gain),
                20,
                2,
            );
        }
        // The gain is applied: the pack differs from the one without gains.
        let plain = load(&SyntheticPack::small_audio().instance_input());
        let gained = load(
            &SyntheticPack::small_audio()
                .instance_input()
                .with_weight_gain(WeightGain::EveryLayer),
        );
        let v: Vec<f32> = SplitMix64(5).uniform_vec(plain.config().v_len(), 1.0);
        let (a, b) = (reference_tile(&plain, &v), reference_tile(&gained, &v));
        assert!(a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-3));
    }

    #[test]
    fn fast_path_matches_reference_instance_input() {
        check(SyntheticPack::small_image().instance_input(), 70, 2);
        // The first layer modulated: V is [2AK, r] = [32, 4].
        let first_layer = SyntheticPack {
            modulated_layer: 0,
            tile_width: 5,
            tile_height: 3,
            ..SyntheticPack::small_image().instance_input()
        };
        check(first_layer, 9, 1);
        let deep = SyntheticPack {
            layers: 6,
            modulated_layer: 3,
            rank: 1,
            ..SyntheticPack::small_image().instance_input()
        };
        check(deep, 4, 3);
        check(SyntheticPack::small_audio().instance_input(), 130, 2);
        check(SyntheticPack::representative_image().instance_input(), 5, 2);
    }

    #[test]
    fn fast_path_matches_reference_with_pre_width() {
        // Layers before the modulated one wider (24) or narrower (8) than the rest (16).
        for pre_width in [24, 8] {
            check(
                SyntheticPack::small_image()
                    .instance_input()
                    .with_pre_width(pre_width),
                30,
                2,
            );
            check(
                SyntheticPack::small_image().with_pre_width(pre_width),
                30,
                2,
            );
            let deep = SyntheticPack {
                layers: 6,
                modulated_layer: 3,
                rank: 2,
                ..SyntheticPack::small_image()
                    .instance_input()
                    .with_pre_width(pre_width)
            };
            check(deep, 4, 3);
            check(
                SyntheticPack::small_audio()
                    .instance_input()
                    .with_pre_width(pre_width),
                40,
                2,
            );
        }
    }

    #[test]
    fn instance_input_v_acts_on_the_input_side() {
        // Two Vs that differ only in one row (one input of the modulated layer) give
        // different tiles; with shared-input, h·U is common to all tiles, so such a
        // per-input change is impossible to express. Also checks V's shape.
        let pack = load(&SyntheticPack::small_image().instance_input());
        let cfg = pack.config();
        assert_eq!(cfg.v_shape(), (16, 4));
        assert_eq!(cfg.u_shape(), (4, 16));
        let synth = TileSynthesizer::new(&pack);
        let mut rng = SplitMix64(3);
        let a: Vec<f32> = rng.uniform_vec(synth.v_len(), 1.0);
        let mut b = a.clone();
        for x in &mut b[5 * 4..6 * 4] {
            *x += 0.5;
        }
        let mut out = vec![0f32; 2 * synth.outputs_per_tile()];
        synth.render(&[a, b].concat(), &mut out, 1);
        let (ta, tb) = out.split_at(synth.outputs_per_tile());
        assert!(ta.iter().zip(tb).any(|(x, y)| (x - y).abs() > 1e-4));
    }

    #[test]
    fn macs_per_sample_counts_both_orientations() {
        let shared = load(&SyntheticPack::representative_image());
        let instance = load(&SyntheticPack::representative_image().instance_input());
        // Width 128, rank 8, 5 layers: layers 2, 3 (128x128) and 4 (128x3) after the
        // modulated layer 1.
        let later = (2 * 128 * 128 + 128 * 3) as u64;
        assert_eq!(
            TileSynthesizer::new(&shared).macs_per_sample(),
            8 * 128 + later
        );
        assert_eq!(
            TileSynthesizer::new(&instance).macs_per_sample(),
            8 * (128 + 128) + later
        );
    }

    #[test]
    fn macs_per_sample_count_the_pre_width_once() {
        // Layer 0 is per pack: a wider one adds only r · in_m to the modulated layer.
        let pack = load(
            &SyntheticPack::representative_image()
                .instance_input()
                .with_pre_width(512),
        );
        let later = (2 * 128 * 128 + 128 * 3) as u64;
        assert_eq!(
            TileSynthesizer::new(&pack).macs_per_sample(),
            8 * (512 + 128) + later
        );
    }

    #[test]
    fn fast_path_matches_reference_audio() {
        check(SyntheticPack::small_audio(), 130, 2);
    }

    #[test]
    fn fast_path_matches_reference_representative_pack() {
        check(SyntheticPack::representative_image(), 5, 2);
    }

    #[test]
    fn zero_v_gives_bias_only_modulated_layer() {
        let pack = load(&SyntheticPack::small_image());
        let synth = TileSynthesizer::new(&pack);
        let v = vec![0f32; synth.v_len()];
        let mut out = vec![f32::NAN; synth.outputs_per_tile()];
        synth.render(&v, &mut out, 1);
        assert!(out.iter().all(|x| x.is_finite()));
        // With V = 0 the output is the same at every sample.
        assert!(out.chunks_exact(3).all(|px| px == &out[..3]));
    }
}
