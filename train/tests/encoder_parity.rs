//! The pure-Rust encoder against the tch model on the same exported pack: the
//! hypernetwork's V, the CAVIA inner steps, the distortion gradient, and whole encodes
//! through the libtorch backend (on the CPU here; the same code runs on a GPU).

use ipc_codec::encoder::{
    DistortionModel, Encoder, EncoderConfig, ImageSignal, Method, RateModel, RateTarget, Signal,
    Tiles,
};
use ipc_codec::rng::SplitMix64;
use ipc_codec::synthesis::TileSynthesizer;
use ipc_codec::ModelPack;
use ipc_train::config::{InnerStep, TrainConfig};
use ipc_train::encode::{model_of_pack, TorchBackend};
use ipc_train::export::NORM_SCALED_TENSOR;
use ipc_train::trainer::Trainer;
use tch::{Device, Kind, Tensor};

/// Both orientations of the modulated layer (spec/model-pack.md §4.2).
const ORIENTATIONS: [&str; 2] = ["shared-input", "instance-input"];

/// A small training configuration; `weight_gain` is `model.weight_gain`
/// (spec/model-pack.md §4.2).
fn config_with_gain(
    modality: &str,
    method: &str,
    orientation: &str,
    weight_gain: &str,
) -> TrainConfig {
    let (tile, patch, extra) = if modality == "image" {
        ("[8, 8]", 4, "")
    } else {
        ("[64, 1]", 16, "sample_rate = 16000")
    };
    TrainConfig::parse(&format!(
        r#"
name = "encoder-parity-{modality}"
modality = "{modality}"
seed = 11
[model]
frequencies = 8
max_frequency = 32.0
width = 24
layers = 4
rank = 3
orientation = "{orientation}"
tile = {tile}
weight_gain = "{weight_gain}"
{extra}
[encoder]
method = "{method}"
patch = {patch}
dim = 16
depth = 2
heads = 2
inner_steps = 3
inner_lr = 0.05
[rate]
levels = [{{ step = 0.5, lambda = 0.01 }}, {{ step = 0.125, lambda = 0.001 }}]
[train]
steps = 4
batch = 3
lr = 0.01
[data]
dir = "unused"
"#
    ))
    .unwrap()
}

/// Every modality in both orientations.
fn cases() -> impl Iterator<Item = (&'static str, &'static str)> {
    ["image", "audio"]
        .into_iter()
        .flat_map(|m| ORIENTATIONS.into_iter().map(move |o| (m, o)))
}

/// libtorch's random generator and thread count are global: tests that train must not
/// interleave, or their packs (and so their results) would depend on the schedule.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A pack from a few real training steps, so no weight is at its initial value.
fn trained_pack(modality: &str, method: &str, orientation: &str) -> ModelPack {
    trained_pack_with_gain(modality, method, orientation, "none")
}

/// [`trained_pack`] of [`config_with_gain`].
fn trained_pack_with_gain(
    modality: &str,
    method: &str,
    orientation: &str,
    weight_gain: &str,
) -> ModelPack {
    trained_pack_of(&config_with_gain(
        modality,
        method,
        orientation,
        weight_gain,
    ))
}

/// A pack from four training steps of `cfg`.
fn trained_pack_of(cfg: &TrainConfig) -> ModelPack {
    // One thread: libtorch's multi-threaded reductions would make the pack, and with it
    // the encodes compared below, differ from run to run.
    tch::set_num_threads(1);
    let mut trainer = Trainer::new(cfg, Device::Cpu).unwrap();
    let shape = [3, cfg.tile_samples() as i64, cfg.channels() as i64];
    for _ in 0..4 {
        trainer.train_step(&(Tensor::rand(shape, (Kind::Float, Device::Cpu)) * 0.8 - 0.3));
    }
    ModelPack::from_safetensors(
        &trainer
            .export("encoder parity")
            .unwrap()
            .to_safetensors()
            .unwrap(),
    )
    .unwrap()
}

/// Whole tiles (no padding, where the tch model's plain MSE and the encoder's weighted
/// MSE agree) of random content.
fn tiles(pack: &ModelPack, count: usize, seed: u64) -> Tiles {
    let c = pack.config();
    let samples = c.tile_width * c.tile_height;
    let mut rng = SplitMix64(seed);
    Tiles {
        count,
        samples,
        channels: c.out_channels,
        targets: (0..count * samples * c.out_channels)
            .map(|_| 0.4 + rng.uniform(0.4))
            .collect(),
        weights: vec![1.0; count * samples],
        grid: ipc_codec::entropy::TileGrid {
            columns: count,
            rows: 1,
        },
    }
}

fn as_tensor(tiles: &Tiles) -> Tensor {
    Tensor::from_slice(&tiles.targets).reshape([
        tiles.count as i64,
        tiles.samples as i64,
        tiles.channels as i64,
    ])
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn to_vec(t: &Tensor) -> Vec<f32> {
    Vec::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap()
}

#[test]
fn hypernetwork_matches_tch() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    for (modality, orientation) in cases() {
        let pack = trained_pack(modality, "hyper", orientation);
        hypernetwork_matches_tch_on(&pack, &format!("{modality} {orientation}"));
    }
}

/// The Rust hypernetwork against the tch one rebuilt from `pack`, at both levels.
fn hypernetwork_matches_tch_on(pack: &ModelPack, label: &str) {
    let (model, _vs) = model_of_pack(pack, Method::Hyper, Device::Cpu).unwrap();
    let encoder = Encoder::new(pack, EncoderConfig::default()).unwrap();
    let t = tiles(pack, 5, 1);
    for level in 0..2 {
        let rust = encoder.predict(&t, level);
        let levels = Tensor::full([5], level as i64, (Kind::Int64, Device::Cpu));
        let torch = to_vec(&tch::no_grad(|| {
            model
                .hyper
                .as_ref()
                .unwrap()
                .forward(&as_tensor(&t), &levels)
        }));
        let diff = max_abs_diff(&rust, &torch);
        assert!(diff <= 1e-4, "{label} level {level}: max abs diff {diff}");
    }
}

#[test]
fn inner_steps_match_tch() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    // Both inner-step rules (docs/method.md §5): the plain one writes
    // `encoder.meta.norm_scaled = 0`, which the encoder must honour.
    let rules = [InnerStep::NormScaled, InnerStep::Plain];
    for ((modality, orientation), rule) in cases().flat_map(|c| rules.map(|r| (c, r))) {
        let mut cfg = config_with_gain(modality, "meta", orientation, "none");
        cfg.encoder.inner_step = rule;
        let pack = trained_pack_of(&cfg);
        let written = hypernet_scalar(&pack, NORM_SCALED_TENSOR);
        assert_eq!(written, (rule == InnerStep::Plain).then_some(0.0));
        let (model, _vs) = model_of_pack(&pack, Method::Meta, Device::Cpu).unwrap();
        let encoder = Encoder::new(
            &pack,
            EncoderConfig {
                method: Method::Meta,
                ..Default::default()
            },
        )
        .unwrap();
        let t = tiles(&pack, 4, 2);
        let rust = encoder.predict(&t, 0);
        let lr = model.inner_lr().unwrap();
        let torch = to_vec(&model.adapt(&as_tensor(&t), 3, lr, false));
        let diff = max_abs_diff(&rust, &torch);
        assert!(
            diff <= 1e-4,
            "{modality} {orientation} {rule:?}: max abs diff {diff}"
        );
        // The two rules really step differently from the same V0.
        let mut other = model_of_pack(&pack, Method::Meta, Device::Cpu).unwrap().0;
        other.config.encoder.inner_step = match rule {
            InnerStep::NormScaled => InnerStep::Plain,
            InnerStep::Plain => InnerStep::NormScaled,
        };
        let differs = to_vec(&other.adapt(&as_tensor(&t), 3, lr, false));
        assert!(max_abs_diff(&rust, &differs) > 1e-3, "{modality} {rule:?}");
    }
}

/// The pack's one-element tensor `name`, if it has it.
fn hypernet_scalar(pack: &ModelPack, name: &str) -> Option<f32> {
    let (_, shape, data) = pack.contents().extra.iter().find(|(n, _, _)| n == name)?;
    assert_eq!(shape, &[1], "{name}");
    Some(data[0])
}

#[test]
fn distortion_gradient_matches_autograd() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    // Without and with learned gains after the normalisation.
    for ((modality, orientation), gain) in cases().flat_map(|c| [(c, "none"), (c, "every-layer")]) {
        let pack = trained_pack_with_gain(modality, "hyper", orientation, gain);
        distortion_gradient_matches_autograd_on(
            &pack,
            &format!("{modality} {orientation} gain {gain}"),
        );
    }
}

/// The encoder's hand-derived distortion and gradient against libtorch's autograd
/// through the tch model rebuilt from `pack`.
fn distortion_gradient_matches_autograd_on(pack: &ModelPack, label: &str) {
    let (model, _vs) = model_of_pack(pack, Method::Hyper, Device::Cpu).unwrap();
    let t = tiles(pack, 3, 3);
    let c = pack.config();
    let (rows, cols) = c.v_shape();
    let v: Vec<f32> = SplitMix64(4).uniform_vec(3 * c.v_len(), 1.0);
    let rust_model = DistortionModel::new(TileSynthesizer::new(pack));
    let mut grad = vec![0f32; v.len()];
    let mut mse = vec![0f64; 3];
    rust_model.evaluate(&v, &t, Some(&mut grad), &mut mse, 1);
    let leaf = Tensor::from_slice(&v)
        .reshape([3, rows as i64, cols as i64])
        .set_requires_grad(true);
    let torch_mse =
        ipc_train::model::IpcModel::instance_mse(&model.synthesize(&leaf), &as_tensor(&t));
    let g = Tensor::run_backward(&[&torch_mse.sum(Kind::Float)], &[&leaf], false, false)
        .pop()
        .unwrap();
    let torch_grad = to_vec(&g);
    let scale = torch_grad.iter().fold(0f32, |m, x| m.max(x.abs()));
    let diff = max_abs_diff(&grad, &torch_grad);
    assert!(
        diff <= 1e-4 * scale.max(1.0),
        "{label}: {diff} (scale {scale})"
    );
    let torch_mse = to_vec(&torch_mse);
    for (a, b) in mse.iter().zip(&torch_mse) {
        assert!(
            (a - f64::from(*b)).abs() <= 1e-5 * a.max(1e-3),
            "{label}: {a} vs {b}"
        );
    }
}

/// Layers before the modulated one wider than the rest (`model.pre_width`,
/// spec/model-pack.md §4): the hypernetwork's V and the distortion gradient with
/// respect to it, in both orientations and modalities.
#[test]
fn pre_width_packs_match_tch() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    for (modality, orientation) in cases() {
        let mut cfg = config_with_gain(modality, "hyper", orientation, "none");
        cfg.model.pre_width = Some(40);
        let pack = trained_pack_of(&cfg);
        assert_eq!(pack.config().layer_shape(1).0, 40);
        let label = format!("{modality} {orientation} pre_width 40");
        hypernetwork_matches_tch_on(&pack, &label);
        distortion_gradient_matches_autograd_on(&pack, &label);
    }
}

/// The distortion (mean squared error summed over tiles) and the bits of the quantised
/// V a file carries: what refinement trades (ipc_codec::encoder::refine).
fn distortion_and_bits(pack: &ModelPack, signal: &Signal, file: &[u8]) -> (f64, f64) {
    let (header, q) = ipc_codec::Decoder::new(pack)
        .decode_quantised(file)
        .unwrap();
    let c = pack.config();
    let tiles = Tiles::of_signal(signal, c.tile_width, c.tile_height);
    let step = header.step();
    let v: Vec<f32> = q.iter().map(|&k| k as f32 * step).collect();
    let mut mse = vec![0f64; tiles.count];
    DistortionModel::new(TileSynthesizer::new(pack)).evaluate(&v, &tiles, None, &mut mse, 1);
    let level = usize::from(header.quality_level);
    let rate = RateModel::new(pack.v_model(level).unwrap());
    let per_tile = c.v_len();
    let bits = q
        .chunks_exact(per_tile)
        .enumerate()
        .map(|(t, qt)| rate.bits(&q, t, qt))
        .sum();
    (mse.iter().sum(), bits)
}

/// Whole encodes with refinement: the libtorch backend reaches the same distortion at
/// the same bits as the CPU encoder, within tolerance, for both methods; effort lowers
/// the distortion and never raises the bits.
#[test]
fn torch_backend_encodes_like_the_cpu_encoder() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    for (method, orientation) in [
        ("hyper", "shared-input"),
        ("meta", "shared-input"),
        ("hyper", "instance-input"),
        ("meta", "instance-input"),
    ] {
        let pack = trained_pack("image", method, orientation);
        let method = method.parse::<Method>().unwrap();
        let mut rng = SplitMix64(5);
        let image = ImageSignal {
            width: 21,
            height: 14,
            channels: 3,
            bit_depth: 8,
            samples: (0..21 * 14 * 3)
                .map(|i| {
                    ((0.5 + 0.3 * ((i / 3) as f32 / 9.0).sin() + rng.uniform(0.05)) * 255.0).round()
                        / 255.0
                })
                .collect(),
        };
        let signal = Signal::Image(image);
        let mut results = Vec::new();
        for effort in [0, 8, 30] {
            let config = EncoderConfig {
                method,
                effort,
                ..Default::default()
            };
            let cpu = Encoder::new(&pack, config)
                .unwrap()
                .encode(&signal, RateTarget::Quality(1), &mut |_| {})
                .unwrap();
            let backend = TorchBackend::new(&pack, method, effort, Device::Cpu).unwrap();
            let torch = Encoder::with_backend(&pack, config, Box::new(backend))
                .unwrap()
                .encode(&signal, RateTarget::Quality(1), &mut |_| {})
                .unwrap();
            let (a, b) = (
                distortion_and_bits(&pack, &signal, &cpu.file),
                distortion_and_bits(&pack, &signal, &torch.file),
            );
            eprintln!("{method} {orientation} effort {effort}: CPU {a:?}, libtorch {b:?}");
            // Summation orders differ, so a rounding decision can flip and the paths
            // part; what they reach must stay close.
            assert!(
                (a.0 - b.0).abs() <= 0.03 * a.0 && (a.1 - b.1).abs() <= 0.03 * a.1,
                "{method} {orientation} effort {effort}: (mse, bits) {a:?} (CPU) vs {b:?} (libtorch)"
            );
            results.push(b);
        }
        assert!(
            results[2].0 < results[0].0 && results.iter().all(|r| r.1 <= results[0].1),
            "{method} {orientation}: effort must lower the distortion within the bits: {results:?}"
        );
    }
}
