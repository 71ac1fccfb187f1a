//! The training loop: rate-aware optimisation of the IPC model (loss = MSE + lambda x
//! bits per sample, one lambda per quality level, levels sampled per instance),
//! held-out evaluation with real quantisation and real entropy coding, checkpoints
//! and resume, and export of the pack.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use ipc_codec::encoder::{AudioSignal, Encoder, EncoderConfig, ImageSignal, RateTarget, Signal};
use ipc_codec::entropy::{TileGrid, VModel};
use ipc_codec::metrics::bits_per_sample;
use ipc_codec::pack::{EntropyTables, ModelPack, Orientation, PackContents};
use ipc_codec::rng::SplitMix64;
use ipc_codec::Limits;
use serde::{Deserialize, Serialize};
use tch::{nn, Device, Kind, Tensor};

use crate::adam::Adam;
use crate::config::{self, QuantProxy, TableFit, TrainConfig};
use crate::data::{AudioSet, AudioSetOptions, DataError, ImageSet, ImageSetOptions};
use crate::export::{
    effective_step, fitted_entropy_tables, learned_tables, pack_contents, values, LOG_INNER_LR_VAR,
};
use crate::model::IpcModel;

/// Errors of a training run.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The training data could not be loaded.
    #[error(transparent)]
    Data(#[from] DataError),
    /// libtorch reported an error.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
    /// The pack could not be built.
    #[error("export: {0}")]
    Pack(#[from] ipc_codec::PackError),
    /// The library encoder failed on a held-out file.
    #[error("held-out encode: {0}")]
    Encode(#[from] ipc_codec::encoder::EncodeError),
    /// A checkpoint is unreadable or belongs to another configuration.
    #[error("checkpoint {path}: {reason}")]
    Checkpoint {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// Writing an output failed.
    #[error("cannot write {path}: {source}")]
    Write {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Training diverged.
    #[error("the loss became {0} at step {1}; lower train.lr")]
    Diverged(f64, usize),
    /// `rate.tables = "fitted"` and no training instances to count V on were given
    /// (`Trainer::set_fit_instances`).
    #[error("rate.tables = \"fitted\" needs training instances to count V on")]
    NoFitInstances,
}

/// Options of one run, beyond the configuration.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Overrides `train.steps`.
    pub steps: Option<usize>,
    /// Where the pack is written.
    pub out: PathBuf,
    /// Checkpoint to resume from.
    pub resume: Option<PathBuf>,
    /// Checkpoint of a smaller model to start a new run from
    /// ([`Trainer::grow_from_checkpoint`]); ignored with `resume`.
    pub grow_from: Option<PathBuf>,
    /// Device for libtorch.
    pub device: Device,
}

/// Progress of a run, handed to the caller's reporter after every step.
#[derive(Debug, Clone, Default)]
pub struct StepStats {
    /// Steps done.
    pub step: usize,
    /// Total steps.
    pub total: usize,
    /// Loss of the last step.
    pub loss: f64,
    /// PSNR (dB, peak 1) of the last batch with the quantisation proxy.
    pub psnr: f64,
    /// Model bits per element of V in the last batch.
    pub bits_per_element: f64,
}

/// Held-out figures at one quality level, with V really rounded and entropy-coded.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LevelEval {
    /// Quality level.
    pub level: usize,
    /// Quantisation step.
    pub step: f64,
    /// Mean per-instance PSNR (dB) of the clamped reconstruction.
    pub psnr: f64,
    /// Coded bits per element of V (payload only).
    pub bits_per_element: f64,
    /// Coded bits per sample (per pixel for images), payload only.
    pub bits_per_sample: f64,
    /// Whole held-out files, as a user measures them: mean over the files of the
    /// whole-file rate (real `.ipc` bytes with header: bits per pixel for images, kbit/s
    /// for audio), encoded by the library encoder (the configured method, effort 0).
    /// Absent when no held-out file was evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_rate: Option<f64>,
    /// Mean over the same files of the PSNR of the whole decoded signal (8-bit output
    /// against the 8-bit original for images, peak 1 for audio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_psnr: Option<f64>,
}

/// Checkpoint metadata beside the weights.
#[derive(Debug, Serialize, Deserialize)]
struct CheckpointMeta {
    name: String,
    step: usize,
    rng: u64,
    config: TrainConfig,
}

enum Dataset {
    Image(ImageSet),
    Audio(AudioSet),
}

impl Dataset {
    fn load(config: &TrainConfig) -> Result<Dataset, DataError> {
        let d = &config.data;
        if config.channels() == 3 {
            let set = ImageSet::load(&d.dir, &image_set_options(config))?;
            set.check_tile(config.model.tile[1], config.model.tile[0])?;
            Ok(Dataset::Image(set))
        } else {
            let opts = AudioSetOptions {
                sample_rate: config.model.sample_rate.unwrap_or(16_000),
                holdout_fraction: d.holdout_fraction,
                holdout_by: d.holdout_by,
            };
            Ok(Dataset::Audio(AudioSet::load(&d.dir, &opts)?))
        }
    }

    fn batch(&self, rng: &mut SplitMix64, n: usize, tile: [usize; 2], out: &mut Vec<f32>) {
        match self {
            Dataset::Image(s) => s.sample_batch(rng, n, tile[1], tile[0], out),
            Dataset::Audio(s) => s.sample_batch(rng, n, tile[0], out),
        }
    }

    /// Up to `max` whole held-out files (in file-name order) as the encoder's input.
    fn holdout_signals(&self, max: usize) -> Vec<Signal> {
        match self {
            Dataset::Image(s) => s
                .holdout
                .iter()
                .take(max)
                .map(|img| {
                    Signal::Image(ImageSignal {
                        width: img.width as u32,
                        height: img.height as u32,
                        channels: 3,
                        bit_depth: 8,
                        samples: img.data.iter().map(|&b| f32::from(b) / 255.0).collect(),
                    })
                })
                .collect(),
            Dataset::Audio(s) => s
                .holdout
                .iter()
                .take(max)
                .map(|clip| {
                    Signal::Audio(AudioSignal {
                        sample_rate: s.sample_rate,
                        channels: 1,
                        samples: clip.samples.clone(),
                    })
                })
                .collect(),
        }
    }

    fn holdout(&self, tile: [usize; 2], max: usize) -> Vec<f32> {
        match self {
            Dataset::Image(s) => s.holdout_tiles(tile[1], tile[0], max),
            Dataset::Audio(s) => s.holdout_chunks(tile[0], max),
        }
    }
}

/// A model with its variables and optimiser.
pub struct Trainer {
    /// The configuration.
    pub config: TrainConfig,
    /// All variables.
    pub vs: nn::VarStore,
    /// The model.
    pub model: IpcModel,
    /// Adam over every trainable variable (the main stage).
    optimizer: Adam,
    /// Learning rate of the main stage's next step.
    lr: f64,
    rng: SplitMix64,
    /// Steps done (main steps, then meta steps).
    pub step: usize,
    /// Adam over V0 and the inner step size alone (the meta stage), when the model has
    /// them.
    meta_adam: Option<Adam>,
    /// Training instances `[n, samples, channels]` the `fitted` entropy tables are
    /// counted on.
    fit_instances: Option<Tensor>,
    /// Whether the last checkpoint loaded restarted the meta stage.
    meta_restarted: bool,
}

/// How an image run loads its training images (`[data]` of the configuration; images
/// smaller than a tile are skipped).
pub fn image_set_options(config: &TrainConfig) -> ImageSetOptions {
    ImageSetOptions {
        max_short_side: config.data.max_short_side,
        holdout_fraction: config.data.holdout_fraction,
        min_height: config.model.tile[1],
        min_width: config.model.tile[0],
        ..ImageSetOptions::default()
    }
}

/// A uniformly drawn quality level for each of `n` instances (one draw of `rng` each),
/// with the level's effective step and lambda: `([n] level ids, [n] steps, [n]
/// lambdas)` on `device`.
pub fn sample_levels(
    config: &TrainConfig,
    rng: &mut SplitMix64,
    n: i64,
    device: Device,
) -> (Tensor, Tensor, Tensor) {
    let levels = &config.rate.levels;
    let level_ids: Vec<i64> = (0..n)
        .map(|_| (rng.next_u64() % levels.len() as u64) as i64)
        .collect();
    let steps: Vec<f32> = level_ids
        .iter()
        .map(|&l| effective_step(levels[l as usize].step) as f32)
        .collect();
    let lambdas: Vec<f32> = level_ids
        .iter()
        .map(|&l| levels[l as usize].lambda as f32)
        .collect();
    (
        Tensor::from_slice(&level_ids).to_device(device),
        Tensor::from_slice(&steps).to_device(device),
        Tensor::from_slice(&lambdas).to_device(device),
    )
}

/// The libtorch seed of step `step` of a run seeded `seed`. Reseeding libtorch before
/// every step (its only random draws are the quantisation noise) makes a run that was
/// stopped and resumed draw exactly what an uninterrupted run draws.
fn step_seed(seed: u64, step: usize) -> i64 {
    let mut mix = SplitMix64(seed ^ (step as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    (mix.next_u64() >> 1) as i64
}

impl Trainer {
    /// A freshly initialised model (seeded).
    pub fn new(config: &TrainConfig, device: Device) -> Result<Trainer, TrainError> {
        tch::manual_seed(config.seed as i64);
        let vs = nn::VarStore::new(device);
        let model = IpcModel::new(&vs.root(), config);
        let trainable: Vec<(String, Tensor)> = vs
            .variables()
            .into_iter()
            .filter(|(_, t)| t.requires_grad())
            .collect();
        let optimizer = Adam::new(trainable);
        let meta_adam = match (&model.v0, &model.log_inner_lr) {
            (Some(v0), Some(lr)) => Some(Adam::new(vec![
                (V0_VAR.to_string(), v0.shallow_clone()),
                (LOG_INNER_LR_VAR.to_string(), lr.shallow_clone()),
            ])),
            _ => None,
        };
        Ok(Trainer {
            config: config.clone(),
            vs,
            model,
            optimizer,
            lr: config.train.lr,
            rng: SplitMix64(config.seed ^ 0x5eed_da7a),
            step: 0,
            meta_adam,
            fit_instances: None,
            meta_restarted: false,
        })
    }

    /// Quality levels for the instances of a batch, with their steps and lambdas.
    fn sample_levels(&mut self, n: i64) -> (Tensor, Tensor, Tensor) {
        sample_levels(&self.config, &mut self.rng, n, self.vs.device())
    }

    /// The rate-distortion loss of V for a batch (quantisation proxy, synthesis,
    /// entropy model), with its statistics.
    fn rd_loss(
        &self,
        v: &Tensor,
        batch: &Tensor,
        levels: &Tensor,
        steps: &Tensor,
        lambdas: &Tensor,
    ) -> (Tensor, Tensor, Tensor) {
        let cfg = &self.config;
        let step3 = steps.reshape([-1, 1, 1]);
        let v_hat = match cfg.rate.proxy {
            QuantProxy::Noise => v + (v.rand_like() - 0.5) * &step3,
            QuantProxy::Ste => {
                let rounded = (v / &step3).round() * &step3;
                v + (rounded - v).detach()
            }
        };
        let recon = self.model.synthesize(&v_hat);
        let mse = IpcModel::instance_mse(&recon, batch);
        let bits = self.model.entropy.bits(&v_hat, steps, levels);
        let samples = cfg.tile_samples() as f64;
        let loss = (&mse + lambdas * (&bits / samples)).mean(Kind::Float);
        (loss, mse, bits)
    }

    fn stats(&self, loss: &Tensor, mse: &Tensor, bits: &Tensor) -> StepStats {
        let cfg = &self.config;
        let (rows, cols) = cfg.v_shape();
        let elements = (rows * cols) as f64;
        StepStats {
            step: self.step,
            total: 0,
            loss: f64::try_from(loss).unwrap_or(f64::NAN),
            psnr: ipc_codec::metrics::psnr_from_mse(
                f64::try_from(mse.mean(Kind::Float)).unwrap_or(f64::NAN),
                1.0,
            ),
            bits_per_element: f64::try_from(bits.mean(Kind::Float)).unwrap_or(f64::NAN) / elements,
        }
    }

    /// One optimisation step on a batch `[batch, samples, channels]`.
    pub fn train_step(&mut self, batch: &Tensor) -> StepStats {
        tch::manual_seed(step_seed(self.config.seed, self.step));
        let n = batch.size()[0];
        let (levels, steps, lambdas) = self.sample_levels(n);
        let v = self.model.predict_v(batch, &levels, true);
        let (loss, mse, bits) = self.rd_loss(&v, batch, &levels, &steps, &lambdas);
        let grads = self.optimizer.gradients(&loss);
        self.optimizer.step(&grads, self.lr);
        self.step += 1;
        self.stats(&loss, &mse, &bits)
    }

    /// One step of the meta stage (`encoder.meta_steps`): the same loss with V from the
    /// CAVIA inner steps, and only V0 and the inner step size updated (Adam on those
    /// alone, so that the frozen variables keep their values exactly).
    pub fn meta_step(&mut self, batch: &Tensor, lr: f64) -> StepStats {
        tch::manual_seed(step_seed(self.config.seed, self.step));
        let n = batch.size()[0];
        let (levels, steps, lambdas) = self.sample_levels(n);
        let e = self.config.encoder.clone();
        let v = self
            .model
            .adapt_learned(batch, e.inner_steps, !e.first_order);
        let (loss, mse, bits) = self.rd_loss(&v, batch, &levels, &steps, &lambdas);
        let adam = self
            .meta_adam
            .as_mut()
            .expect("the meta stage needs V0 and the inner step size");
        let grads = adam.gradients(&loss);
        adam.step(&grads, lr);
        self.step += 1;
        self.stats(&loss, &mse, &bits)
    }

    /// Held-out evaluation at every quality level, from the pack the model would export
    /// now: on the held-out tiles `holdout`, V rounded to the level's step and
    /// entropy-coded with the pack's tables (a training diagnostic), and on the whole
    /// held-out `files`, each encoded into a real `.ipc` file at every level (whole-file
    /// rate and PSNR: what users see).
    pub fn evaluate(
        &self,
        holdout: &[f32],
        files: &[Signal],
    ) -> Result<Vec<LevelEval>, TrainError> {
        let contents = self.export("evaluation")?;
        let mut eval = self.evaluate_tiles(holdout, &contents.entropy)?;
        self.evaluate_files(files, contents, &mut eval)?;
        Ok(eval)
    }

    /// The tile part of [`Trainer::evaluate`], with the pack's entropy tables `tables`.
    fn evaluate_tiles(
        &self,
        holdout: &[f32],
        tables: &EntropyTables,
    ) -> Result<Vec<LevelEval>, TrainError> {
        let cfg = &self.config;
        let per = cfg.tile_samples() * cfg.channels();
        let count = holdout.len() / per;
        if count == 0 {
            return Ok(Vec::new());
        }
        let target = Tensor::from_slice(holdout)
            .reshape([
                count as i64,
                cfg.tile_samples() as i64,
                cfg.channels() as i64,
            ])
            .to_device(self.vs.device());
        let mut out = Vec::new();
        for (level, lc) in cfg.rate.levels.iter().enumerate() {
            let step = effective_step(lc.step);
            let levels = Tensor::full(
                [count as i64],
                level as i64,
                (Kind::Int64, self.vs.device()),
            );
            let v = self.model.predict_v(&target, &levels, false);
            let (q, psnr) = tch::no_grad(|| {
                let q = (&v / step).round();
                let mut recon = self.model.synthesize(&(&q * step));
                if cfg.channels() == 3 {
                    recon = recon.clamp(0.0, 1.0);
                } else {
                    recon = recon.clamp(-1.0, 1.0);
                }
                let mse = IpcModel::instance_mse(&recon, &target).clamp_min(1e-10);
                let psnr =
                    f64::try_from((mse.log10() * -10.0).mean(Kind::Float)).unwrap_or(f64::NAN);
                (q, psnr)
            });
            let q: Vec<i32> = values(&q).iter().map(|&x| x as i32).collect();
            let model = VModel::new(tables.contexts.clone(), &tables.levels[level])
                .map_err(ipc_codec::PackError::from)?;
            let bytes = model.encode(&q).map_err(ipc_codec::PackError::from)?.len() as u64;
            out.push(LevelEval {
                level,
                step,
                psnr,
                bits_per_element: bits_per_sample(bytes, q.len() as u64),
                bits_per_sample: bits_per_sample(bytes, (count * cfg.tile_samples()) as u64),
                file_rate: None,
                file_psnr: None,
            });
        }
        Ok(out)
    }

    /// Whole-file evaluation (what users see): the model exported as the pack
    /// `contents`, every file encoded at every level by the library encoder with the
    /// configured method and effort 0, and `file_rate` / `file_psnr` of `eval` set to the
    /// means over the files of the real file's rate and the whole decoded signal's PSNR.
    fn evaluate_files(
        &self,
        files: &[Signal],
        contents: PackContents,
        eval: &mut [LevelEval],
    ) -> Result<(), TrainError> {
        if files.is_empty() {
            return Ok(());
        }
        let pack = ModelPack::from_safetensors(&contents.to_safetensors()?)?;
        let method = match self.config.encoder.method {
            crate::config::Method::Hyper => ipc_codec::encoder::Method::Hyper,
            crate::config::Method::Meta => ipc_codec::encoder::Method::Meta,
        };
        let encoder = Encoder::new(
            &pack,
            EncoderConfig {
                method,
                effort: 0,
                threads: self.config.train.threads.max(1),
                limits: Limits::default(),
                version_1: false,
                ..EncoderConfig::default()
            },
        )?;
        for e in eval.iter_mut() {
            let (mut rate, mut psnr) = (0.0, 0.0);
            for signal in files {
                let level = u8::try_from(e.level).expect("at most 256 levels");
                let encoded = encoder.encode(signal, RateTarget::Quality(level), &mut |_| {})?;
                rate += encoded.rate;
                psnr += encoded.psnr.min(100.0);
            }
            e.file_rate = Some(rate / files.len() as f64);
            e.file_psnr = Some(psnr / files.len() as f64);
        }
        Ok(())
    }

    /// The pack contents of the model as it is now, with the entropy tables
    /// `rate.tables` asks for.
    pub fn export(&self, description: &str) -> Result<PackContents, TrainError> {
        let entropy = match self.config.rate.tables {
            TableFit::Learned => learned_tables(&self.model),
            TableFit::Fitted => {
                let instances = self
                    .fit_instances
                    .as_ref()
                    .ok_or(TrainError::NoFitInstances)?;
                let block = (self.config.rate).neighbour_grid(self.config.modality());
                fitted_entropy_tables(&self.model, instances, block)
            }
        };
        Ok(pack_contents(&self.model, &self.vs, description, entropy)?)
    }

    /// Gives the training instances (whole tiles or chunks, one after another) that
    /// `fitted` entropy tables are counted on.
    pub fn set_fit_instances(&mut self, instances: &[f32]) {
        let cfg = &self.config;
        let per = cfg.tile_samples() * cfg.channels();
        self.fit_instances = Some(
            Tensor::from_slice(instances)
                .reshape([
                    (instances.len() / per) as i64,
                    cfg.tile_samples() as i64,
                    cfg.channels() as i64,
                ])
                .to_device(self.vs.device()),
        );
    }

    /// Sets the learning rate of the main stage's next steps.
    pub fn set_lr(&mut self, lr: f64) {
        self.lr = lr;
    }

    /// Writes the weights (safetensors), the optimisers' moments and step counts
    /// (safetensors, `*.adam.safetensors`) and the run state (JSON) beside them, each
    /// atomically. With the per-step libtorch seed, this is everything a resumed run
    /// needs to continue exactly.
    pub fn save_checkpoint(&self, path: &Path) -> Result<(), TrainError> {
        let tmp = path.with_extension("tmp.safetensors");
        self.vs.save(&tmp)?;
        rename(&tmp, path)?;
        let mut state = self.optimizer.state("main");
        if let Some(meta) = &self.meta_adam {
            state.extend(meta.state("meta"));
        }
        let tmp = path.with_extension("adam.tmp.safetensors");
        Tensor::write_safetensors(&state, &tmp)?;
        rename(&tmp, &adam_path(path))?;
        let meta = CheckpointMeta {
            name: self.config.name.clone(),
            step: self.step,
            rng: self.rng.0,
            config: self.config.clone(),
        };
        let json = serde_json_string(&meta);
        write_atomic(&meta_path(path), json.as_bytes())
    }

    /// Restores weights, optimiser state and run state. A checkpoint written before the
    /// optimiser state was saved has no `*.adam.safetensors`: its moments restart from
    /// zero (the only case in which a resumed run differs from an uninterrupted one).
    pub fn load_checkpoint(&mut self, path: &Path) -> Result<(), TrainError> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.to_owned(),
            reason,
        };
        let meta = read_checkpoint_meta(path)?;
        let meta_stage = resumed_meta_stage(&meta.config.encoder, &self.config.encoder);
        if meta.config.model != self.config.model || meta_stage == ResumedMetaStage::Refused {
            return Err(bad(
                "it was trained with another model or encoder configuration".into(),
            ));
        }
        let restart_meta = meta_stage == ResumedMetaStage::Restarted;
        // A resumed run may add finer levels after the saved ones (a pack that should
        // reach higher rates); the saved levels keep their parameters and the new ones
        // start from the finest saved level's. Removing levels is refused: it would
        // drop what the saved levels learned.
        let saved_levels = meta.config.rate.levels.len();
        let levels = self.config.rate.levels.len();
        if levels < saved_levels {
            return Err(bad(format!(
                "it has {saved_levels} quality levels and the configuration {levels}; \
                 a resumed run can add levels but not remove them"
            )));
        }
        let weights: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| bad(format!("weights: {e}")))?
            .into_iter()
            .collect();
        let mut variables = self.vs.variables();
        let mut names: Vec<&String> = variables.keys().collect();
        names.sort();
        let mut restored = Vec::with_capacity(names.len());
        for name in names {
            if restart_meta && (name == V0_VAR || name == crate::export::LOG_INNER_LR_VAR) {
                // A restarted meta stage starts from their initial values, as a fresh
                // run's does.
                continue;
            }
            let Some(saved) = weights.get(name) else {
                // Checkpoints written before the inner step size was learned lack it;
                // it then keeps its initial value, `encoder.inner_lr`.
                if name == crate::export::LOG_INNER_LR_VAR {
                    continue;
                }
                return Err(bad(format!("variable {name} is missing")));
            };
            let shape = variables[name].size();
            let value = extend_levels(name, saved, &shape, saved_levels, LevelFill::FinestLevel)
                .map_err(bad)?;
            restored.push((name.clone(), value));
        }
        tch::no_grad(|| {
            for (name, value) in &restored {
                let var = variables.get_mut(name).expect("listed above");
                var.copy_(&value.to_device(var.device()).to_kind(var.kind()));
            }
        });
        let adam = adam_path(path);
        if adam.exists() {
            let saved = Tensor::read_safetensors(&adam)
                .map_err(|e| bad(format!("optimiser state: {e}")))?;
            // New levels' moments start at zero, as a new variable's would.
            let mut extended = HashMap::with_capacity(saved.len());
            for (key, value) in saved {
                let name = key.splitn(3, '.').nth(2).unwrap_or("");
                let value = match variables.get(name) {
                    Some(var) => {
                        extend_levels(name, &value, &var.size(), saved_levels, LevelFill::Zero)
                            .map_err(bad)?
                    }
                    None => value,
                };
                extended.insert(key, value);
            }
            let saved = extended;
            // A restarted meta stage's variables start with fresh moments in both
            // optimisers (the main stage never steps them: V0 takes no part in its
            // loss).
            let fresh: &[&str] = if restart_meta {
                &[V0_VAR, crate::export::LOG_INNER_LR_VAR]
            } else {
                &[]
            };
            self.optimizer
                .load_state(&saved, "main", fresh)
                .map_err(bad)?;
            if let Some(meta_adam) = &mut self.meta_adam {
                if !restart_meta {
                    meta_adam.load_state(&saved, "meta", &[]).map_err(bad)?;
                }
            }
        }
        self.step = meta.step;
        self.rng = SplitMix64(meta.rng);
        self.meta_restarted = restart_meta;
        Ok(())
    }

    /// Starts this run from the weights of a checkpoint of a smaller model of the same
    /// design (issue 9 item 4: more capacity without starting over): the saved model may
    /// differ from this one only by a smaller `pre_width` (spec/model-pack.md §3.1), so
    /// that V combines more patterns, and a smaller `rank`. Every saved weight fills the
    /// leading block of its variable; the grown part keeps its fresh initialisation (the
    /// new patterns of the layers before the modulated one, the new rank's weight token),
    /// except in the modulated layer's `U`, the hypernetwork's output layer and `V0`,
    /// where it starts at zero. With more patterns alone the grown model computes
    /// exactly what the saved one did: the new patterns enter through zero rows of V
    /// (instance-input) or of `U` (shared-input), and the random new patterns give those
    /// rows a gradient. A new rank's part of `U` starts at a tenth of its fresh values
    /// instead (a zero part meets a saddle: the rate term pulls the new rank's V to zero,
    /// after which neither moves), and its weight token takes part in the hypernetwork's
    /// attention, so a model grown in rank starts near, not at, the saved one.
    ///
    /// The quality levels may differ too (other steps or lambdas, another count, the
    /// hypernetwork told the level or not): the per-level variables (the training
    /// entropy model's parameters, the level embedding) then keep their fresh values,
    /// since a saved level's parameters belong to its step and lambda; every other
    /// weight carries over.
    ///
    /// Only the weights carry over: this is a new run (step 0, fresh optimiser moments,
    /// its own schedule and seed); its own checkpoints resume it exactly.
    pub fn grow_from_checkpoint(&mut self, path: &Path) -> Result<(), TrainError> {
        let bad = |reason: String| TrainError::Checkpoint {
            path: path.to_owned(),
            reason,
        };
        let meta = read_checkpoint_meta(path)?;
        let (saved, now) = (&meta.config.model, &self.config.model);
        let saved_pre = meta.config.pack_config("").pre_layer_width();
        let now_pre = self.config.pack_config("").pre_layer_width();
        let same_design = crate::config::ModelConfig {
            pre_width: now.pre_width,
            rank: now.rank,
            ..saved.clone()
        } == *now;
        if !same_design || saved_pre > now_pre || saved.rank > now.rank {
            return Err(bad(format!(
                "it was trained with another model; a run can only grow from a model that \
                 differs by a smaller pre_width or rank (saved: pre_width {saved_pre}, rank \
                 {}; now: pre_width {now_pre}, rank {})",
                saved.rank, now.rank
            )));
        }
        let m = now.modulated_layer;
        let u_name = format!("layers.{m}.u");
        let (saved_rank, now_rank) = (saved.rank, now.rank);
        let zero_grown =
            |name: &str| name == u_name || name.starts_with("encoder.hyper.out.") || name == V0_VAR;
        let same_levels = meta.config.rate.levels == self.config.rate.levels
            && meta.config.encoder.level_conditioning == self.config.encoder.level_conditioning;
        let fresh =
            |name: &str| !same_levels && PER_LEVEL_VARIABLES.iter().any(|v| name.ends_with(v));
        let weights: HashMap<String, Tensor> = Tensor::read_safetensors(path)
            .map_err(|e| bad(format!("weights: {e}")))?
            .into_iter()
            .collect();
        let mut variables = self.vs.variables();
        let mut names: Vec<String> = variables.keys().cloned().collect();
        names.sort();
        tch::no_grad(|| {
            for name in names {
                if fresh(&name) {
                    continue;
                }
                let Some(saved) = weights.get(&name) else {
                    if name == LOG_INNER_LR_VAR {
                        continue;
                    }
                    return Err(bad(format!("variable {name} is missing")));
                };
                let var = variables.get_mut(&name).expect("listed above");
                let (have, want) = (saved.size(), var.size());
                if have.len() != want.len() || have.iter().zip(&want).any(|(h, w)| h > w) {
                    return Err(bad(format!(
                        "variable {name} has shape {have:?} in the checkpoint, which does not fit in {want:?}"
                    )));
                }
                if have != want && zero_grown(&name) {
                    // The new rank's part of U (rows instance-input, columns
                    // shared-input) at a tenth of its fresh values: a zero part would
                    // leave the new rank without a gradient once the rate term has
                    // pulled its V to zero (measured: docs/experiments.md).
                    let new_rank = (name == u_name && saved_rank < now_rank).then(|| {
                        let dim = match now.orientation {
                            Orientation::InstanceInput => 0,
                            Orientation::SharedInput => 1,
                        };
                        let extra = (now_rank - saved_rank) as i64;
                        let part = var.narrow(dim, saved_rank as i64, extra) * RANK_GROWTH_SCALE;
                        (dim, extra, part)
                    });
                    let _ = var.zero_();
                    if let Some((dim, extra, part)) = new_rank {
                        var.narrow(dim, saved_rank as i64, extra).copy_(&part);
                    }
                }
                let mut block = var.shallow_clone();
                for (dim, &size) in have.iter().enumerate() {
                    block = block.narrow(dim as i64, 0, size);
                }
                block.copy_(&saved.to_device(var.device()).to_kind(var.kind()));
            }
            Ok(())
        })
    }

    /// After [`Trainer::load_checkpoint`] restarted the meta stage (its settings
    /// changed): a checkpoint past `main_steps` goes back to step `main_steps`, so that
    /// the whole meta stage runs again under the new settings. The main stage's
    /// variables are frozen in the meta stage, so they are as they were at `main_steps`;
    /// the data order continues from the checkpoint's, and libtorch's noise is drawn
    /// per step as in a fresh run. Does nothing otherwise.
    pub fn rewind_restarted_meta_stage(&mut self, main_steps: usize) {
        if self.meta_restarted && self.step > main_steps {
            self.step = main_steps;
        }
    }
}

/// The name of V0 among the model's variables.
const V0_VAR: &str = "encoder.v0";

/// The scale of U's new-rank part relative to its fresh initialisation when a run grows
/// its rank ([`Trainer::grow_from_checkpoint`]).
const RANK_GROWTH_SCALE: f64 = 0.1;

/// What a checkpoint's meta stage becomes when resumed under other encoder settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ResumedMetaStage {
    /// The same settings: V0, the inner step size and their moments are restored.
    Restored,
    /// The meta settings changed or the stage was dropped: V0 and the inner step size
    /// start again from their initial values (or are absent), with fresh moments.
    Restarted,
    /// Other settings changed: the checkpoint does not fit.
    Refused,
}

/// How a checkpoint trained with encoder settings `saved` resumes under `now`: the same
/// settings restore everything; with the hypernetwork method in both, the meta stage's
/// settings (inner steps, rule and step size, first order, meta steps and rate) may
/// change, which restarts the meta stage, or drop it (`meta_steps = 0`: the pack then
/// leaves V0 and the inner step size out and `--method meta` reports that it lacks
/// them). Every other variable is untouched by the meta stage, which freezes them, so
/// nothing else changes. Any other change is refused.
fn resumed_meta_stage(
    saved: &config::EncoderConfig,
    now: &config::EncoderConfig,
) -> ResumedMetaStage {
    use config::Method::Hyper;
    let without_meta = |e: &config::EncoderConfig| config::EncoderConfig {
        inner_steps: 0,
        inner_lr: 0.0,
        inner_step: config::InnerStep::default(),
        first_order: false,
        meta_steps: 0,
        meta_lr: 0.0,
        ..e.clone()
    };
    if saved == now {
        ResumedMetaStage::Restored
    } else if now.method == Hyper
        && saved.method == Hyper
        && without_meta(saved) == without_meta(now)
    {
        ResumedMetaStage::Restarted
    } else {
        ResumedMetaStage::Refused
    }
}

/// Variables with one row per quality level (`[levels, ...]`): the training entropy
/// model's Laplace parameters and the hypernetwork's level embedding.
const PER_LEVEL_VARIABLES: [&str; 3] = ["entropy.location", "entropy.log_scale", "level_embedding"];

/// How the rows of levels added on resume start.
#[derive(Clone, Copy)]
enum LevelFill {
    /// As the finest saved level (weights).
    FinestLevel,
    /// At zero (optimiser moments).
    Zero,
}

/// `saved` reshaped to a variable of shape `shape`: as it is when the shapes agree; with
/// rows appended for added levels when `name` is a per-level variable saved with
/// `saved_levels` rows; an error otherwise.
fn extend_levels(
    name: &str,
    saved: &Tensor,
    shape: &[i64],
    saved_levels: usize,
    fill: LevelFill,
) -> Result<Tensor, String> {
    let have = saved.size();
    if have == shape {
        return Ok(saved.shallow_clone());
    }
    let per_level = PER_LEVEL_VARIABLES.iter().any(|v| name.ends_with(v));
    let rows_only = !have.is_empty() && have.len() == shape.len() && have[1..] == shape[1..];
    if !(per_level && rows_only && have[0] == saved_levels as i64 && have[0] < shape[0]) {
        return Err(format!(
            "variable {name} has shape {have:?} in the checkpoint, not {shape:?}"
        ));
    }
    let mut repeats = vec![1; have.len()];
    repeats[0] = shape[0] - have[0];
    let finest = saved.narrow(0, have[0] - 1, 1);
    let rows = match fill {
        LevelFill::FinestLevel => finest.repeat(&repeats),
        LevelFill::Zero => finest.zeros_like().repeat(&repeats),
    };
    Ok(Tensor::cat(&[saved.shallow_clone(), rows], 0))
}

/// Cuts blocks of `block` tiles of `tile` ([width, height]) samples of `channels`
/// values, each block row-major, into tiles one after another in tile order
/// (spec/bitstream.md §4), each tile row-major.
fn cut_blocks(blocks: &[f32], block: TileGrid, tile: [usize; 2], channels: usize) -> Vec<f32> {
    let [tw, th] = tile;
    let width = tw * block.columns;
    let per_block = width * th * block.rows * channels;
    let mut out = Vec::with_capacity(blocks.len());
    for b in blocks.chunks_exact(per_block) {
        for t in 0..block.tiles() {
            let (x, y) = (t % block.columns, t / block.columns);
            for r in 0..th {
                let start = ((y * th + r) * width + x * tw) * channels;
                out.extend_from_slice(&b[start..start + tw * channels]);
            }
        }
    }
    out
}

fn adam_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("adam.safetensors")
}

/// The run state saved beside the checkpoint `path` ([`Trainer::save_checkpoint`]).
fn read_checkpoint_meta(path: &Path) -> Result<CheckpointMeta, TrainError> {
    let bad = |reason: String| TrainError::Checkpoint {
        path: path.to_owned(),
        reason,
    };
    let text =
        std::fs::read_to_string(meta_path(path)).map_err(|e| bad(format!("state file: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad(e.to_string()))
}

fn meta_path(checkpoint: &Path) -> PathBuf {
    checkpoint.with_extension("json")
}

fn serde_json_string<T: Serialize>(v: &T) -> String {
    serde_json::to_string_pretty(v).expect("serialisable") + "\n"
}

fn rename(from: &Path, to: &Path) -> Result<(), TrainError> {
    std::fs::rename(from, to).map_err(|source| TrainError::Write {
        path: to.to_owned(),
        source,
    })
}

/// Writes a file through a temporary sibling and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), TrainError> {
    let tmp = path.with_extension("tmp");
    let io = |source| TrainError::Write {
        path: path.to_owned(),
        source,
    };
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    f.sync_all().map_err(io)?;
    rename(&tmp, path)
}

/// Report of a finished run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunReport {
    /// Steps trained in total.
    pub steps: usize,
    /// Steps per second in this run.
    pub steps_per_second: f64,
    /// Training instances per second in this run.
    pub instances_per_second: f64,
    /// Final held-out figures per quality level.
    pub eval: Vec<LevelEval>,
    /// The pack id written.
    pub pack_id: String,
    /// Pack file size in bytes.
    pub pack_bytes: usize,
}

/// Trains as the configuration says, reporting after every step and evaluation, and
/// writes the pack to `options.out` (atomically) with a checkpoint beside it.
pub fn run(
    config: &TrainConfig,
    options: &RunOptions,
    mut on_step: impl FnMut(&StepStats),
    mut on_eval: impl FnMut(usize, &[LevelEval]),
) -> Result<RunReport, TrainError> {
    if config.train.threads > 0 {
        tch::set_num_threads(config.train.threads as i32);
    }
    let data = Dataset::load(config)?;
    let holdout = data.holdout(config.model.tile, config.train.eval_instances);
    let holdout_files = data.holdout_signals(config.train.eval_files);
    let evaluate = |trainer: &Trainer| trainer.evaluate(&holdout, &holdout_files);
    let mut trainer = Trainer::new(config, options.device)?;
    if let Some(resume) = &options.resume {
        trainer.load_checkpoint(resume)?;
    } else if let Some(smaller) = &options.grow_from {
        trainer.grow_from_checkpoint(smaller)?;
    }
    if config.rate.tables == TableFit::Fitted {
        // Drawn from their own seed, so that fitting never moves the run's data order
        // (a resumed run stays the same run).
        let mut rng = SplitMix64(config.seed ^ 0x7ab1_e5f1);
        let mut instances = Vec::new();
        match config.rate.neighbour_grid(config.modality()) {
            None => data.batch(
                &mut rng,
                config.rate.fit_instances,
                config.model.tile,
                &mut instances,
            ),
            Some(block) => {
                // Whole blocks of adjacent tiles, cut into tiles in tile order.
                let [tw, th] = config.model.tile;
                let mut blocks = Vec::new();
                data.batch(
                    &mut rng,
                    config.rate.fit_instances / block.tiles(),
                    [tw * block.columns, th * block.rows],
                    &mut blocks,
                );
                let channels = config.channels();
                instances = cut_blocks(&blocks, block, [tw, th], channels);
            }
        }
        trainer.set_fit_instances(&instances);
    }
    let main_steps = options.steps.unwrap_or(config.train.steps);
    trainer.rewind_restarted_meta_stage(main_steps);
    let meta_steps = if config.encoder.method == crate::config::Method::Hyper {
        config.encoder.meta_steps
    } else {
        0
    };
    let total = main_steps + meta_steps;
    let checkpoint = options.out.with_extension("ckpt.safetensors");
    let mut batch = Vec::new();
    let mut last_eval = None;
    let started = Instant::now();
    let first_step = trainer.step;
    while trainer.step < total {
        data.batch(
            &mut trainer.rng,
            config.train.batch,
            config.model.tile,
            &mut batch,
        );
        let x = Tensor::from_slice(&batch)
            .reshape([
                config.train.batch as i64,
                config.tile_samples() as i64,
                config.channels() as i64,
            ])
            .to_device(options.device);
        let mut stats = if trainer.step < main_steps {
            // The last tenth of the schedule runs at a tenth of the learning rate.
            let lr = if trainer.step * 10 >= main_steps * 9 {
                config.train.lr * 0.1
            } else {
                config.train.lr
            };
            trainer.set_lr(lr);
            trainer.train_step(&x)
        } else {
            trainer.meta_step(&x, config.encoder.meta_lr)
        };
        stats.total = total;
        if !stats.loss.is_finite() {
            return Err(TrainError::Diverged(stats.loss, trainer.step));
        }
        on_step(&stats);
        if trainer.step % config.train.eval_every == 0 || trainer.step == total {
            let eval = evaluate(&trainer)?;
            on_eval(trainer.step, &eval);
            last_eval = Some(eval);
        }
        if trainer.step % config.train.checkpoint_every == 0 {
            trainer.save_checkpoint(&checkpoint)?;
        }
    }
    let elapsed = started.elapsed().as_secs_f64().max(1e-9);
    let done = (trainer.step - first_step) as f64;
    trainer.save_checkpoint(&checkpoint)?;
    // A run resumed at its last step trains nothing and still reports figures.
    let eval = match last_eval {
        Some(eval) => eval,
        None => evaluate(&trainer)?,
    };
    let description = format!(
        "trained by ipc-train for {} steps (config {:?}, seed {})",
        trainer.step, config.name, config.seed
    );
    let contents = trainer.export(&description)?;
    let file = contents.to_pack_file()?;
    let pack = ModelPack::from_pack_file(&file)?;
    write_atomic(&options.out, &file)?;
    Ok(RunReport {
        steps: trainer.step,
        steps_per_second: done / elapsed,
        instances_per_second: done * config.train.batch as f64 / elapsed,
        eval,
        pack_id: pack.id().to_string(),
        pack_bytes: file.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_cut_into_tiles_in_tile_order() {
        // One block of 2 x 2 tiles of 2 x 1 samples ([width, height]), one channel: the
        // block is 4 samples wide and 2 high, row-major.
        let block = TileGrid {
            columns: 2,
            rows: 2,
        };
        let blocks = [0., 1., 2., 3., 4., 5., 6., 7.];
        let tiles = cut_blocks(&blocks, block, [2, 1], 1);
        assert_eq!(tiles, [0., 1., 2., 3., 4., 5., 6., 7.]);
        // 2 x 2 tiles of 1 x 2 samples, two channels, two blocks.
        let block_samples: Vec<f32> = (0..2 * 2 * 4 * 2).map(|x| x as f32).collect();
        let tiles = cut_blocks(&block_samples, block, [1, 2], 2);
        // Block 0 is 2 samples wide and 4 high: rows (0,1 | 2,3), (4,5 | 6,7), ...
        // Tile 0 = column 0 of rows 0 and 1; tile 1 = column 1 of rows 0 and 1.
        assert_eq!(&tiles[..8], &[0., 1., 4., 5., 2., 3., 6., 7.]);
        assert_eq!(&tiles[8..16], &[8., 9., 12., 13., 10., 11., 14., 15.]);
        assert_eq!(tiles.len(), block_samples.len());
    }
}
