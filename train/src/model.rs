//! The IPC model in tch: Fourier features, the weight-normalised MLP with the modulated
//! layer `norm(V U)` or `norm(U V)` (the pack's orientation; docs/method.md §3; spec/model-pack.md
//! §4.2), the transformer hypernetwork and
//! the meta-learned initial V0 with its CAVIA inner loop.
//!
//! Variable names follow the pack's tensor names (`layers.{l}.weight` with shape
//! `[inputs, outputs]`, `layers.{m}.u`, `encoder.*`), so export is a copy.

use tch::{nn, Device, Kind, Tensor};

use ipc_codec::pack::Orientation;

use crate::config::{InnerStep, Method, TrainConfig};
use crate::entropy::EntropyModel;

/// `1 / sqrt(sq)` where `sq > 0`, else 0: the factor weight normalisation applies to a
/// column with squared norm `sq` (spec/model-pack.md §4.2: a zero column stays zero).
/// A zero column (which a coarse quantisation step produces) also gets a zero gradient,
/// as in the CPU encoder (`TileSynthesizer::modulated_backward`): a floor on the norm
/// instead would send `inf * 0 = NaN` (a floor after `sqrt`) or a gradient scaled by
/// the inverse floor (a floor before it) back to that column.
fn inverse_norm(sq: &Tensor) -> Tensor {
    let positive = sq.gt(0.0);
    let safe = sq.where_self(&positive, &sq.ones_like());
    safe.rsqrt() * positive.to_kind(Kind::Float)
}

/// Fixed log-spaced Fourier frequencies from 1 to `max_frequency` (docs/method.md §1).
pub fn log_spaced_frequencies(count: usize, max_frequency: f64) -> Vec<f32> {
    (0..count)
        .map(|k| {
            if count == 1 {
                1.0
            } else {
                max_frequency.powf(k as f64 / (count - 1) as f64) as f32
            }
        })
        .collect()
}

/// Fourier features of every sample of a tile, `[samples, 2 * axes * K]`, computed by
/// the decoder's own function so training and decoding see the same inputs.
pub fn tile_features(frequencies: &[f32], tile: [usize; 2], coord_dim: usize) -> Vec<f32> {
    ipc_codec::synthesis::tile_features(frequencies, tile[0], tile[1], coord_dim)
}

/// Scales each column (output unit) of an `[inputs, outputs]` weight to unit L2 norm.
pub fn normalise_columns(w: &Tensor) -> Tensor {
    w * inverse_norm(&w.square().sum_dim_intlist(&[-2i64][..], true, Kind::Float))
}

/// A dense layer `y = x W + b`, W stored `[inputs, outputs]`.
#[derive(Debug)]
pub struct Dense {
    /// `[inputs, outputs]`.
    pub weight: Tensor,
    /// `[outputs]`.
    pub bias: Tensor,
    /// `[outputs]`: the learned gain of each normalised column (`layers.{l}.gain`,
    /// spec/model-pack.md §4.2), where the configuration gives the layer one.
    pub gain: Option<Tensor>,
}

impl Dense {
    fn new(p: &nn::Path, inputs: usize, outputs: usize) -> Dense {
        let bound = 1.0 / (inputs as f64).sqrt();
        Dense {
            weight: p.var(
                "weight",
                &[inputs as i64, outputs as i64],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
            bias: p.zeros("bias", &[outputs as i64]),
            gain: None,
        }
    }

    /// A layer of the synthesis network: as [`Dense::new`], with a gain if `gain`. The
    /// gain starts at each column's norm in the initial weight (as PyTorch's
    /// `weight_norm` does), so that `norm(W) · diag(g) = W` at the start.
    fn synthesis(p: &nn::Path, inputs: usize, outputs: usize, gain: bool) -> Dense {
        let mut dense = Dense::new(p, inputs, outputs);
        if gain {
            let norms = tch::no_grad(|| {
                dense
                    .weight
                    .square()
                    .sum_dim_intlist(&[0i64][..], false, Kind::Float)
                    .sqrt()
            });
            let g = p.var("gain", &[outputs as i64], nn::Init::Const(1.0));
            tch::no_grad(|| {
                let mut g = g.shallow_clone();
                g.copy_(&norms);
            });
            dense.gain = Some(g);
        }
        dense
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.matmul(&self.weight) + &self.bias
    }
}

/// Layer normalisation over the last dimension with a learned gain and offset.
#[derive(Debug)]
pub struct LayerNorm {
    /// Gain.
    pub weight: Tensor,
    /// Offset.
    pub bias: Tensor,
    dim: i64,
}

impl LayerNorm {
    fn new(p: &nn::Path, dim: usize) -> LayerNorm {
        LayerNorm {
            weight: p.ones("weight", &[dim as i64]),
            bias: p.zeros("bias", &[dim as i64]),
            dim: dim as i64,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        x.layer_norm(
            [self.dim],
            Some(&self.weight),
            Some(&self.bias),
            1e-5,
            false,
        )
    }
}

/// A pre-LayerNorm transformer block.
#[derive(Debug)]
struct Block {
    ln1: LayerNorm,
    qkv: Dense,
    proj: Dense,
    ln2: LayerNorm,
    fc1: Dense,
    fc2: Dense,
    heads: i64,
}

impl Block {
    fn new(p: &nn::Path, dim: usize, heads: usize) -> Block {
        Block {
            ln1: LayerNorm::new(&(p / "ln1"), dim),
            qkv: Dense::new(&(p / "qkv"), dim, 3 * dim),
            proj: Dense::new(&(p / "proj"), dim, dim),
            ln2: LayerNorm::new(&(p / "ln2"), dim),
            fc1: Dense::new(&(p / "fc1"), dim, 4 * dim),
            fc2: Dense::new(&(p / "fc2"), 4 * dim, dim),
            heads: heads as i64,
        }
    }

    fn forward(&self, x: &Tensor) -> Tensor {
        let (b, t, dim) = x.size3().expect("[batch, tokens, dim]");
        let dh = dim / self.heads;
        let qkv = self
            .qkv
            .forward(&self.ln1.forward(x))
            .reshape([b, t, 3, self.heads, dh])
            .permute([2, 0, 3, 1, 4]);
        let (q, k, v) = (qkv.get(0), qkv.get(1), qkv.get(2));
        let attn = (q.matmul(&k.transpose(-2, -1)) / (dh as f64).sqrt()).softmax(-1, Kind::Float);
        let y = attn.matmul(&v).permute([0, 2, 1, 3]).reshape([b, t, dim]);
        let x = x + self.proj.forward(&y);
        let h = self
            .fc2
            .forward(&self.fc1.forward(&self.ln2.forward(&x)).gelu("none"));
        x + h
    }
}

/// The transformer hypernetwork: data tokens (patches or audio chunks) with learned
/// positional embeddings, then `rank` learned weight tokens (plus a learned embedding
/// of the quality level); each weight token's output goes through LayerNorm + Linear
/// to one row of V (docs/method.md §4).
#[derive(Debug)]
pub struct HyperNet {
    embed: Dense,
    positions: Tensor,
    weight_tokens: Tensor,
    level_embedding: Tensor,
    blocks: Vec<Block>,
    out_norm: LayerNorm,
    out: Dense,
    patch: i64,
    tile: [i64; 2],
    channels: i64,
    /// Instance-input: weight token i gives column i of V (`[in_m, r]`), so the
    /// `[batch, r, in_m]` token outputs are transposed.
    tokens_are_columns: bool,
}

impl HyperNet {
    fn new(p: &nn::Path, cfg: &TrainConfig) -> HyperNet {
        let e = &cfg.encoder;
        let [tw, th] = cfg.model.tile;
        let (tokens, token_len) = if cfg.channels() == 3 {
            ((tw / e.patch) * (th / e.patch), e.patch * e.patch * 3)
        } else {
            (tw / e.patch, e.patch)
        };
        let small = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.02,
        };
        let (v_rows, v_cols) = cfg.v_shape();
        let tokens_are_columns = cfg.model.orientation == Orientation::InstanceInput;
        let token_out = if tokens_are_columns { v_rows } else { v_cols };
        HyperNet {
            embed: Dense::new(&(p / "embed"), token_len, e.dim),
            positions: p.var("positions", &[tokens as i64, e.dim as i64], small),
            weight_tokens: p.var(
                "weight_tokens",
                &[cfg.model.rank as i64, e.dim as i64],
                small,
            ),
            // Without level conditioning the embedding stays zero (and is exported as
            // zeros, which the encoder runtime adds like any other embedding).
            level_embedding: if e.level_conditioning {
                p.var(
                    "level_embedding",
                    &[cfg.rate.levels.len() as i64, e.dim as i64],
                    small,
                )
            } else {
                p.zeros_no_train(
                    "level_embedding",
                    &[cfg.rate.levels.len() as i64, e.dim as i64],
                )
            },
            blocks: (0..e.depth)
                .map(|i| Block::new(&(p / "blocks" / i), e.dim, e.heads))
                .collect(),
            out_norm: LayerNorm::new(&(p / "out_norm"), e.dim),
            out: Dense::new(&(p / "out"), e.dim, token_out),
            patch: e.patch as i64,
            tile: [tw as i64, th as i64],
            channels: cfg.channels() as i64,
            tokens_are_columns,
        }
    }

    /// Splits `[batch, samples, channels]` tiles into `[batch, tokens, token_len]`.
    fn tokens(&self, x: &Tensor) -> Tensor {
        let b = x.size()[0];
        let ps = self.patch;
        let [tw, th] = self.tile;
        if self.channels == 3 {
            x.reshape([b, th / ps, ps, tw / ps, ps, 3])
                .permute([0, 1, 3, 2, 4, 5])
                .reshape([b, (th / ps) * (tw / ps), ps * ps * 3])
        } else {
            x.reshape([b, tw / ps, ps])
        }
    }

    /// V for every tile, `[batch, rows, columns]` (`TrainConfig::v_shape`), at the given
    /// quality levels `[batch]`.
    pub fn forward(&self, x: &Tensor, levels: &Tensor) -> Tensor {
        self.forward_with_tokens(x, levels).0
    }

    /// As [`HyperNet::forward`], with the transformer's outputs at the data tokens
    /// `[batch, tokens, dim]` (one per patch, patches in row-major order over the tile),
    /// for heads that predict more than V from the same pass.
    pub fn forward_with_tokens(&self, x: &Tensor, levels: &Tensor) -> (Tensor, Tensor) {
        let b = x.size()[0];
        let data = self.embed.forward(&self.tokens(x)) + &self.positions;
        let weights = self.weight_tokens.unsqueeze(0)
            + self.level_embedding.index_select(0, levels).unsqueeze(1);
        let mut h = Tensor::cat(&[data, weights.expand([b, -1, -1], false)], 1);
        for block in &self.blocks {
            h = block.forward(&h);
        }
        let rank = self.weight_tokens.size()[0];
        let t = h.size()[1];
        let v = self
            .out
            .forward(&self.out_norm.forward(&h.narrow(1, t - rank, rank)));
        let data = h.narrow(1, 0, t - rank);
        if self.tokens_are_columns {
            (v.transpose(1, 2), data)
        } else {
            (v, data)
        }
    }
}

/// The IPC model: synthesis network, V predictor and entropy model.
#[derive(Debug)]
pub struct IpcModel {
    /// The configuration it was built from.
    pub config: TrainConfig,
    /// Fourier frequencies (fixed).
    pub frequencies: Vec<f32>,
    features: Tensor,
    /// Every layer; the modulated one's `weight` holds U (`[inputs, rank]` shared-input,
    /// `[rank, outputs]` instance-input).
    pub layers: Vec<Dense>,
    /// The hypernetwork, for `method = "hyper"`.
    pub hyper: Option<HyperNet>,
    /// The learned initial V, for `method = "meta"`.
    pub v0: Option<Tensor>,
    /// The log of the CAVIA inner step size, learned with V0 (initialised from
    /// `encoder.inner_lr`); exported as `encoder.meta.inner_lr` (spec/model-pack.md §4.3).
    pub log_inner_lr: Option<Tensor>,
    /// The learned entropy model of V.
    pub entropy: EntropyModel,
}

impl IpcModel {
    /// Creates the variables under `root` (names as in spec/model-pack.md §4).
    pub fn new(root: &nn::Path, config: &TrainConfig) -> IpcModel {
        let m = &config.model;
        // Every shape comes from the configuration of the pack this model exports to.
        let shapes = config.pack_config("");
        let coord_dim = shapes.coord_dim;
        let frequencies = log_spaced_frequencies(m.frequencies, m.max_frequency);
        let feature_dim = shapes.feature_dim();
        let features = Tensor::from_slice(&tile_features(&frequencies, m.tile, coord_dim))
            .reshape([config.tile_samples() as i64, feature_dim as i64])
            .to_device(root.device());
        let layers = (0..m.layers)
            .map(|l| {
                let (inputs, outputs) = shapes.layer_shape(l);
                let p = root / "layers" / l;
                if l == m.modulated_layer {
                    // U is [in_m, r] or [r, out_m]; its first dimension is its fan-in.
                    let (u_rows, u_cols) = shapes.u_shape();
                    let bound = 1.0 / (u_rows as f64).sqrt();
                    Dense {
                        weight: p.var(
                            "u",
                            &[u_rows as i64, u_cols as i64],
                            nn::Init::Uniform {
                                lo: -bound,
                                up: bound,
                            },
                        ),
                        bias: p.zeros("bias", &[outputs as i64]),
                        // The product's column norms depend on V; the gain starts at 1,
                        // the plain normalised layer.
                        gain: shapes
                            .has_gain(l)
                            .then(|| p.var("gain", &[outputs as i64], nn::Init::Const(1.0))),
                    }
                } else {
                    Dense::synthesis(&p, inputs, outputs, shapes.has_gain(l))
                }
            })
            .collect();
        let encoder = root / "encoder";
        let hyper = match config.encoder.method {
            Method::Hyper => Some(HyperNet::new(&(&encoder / "hyper"), config)),
            Method::Meta => None,
        };
        let v0 =
            (config.encoder.method == Method::Meta || config.encoder.meta_steps > 0).then(|| {
                let (rows, cols) = shapes.v_shape();
                encoder.var(
                    "v0",
                    &[rows as i64, cols as i64],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )
            });
        let log_inner_lr = v0.as_ref().map(|_| {
            (&encoder / "meta").var(
                "log_inner_lr",
                &[1],
                nn::Init::Const(config.encoder.inner_lr.max(1e-12).ln()),
            )
        });
        let entropy = EntropyModel::new(
            &(root / "entropy"),
            config.rate.levels.len(),
            m.rank,
            m.orientation,
        );
        IpcModel {
            config: config.clone(),
            frequencies,
            features,
            layers,
            hyper,
            v0,
            log_inner_lr,
            entropy,
        }
    }

    /// Replaces the Fourier frequencies (a pack stores its own, which need not be
    /// log-spaced) and recomputes the tile features.
    pub fn set_frequencies(&mut self, frequencies: Vec<f32>) {
        let coord_dim = self.config.coord_dim();
        let dim = 2 * coord_dim * frequencies.len();
        self.features = Tensor::from_slice(&tile_features(
            &frequencies,
            self.config.model.tile,
            coord_dim,
        ))
        .reshape([self.config.tile_samples() as i64, dim as i64])
        .to_device(self.device());
        self.frequencies = frequencies;
    }

    /// The device the variables live on.
    pub fn device(&self) -> Device {
        self.features.device()
    }

    /// Evaluates the network on every tile given its V, `[batch, rows, columns]` ->
    /// `[batch, samples, channels]` (spec/model-pack.md §4.2).
    pub fn synthesize(&self, v: &Tensor) -> Tensor {
        self.synthesize_with(v, None)
    }

    /// As [`IpcModel::synthesize`], with `added = (k, a)` adding `a` (`[batch, samples,
    /// out_k]`) to layer `k`'s pre-activation `z_k` (before its ReLU): the hook of
    /// studies that feed per-sample information (a latent grid) into the network
    /// beside V.
    pub fn synthesize_with(&self, v: &Tensor, added: Option<(usize, &Tensor)>) -> Tensor {
        let add = |l: usize, z: Tensor| match added {
            Some((k, a)) if k == l => z + a,
            _ => z,
        };
        let m = &self.config.model;
        // Ŵ = norm(W) · diag(g) (spec/model-pack.md §4.2); g only where the layer has one.
        let norm = |layer: &Dense| {
            let w = if m.weight_norm {
                normalise_columns(&layer.weight)
            } else {
                layer.weight.shallow_clone()
            };
            match &layer.gain {
                Some(g) => w * g,
                None => w,
            }
        };
        let mut h = self.features.shallow_clone();
        for (l, layer) in self.layers[..m.modulated_layer].iter().enumerate() {
            h = add(l, h.matmul(&norm(layer)) + &layer.bias).relu();
        }
        let modulated = &self.layers[m.modulated_layer];
        let u = &modulated.weight;
        // Row convention, V `[batch, rows, columns]` as in the pack: Ŵ = norm(U V) is
        // (h U) V with U [in, r], V [b, r, out]; Ŵ = norm(V U) is (h V) U with
        // V [b, in, r], U [r, out].
        let (first, second) = match m.orientation {
            Orientation::SharedInput => (u, v),
            Orientation::InstanceInput => (v, u),
        };
        let mut y = h.matmul(first).matmul(second);
        if m.weight_norm {
            // Column norms of the product W = [b, in, out], over its inputs.
            let w = first.matmul(second);
            y *= inverse_norm(&w.square().sum_dim_intlist(&[1i64][..], true, Kind::Float));
        }
        if let Some(g) = &modulated.gain {
            y *= g;
        }
        let mut y = add(m.modulated_layer, y + &modulated.bias).relu();
        for (l, layer) in self.layers.iter().enumerate().skip(m.modulated_layer + 1) {
            y = add(l, y.matmul(&norm(layer)) + &layer.bias);
            if l + 1 < m.layers {
                y = y.relu();
            }
        }
        if self.config.channels() == 3 {
            y + 0.5
        } else {
            y
        }
    }

    /// Per-instance mean squared error, `[batch]`.
    pub fn instance_mse(recon: &Tensor, target: &Tensor) -> Tensor {
        (recon - target)
            .square()
            .mean_dim(&[1i64, 2][..], false, Kind::Float)
    }

    /// CAVIA inner loop from V0 (docs/method.md §5, the seed's Algorithm 1):
    /// `V <- V - eps * ||V||_F^2 * grad_V L` (or `V <- V - eps * grad_V L` with
    /// `encoder.inner_step = "plain"`), `steps` times. With `create_graph` the
    /// outer update differentiates through the steps (second order).
    pub fn adapt(&self, target: &Tensor, steps: usize, eps: f64, create_graph: bool) -> Tensor {
        self.adapt_with(target, steps, &Tensor::from(eps as f32), create_graph)
    }

    /// The CAVIA inner loop with the learned step size (a differentiable scalar).
    pub fn adapt_learned(&self, target: &Tensor, steps: usize, create_graph: bool) -> Tensor {
        let eps = self
            .log_inner_lr
            .as_ref()
            .expect("meta-learned model has an inner step size")
            .exp();
        self.adapt_with(target, steps, &eps, create_graph)
    }

    /// The inner loop of [`IpcModel::adapt`] with step size `eps`, a scalar tensor.
    fn adapt_with(
        &self,
        target: &Tensor,
        steps: usize,
        eps: &Tensor,
        create_graph: bool,
    ) -> Tensor {
        let v0 = self.v0.as_ref().expect("meta-learned model has v0");
        let b = target.size()[0];
        let mut v = v0.unsqueeze(0).expand([b, -1, -1], false);
        for _ in 0..steps {
            let loss = Self::instance_mse(&self.synthesize(&v), target).sum(Kind::Float);
            let grad = Tensor::run_backward(&[&loss], &[&v], true, create_graph)
                .pop()
                .expect("one gradient");
            let grad = if create_graph { grad } else { grad.detach() };
            v = match self.config.encoder.inner_step {
                InnerStep::NormScaled => {
                    let scale = v
                        .square()
                        .sum_dim_intlist(&[1i64, 2][..], true, Kind::Float);
                    let scale = if create_graph { scale } else { scale.detach() };
                    &v - grad * scale * eps
                }
                InnerStep::Plain => &v - grad * eps,
            };
        }
        v
    }

    /// The learned inner step size.
    pub fn inner_lr(&self) -> Option<f64> {
        self.log_inner_lr
            .as_ref()
            .map(|t| f64::try_from(t.detach().exp().sum(Kind::Double)).unwrap_or(f64::NAN))
    }

    /// V for a batch of tiles: the hypernetwork's prediction or the adapted V0. The meta
    /// path takes gradients inside, so it must not run under `tch::no_grad`.
    pub fn predict_v(&self, target: &Tensor, levels: &Tensor, train: bool) -> Tensor {
        match (&self.hyper, self.config.encoder.method) {
            (Some(hyper), Method::Hyper) if train => hyper.forward(target, levels),
            (Some(hyper), Method::Hyper) => tch::no_grad(|| hyper.forward(target, levels)),
            _ => {
                let e = &self.config.encoder;
                let create_graph = train && !e.first_order;
                let v = self.adapt_learned(target, e.inner_steps, create_graph);
                if train {
                    v
                } else {
                    v.detach()
                }
            }
        }
    }
}
