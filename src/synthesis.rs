//! Synthesis: evaluating the pack's MLP on every tile given its V (spec/model-pack.md §4,
//! spec/bitstream.md §8).
//!
//! The coordinate grid is the same for every tile, so the Fourier features, the layers
//! before the modulated one and their product with U (`hU`, `samples x rank`) are
//! computed once per pack in [`TileSynthesizer::new`]. Per tile the modulated layer is
//! then `hU V'` with `V'` the column-normalised V (r x d MACs per sample), and the later
//! shared layers run as one large GEMM over a group of tiles.

use crate::gemm::gemm_acc;
use crate::pack::ModelPack;

/// Rows (samples) per work item: big enough for efficient GEMMs, small enough that the
/// activations stay in cache.
const TARGET_ROWS_PER_GROUP: usize = 4096;

/// Precomputed, instance-independent state for synthesising tiles with one pack.
#[derive(Debug, Clone)]
pub struct TileSynthesizer<'p> {
    pack: &'p ModelPack,
    /// Samples per tile.
    samples: usize,
    /// `h U`, `samples x rank` row-major.
    hu: Vec<f32>,
    /// `U^T U`, `rank x rank`, for the column norms of `U V`.
    gram: Vec<f64>,
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

fn relu(x: &mut [f32]) {
    for v in x {
        *v = v.max(0.0);
    }
}

fn fill_rows_with(buf: &mut [f32], row: &[f32]) {
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
        let mut h = vec![0f32; samples * fdim];
        for (s, row) in h.chunks_exact_mut(fdim).enumerate() {
            let coords = tile_coords(s, cfg.tile_width, cfg.tile_height, cfg.coord_dim);
            fourier_features(&coords, &pack.contents().frequencies, row);
        }
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
        let mut hu = vec![0f32; samples * m.rank];
        gemm_acc(samples, m.inputs, m.rank, &h, &m.u, &mut hu);
        let mut gram = vec![0f64; m.rank * m.rank];
        for row in m.u.chunks_exact(m.rank) {
            for i in 0..m.rank {
                for j in 0..m.rank {
                    gram[i * m.rank + j] += f64::from(row[i]) * f64::from(row[j]);
                }
            }
        }
        TileSynthesizer {
            pack,
            samples,
            hu,
            gram,
        }
    }

    /// `h U`, `samples x rank` row-major: the modulated layer's input times U.
    pub(crate) fn hu(&self) -> &[f32] {
        &self.hu
    }

    /// `U^T U`, `rank x rank`.
    pub(crate) fn gram(&self) -> &[f64] {
        &self.gram
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

    /// Elements of one V (rank x width).
    pub fn v_len(&self) -> usize {
        let c = self.pack.config();
        c.rank * c.width
    }

    /// The factor `1 / ||U v_o||` that weight normalisation applies to column `o` of V
    /// (computed from `U^T U` in f64), 0 for a zero column, 1 without weight
    /// normalisation (spec/model-pack.md §4.2).
    pub(crate) fn column_scale(&self, v: &[f32], o: usize) -> f64 {
        let cfg = self.pack.config();
        if !cfg.weight_norm {
            return 1.0;
        }
        let (r, d) = (cfg.rank, cfg.width);
        let mut sq = 0f64;
        for i in 0..r {
            let vi = f64::from(v[i * d + o]);
            for j in 0..r {
                sq += vi * self.gram[i * r + j] * f64::from(v[j * d + o]);
            }
        }
        if sq > 0.0 {
            1.0 / sq.sqrt()
        } else {
            0.0
        }
    }

    /// `V' = V / ||U V||_col`: V with each column scaled so that the corresponding
    /// column of `U V` has unit norm (spec/model-pack.md §4.2). A zero column stays zero.
    pub fn normalised_v(&self, v: &[f32], out: &mut [f32]) {
        let cfg = self.pack.config();
        let (r, d) = (cfg.rank, cfg.width);
        out.copy_from_slice(v);
        if !cfg.weight_norm {
            return;
        }
        for o in 0..d {
            let scale = self.column_scale(v, o) as f32;
            for i in 0..r {
                out[i * d + o] *= scale;
            }
        }
    }

    /// Synthesises `tiles` tiles. `v` holds each tile's dequantised V (rank x width,
    /// row-major), tile after tile; `out` receives each tile's samples, sample-major with
    /// the output channels interleaved. Uses up to `threads` threads (0: all cores).
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
            |(v_group, out_group), scratch: &mut Scratch| {
                self.render_group(v_group, out_group, scratch)
            },
        );
    }

    fn render_group(&self, v: &[f32], out: &mut [f32], scratch: &mut Scratch) {
        let pack = self.pack;
        let cfg = pack.config();
        let (r, d, p) = (cfg.rank, cfg.width, self.samples);
        let tiles = v.len() / (r * d);
        let rows = tiles * p;
        let m = &pack.contents().modulated;

        scratch.a.resize(rows * d, 0.0);
        scratch.v_norm.resize(r * d, 0.0);
        for (t, vt) in v.chunks_exact(r * d).enumerate() {
            self.normalised_v(vt, &mut scratch.v_norm);
            let a = &mut scratch.a[t * p * d..(t + 1) * p * d];
            fill_rows_with(a, &m.bias);
            gemm_acc(p, r, d, &self.hu, &scratch.v_norm, a);
        }
        relu(&mut scratch.a[..rows * d]);

        let mut width = d;
        for l in cfg.modulated_layer + 1..cfg.layers {
            let layer = pack.normalised_layer(l).expect("shared layer");
            let last = l + 1 == cfg.layers;
            let b: &mut [f32] = if last {
                &mut out[..rows * layer.outputs]
            } else {
                scratch.b.resize(rows * layer.outputs, 0.0);
                &mut scratch.b[..rows * layer.outputs]
            };
            fill_rows_with(b, &layer.bias);
            gemm_acc(
                rows,
                width,
                layer.outputs,
                &scratch.a[..rows * width],
                &layer.weight,
                b,
            );
            if last {
                let offset = cfg.output_offset;
                for x in b.iter_mut() {
                    *x += offset;
                }
            } else {
                relu(b);
                std::mem::swap(&mut scratch.a, &mut scratch.b);
            }
            width = layer.outputs;
        }
    }
}

#[derive(Default)]
struct Scratch {
    a: Vec<f32>,
    b: Vec<f32>,
    v_norm: Vec<f32>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::synthetic::{SplitMix64, SyntheticPack};

    /// Plain-loop evaluation of one tile, in f64, straight from the stored (not
    /// pre-normalised) tensors: the definition the fast path must match.
    fn reference_tile(pack: &ModelPack, v: &[f32]) -> Vec<f64> {
        let c = pack.contents();
        let cfg = &c.config;
        let mut out = Vec::new();
        let norm = |w: &[f64], inputs: usize, outputs: usize| -> Vec<f64> {
            let mut w = w.to_vec();
            if cfg.weight_norm {
                for o in 0..outputs {
                    let n: f64 = (0..inputs)
                        .map(|i| w[i * outputs + o].powi(2))
                        .sum::<f64>()
                        .sqrt();
                    for i in 0..inputs {
                        w[i * outputs + o] = if n > 0.0 { w[i * outputs + o] / n } else { 0.0 };
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
                            w[i * outputs + o] = (0..m.rank)
                                .map(|k| {
                                    f64::from(m.u[i * m.rank + k]) * f64::from(v[k * outputs + o])
                                })
                                .sum();
                        }
                    }
                    (norm(&w, inputs, outputs), &m.bias)
                } else {
                    let layer = c.layers[l].as_ref().unwrap();
                    let w: Vec<f64> = layer.weight.iter().map(|&x| f64::from(x)).collect();
                    (norm(&w, inputs, outputs), &layer.bias)
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

    fn check(spec: SyntheticPack, tiles: usize, threads: usize) {
        let pack = ModelPack::from_safetensors(&spec.build().to_safetensors().unwrap()).unwrap();
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
    fn fast_path_matches_reference_audio() {
        check(SyntheticPack::small_audio(), 130, 2);
    }

    #[test]
    fn fast_path_matches_reference_representative_pack() {
        check(SyntheticPack::representative_image(), 5, 2);
    }

    #[test]
    fn zero_v_gives_bias_only_modulated_layer() {
        let pack = ModelPack::from_safetensors(
            &SyntheticPack::small_image()
                .build()
                .to_safetensors()
                .unwrap(),
        )
        .unwrap();
        let synth = TileSynthesizer::new(&pack);
        let v = vec![0f32; synth.v_len()];
        let mut out = vec![f32::NAN; synth.outputs_per_tile()];
        synth.render(&v, &mut out, 1);
        assert!(out.iter().all(|x| x.is_finite()));
        // With V = 0 the output is the same at every sample.
        assert!(out.chunks_exact(3).all(|px| px == &out[..3]));
    }
}
