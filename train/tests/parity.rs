//! The exported pack and the tch model compute the same signal: the pure-Rust decoder's
//! synthesis matches `IpcModel::synthesize` on the same V (issue: parity to 1e-4 mean
//! absolute), for image and audio packs, including trained (non-initial) weights.

use ipc_codec::rng::SplitMix64;
use ipc_codec::synthesis::TileSynthesizer;
use ipc_codec::ModelPack;
use ipc_train::config::TrainConfig;
use ipc_train::trainer::Trainer;
use tch::{Device, Kind, Tensor};

fn config(modality: &str, weight_norm: bool, orientation: &str, weight_gain: &str) -> TrainConfig {
    TrainConfig::parse(&config_text(
        modality,
        weight_norm,
        orientation,
        weight_gain,
    ))
    .unwrap()
}

fn config_text(modality: &str, weight_norm: bool, orientation: &str, weight_gain: &str) -> String {
    let (tile, patch, extra) = if modality == "image" {
        ("[8, 8]", 4, "")
    } else {
        ("[64, 1]", 16, "sample_rate = 16000")
    };
    format!(
        r#"
name = "parity-{modality}"
modality = "{modality}"
seed = 7
[model]
frequencies = 8
max_frequency = 32.0
width = 24
layers = 4
rank = 3
orientation = "{orientation}"
tile = {tile}
weight_norm = {weight_norm}
weight_gain = "{weight_gain}"
{extra}
[encoder]
method = "hyper"
patch = {patch}
dim = 16
heads = 2
[rate]
levels = [{{ step = 0.5, lambda = 0.01 }}, {{ step = 0.125, lambda = 0.001 }}]
[train]
steps = 4
batch = 3
lr = 0.01
[data]
dir = "unused"
"#
    )
}

fn parity(modality: &str, weight_norm: bool, orientation: &str) {
    parity_with_gain(modality, weight_norm, orientation, "none");
}

fn parity_with_gain(modality: &str, weight_norm: bool, orientation: &str, weight_gain: &str) {
    let cfg = config(modality, weight_norm, orientation, weight_gain);
    parity_of(
        &cfg,
        &format!("{modality} {orientation} gain {weight_gain}"),
    );
}

fn parity_of(cfg: &TrainConfig, label: &str) {
    let mut trainer = Trainer::new(cfg, Device::Cpu).unwrap();
    // A few real optimisation steps on random targets, so biases and weights move away
    // from their initial values.
    let shape = [3, cfg.tile_samples() as i64, cfg.channels() as i64];
    for _ in 0..4 {
        trainer.train_step(&Tensor::rand(shape, (Kind::Float, Device::Cpu)));
    }
    let pack =
        ModelPack::from_safetensors(&trainer.export("parity").unwrap().to_safetensors().unwrap())
            .unwrap();
    let synth = TileSynthesizer::new(&pack);
    let tiles = 5;
    let mut rng = SplitMix64(3);
    let v: Vec<f32> = (0..tiles * synth.v_len())
        .map(|_| rng.uniform(1.5))
        .collect();
    let mut rust = vec![0f32; tiles * synth.outputs_per_tile()];
    synth.render(&v, &mut rust, 2);
    let (rows, cols) = cfg.v_shape();
    assert_eq!(rows * cols, synth.v_len());
    let v_t = Tensor::from_slice(&v).reshape([tiles as i64, rows as i64, cols as i64]);
    let torch: Vec<f32> =
        Vec::try_from(tch::no_grad(|| trainer.model.synthesize(&v_t)).flatten(0, -1)).unwrap();
    assert_eq!(torch.len(), rust.len());
    let diffs: Vec<f64> = torch
        .iter()
        .zip(&rust)
        .map(|(a, b)| f64::from((a - b).abs()))
        .collect();
    let mean = diffs.iter().sum::<f64>() / diffs.len() as f64;
    let max = diffs.iter().cloned().fold(0.0, f64::max);
    assert!(
        mean <= 1e-4 && max <= 1e-3,
        "{label}: mean abs {mean}, max {max}"
    );
}

const ORIENTATIONS: [&str; 2] = ["shared-input", "instance-input"];

#[test]
fn image_pack_matches_tch_model() {
    for o in ORIENTATIONS {
        parity("image", true, o);
    }
}

#[test]
fn audio_pack_matches_tch_model() {
    for o in ORIENTATIONS {
        parity("audio", true, o);
    }
}

#[test]
fn pack_without_weight_normalisation_matches_tch_model() {
    for o in ORIENTATIONS {
        parity("audio", false, o);
        parity("image", false, o);
    }
}

#[test]
fn packs_with_gains_match_tch_model() {
    for o in ORIENTATIONS {
        for gain in ["output", "every-layer"] {
            parity_with_gain("audio", true, o, gain);
            parity_with_gain("image", true, o, gain);
        }
    }
}

#[test]
fn packs_with_a_pre_width_match_tch_model() {
    // Layers before the modulated one 40 wide, the rest 24 (spec/model-pack.md §4).
    for o in ORIENTATIONS {
        for modality in ["image", "audio"] {
            let text = config_text(modality, true, o, "none")
                .replace("width = 24\n", "width = 24\npre_width = 40\n");
            let cfg = TrainConfig::parse(&text).unwrap();
            assert_eq!(cfg.pack_config("").layer_shape(1).0, 40);
            parity_of(&cfg, &format!("{modality} {o} pre_width 40"));
        }
    }
}

#[test]
fn gains_need_weight_normalisation() {
    let Err(err) = TrainConfig::parse(&config_text("audio", false, "instance-input", "output"))
    else {
        panic!("a gain without weight normalisation is refused");
    };
    assert!(err.to_string().contains("weight_norm"), "{err}");
}

/// `IpcModel::synthesize_with` (the latent-grid study's hook) adds its term to the
/// chosen layer's pre-activation: nothing added is `synthesize`; a term added to the
/// last layer shifts the output by exactly that term; a large negative term added to
/// the modulated layer switches all its ReLUs off, so that V no longer matters.
#[test]
fn a_term_added_to_a_layer_enters_before_its_activation() {
    let cfg = config("image", true, "instance-input", "none");
    let mut trainer = Trainer::new(&cfg, Device::Cpu).unwrap();
    let shape = [3, cfg.tile_samples() as i64, cfg.channels() as i64];
    for _ in 0..4 {
        trainer.train_step(&Tensor::rand(shape, (Kind::Float, Device::Cpu)));
    }
    let model = &trainer.model;
    let (rows, cols) = cfg.v_shape();
    let v = Tensor::rand([2, rows as i64, cols as i64], (Kind::Float, Device::Cpu)) * 3.0 - 1.5;
    let samples = cfg.tile_samples() as i64;
    tch::no_grad(|| {
        let base = model.synthesize(&v);
        assert!(model.synthesize_with(&v, None).equal(&base));
        let last = cfg.model.layers - 1;
        let shift = Tensor::rand([2, samples, 3], (Kind::Float, Device::Cpu));
        let shifted = model.synthesize_with(&v, Some((last, &shift)));
        let err = f64::try_from((shifted - &base - &shift).abs().max()).unwrap();
        assert!(err < 1e-5, "last layer: {err}");
        let m = cfg.model.modulated_layer;
        let width = cfg.pack_config("").layer_shape(m).1 as i64;
        let off = Tensor::full([2, samples, width], -1e4, (Kind::Float, Device::Cpu));
        let other_v = v.flip([0]);
        let a = model.synthesize_with(&v, Some((m, &off)));
        let b = model.synthesize_with(&other_v, Some((m, &off)));
        assert!(
            a.equal(&b),
            "V still matters with the modulated layer switched off"
        );
        assert!(!base.equal(&model.synthesize(&other_v)));
    });
}
