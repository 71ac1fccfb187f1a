//! Optimising V by gradient: the meta-learned CAVIA inner steps (METHOD.md, the seed's
//! Algorithm 1) and the quantisation-aware refinement that `effort` buys.
//!
//! Refinement minimises, per tile, the objective the pack was trained for:
//! `mse(synthesis(round(V / step) * step)) + lambda * bits / samples`, with `bits`
//! the code length of the rounded V under the level's own tables and `samples` the
//! tile's real (unpadded) samples. The distortion's gradient is taken at the rounded V
//! and applied to the continuous V (straight-through); the rate's gradient is the slope
//! of the code length between the two integers around `V / step`. Every iterate is
//! evaluated exactly as it will be coded, and each tile keeps the best one seen, so
//! refinement never returns a worse tile than it started from.

use crate::entropy::VModel;

use super::network::DistortionModel;
use super::tiling::Tiles;

/// Adam's moment decay rates (Kingma and Ba's defaults) and epsilon.
pub const BETA1: f64 = 0.9;
/// See [`BETA1`].
pub const BETA2: f64 = 0.999;
/// See [`BETA1`].
pub const ADAM_EPS: f64 = 1e-12;
/// Learning rate at the first and the last refinement step, in units of the
/// quantisation step: large enough to move values across rounding boundaries early,
/// small enough to settle late.
pub const LR_START: f64 = 0.5;
/// See [`LR_START`].
pub const LR_END: f64 = 0.05;

/// The learning rate of refinement step `it` of `iterations`: cosine decay from
/// [`LR_START`] to [`LR_END`] quantisation steps.
pub fn learning_rate(it: usize, iterations: usize, step: f32) -> f64 {
    let frac = it as f64 / (iterations.max(2) - 1) as f64;
    f64::from(step)
        * (LR_END + 0.5 * (LR_START - LR_END) * (1.0 + (std::f64::consts::PI * frac).cos()))
}

/// CAVIA inner loop: `V <- V - eps ||V||_F^2 grad_V mse`, `steps` times, on every tile.
pub(crate) fn inner_steps(
    model: &DistortionModel<'_>,
    tiles: &Tiles,
    v: &mut [f32],
    steps: usize,
    eps: f64,
    threads: usize,
) {
    let v_len = model.synthesizer().v_len();
    let mut grad = vec![0f32; v.len()];
    let mut mse = vec![0f64; tiles.count];
    for _ in 0..steps {
        model.evaluate(v, tiles, Some(&mut grad), &mut mse, threads);
        for (vt, gt) in v.chunks_exact_mut(v_len).zip(grad.chunks_exact(v_len)) {
            let norm2: f64 = vt.iter().map(|&x| f64::from(x) * f64::from(x)).sum();
            let scale = eps * norm2;
            for (x, &g) in vt.iter_mut().zip(gt) {
                *x = (f64::from(*x) - scale * f64::from(g)) as f32;
            }
        }
    }
}

/// The rate side of the objective: code lengths under one quality level's tables.
#[derive(Debug, Clone, Copy)]
pub struct RateModel<'a> {
    model: &'a VModel,
}

impl<'a> RateModel<'a> {
    /// The rate model of one level's coding model.
    pub fn new(model: &'a VModel) -> RateModel<'a> {
        RateModel { model }
    }

    /// Bits of one tile's quantised V.
    pub fn bits(&self, q: &[i32]) -> f64 {
        let models = self.model.symbol_models();
        q.iter()
            .zip(self.model.contexts())
            .map(|(&v, &c)| models[usize::from(c)].code_length(v))
            .sum()
    }

    /// Gradient of the rate term with respect to V for one tile (`v`, continuous),
    /// in bits per unit of V: the slope of the code length between the integers either
    /// side of `v / step`.
    pub fn gradient(&self, v: &[f32], step: f32, out: &mut [f64]) {
        for ((o, &x), &c) in out.iter_mut().zip(v).zip(self.model.contexts()) {
            *o = self.slope(c, x / step) / f64::from(step);
        }
    }

    /// Slope of the code length at `u = v / step` with respect to `u`: the difference
    /// between the code lengths of the integers either side.
    fn slope(&self, context: u16, u: f32) -> f64 {
        let m = &self.model.symbol_models()[usize::from(context)];
        let lo = u.floor().clamp(i32::MIN as f32, (i32::MAX - 1) as f32) as i32;
        m.code_length(lo + 1) - m.code_length(lo)
    }
}

/// Rounds `v / step` to the nearest integer (halves away from zero), saturating.
pub fn quantise(v: &[f32], step: f32, q: &mut [i32]) {
    for (q, &x) in q.iter_mut().zip(v) {
        *q = (x / step).round() as i32;
    }
}

/// Quantisation-aware refinement of V at one quality level; `v` holds the starting V
/// and receives, per tile, the best quantised V seen (as integers in `q`). `progress`
/// is called after each iteration with the number done.
#[allow(clippy::too_many_arguments)]
pub(crate) fn refine(
    model: &DistortionModel<'_>,
    rate: &RateModel<'_>,
    tiles: &Tiles,
    v: &mut [f32],
    q: &mut [i32],
    step: f32,
    lambda: f64,
    iterations: usize,
    threads: usize,
    progress: &mut dyn FnMut(usize),
) {
    let v_len = model.synthesizer().v_len();
    let n = v.len();
    let contexts = rate.model.contexts();
    let real: Vec<f64> = tiles
        .weights
        .chunks_exact(tiles.samples)
        .map(|w| w.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0))
        .collect();
    let mut best = vec![f64::INFINITY; tiles.count];
    let mut q_now = vec![0i32; n];
    let mut v_hat = vec![0f32; n];
    let mut grad = vec![0f32; n];
    let mut mse = vec![0f64; tiles.count];
    let mut m1 = vec![0f64; n];
    let mut m2 = vec![0f64; n];
    for it in 0..=iterations {
        quantise(v, step, &mut q_now);
        for (x, &k) in v_hat.iter_mut().zip(&q_now) {
            *x = k as f32 * step;
        }
        let want_grad = it < iterations;
        model.evaluate(
            &v_hat,
            tiles,
            want_grad.then_some(&mut grad[..]),
            &mut mse,
            threads,
        );
        for t in 0..tiles.count {
            let span = t * v_len..(t + 1) * v_len;
            let loss = mse[t] + lambda * rate.bits(&q_now[span.clone()]) / real[t];
            if loss < best[t] {
                best[t] = loss;
                q[span.clone()].copy_from_slice(&q_now[span]);
            }
        }
        if !want_grad {
            break;
        }
        let lr = learning_rate(it, iterations, step);
        let t = (it + 1) as i32;
        let (c1, c2) = (1.0 - BETA1.powi(t), 1.0 - BETA2.powi(t));
        for (t_idx, chunk) in (0..n).step_by(v_len).enumerate() {
            let rate_weight = lambda / real[t_idx] / f64::from(step);
            for i in chunk..chunk + v_len {
                let g =
                    f64::from(grad[i]) + rate_weight * rate.slope(contexts[i - chunk], v[i] / step);
                m1[i] = BETA1 * m1[i] + (1.0 - BETA1) * g;
                m2[i] = BETA2 * m2[i] + (1.0 - BETA2) * g * g;
                let update = lr * (m1[i] / c1) / ((m2[i] / c2).sqrt() + ADAM_EPS);
                v[i] = (f64::from(v[i]) - update) as f32;
            }
        }
        progress(it + 1);
    }
    for (x, &k) in v.iter_mut().zip(q.iter()) {
        *x = k as f32 * step;
    }
}
