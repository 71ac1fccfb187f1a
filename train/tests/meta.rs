//! The meta-learning path (CAVIA, docs/method.md §5): the inner steps lower the instance loss,
//! and the outer gradient reaches V0 and the shared weights, through the inner steps
//! (second order) or around them (first order).

use ipc_train::config::TrainConfig;
use ipc_train::model::IpcModel;
use ipc_train::trainer::Trainer;
use tch::{Device, Kind, Tensor};

fn config(first_order: bool) -> TrainConfig {
    TrainConfig::parse(&format!(
        r#"
name = "meta"
modality = "image"
seed = 5
[model]
frequencies = 6
max_frequency = 16.0
width = 16
layers = 4
rank = 3
tile = [8, 8]
[encoder]
method = "meta"
inner_steps = 3
inner_lr = 0.01
first_order = {first_order}
[rate]
levels = [{{ step = 0.25, lambda = 0.001 }}]
[train]
steps = 1
batch = 4
lr = 0.001
[data]
dir = "unused"
"#
    ))
    .unwrap()
}

fn target() -> Tensor {
    tch::manual_seed(11);
    Tensor::rand([4, 64, 3], (Kind::Float, Device::Cpu))
}

#[test]
fn inner_steps_lower_the_loss() {
    let trainer = Trainer::new(&config(false), Device::Cpu).unwrap();
    let x = target();
    let model = &trainer.model;
    let loss = |steps: usize| {
        let v = model.adapt(&x, steps, 0.01, false);
        f64::try_from(IpcModel::instance_mse(&model.synthesize(&v), &x).sum(Kind::Float)).unwrap()
    };
    let (l0, l1, l3) = (loss(0), loss(1), loss(3));
    assert!(l1 < l0 && l3 < l1, "inner loss {l0} -> {l1} -> {l3}");
}

fn v0_gradient(first_order: bool) -> (f64, f64) {
    let trainer = Trainer::new(&config(first_order), Device::Cpu).unwrap();
    let x = target();
    let model = &trainer.model;
    let v = model.adapt(&x, 3, 0.01, !first_order);
    let outer = IpcModel::instance_mse(&model.synthesize(&v), &x).sum(Kind::Float);
    let v0 = model.v0.as_ref().unwrap();
    let u = &model.layers[1].weight;
    let grads = Tensor::run_backward(&[&outer], &[v0, u], false, false);
    let norm = |g: &Tensor| f64::try_from(g.norm()).unwrap();
    (norm(&grads[0]), norm(&grads[1]))
}

#[test]
fn outer_gradient_reaches_v0_and_shared_weights() {
    let (second_v0, second_u) = v0_gradient(false);
    let (first_v0, first_u) = v0_gradient(true);
    for g in [second_v0, second_u, first_v0, first_u] {
        assert!(g.is_finite() && g > 0.0, "gradient norm {g}");
    }
    // Second order differentiates through the inner steps, so it differs from the
    // first-order approximation.
    assert!(
        (second_v0 - first_v0).abs() > 1e-9 * first_v0,
        "{second_v0} vs {first_v0}"
    );
}

#[test]
fn a_meta_training_step_runs_and_exports_v0() {
    let mut trainer = Trainer::new(&config(false), Device::Cpu).unwrap();
    let stats = trainer.train_step(&target());
    assert!(stats.loss.is_finite());
    let contents = trainer.export("meta").unwrap();
    assert!(contents
        .extra
        .iter()
        .any(|(name, shape, _)| name == "encoder.v0" && shape == &vec![3, 16]));
}

/// A hypernetwork pack with a meta stage (`encoder.meta_steps`): the stage moves V0 and
/// the inner step size and nothing else, and the exported pack serves both encoding
/// methods.
#[test]
fn meta_stage_trains_v0_only_and_the_pack_offers_both_methods() {
    let cfg = TrainConfig::parse(
        r#"
name = "hyper-and-meta"
modality = "image"
seed = 5
[model]
frequencies = 6
max_frequency = 16.0
width = 16
layers = 4
rank = 3
tile = [8, 8]
[encoder]
method = "hyper"
patch = 4
dim = 8
heads = 2
inner_steps = 2
inner_lr = 0.01
meta_steps = 3
[rate]
levels = [{ step = 0.25, lambda = 0.001 }, { step = 0.125, lambda = 0.001 }]
[train]
steps = 2
batch = 4
lr = 0.01
[data]
dir = "unused"
"#,
    )
    .unwrap();
    let mut trainer = Trainer::new(&cfg, Device::Cpu).unwrap();
    let x = target();
    trainer.train_step(&x);
    trainer.train_step(&x);
    let before = trainer.vs.variables();
    let snapshot: Vec<(String, Tensor)> = before
        .iter()
        .map(|(n, t)| (n.clone(), t.detach().copy()))
        .collect();
    for _ in 0..3 {
        trainer.meta_step(&x, 0.01);
    }
    let after = trainer.vs.variables();
    for (name, old) in &snapshot {
        let changed = f64::try_from((&after[name] - old).abs().max()).unwrap() > 0.0;
        let trained = name == "encoder.v0" || name == "encoder.meta.log_inner_lr";
        assert_eq!(changed, trained, "{name} changed: {changed}");
    }
    let pack = ipc_codec::ModelPack::from_safetensors(
        &trainer.export("both").unwrap().to_safetensors().unwrap(),
    )
    .unwrap();
    for method in [
        ipc_codec::encoder::Method::Hyper,
        ipc_codec::encoder::Method::Meta,
    ] {
        ipc_codec::encoder::Encoder::new(
            &pack,
            ipc_codec::encoder::EncoderConfig {
                method,
                ..Default::default()
            },
        )
        .unwrap();
    }
}
