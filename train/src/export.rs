//! Export of a trained model into a model pack (spec/model-pack.md): the synthesis
//! network as stored (the decoder applies weight normalisation), the encoder tensors
//! under `encoder.*`, and the entropy model as integer tables per quality level.

use ipc_codec::entropy::TileGrid;
use ipc_codec::pack::{EntropyTables, Linear, ModulatedLinear, PackContents, PackError};
use tch::{nn, Kind, Tensor};

use crate::config::{InnerStep, Method};
use crate::entropy::{fitted_neighbour_tables, fitted_tables, frequency_table};
use crate::model::IpcModel;

/// Name of the per-level lambda tensor (spec/model-pack.md §4.3).
pub const LAMBDA_TENSOR: &str = "encoder.lambda";
/// Attention heads of the hypernetwork's blocks (spec/model-pack.md §4.3).
pub const HEADS_TENSOR: &str = "encoder.hyper.heads";
/// CAVIA inner steps (spec/model-pack.md §4.3).
pub const INNER_STEPS_TENSOR: &str = "encoder.meta.inner_steps";
/// CAVIA inner learning rate (spec/model-pack.md §4.3).
pub const INNER_LR_TENSOR: &str = "encoder.meta.inner_lr";
/// The rule of the CAVIA inner step, 0 for the plain step (spec/model-pack.md §4.3).
pub const NORM_SCALED_TENSOR: &str = "encoder.meta.norm_scaled";
/// The model variable holding the log of the inner step size.
pub const LOG_INNER_LR_VAR: &str = "encoder.meta.log_inner_lr";

/// The quantisation step a level really uses: its Q16.16 value in the pack
/// (spec/bitstream.md §3.4). Training uses the same value.
pub fn step_q16(step: f64) -> u32 {
    ipc_codec::container::step_to_q16(step)
}

/// The step of a level as the decoder sees it.
pub fn effective_step(step: f64) -> f64 {
    ipc_codec::container::step_from_q16(step_q16(step))
}

/// A tensor's values as f32 in row-major order.
pub fn values(t: &Tensor) -> Vec<f32> {
    Vec::<f32>::try_from(
        t.detach()
            .to_device(tch::Device::Cpu)
            .to_kind(Kind::Float)
            .contiguous()
            .flatten(0, -1),
    )
    .expect("f32 tensor")
}

/// The `learned` entropy tables (`rate.tables`): one table per rank index
/// (`PackConfig::rank_contexts`), the training entropy model's Laplace density of each
/// level discretised at the level's step.
pub fn learned_tables(model: &IpcModel) -> EntropyTables {
    let cfg = &model.config;
    let levels = cfg
        .rate
        .levels
        .iter()
        .enumerate()
        .map(|(l, level)| {
            let step = effective_step(level.step);
            model
                .entropy
                .parameters(l)
                .iter()
                .map(|&(loc, scale)| frequency_table(loc, scale, step, cfg.rate.table_half_width))
                .collect()
        })
        .collect();
    EntropyTables {
        contexts: cfg.pack_config("").rank_contexts(),
        levels,
        neighbour: None,
    }
}

/// Instances predicted at once when fitting tables.
const FIT_BATCH: i64 = 256;

/// The `fitted` entropy tables (`rate.tables`): one table per element of V, counted at
/// each level on V as the model's encoder predicts it for `instances` (`[n, samples,
/// channels]`, training data) and rounded to the level's step as the library encoder
/// rounds it (`ipc_codec::encoder::refine::quantise`).
pub fn fitted_entropy_tables(
    model: &IpcModel,
    instances: &Tensor,
    neighbour_block: Option<TileGrid>,
) -> EntropyTables {
    let cfg = &model.config;
    let (rows, columns) = cfg.v_shape();
    let elements = rows * columns;
    let n = instances.size()[0];
    let device = instances.device();
    let predict = |level: usize| {
        let mut v = Vec::with_capacity(n as usize * elements);
        for batch in instances.split(FIT_BATCH, 0) {
            let ids = Tensor::full([batch.size()[0]], level as i64, (Kind::Int64, device));
            v.extend(values(&model.predict_v(&batch, &ids, false)));
        }
        v
    };
    // Without level conditioning V is the same at every level: predicted once.
    let shared = (!cfg.encoder.level_conditioning).then(|| predict(0));
    let mut q = vec![0i32; n as usize * elements];
    let mut levels = Vec::with_capacity(cfg.rate.levels.len());
    let mut neighbour = neighbour_block.map(|_| Vec::with_capacity(cfg.rate.levels.len()));
    for (l, level) in cfg.rate.levels.iter().enumerate() {
        let own;
        let v = match &shared {
            Some(v) => v,
            None => {
                own = predict(l);
                &own
            }
        };
        ipc_codec::encoder::refine::quantise(v, effective_step(level.step) as f32, &mut q);
        let plain = fitted_tables(&q, elements, cfg.rate.table_half_width);
        if let (Some(block), Some(out)) = (neighbour_block, neighbour.as_mut()) {
            out.push(fitted_neighbour_tables(&q, elements, block, &plain));
        }
        levels.push(plain);
    }
    let contexts = (0..elements)
        .map(|e| u16::try_from(e).expect("validated: at most 65536 elements"))
        .collect();
    EntropyTables {
        contexts,
        levels,
        neighbour,
    }
}

/// Builds the pack contents of a model with the entropy tables `entropy`
/// ([`learned_tables`] or [`fitted_entropy_tables`]); `vs` must be the store the
/// model was built in.
pub fn pack_contents(
    model: &IpcModel,
    vs: &nn::VarStore,
    description: &str,
    entropy: EntropyTables,
) -> Result<PackContents, PackError> {
    let cfg = &model.config;
    let m = &cfg.model;
    let config = cfg.pack_config(description);
    let layer_shape = |l: usize| config.layer_shape(l);
    let mut layers = Vec::with_capacity(m.layers);
    let mut modulated = None;
    for (l, dense) in model.layers.iter().enumerate() {
        let (inputs, outputs) = layer_shape(l);
        if l == m.modulated_layer {
            modulated = Some(ModulatedLinear {
                inputs,
                outputs,
                rank: m.rank,
                u: values(&dense.weight),
                bias: values(&dense.bias),
                gain: dense.gain.as_ref().map(values),
            });
            layers.push(None);
        } else {
            layers.push(Some(Linear {
                inputs,
                outputs,
                weight: values(&dense.weight),
                bias: values(&dense.bias),
                gain: dense.gain.as_ref().map(values),
            }));
        }
    }
    let mut extra: Vec<(String, Vec<usize>, Vec<f32>)> = vs
        .variables()
        .into_iter()
        // The learned log step size is exported as the step size itself, below.
        .filter(|(name, _)| name.starts_with("encoder.") && name != LOG_INNER_LR_VAR)
        .map(|(name, t)| {
            let shape = t.size().iter().map(|&d| d as usize).collect();
            (name, shape, values(&t))
        })
        .collect();
    // The rate-distortion trade-off each level was trained for, so that an encoder's
    // refinement optimises the same objective (spec/model-pack.md §4.3).
    extra.push((
        LAMBDA_TENSOR.to_string(),
        vec![cfg.rate.levels.len()],
        cfg.rate.levels.iter().map(|l| l.lambda as f32).collect(),
    ));
    // What the encoder runtime needs beyond the variables (spec/model-pack.md §4.3).
    let e = &cfg.encoder;
    if e.method == Method::Hyper {
        extra.push((HEADS_TENSOR.into(), vec![1], vec![e.heads as f32]));
    }
    if model.v0.is_some() {
        extra.push((
            INNER_STEPS_TENSOR.into(),
            vec![1],
            vec![e.inner_steps as f32],
        ));
        let lr = model.inner_lr().unwrap_or(e.inner_lr);
        extra.push((INNER_LR_TENSOR.into(), vec![1], vec![lr as f32]));
        // Written only for the plain rule, so that a pack of the norm-scaled rule is
        // what it was before the tensor existed (absent means norm-scaled).
        if e.inner_step == InnerStep::Plain {
            extra.push((NORM_SCALED_TENSOR.into(), vec![1], vec![0.0]));
        }
    }
    extra.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(PackContents {
        config,
        frequencies: model.frequencies.clone(),
        layers,
        modulated: modulated.expect("modulated layer exists"),
        entropy,
        extra,
    })
}
