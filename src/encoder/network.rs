//! The synthesis network differentiated with respect to V: the distortion of every tile
//! and its gradient, derived by hand through the layers after the modulated one and
//! through the modulated layer and its weight normalisation. The modulated layer's
//! forward pass and its backward pass (both orientations, derivation in
//! `TileSynthesizer::modulated_backward`) are the synthesiser's own, so decoding and
//! this gradient evaluate one formula.

use crate::gemm::{gemm_acc_op, Operand};
use crate::synthesis::{ForwardState, ModulatedGradScratch, TileSynthesizer};

use super::tiling::Tiles;

/// Rows (samples) per work item, as in synthesis.
const TARGET_ROWS_PER_GROUP: usize = 4096;

/// Distortion and gradient of V for a pack (see the module documentation).
#[derive(Debug, Clone)]
pub struct DistortionModel<'p> {
    synth: TileSynthesizer<'p>,
}

#[derive(Default)]
struct Scratch {
    /// The forward pass's prepared tiles and hidden activations.
    fwd: ForwardState,
    work: ModulatedGradScratch,
    out: Vec<f32>,
    g: Vec<f32>,
    g_next: Vec<f32>,
}

impl<'p> DistortionModel<'p> {
    /// Wraps a synthesiser (which holds the per-pack precomputation).
    pub fn new(synth: TileSynthesizer<'p>) -> DistortionModel<'p> {
        DistortionModel { synth }
    }

    /// The synthesiser.
    pub fn synthesizer(&self) -> &TileSynthesizer<'p> {
        &self.synth
    }

    /// Mean squared error of every tile (over its weighted samples and all channels) for
    /// V `v` (tile after tile, each in [`crate::pack::PackConfig::v_shape`]), into `mse`, and, when `grad` is given,
    /// the gradient of each tile's error with respect to its own V. Uses up to `threads`
    /// threads (0: all cores).
    pub fn evaluate(
        &self,
        v: &[f32],
        tiles: &Tiles,
        mut grad: Option<&mut [f32]>,
        mse: &mut [f64],
        threads: usize,
    ) {
        let v_len = self.synth.v_len();
        let p = self.synth.samples_per_tile();
        let c = tiles.channels;
        assert_eq!(v.len(), tiles.count * v_len);
        assert_eq!(mse.len(), tiles.count);
        assert_eq!(tiles.samples, p);
        if let Some(g) = &grad {
            assert_eq!(g.len(), v.len());
        }
        if tiles.count == 0 {
            return;
        }
        let group = (TARGET_ROWS_PER_GROUP / p).max(1);
        let grad_chunks: Box<dyn Iterator<Item = Option<&mut [f32]>> + Send> = match grad.take() {
            Some(g) => Box::new(g.chunks_mut(group * v_len).map(Some)),
            None => Box::new(std::iter::repeat_with(|| None)),
        };
        crate::parallel::for_each_group(
            v.chunks(group * v_len)
                .zip(tiles.targets.chunks(group * p * c))
                .zip(tiles.weights.chunks(group * p))
                .zip(mse.chunks_mut(group))
                .zip(grad_chunks),
            tiles.count.div_ceil(group),
            threads,
            |((((v, target), weight), mse), grad), scratch: &mut Scratch| {
                self.group(v, target, weight, c, grad, mse, scratch)
            },
        );
    }

    #[allow(clippy::too_many_arguments)]
    fn group(
        &self,
        v: &[f32],
        target: &[f32],
        weight: &[f32],
        channels: usize,
        grad: Option<&mut [f32]>,
        mse: &mut [f64],
        s: &mut Scratch,
    ) {
        let pack = self.synth.pack();
        let cfg = pack.config();
        let (d, p, v_len) = (cfg.width, self.synth.samples_per_tile(), cfg.v_len());
        let tiles = v.len() / v_len;
        let rows = tiles * p;
        let later = cfg.layers - cfg.modulated_layer - 1;
        assert_eq!(
            cfg.out_channels, channels,
            "tiles must carry the pack's channels"
        );

        // Forward: the synthesiser's own pass, keeping what the backward pass needs.
        s.out.resize(rows * channels, 0.0);
        self.synth.forward(v, &mut s.fwd, &mut s.out);

        // Weighted squared error per tile, and its gradient with respect to the outputs.
        let want_grad = grad.is_some();
        if want_grad {
            s.g.clear();
            s.g.resize(rows * channels, 0.0);
        }
        for t in 0..tiles {
            let w = &weight[t * p..(t + 1) * p];
            let total: f64 = w.iter().map(|&x| f64::from(x)).sum();
            if total <= 0.0 {
                mse[t] = 0.0;
                continue;
            }
            let norm = 1.0 / (total * channels as f64);
            let mut sum = 0f64;
            for (i, &ws) in w.iter().enumerate() {
                let row = (t * p + i) * channels;
                for ch in 0..channels {
                    let e = s.out[row + ch] - target[row + ch];
                    sum += f64::from(ws) * f64::from(e) * f64::from(e);
                    if want_grad {
                        s.g[row + ch] = (2.0 * norm * f64::from(ws) * f64::from(e)) as f32;
                    }
                }
            }
            mse[t] = sum * norm;
        }
        let Some(grad) = grad else { return };

        // Backward through the later layers: g <- (g W^T) * [activation > 0].
        for k in (0..later).rev() {
            let l = cfg.modulated_layer + 1 + k;
            let layer = pack.normalised_layer(l).expect("shared layer");
            s.g_next.clear();
            s.g_next.resize(rows * layer.inputs, 0.0);
            gemm_acc_op(
                rows,
                layer.outputs,
                layer.inputs,
                Operand::Plain(&s.g),
                Operand::Transposed(&layer.weight),
                &mut s.g_next,
            );
            for (g, &a) in s.g_next.iter_mut().zip(&s.fwd.acts[k]) {
                if a <= 0.0 {
                    *g = 0.0;
                }
            }
            std::mem::swap(&mut s.g, &mut s.g_next);
        }

        // The modulated layer and its weight normalisation.
        for (t, (vt, gt)) in v
            .chunks_exact(v_len)
            .zip(grad.chunks_exact_mut(v_len))
            .enumerate()
        {
            self.synth.modulated_backward(
                vt,
                &s.fwd.tiles[t],
                &s.g[t * p * d..(t + 1) * p * d],
                gt,
                &mut s.work,
            );
        }
    }
}
