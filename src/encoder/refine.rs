//! Optimising V by gradient: the meta-learned CAVIA inner steps (docs/method.md §5, the seed's
//! Algorithm 1) and the quantisation-aware refinement that `effort` buys.
//!
//! Refinement must buy quality at the same rate: a level's rate is what the level
//! promises. So each tile minimises its distortion subject to its bits not exceeding
//! the bits of its starting V, by a Lagrangian `mse + mu * bits / samples` whose
//! multiplier `mu` adapts per tile (it grows while the tile is over its budget and
//! shrinks while it is under), starting from the lambda the level was trained for
//! (`encoder.lambda`). `mse` is the distortion of `synthesis(round(V / step) * step)`
//! over the tile's real (unpadded) samples and `bits` the code length of the rounded V
//! under the level's own tables. The distortion's gradient is taken at the rounded V
//! and applied to the continuous V (straight-through); the rate's gradient is the slope
//! of the code length between the two integers around `V / step`. Every iterate is
//! evaluated exactly as it will be coded, and each tile keeps the iterate of least
//! distortion within its budget (its start is one), so refinement never returns a tile
//! of more bits or more distortion than it started with.

use crate::entropy::{PayloadCoding, SymbolModel, TileGrid, VModel};

use super::network::DistortionModel;
use super::tiling::Tiles;

/// Adam's moment decay rates (Kingma and Ba's defaults) and epsilon.
pub const BETA1: f64 = 0.9;
/// See [`BETA1`].
pub const BETA2: f64 = 0.999;
/// See [`BETA1`].
pub const ADAM_EPS: f64 = 1e-12;
/// Factors by which a tile's multiplier grows while it is over its bit budget and
/// shrinks while it is within it.
pub const MU_UP: f64 = 1.5;
/// See [`MU_UP`].
pub const MU_DOWN: f64 = 1.0 / 1.2;
/// Smallest multiplier, relative to the starting one (a level trained with lambda 0
/// starts from this absolute value).
pub const MU_FLOOR: f64 = 1e-6;

/// Learning rate at the first and the last refinement step, in units of the
/// quantisation step ([`lr_unit`]): large enough to move values across rounding
/// boundaries early, small enough to settle late.
pub const LR_START: f64 = 0.3;
/// See [`LR_START`].
pub const LR_END: f64 = 0.03;
/// Largest unit of the learning rate, in units of V: the unit is the quantisation step
/// up to this value and this value above it.
///
/// Why a cap: how far V must move to buy quality does not grow with a coarse level's
/// step. Measured on 7 held-out photos at effort 20 (docs/experiments.md, "Refinement's
/// learning rate"), a unit of the step itself (1.2 units of V per iteration at the
/// coarsest level) gave +0.2 dB over effort 0 at 0.5 bpp; capped at one unit of V,
/// +0.5 dB, and +0.6 dB instead of none at the coarsest level, with the fine levels
/// (steps below 1) unchanged.
pub const LR_UNIT_CAP: f64 = 1.0;

/// The unit of refinement's learning rate at a level of quantisation step `step`: the
/// step, capped at [`LR_UNIT_CAP`].
pub fn lr_unit(step: f32) -> f64 {
    f64::from(step).min(LR_UNIT_CAP)
}

/// The learning rate of refinement step `it` of `iterations`: cosine decay from
/// [`LR_START`] to [`LR_END`] units of [`lr_unit`].
pub fn learning_rate(it: usize, iterations: usize, step: f32) -> f64 {
    let frac = it as f64 / (iterations.max(2) - 1) as f64;
    lr_unit(step)
        * (LR_END + 0.5 * (LR_START - LR_END) * (1.0 + (std::f64::consts::PI * frac).cos()))
}

/// How one CAVIA inner step moves V (spec/model-pack.md §4.3, `encoder.meta.norm_scaled`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InnerStepRule {
    /// `V <- V - eps ||V||_F^2 grad_V mse`: the step does not depend on V's scale, which
    /// weight normalisation makes irrelevant to the output (docs/method.md §5).
    NormScaled,
    /// `V <- V - eps grad_V mse`: for packs without weight normalisation, where V's
    /// scale matters and a V0 near zero must still be able to move.
    Plain,
}

/// CAVIA inner loop: `steps` steps of `rule` on every tile.
pub(crate) fn inner_steps(
    model: &DistortionModel<'_>,
    tiles: &Tiles,
    v: &mut [f32],
    steps: usize,
    eps: f64,
    rule: InnerStepRule,
    threads: usize,
) {
    let v_len = model.synthesizer().v_len();
    let mut grad = vec![0f32; v.len()];
    let mut mse = vec![0f64; tiles.count];
    for _ in 0..steps {
        model.evaluate(v, tiles, Some(&mut grad), &mut mse, threads);
        for (vt, gt) in v.chunks_exact_mut(v_len).zip(grad.chunks_exact(v_len)) {
            let scale = match rule {
                InnerStepRule::NormScaled => {
                    eps * vt.iter().map(|&x| f64::from(x) * f64::from(x)).sum::<f64>()
                }
                InnerStepRule::Plain => eps,
            };
            for (x, &g) in vt.iter_mut().zip(gt) {
                *x = (f64::from(*x) - scale * f64::from(g)) as f32;
            }
        }
    }
}

/// The rate side of the objective: code lengths under one quality level's tables, as
/// the file will code them (spec/bitstream.md §7.2, §7.5).
#[derive(Debug, Clone, Copy)]
pub struct RateModel<'a> {
    model: &'a VModel,
    coding: PayloadCoding,
    grid: TileGrid,
}

impl<'a> RateModel<'a> {
    /// The rate model of one level's coding model, every element with its own table
    /// ([`PayloadCoding::PerElement`]).
    pub fn new(model: &'a VModel) -> RateModel<'a> {
        RateModel {
            model,
            coding: PayloadCoding::PerElement,
            grid: TileGrid {
                columns: 1,
                rows: 0,
            },
        }
    }

    /// The rate model of a file coded with `coding` over the tiles of `grid`. With
    /// neighbour contexts, the code length of a tile depends on its left and upper
    /// neighbours, which the methods read from the values of all tiles (`q`).
    pub fn for_file(model: &'a VModel, coding: PayloadCoding, grid: TileGrid) -> RateModel<'a> {
        RateModel {
            model,
            coding,
            grid,
        }
    }

    /// Bits of tile `t`'s quantised V `tile`, its neighbours read from `q` (all
    /// tiles' values; unused per element).
    pub fn bits(&self, q: &[i32], t: usize, tile: &[i32]) -> f64 {
        self.model.tile_bits(self.coding, self.grid, q, t, tile)
    }

    /// Gradient of the rate term with respect to V for tile `t` (`v`, continuous),
    /// in bits per unit of V: the slope of the code length between the integers either
    /// side of `v / step`, under the tables the neighbours in `q` select. (The tile's
    /// own effect on the contexts of the tiles to its right and below is not part of
    /// it.)
    pub fn gradient(&self, v: &[f32], step: f32, q: &[i32], t: usize, out: &mut [f64]) {
        let models = self.model.tile_models(self.coding, self.grid, q, t);
        for ((o, &x), m) in out.iter_mut().zip(v).zip(models) {
            *o = slope(m, x / step) / f64::from(step);
        }
    }
}

/// Slope of a model's code length at `u = v / step` with respect to `u`: the
/// difference between the code lengths of the integers either side.
fn slope(m: &SymbolModel, u: f32) -> f64 {
    let lo = u.floor().clamp(i32::MIN as f32, (i32::MAX - 1) as f32) as i32;
    m.code_length(lo + 1) - m.code_length(lo)
}

/// Rounds `v / step` to the nearest integer (halves away from zero), saturating.
pub fn quantise(v: &[f32], step: f32, q: &mut [i32]) {
    for (q, &x) in q.iter_mut().zip(v) {
        *q = (x / step).round() as i32;
    }
}

/// Per-tile bookkeeping of refinement (module documentation): each tile's bit budget
/// (the bits of its first iterate), its multiplier and its least distortion so far.
/// Shared by the CPU encoder and other backends so that they follow one rule.
#[derive(Debug, Clone)]
pub struct TileBudgets {
    budget: Vec<f64>,
    mu: Vec<f64>,
    best: Vec<f64>,
    real: Vec<f64>,
    floor: f64,
}

impl TileBudgets {
    /// Budgets for tiles of `samples` samples with these per-sample weights
    /// ([`Tiles::weights`]), multipliers starting at `lambda`.
    pub fn new(weights: &[f32], samples: usize, lambda: f64) -> TileBudgets {
        let count = weights.len() / samples;
        let real = weights
            .chunks_exact(samples)
            .map(|w| w.iter().map(|&x| f64::from(x)).sum::<f64>().max(1.0))
            .collect();
        let floor = if lambda > 0.0 {
            lambda * MU_FLOOR
        } else {
            MU_FLOOR
        };
        TileBudgets {
            budget: vec![f64::NAN; count],
            mu: vec![lambda.max(floor); count],
            best: vec![f64::INFINITY; count],
            real,
            floor,
        }
    }

    /// Records tile `t`'s iterate of distortion `mse` and `bits`; true when it is the
    /// best within budget so far (the caller keeps it). The first iterate sets the
    /// budget.
    pub fn observe(&mut self, t: usize, mse: f64, bits: f64) -> bool {
        if self.budget[t].is_nan() {
            self.budget[t] = bits;
            self.best[t] = mse;
            return true;
        }
        let improved = bits <= self.budget[t] && mse < self.best[t];
        if improved {
            self.best[t] = mse;
        }
        self.mu[t] = if bits > self.budget[t] {
            self.mu[t] * MU_UP
        } else {
            (self.mu[t] * MU_DOWN).max(self.floor)
        };
        improved
    }

    /// The weight of tile `t`'s rate gradient (bits per unit of V) in its Lagrangian.
    pub fn rate_weight(&self, t: usize) -> f64 {
        self.mu[t] / self.real[t]
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
    let mut budgets = TileBudgets::new(&tiles.weights, tiles.samples, lambda);
    let mut q_now = vec![0i32; n];
    let mut v_hat = vec![0f32; n];
    let mut grad = vec![0f32; n];
    let mut rate_grad = vec![0f64; v_len];
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
        for (t, &m) in mse.iter().enumerate() {
            let span = t * v_len..(t + 1) * v_len;
            // Neighbours are read from the kept values `q`: the tiles before `t` have
            // already been updated in this pass, as a decoder will see them.
            if budgets.observe(t, m, rate.bits(q, t, &q_now[span.clone()])) {
                q[span.clone()].copy_from_slice(&q_now[span]);
            }
        }
        if !want_grad {
            break;
        }
        let lr = learning_rate(it, iterations, step);
        let k = (it + 1) as i32;
        let (c1, c2) = (1.0 - BETA1.powi(k), 1.0 - BETA2.powi(k));
        for t in 0..tiles.count {
            let span = t * v_len..(t + 1) * v_len;
            rate.gradient(&v[span.clone()], step, q, t, &mut rate_grad);
            let weight = budgets.rate_weight(t);
            for (j, i) in span.enumerate() {
                let g = f64::from(grad[i]) + weight * rate_grad[j];
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

#[cfg(test)]
mod tests {
    use super::*;

    /// One tile of 4 samples, 3 of them real (weight 1), multiplier starting at 0.5.
    fn one_tile() -> TileBudgets {
        TileBudgets::new(&[1.0, 1.0, 1.0, 0.0], 4, 0.5)
    }

    #[test]
    fn the_first_iterate_sets_the_budget_and_is_kept() {
        let mut b = one_tile();
        assert!(b.observe(0, 10.0, 100.0));
        assert_eq!(
            b.rate_weight(0),
            0.5 / 3.0,
            "multiplier over the real samples"
        );
        // Within budget but no better: not kept; the multiplier shrinks.
        assert!(!b.observe(0, 10.0, 90.0));
        assert!((b.rate_weight(0) - 0.5 * MU_DOWN / 3.0).abs() < 1e-15);
        // Better and within budget: kept.
        assert!(b.observe(0, 9.0, 100.0));
    }

    #[test]
    fn over_budget_iterates_are_never_kept_and_raise_the_multiplier() {
        let mut b = one_tile();
        b.observe(0, 10.0, 100.0);
        for k in 1..=3 {
            assert!(!b.observe(0, 1.0, 100.5), "better but over budget");
            let expected = 0.5 * MU_UP.powi(k) / 3.0;
            assert!((b.rate_weight(0) - expected).abs() < 1e-12);
        }
    }

    #[test]
    fn the_multiplier_never_falls_below_its_floor() {
        let mut b = one_tile();
        b.observe(0, 10.0, 100.0);
        for _ in 0..1000 {
            b.observe(0, 10.0, 50.0);
        }
        assert!((b.rate_weight(0) - 0.5 * MU_FLOOR / 3.0).abs() < 1e-18);
        // A level trained with lambda 0 starts from the absolute floor.
        let zero = TileBudgets::new(&[1.0; 4], 4, 0.0);
        assert_eq!(zero.rate_weight(0), MU_FLOOR / 4.0);
    }

    #[test]
    fn learning_rate_runs_from_start_to_end_in_units_of_the_capped_step() {
        for (step, unit) in [(0.25f32, 0.25), (1.0, 1.0), (4.0, LR_UNIT_CAP)] {
            let first = learning_rate(0, 20, step);
            let last = learning_rate(19, 20, step);
            assert!((first - LR_START * unit).abs() < 1e-12, "{step}: {first}");
            assert!((last - LR_END * unit).abs() < 1e-12, "{step}: {last}");
            let mid = learning_rate(10, 20, step);
            assert!(last < mid && mid < first);
        }
    }
}
