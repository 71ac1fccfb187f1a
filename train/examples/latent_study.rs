//! Study (issue 9 item 4): does a per-tile latent grid fed into the network beside V
//! raise the image codec's rate-distortion curve? A training diagnostic, not a codec:
//! the latents are not in the format yet, and this program decides whether they
//! should be.
//!
//! Both arms start from the same trained checkpoint and train for the same steps with
//! the same batches, levels and optimiser:
//! - control (`--channels 0`): the shipped design, trained on;
//! - latent (`--channels c`): the hypernetwork's data tokens (one per `patch x patch`
//!   block of the tile) each also predict `c` latent values through a new linear head,
//!   i.e. a `c`-channel grid at stride `patch` (cell-centred). The grid is upsampled
//!   bilinearly inside the tile (clamped at its edges; with stride 4 every weight is a
//!   multiple of 1/8) and enters layer `--inject k` as `z_k += ℓ(x) · W_ℓ`, `W_ℓ`
//!   `[c, out_k]` shared and starting at zero, so that the latent arm starts exactly
//!   where the control does. The latents are quantised with the level's step (noise
//!   proxy in training, rounding in the evaluation) and priced by a learned Laplace
//!   per level and channel, as V is (train/src/entropy.rs).
//!
//! Evaluation on held-out tiles (the training set's held-out photos, never Kodak), at
//! the levels given: V and latents rounded with the level's step; their bits are the
//! cross-entropy of the held-out symbols under tables counted on training tiles (one
//! table per element of V, one per latent channel, the pack's `fitted` scheme);
//! PSNR is over all held-out pixels pooled (one MSE), output clamped to [0, 1].
//!
//! Options beyond that: `--stride s` (a divisor of the patch; each token then predicts
//! its `(patch/s)²` cells), `--latent-step f` (the latents' step is the level's step
//! times `f`), `--wlat-init σ` (`W_ℓ` from N(0, σ²) instead of zero), `--rate-warmup N`
//! (the latents' bits enter linearly over N steps), `--latent-lr x` (learning-rate
//! factor of the latent branch), `--no-rate` (distortion alone, no quantisation noise),
//! `--inner K` (the latents start at the head's prediction, zero at first, and take K
//! normalised gradient steps on the tile before the outer loss: an encoder that fits
//! them; first order), `--inner-rate` (those steps minimise the rate-distortion loss),
//! `--eval-inner K1,K2` (the steps the evaluation fits with).
//!
//! Capacity mode (`LATENT_DEBUG=s`, with `LATENT_DEBUG_INJECT=k`, `LATENT_DEBUG_C=c`,
//! `LATENT_DEBUG_FREE_V=1`): 64 training tiles, the network frozen, the latents (and
//! `W_ℓ`, and V with `FREE_V`) fitted by Adam on the distortion alone; prints the
//! pooled PSNR every 100 of 400 iterations.
//!
//! ```sh
//! cargo run --release -p ipc-train --example latent_study -- \
//!     --config train/configs/image.toml --checkpoint train/checkpoints/image.ckpt.safetensors \
//!     --steps 20000 --channels 2 --inject 0
//! ```

use std::collections::HashMap;
use std::path::PathBuf;

use ipc_codec::rng::SplitMix64;
use ipc_train::config::TrainConfig;
use ipc_train::data::ImageSet;
use ipc_train::entropy::laplace_bits;
use ipc_train::export::effective_step;
use ipc_train::model::IpcModel;
use ipc_train::trainer::{image_set_options, sample_levels, Trainer};
use tch::{nn, nn::OptimizerConfig, Device, Kind, Tensor};

struct Args {
    config: PathBuf,
    checkpoint: PathBuf,
    steps: usize,
    lr: f64,
    channels: usize,
    inject: usize,
    seed: u64,
    eval_levels: Vec<usize>,
    eval_tiles: usize,
    fit_tiles: usize,
    report_every: usize,
    wlat_init: f64,
    rate_warmup: usize,
    latent_lr: f64,
    no_rate: bool,
    inner: usize,
    inner_lr: f64,
    latent_step: f64,
    eval_inner: Vec<usize>,
    stride: usize,
    inner_rate: bool,
    save: Option<PathBuf>,
    load: Option<PathBuf>,
    refine_v: usize,
}

fn parse_args() -> Args {
    let mut a = Args {
        config: PathBuf::from("train/configs/image.toml"),
        checkpoint: PathBuf::from("train/checkpoints/image.ckpt.safetensors"),
        steps: 20000,
        lr: 2e-4,
        channels: 0,
        inject: 0,
        seed: 7,
        eval_levels: vec![2, 4, 6, 8, 10],
        eval_tiles: 4096,
        fit_tiles: 16384,
        report_every: 1000,
        wlat_init: 0.0,
        rate_warmup: 0,
        latent_lr: 1.0,
        no_rate: false,
        inner: 0,
        inner_lr: 0.1,
        latent_step: 1.0,
        eval_inner: Vec::new(),
        stride: 0,
        inner_rate: false,
        save: None,
        load: None,
        refine_v: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        if k == "--no-rate" {
            a.no_rate = true;
            continue;
        }
        if k == "--inner-rate" {
            a.inner_rate = true;
            continue;
        }
        let v = it.next().unwrap_or_else(|| panic!("{k} needs a value"));
        match k.as_str() {
            "--config" => a.config = v.into(),
            "--checkpoint" => a.checkpoint = v.into(),
            "--steps" => a.steps = v.parse().expect("steps"),
            "--lr" => a.lr = v.parse().expect("lr"),
            "--channels" => a.channels = v.parse().expect("channels"),
            "--inject" => a.inject = v.parse().expect("inject"),
            "--seed" => a.seed = v.parse().expect("seed"),
            "--levels" => a.eval_levels = v.split(',').map(|x| x.parse().expect("level")).collect(),
            "--eval-tiles" => a.eval_tiles = v.parse().expect("eval tiles"),
            "--fit-tiles" => a.fit_tiles = v.parse().expect("fit tiles"),
            "--report-every" => a.report_every = v.parse().expect("report every"),
            "--wlat-init" => a.wlat_init = v.parse().expect("W_l init std"),
            "--rate-warmup" => a.rate_warmup = v.parse().expect("rate warm-up steps"),
            "--latent-lr" => a.latent_lr = v.parse().expect("latent lr factor"),
            "--inner" => a.inner = v.parse().expect("inner steps"),
            "--inner-lr" => a.inner_lr = v.parse().expect("inner step size"),
            "--eval-inner" => {
                a.eval_inner = v
                    .split(',')
                    .map(|x| x.parse().expect("inner steps"))
                    .collect()
            }
            "--save" => a.save = Some(v.into()),
            "--load" => a.load = Some(v.into()),
            "--refine-v" => a.refine_v = v.parse().expect("V refinement steps"),
            "--stride" => a.stride = v.parse().expect("stride"),
            "--latent-step" => a.latent_step = v.parse().expect("latent step factor"),
            _ => panic!("unknown argument {k}"),
        }
    }
    a
}

/// Bilinear upsampling of an `n`-cell axis at stride `s` to `n * s` samples, cell
/// centres at `s * j + (s - 1) / 2`, clamped at both ends: `[n * s, n]`.
fn axis_weights(n: usize, s: usize) -> Vec<Vec<f32>> {
    (0..n * s)
        .map(|y| {
            let mut w = vec![0f32; n];
            let t = (y as f64 + 0.5) / s as f64 - 0.5;
            let j0 = t.floor();
            let f = (t - j0) as f32;
            if j0 < 0.0 {
                w[0] = 1.0;
            } else if j0 as usize + 1 >= n {
                w[n - 1] = 1.0;
            } else {
                w[j0 as usize] = 1.0 - f;
                w[j0 as usize + 1] = f;
            }
            w
        })
        .collect()
}

/// The `[samples, cells]` matrix taking a tile's latent cells (row-major) to its
/// samples (row-major).
fn upsampling(tile: [usize; 2], stride: usize) -> Tensor {
    let [tw, th] = tile;
    let (nx, ny) = (tw / stride, th / stride);
    let (wx, wy) = (axis_weights(nx, stride), axis_weights(ny, stride));
    let mut m = vec![0f32; tw * th * nx * ny];
    for row in 0..th {
        for col in 0..tw {
            for jy in 0..ny {
                for jx in 0..nx {
                    m[(row * tw + col) * nx * ny + jy * nx + jx] = wy[row][jy] * wx[col][jx];
                }
            }
        }
    }
    Tensor::from_slice(&m).reshape([(tw * th) as i64, (nx * ny) as i64])
}

/// The latent branch: head on the data tokens, shared `W_ℓ`, Laplace per level and channel.
struct Latent {
    head_w: Tensor,
    head_b: Tensor,
    w_lat: Tensor,
    location: Tensor,
    log_scale: Tensor,
    up: Tensor,
    inject: usize,
    /// Cells per token along each axis (`patch / stride`) and tokens per row.
    split: i64,
    tokens_per_row: i64,
    channels: i64,
}

impl Latent {
    #[allow(clippy::too_many_arguments)]
    fn new(
        p: &nn::Path,
        dim: usize,
        channels: usize,
        out_k: usize,
        levels: usize,
        up: Tensor,
        inject: usize,
        wlat_init: f64,
        zero_head: bool,
        split: usize,
        tokens_per_row: usize,
    ) -> Latent {
        let head_out = (channels * split * split) as i64;
        let bound = if zero_head {
            0.0
        } else {
            1.0 / (dim as f64).sqrt()
        };
        Latent {
            // Zero with `--inner` (`bound` 0): the latents then start where the inner
            // steps put them, and the network starts exactly as the checkpoint.
            head_w: p.var(
                "head_w",
                &[dim as i64, head_out],
                nn::Init::Uniform {
                    lo: -bound,
                    up: bound,
                },
            ),
            head_b: p.zeros("head_b", &[head_out]),
            w_lat: p.var(
                "w_lat",
                &[channels as i64, out_k as i64],
                nn::Init::Randn {
                    mean: 0.0,
                    stdev: wlat_init,
                },
            ),
            location: p.zeros("location", &[levels as i64, channels as i64]),
            log_scale: p.zeros("log_scale", &[levels as i64, channels as i64]),
            up,
            inject,
            split: split as i64,
            tokens_per_row: tokens_per_row as i64,
            channels: channels as i64,
        }
    }

    /// `[batch, cells, c]` from the data tokens.
    /// Each token gives its `split x split` cells (row-major inside the token).
    fn predict(&self, tokens: &Tensor) -> Tensor {
        let out = tokens.matmul(&self.head_w) + &self.head_b;
        if self.split == 1 {
            return out;
        }
        let (b, t) = (out.size()[0], out.size()[1]);
        let (row, s, c) = (self.tokens_per_row, self.split, self.channels);
        out.reshape([b, t / row, row, s, s, c])
            .permute([0, 1, 3, 2, 4, 5])
            .reshape([b, t * s * s, c])
    }

    /// `[batch, samples, out_k]`, the term added to `z_k`.
    fn added(&self, lat: &Tensor) -> Tensor {
        self.up.matmul(lat).matmul(&self.w_lat)
    }

    /// Bits of each instance's latents under the Laplace of its level, `[batch]`: the
    /// same discretised Laplace as V's, with the channel in the place of the rank.
    fn bits(&self, lat: &Tensor, steps: &Tensor, levels: &Tensor) -> Tensor {
        let loc = self.location.index_select(0, levels).unsqueeze(1);
        let scale = self.log_scale.index_select(0, levels).exp().unsqueeze(1);
        laplace_bits(lat, &loc, &scale, &steps.reshape([-1, 1, 1]))
    }
}

/// The root mean square of each instance's `[batch, a, b]` values, `[batch, 1, 1]`
/// (never 0): the scale of the normalised steps of the latents' and V's fits.
fn instance_rms(t: &Tensor) -> Tensor {
    t.square()
        .mean_dim(&[1i64, 2][..], true, Kind::Float)
        .sqrt()
        + 1e-12
}

/// `--inner K`: the latents start at the head's prediction `l0` and take `K` gradient
/// steps on the distortion with V fixed, each moving every tile's latents by
/// `inner_lr` times the gradient over its RMS (first order: the result is detached, so
/// the outer loss trains the head through `l0` alone). The encoder's refinement would
/// fit them the same way.
/// With `rate = Some((steps, levels, lambdas))` (`--inner-rate`) the inner loss is the
/// rate-distortion loss, the latents' bits under their Laplace at each tile's level.
#[allow(clippy::too_many_arguments)]
fn fit_latents(
    model: &IpcModel,
    lat: &Latent,
    v: &Tensor,
    l0: &Tensor,
    target: &Tensor,
    steps: usize,
    lr: f64,
    rate: Option<(&Tensor, &Tensor, &Tensor)>,
) -> Tensor {
    let v = v.detach();
    let base = l0.detach();
    let mut delta = base.zeros_like();
    for k in 0..steps {
        let d = delta.detach().set_requires_grad(true);
        let add = lat.added(&(&base + &d));
        let recon = model.synthesize_with(&v, Some((lat.inject, &add)));
        let mut loss = IpcModel::instance_mse(&recon, target);
        if let Some((lsteps, levels, lambdas)) = rate {
            let samples = target.size()[1] as f64;
            loss += lambdas * lat.bits(&(&base + &d), lsteps, levels) / samples;
        }
        let loss = loss.sum(Kind::Float);
        let g = Tensor::run_backward(&[&loss], &[&d], false, false)
            .pop()
            .expect("gradient");
        // Linear decay to lr / steps at the last step.
        let decay = 1.0 - k as f64 / steps as f64;
        delta = d.detach() - &g / instance_rms(&g) * (lr * decay);
    }
    delta.detach()
}

/// `--refine-v K` (evaluation only): every tile's V takes `K` gradient steps on the
/// distortion (latents at the head's prediction), each moving V by `lr` times its own
/// RMS along the normalised gradient, decaying linearly: the encoder's refinement, so
/// that the control is compared at equal encoder effort.
fn refine_v(
    model: &IpcModel,
    lat: Option<(&Latent, &Tensor)>,
    v: &Tensor,
    target: &Tensor,
    steps: usize,
    lr: f64,
) -> Tensor {
    let mut v = v.detach();
    let added = lat.map(|(lat, l)| tch::no_grad(|| lat.added(l)));
    for k in 0..steps {
        let x = v.detach().set_requires_grad(true);
        let recon = match (&added, lat) {
            (Some(add), Some((lat, _))) => model.synthesize_with(&x, Some((lat.inject, add))),
            _ => model.synthesize(&x),
        };
        let loss = IpcModel::instance_mse(&recon, target).sum(Kind::Float);
        let g = Tensor::run_backward(&[&loss], &[&x], false, false)
            .pop()
            .expect("gradient");
        let decay = 1.0 - k as f64 / steps as f64;
        v = x.detach() - &g / instance_rms(&g) * instance_rms(&x.detach()) * (lr * decay);
    }
    v
}

/// Cross-entropy in bits of `test` symbols under counts from `fit` (per column of a
/// `[n, columns]` table), add-half smoothing, unseen symbols escaped at a flat cost.
fn table_bits(fit: &[i64], test: &[i64], columns: usize) -> f64 {
    let mut total = 0.0;
    for c in 0..columns {
        let mut counts: HashMap<i64, f64> = HashMap::new();
        let mut n = 0.0;
        for q in fit.iter().skip(c).step_by(columns) {
            *counts.entry(*q).or_default() += 1.0;
            n += 1.0;
        }
        let support = counts.len() as f64 + 1.0;
        for q in test.iter().skip(c).step_by(columns) {
            let k = counts.get(q).copied().unwrap_or(0.0);
            let p = (k + 0.5) / (n + 0.5 * support);
            // An unseen symbol: the escape's mass plus an Elias-gamma-like 2 log2 |q|.
            let extra = if k == 0.0 {
                2.0 * ((q.unsigned_abs() as f64) + 1.0).log2()
            } else {
                0.0
            };
            total += -p.log2() + extra;
        }
    }
    total
}

fn ints(t: &Tensor) -> Vec<i64> {
    Vec::<i64>::try_from(t.to_kind(Kind::Int64).flatten(0, -1)).expect("ints")
}

fn main() {
    let a = parse_args();
    tch::set_num_threads(1);
    tch::manual_seed(a.seed as i64);
    let config = TrainConfig::load(&a.config).expect("config");
    let mut trainer = Trainer::new(&config, Device::Cpu).expect("trainer");
    trainer
        .grow_from_checkpoint(&a.checkpoint)
        .expect("checkpoint");
    let [tw, th] = config.model.tile;
    let set = ImageSet::load(&config.data.dir, &image_set_options(&config)).expect("images");
    let samples = (tw * th) as i64;
    let shapes = config.pack_config("");
    let patch = config.encoder.patch;
    let stride = if a.stride == 0 { patch } else { a.stride };
    assert!(
        patch % stride == 0,
        "the stride divides the hypernetwork's patch"
    );
    let levels_n = config.rate.levels.len();
    let lvs = nn::VarStore::new(Device::Cpu);
    let latent = (a.channels > 0).then(|| {
        let out_k = shapes.layer_shape(a.inject).1;
        Latent::new(
            &lvs.root(),
            config.encoder.dim,
            a.channels,
            out_k,
            levels_n,
            upsampling([tw, th], stride),
            a.inject,
            a.wlat_init,
            a.inner > 0,
            patch / stride,
            tw / patch,
        )
    });
    if std::env::var_os("LATENT_DEBUG").is_some() {
        let mut rng = SplitMix64(99);
        let mut buf = Vec::new();
        set.sample_batch(&mut rng, 64, th, tw, &mut buf);
        let batch = Tensor::from_slice(&buf).reshape([64, samples, 3]);
        let levels = Tensor::zeros([64], (Kind::Int64, Device::Cpu));
        let v0 = tch::no_grad(|| {
            trainer
                .model
                .hyper
                .as_ref()
                .unwrap()
                .forward(&batch, &levels)
        });
        let stride: usize = std::env::var("LATENT_DEBUG").unwrap().parse().unwrap_or(4);
        let up = upsampling([tw, th], stride);
        let cells = ((tw / stride) * (th / stride)) as i64;
        let env = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|x| x.parse().ok())
                .unwrap_or(d)
        };
        let inject = env("LATENT_DEBUG_INJECT", config.model.layers - 1);
        let c = env("LATENT_DEBUG_C", 3) as i64;
        let out_k = shapes.layer_shape(inject).1 as i64;
        let dvs = nn::VarStore::new(Device::Cpu);
        let small = nn::Init::Randn {
            mean: 0.0,
            stdev: 0.1,
        };
        // LATENT_DEBUG_FREE_V=1: V is fitted too, from the prediction (the ceiling's
        // free V); LATENT_DEBUG_C=0: no latent at all.
        let v = if std::env::var_os("LATENT_DEBUG_FREE_V").is_some() {
            let v = dvs.root().var("v", &v0.size(), nn::Init::Const(0.0));
            tch::no_grad(|| {
                let mut v = v.shallow_clone();
                v.copy_(&v0);
            });
            v
        } else {
            v0
        };
        let l = dvs.root().var("l", &[64, cells, c], small);
        // Output injection with 3 channels: the identity (a plain RGB residual);
        // elsewhere a learned W_l shared by the batch.
        let w = if inject == config.model.layers - 1 && c == 3 {
            Tensor::eye(3, (Kind::Float, Device::Cpu))
        } else {
            dvs.root().var("w", &[c, out_k], small)
        };
        let mut o = nn::Adam::default().build(&dvs, 0.01).unwrap();
        for i in 0..401 {
            let add = up.matmul(&l).matmul(&w);
            let recon = if c == 0 {
                trainer.model.synthesize(&v)
            } else {
                trainer.model.synthesize_with(&v, Some((inject, &add)))
            };
            let mse = (recon - &batch).square().mean(Kind::Float);
            if i % 100 == 0 {
                println!(
                    "debug {i}: psnr {:.2}",
                    -10.0 * f64::try_from(&mse).unwrap().log10()
                );
            }
            o.zero_grad();
            mse.backward();
            o.step();
        }
        return;
    }
    let mut lvs = lvs;
    if let Some(prefix) = &a.load {
        trainer
            .vs
            .load(prefix.with_extension("net.safetensors"))
            .expect("saved network");
        if latent.is_some() {
            lvs.load(prefix.with_extension("latent.safetensors"))
                .expect("saved latent branch");
        }
    }
    let mut opt = nn::Adam::default().build(&trainer.vs, a.lr).expect("adam");
    let mut lopt = nn::Adam::default()
        .build(&lvs, a.lr * a.latent_lr)
        .expect("adam");
    let mut rng = SplitMix64(a.seed);
    let batch_n = config.train.batch;
    let mut buf = Vec::new();
    let started = std::time::Instant::now();
    let (mut acc_mse, mut acc_vbits, mut acc_lbits, mut acc_n) = (0.0, 0.0, 0.0, 0.0);
    for step in 0..a.steps {
        set.sample_batch(&mut rng, batch_n, th, tw, &mut buf);
        let batch = Tensor::from_slice(&buf).reshape([batch_n as i64, samples, 3]);
        let (levels, steps, lambdas) =
            sample_levels(&config, &mut rng, batch_n as i64, Device::Cpu);
        let hyper = trainer.model.hyper.as_ref().expect("hypernetwork");
        let (v, tokens) = hyper.forward_with_tokens(&batch, &levels);
        // `--no-rate`: distortion alone, no quantisation noise (the capacity check).
        let noise = if a.no_rate { 0.0 } else { 1.0 };
        let step3 = steps.reshape([-1, 1, 1]) * noise;
        let lambdas = lambdas * noise;
        let v_hat = &v + (v.rand_like() - 0.5) * &step3;
        let mut bits = trainer.model.entropy.bits(&v_hat, &steps, &levels);
        // A copy: `bits` is added to in place below.
        let vbits = bits.detach().copy();
        let recon = match &latent {
            Some(lat) => {
                let mut l = lat.predict(&tokens);
                if a.inner > 0 {
                    let lsteps = &steps * a.latent_step;
                    let rate = a.inner_rate.then_some((&lsteps, &levels, &lambdas));
                    l = &l
                        + fit_latents(
                            &trainer.model,
                            lat,
                            &v,
                            &l,
                            &batch,
                            a.inner,
                            a.inner_lr,
                            rate,
                        );
                }
                // `--latent-step f`: the latents' step is the level's step times f (their
                // scale against W_ℓ is free, but Adam moves it slowly).
                let l_hat = &l + (l.rand_like() - 0.5) * (&step3 * a.latent_step);
                // The latents' rate enters gradually (`--rate-warmup`), so that they
                // carry information before the rate term can pull them to zero.
                let ramp = if a.rate_warmup == 0 {
                    1.0
                } else {
                    (step as f64 / a.rate_warmup as f64).min(1.0)
                };
                let lbits = lat.bits(&l_hat, &(&steps * (noise * a.latent_step)), &levels);
                acc_lbits += f64::try_from(lbits.mean(Kind::Float)).unwrap();
                bits += lbits * ramp;
                trainer
                    .model
                    .synthesize_with(&v_hat, Some((lat.inject, &lat.added(&l_hat))))
            }
            None => trainer.model.synthesize(&v_hat),
        };
        let mse = IpcModel::instance_mse(&recon, &batch);
        let loss = (&mse + &lambdas * (&bits / samples as f64)).mean(Kind::Float);
        opt.zero_grad();
        lopt.zero_grad();
        loss.backward();
        opt.step();
        lopt.step();
        acc_mse += f64::try_from(mse.mean(Kind::Float)).unwrap();
        acc_vbits += f64::try_from(vbits.mean(Kind::Float)).unwrap();
        acc_n += 1.0;
        if (step + 1) % a.report_every == 0 {
            println!(
                "step {:6}  train psnr {:.2}  V bits/px {:.3}  latent bits/px {:.3}  {:.0} s",
                step + 1,
                -10.0 * (acc_mse / acc_n).log10(),
                acc_vbits / acc_n / samples as f64,
                acc_lbits / acc_n / samples as f64,
                started.elapsed().as_secs_f64()
            );
            (acc_mse, acc_vbits, acc_lbits, acc_n) = (0.0, 0.0, 0.0, 0.0);
        }
    }
    if let Some(prefix) = &a.save {
        trainer
            .vs
            .save(prefix.with_extension("net.safetensors"))
            .expect("save network");
        lvs.save(prefix.with_extension("latent.safetensors"))
            .expect("save latent branch");
    }
    // Evaluation.
    let hold = set.holdout_tiles(th, tw, a.eval_tiles);
    let n_hold = hold.len() as i64 / (samples * 3);
    let hold = Tensor::from_slice(&hold).reshape([n_hold, samples, 3]);
    let mut fit = Vec::new();
    let mut fit_rng = SplitMix64(12345);
    set.sample_batch(&mut fit_rng, a.fit_tiles, th, tw, &mut fit);
    let fit = Tensor::from_slice(&fit).reshape([a.fit_tiles as i64, samples, 3]);
    let hyper = trainer.model.hyper.as_ref().expect("hypernetwork");
    let predict = |x: &Tensor| {
        tch::no_grad(|| {
            let zeros = Tensor::zeros([x.size()[0]], (Kind::Int64, Device::Cpu));
            let mut vs = Vec::new();
            let mut ls = Vec::new();
            for chunk in x.split(1024, 0) {
                let (v, tok) =
                    hyper.forward_with_tokens(&chunk, &zeros.narrow(0, 0, chunk.size()[0]));
                vs.push(v);
                if let Some(lat) = &latent {
                    ls.push(lat.predict(&tok));
                }
            }
            (
                Tensor::cat(&vs, 0),
                (!ls.is_empty()).then(|| Tensor::cat(&ls, 0)),
            )
        })
    };
    let (v_fit, l_fit) = predict(&fit);
    let (v_hold, l_hold) = predict(&hold);
    let refined = |v: &Tensor, l: &Option<Tensor>, target: &Tensor| {
        if a.refine_v == 0 {
            return v.shallow_clone();
        }
        let parts: Vec<Tensor> = (0..v.size()[0])
            .step_by(1024)
            .map(|i| {
                let n = (v.size()[0] - i).min(1024);
                let lat = latent
                    .as_ref()
                    .zip(l.as_ref())
                    .map(|(lat, l)| (lat, l.narrow(0, i, n)));
                refine_v(
                    &trainer.model,
                    lat.as_ref().map(|(lat, l)| (*lat, l)),
                    &v.narrow(0, i, n),
                    &target.narrow(0, i, n),
                    a.refine_v,
                    0.05,
                )
            })
            .collect();
        Tensor::cat(&parts, 0)
    };
    let v_fit = refined(&v_fit, &l_fit, &fit);
    let v_hold = refined(&v_hold, &l_hold, &hold);
    let (rows, cols) = config.v_shape();
    println!(
        "held-out tiles {n_hold}, fit tiles {}, {} steps, channels {}, inject {}, {:.0} s",
        a.fit_tiles,
        a.steps,
        a.channels,
        a.inject,
        started.elapsed().as_secs_f64()
    );
    let eval_inner = if a.eval_inner.is_empty() {
        vec![a.inner]
    } else {
        a.eval_inner.clone()
    };
    for (&inner, &level) in eval_inner
        .iter()
        .flat_map(|k| a.eval_levels.iter().map(move |l| (k, l)))
    {
        let step = effective_step(config.rate.levels[level].step);
        let qv_fit = ints(&(&v_fit / step).round());
        let qv = (&v_hold / step).round();
        let vbits = table_bits(&qv_fit, &ints(&qv), rows * cols);
        let (lbits, latents) = match (&latent, &l_fit, &l_hold) {
            (Some(lat), Some(lf), Some(lh)) => {
                // With `--inner`, both the table-fitting tiles' and the held-out
                // tiles' latents are fitted with V rounded at this level.
                let fitted = |l: &Tensor, qv: &Tensor, target: &Tensor| {
                    if inner == 0 {
                        return l.shallow_clone();
                    }
                    let vq = qv * step;
                    let parts: Vec<Tensor> = l
                        .split(1024, 0)
                        .iter()
                        .zip(vq.split(1024, 0))
                        .zip(target.split(1024, 0))
                        .map(|((l, v), t)| {
                            let n = l.size()[0];
                            let lsteps =
                                Tensor::full([n], step * a.latent_step, (Kind::Float, Device::Cpu));
                            let levels =
                                Tensor::full([n], level as i64, (Kind::Int64, Device::Cpu));
                            let lambdas = Tensor::full(
                                [n],
                                config.rate.levels[level].lambda,
                                (Kind::Float, Device::Cpu),
                            );
                            let rate = a.inner_rate.then_some((&lsteps, &levels, &lambdas));
                            l + fit_latents(&trainer.model, lat, &v, l, &t, inner, a.inner_lr, rate)
                        })
                        .collect();
                    Tensor::cat(&parts, 0)
                };
                let lh = &fitted(lh, &qv, &hold);
                let lf = &fitted(lf, &(&v_fit / step).round(), &fit);
                let lstep = step * a.latent_step;
                let ql = (lh / lstep).round();
                let b = table_bits(&ints(&(lf / lstep).round()), &ints(&ql), a.channels);
                (b, Some(&ql * lstep))
            }
            _ => (0.0, None),
        };
        let (mse, mse_mean_latent) = tch::no_grad(|| {
            let vq = &qv * step;
            let synthesize = |l: &Tensor| {
                let add = latent.as_ref().expect("latents").added(l);
                trainer.model.synthesize_with(&vq, Some((a.inject, &add)))
            };
            let recon = match &latents {
                Some(l) => synthesize(l),
                None => trainer.model.synthesize(&vq),
            };
            let mse =
                f64::try_from((recon.clamp(0.0, 1.0) - &hold).square().mean(Kind::Float)).unwrap();
            // The latents replaced by their mean over the held-out tiles (how much the
            // picture depends on them): the rounded latents the PSNR above used, fitted
            // ones with `--inner`.
            let mean_latent = match &latents {
                Some(l) => {
                    let mean = l.mean_dim(&[0i64][..], true, Kind::Float).expand_as(l);
                    f64::try_from(
                        (synthesize(&mean).clamp(0.0, 1.0) - &hold)
                            .square()
                            .mean(Kind::Float),
                    )
                    .unwrap()
                }
                None => mse,
            };
            (mse, mean_latent)
        });
        let px = (n_hold * samples) as f64;
        println!(
            "inner {inner:3} level {level:2} step {step:.4}: {:.3} bpp (V {:.3}, latent {:.3})  PSNR {:.2} dB  (latent at its mean: {:.2} dB)",
            (vbits + lbits) / px,
            vbits / px,
            lbits / px,
            -10.0 * mse.log10(),
            -10.0 * mse_mean_latent.log10()
        );
    }
}
