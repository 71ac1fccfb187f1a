//! The libtorch encoder backend (`ipc-codec encode --device cuda`): the same method and
//! objective as the pure-Rust encoder (`ipc_codec::encoder`, whose module documentation
//! states them), computed by the tch model loaded from a pack, on a GPU or the CPU.
//!
//! The hypernetwork runs in one pass; CAVIA inner steps and quantisation-aware
//! refinement take gradients by autograd. The rate term's gradient, which needs the
//! pack's integer tables, is computed by `ipc_codec::encoder::RateModel` on the CPU
//! (V is small next to the activations), per element: tiles are refined in batches, so
//! the neighbour contexts of a version-2 file (spec/bitstream.md §7.5) are not part of
//! this backend's rate term. Results agree with the CPU encoder within
//! floating-point tolerance; they are not bit-identical (different summation orders
//! can flip a rounding decision in refinement).

use ipc_codec::encoder::{hypernet, refine, EncodeError, Method, RateModel, Tiles, VBackend};
use ipc_codec::pack::PackContents;
use ipc_codec::ModelPack;
use tch::{nn, Device, Kind, Tensor};

use crate::config::{
    self, DataConfig, EncoderConfig, LevelConfig, ModelConfig, RateConfig, ScheduleConfig,
    TrainConfig,
};
use crate::model::IpcModel;

/// Tiles per batch on the device: bounds activation memory (about 1.3 GB for 32x32
/// tiles of width 64 in a refinement step) while keeping a GPU busy.
const TILES_PER_BATCH: usize = 1024;

fn torch_error(e: tch::TchError) -> EncodeError {
    EncodeError::Input(format!("libtorch: {e}"))
}

/// A training configuration that builds a model of `pack`'s shape and method, made
/// from the pack's configuration and tensors; its schedule and data fields are unused
/// (their defaults).
pub fn config_of_pack(pack: &ModelPack, method: Method) -> Result<TrainConfig, EncodeError> {
    let c = pack.config();
    let lambdas = ipc_codec::encoder::pack_lambdas(pack)?;
    let levels = c
        .quality_levels
        .iter()
        .zip(&lambdas)
        .map(|(q, &lambda)| LevelConfig {
            step: q.step(),
            lambda,
        })
        .collect();
    let defaults = EncoderConfig::defaults(match method {
        Method::Hyper => config::Method::Hyper,
        Method::Meta => config::Method::Meta,
    });
    let encoder = match method {
        Method::Hyper => {
            let shape =
                hypernet::HyperShape::of_pack(pack)?.ok_or_else(|| EncodeError::PackTensor {
                    name: "encoder.hyper.embed.weight".into(),
                    problem: "missing: the pack has no hypernetwork".into(),
                })?;
            EncoderConfig {
                patch: shape.patch,
                dim: shape.dim,
                depth: shape.depth,
                heads: shape.heads,
                ..defaults
            }
        }
        Method::Meta => EncoderConfig {
            patch: 1,
            inner_steps: hypernet::scalar(pack, "encoder.meta.inner_steps")? as usize,
            inner_lr: f64::from(hypernet::scalar(pack, "encoder.meta.inner_lr")?),
            inner_step: match ipc_codec::encoder::inner_step_rule(pack)? {
                refine::InnerStepRule::NormScaled => crate::config::InnerStep::NormScaled,
                refine::InnerStepRule::Plain => crate::config::InnerStep::Plain,
            },
            ..defaults
        },
    };
    let image = c.coord_dim == 2;
    let config = TrainConfig {
        name: c.name.clone(),
        modality: if image { "image" } else { "audio" }.into(),
        seed: 1,
        model: ModelConfig {
            frequencies: c.frequencies,
            // The pack's own frequencies replace the log-spaced ones (model_of_pack).
            max_frequency: 1.0,
            width: c.width,
            pre_width: c.pre_width,
            layers: c.layers,
            modulated_layer: c.modulated_layer,
            rank: c.rank,
            orientation: c.orientation,
            tile: [c.tile_width, c.tile_height],
            sample_rate: c.sample_rate,
            weight_norm: c.weight_norm,
            weight_gain: c.weight_gain,
        },
        encoder,
        rate: RateConfig::with_levels(levels),
        train: ScheduleConfig::with_steps(1, 1, 0.001),
        data: DataConfig::in_dir("unused"),
    };
    config
        .validate()
        .map_err(|e| EncodeError::Input(format!("pack {} as a tch model: {e}", pack.id())))?;
    Ok(config)
}

/// The value a model variable takes from a pack, by its name (spec/model-pack.md §4).
fn pack_tensor(contents: &PackContents, name: &str) -> Option<(Vec<usize>, Vec<f32>)> {
    if let Some((_, shape, data)) = contents.extra.iter().find(|(n, _, _)| n == name) {
        return Some((shape.clone(), data.clone()));
    }
    let rest = name.strip_prefix("layers.")?;
    let (l, field) = rest.split_once('.')?;
    let l: usize = l.parse().ok()?;
    match (contents.layers.get(l)?, field) {
        (Some(layer), "weight") => Some((vec![layer.inputs, layer.outputs], layer.weight.clone())),
        (Some(layer), "bias") => Some((vec![layer.outputs], layer.bias.clone())),
        (Some(layer), "gain") => Some((vec![layer.outputs], layer.gain.clone()?)),
        (None, "gain") => Some((
            vec![contents.modulated.outputs],
            contents.modulated.gain.clone()?,
        )),
        (None, "u") => {
            let (rows, cols) = contents.config.u_shape();
            Some((vec![rows, cols], contents.modulated.u.clone()))
        }
        (None, "bias") => Some((
            vec![contents.modulated.outputs],
            contents.modulated.bias.clone(),
        )),
        _ => None,
    }
}

/// Builds the tch model of `pack` on `device` with the pack's weights.
pub fn model_of_pack(
    pack: &ModelPack,
    method: Method,
    device: Device,
) -> Result<(IpcModel, nn::VarStore), EncodeError> {
    let config = config_of_pack(pack, method)?;
    let vs = nn::VarStore::new(device);
    let mut model = IpcModel::new(&vs.root(), &config);
    model.set_frequencies(pack.contents().frequencies.clone());
    for (name, mut var) in vs.variables() {
        if name == crate::export::LOG_INNER_LR_VAR {
            // The pack stores the step size itself.
            let lr = hypernet::scalar(pack, "encoder.meta.inner_lr")?;
            let src = Tensor::from_slice(&[f64::from(lr).max(1e-30).ln() as f32]).to_device(device);
            tch::no_grad(|| var.copy_(&src));
            continue;
        }
        if name.starts_with("entropy.") {
            // The learned Laplace parameters are a training device; encoding uses the
            // pack's integer tables.
            continue;
        }
        let (shape, data) =
            pack_tensor(pack.contents(), &name).ok_or_else(|| EncodeError::PackTensor {
                name: name.clone(),
                problem: "missing".into(),
            })?;
        let want: Vec<usize> = var.size().iter().map(|&d| d as usize).collect();
        if shape != want {
            return Err(EncodeError::PackTensor {
                name,
                problem: format!("shape {shape:?}, the model has {want:?}"),
            });
        }
        let src = Tensor::from_slice(&data)
            .reshape(var.size())
            .to_device(device);
        tch::no_grad(|| var.copy_(&src));
    }
    Ok((model, vs))
}

/// Per-tile weighted mean squared error, `[batch]` (the CPU encoder's definition).
fn weighted_mse(recon: &Tensor, target: &Tensor, weight: &Tensor) -> Tensor {
    let channels = target.size()[2] as f64;
    let sse = ((recon - target).square() * weight.unsqueeze(-1)).sum_dim_intlist(
        &[1i64, 2][..],
        false,
        Kind::Float,
    );
    sse / (weight.sum_dim_intlist(&[1i64][..], false, Kind::Float) * channels).clamp_min(1e-12)
}

/// The gradient of the scalar `loss` with respect to `leaf`.
fn one_gradient(loss: &Tensor, leaf: &Tensor) -> Result<Tensor, EncodeError> {
    Tensor::f_run_backward(&[loss], &[leaf], false, false)
        .map_err(torch_error)?
        .pop()
        .ok_or_else(|| EncodeError::Input("libtorch returned no gradient".into()))
}

/// Rounds half away from zero, as `f32::round` does in the CPU encoder.
fn round_half_away(u: &Tensor) -> Tensor {
    u.sign() * (u.abs() + 0.5).floor()
}

/// The libtorch backend of [`ipc_codec::encoder::Encoder::with_backend`].
pub struct TorchBackend<'p> {
    pack: &'p ModelPack,
    model: IpcModel,
    _vs: nn::VarStore,
    method: Method,
    effort: usize,
    lambdas: Vec<f64>,
}

impl<'p> TorchBackend<'p> {
    /// Loads `pack` for `method` onto `device`.
    pub fn new(
        pack: &'p ModelPack,
        method: Method,
        effort: usize,
        device: Device,
    ) -> Result<TorchBackend<'p>, EncodeError> {
        let (model, vs) = model_of_pack(pack, method, device)?;
        Ok(TorchBackend {
            pack,
            model,
            _vs: vs,
            method,
            effort,
            lambdas: ipc_codec::encoder::pack_lambdas(pack)?,
        })
    }

    /// The tch model.
    pub fn model(&self) -> &IpcModel {
        &self.model
    }

    fn batch(&self, tiles: &Tiles, range: std::ops::Range<usize>) -> (Tensor, Tensor) {
        let (s, c) = (tiles.samples, tiles.channels);
        let n = range.len() as i64;
        let device = self.model.device();
        let x = Tensor::from_slice(&tiles.targets[range.start * s * c..range.end * s * c])
            .reshape([n, s as i64, c as i64])
            .to_device(device);
        let w = Tensor::from_slice(&tiles.weights[range.start * s..range.end * s])
            .reshape([n, s as i64])
            .to_device(device);
        (x, w)
    }

    /// V of a batch before quantisation, `[batch, rows, columns]` as in the pack.
    pub fn predict(&self, x: &Tensor, w: &Tensor, level: usize) -> Result<Tensor, EncodeError> {
        let n = x.size()[0];
        let missing = |what: &str| {
            EncodeError::Input(format!("the libtorch model of the pack has no {what}"))
        };
        Ok(match self.method {
            Method::Hyper => {
                let hyper = self
                    .model
                    .hyper
                    .as_ref()
                    .ok_or_else(|| missing("hypernetwork"))?;
                let levels = Tensor::full([n], level as i64, (Kind::Int64, x.device()));
                tch::no_grad(|| hyper.forward(x, &levels))
            }
            Method::Meta => {
                let e = &self.model.config.encoder;
                let v0 = self
                    .model
                    .v0
                    .as_ref()
                    .ok_or_else(|| missing("meta-learned V0"))?;
                let mut v = v0.detach().unsqueeze(0).expand([n, -1, -1], false).copy();
                for _ in 0..e.inner_steps {
                    let leaf = v.detach().set_requires_grad(true);
                    let mse = weighted_mse(&self.model.synthesize(&leaf), x, w).sum(Kind::Float);
                    let grad = one_gradient(&mse, &leaf)?;
                    let scale =
                        leaf.detach()
                            .square()
                            .sum_dim_intlist(&[1i64, 2][..], true, Kind::Float);
                    v = leaf.detach() - grad * scale * e.inner_lr;
                }
                v.detach()
            }
        })
    }

    /// Quantisation-aware refinement of one batch (the CPU encoder's algorithm).
    #[allow(clippy::too_many_arguments)]
    fn refine(
        &self,
        x: &Tensor,
        w: &Tensor,
        mut v: Tensor,
        rate: &RateModel<'_>,
        step: f32,
        lambda: f64,
        progress: &mut dyn FnMut(usize),
    ) -> Result<Vec<i32>, EncodeError> {
        let n = x.size()[0] as usize;
        let v_len = (v.size()[1] * v.size()[2]) as usize;
        let iterations = self.effort;
        let weights: Vec<f32> =
            Vec::try_from(w.to_device(Device::Cpu).flatten(0, -1)).map_err(torch_error)?;
        let mut budgets = refine::TileBudgets::new(&weights, weights.len() / n, lambda);
        let mut best_q = vec![0i32; n * v_len];
        let mut m1 = v.zeros_like();
        let mut m2 = v.zeros_like();
        let mut rate_grad = vec![0f64; n * v_len];
        for it in 0..=iterations {
            let q = round_half_away(&(&v / f64::from(step)));
            let want_grad = it < iterations;
            let leaf = (&q * f64::from(step)).detach().set_requires_grad(want_grad);
            let mse = weighted_mse(&self.model.synthesize(&leaf), x, w);
            let q_cpu: Vec<i32> =
                Vec::try_from(q.to_kind(Kind::Int).to_device(Device::Cpu).flatten(0, -1))
                    .map_err(torch_error)?;
            let mse_cpu: Vec<f64> =
                Vec::try_from(mse.detach().to_kind(Kind::Double).to_device(Device::Cpu))
                    .map_err(torch_error)?;
            for (t, &m) in mse_cpu.iter().enumerate() {
                let span = t * v_len..(t + 1) * v_len;
                if budgets.observe(t, m, rate.bits(&q_cpu, t, &q_cpu[span.clone()])) {
                    best_q[span.clone()].copy_from_slice(&q_cpu[span]);
                }
            }
            if !want_grad {
                break;
            }
            let grad = one_gradient(&mse.sum(Kind::Float), &leaf)?;
            let v_cpu: Vec<f32> =
                Vec::try_from(v.to_device(Device::Cpu).flatten(0, -1)).map_err(torch_error)?;
            for (t, (vt, gt)) in v_cpu
                .chunks_exact(v_len)
                .zip(rate_grad.chunks_exact_mut(v_len))
                .enumerate()
            {
                rate.gradient(vt, step, &q_cpu, t, gt);
                let weight = budgets.rate_weight(t);
                for g in gt {
                    *g *= weight;
                }
            }
            let g = grad
                + Tensor::from_slice(&rate_grad)
                    .to_kind(Kind::Float)
                    .reshape(v.size())
                    .to_device(v.device());
            let lr = refine::learning_rate(it, iterations, step);
            let t = (it + 1) as i32;
            let (c1, c2) = (1.0 - refine::BETA1.powi(t), 1.0 - refine::BETA2.powi(t));
            m1 = &m1 * refine::BETA1 + &g * (1.0 - refine::BETA1);
            m2 = &m2 * refine::BETA2 + g.square() * (1.0 - refine::BETA2);
            let update = (&m1 / c1) / ((&m2 / c2).sqrt() + refine::ADAM_EPS) * lr;
            v = (&v - update).detach();
            progress(it + 1);
        }
        Ok(best_q)
    }
}

impl VBackend for TorchBackend<'_> {
    fn quantised_v(
        &self,
        tiles: &Tiles,
        level: u8,
        step: f32,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<i32>, EncodeError> {
        let vmodel = self
            .pack
            .v_model(usize::from(level))
            .ok_or_else(|| EncodeError::Input(format!("no quality level {level}")))?;
        let rate = RateModel::new(vmodel);
        let lambda = self.lambdas[usize::from(level)];
        let mut out = Vec::with_capacity(tiles.count * vmodel.elements_per_tile());
        let batches = tiles.count.div_ceil(TILES_PER_BATCH);
        for b in 0..batches {
            let range = b * TILES_PER_BATCH..((b + 1) * TILES_PER_BATCH).min(tiles.count);
            let (x, w) = self.batch(tiles, range);
            let v = self.predict(&x, &w, usize::from(level))?;
            if self.effort == 0 {
                let q = round_half_away(&(&v / f64::from(step)));
                let q: Vec<i32> =
                    Vec::try_from(q.to_kind(Kind::Int).to_device(Device::Cpu).flatten(0, -1))
                        .map_err(torch_error)?;
                out.extend(q);
            } else {
                let effort = self.effort;
                let q = self.refine(&x, &w, v, &rate, step, lambda, &mut |done| {
                    // Batches run one after another; report steps over all of them.
                    progress(b * effort + done, batches * effort)
                })?;
                out.extend(q);
            }
        }
        Ok(out)
    }
}
