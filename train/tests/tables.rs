//! Entropy tables fitted per element of V (`rate.tables = "fitted"`): one table per
//! element, counted on the encoder's quantised V, coding that V in fewer bits than the
//! learned per-rank tables, and a pack the library encodes and decodes with.

use ipc_codec::encoder::{Encoder, EncoderConfig, ImageSignal, RateTarget, Signal};
use ipc_codec::entropy::{PayloadCoding, VModel, NEIGHBOUR_CLASSES};
use ipc_codec::pack::EntropyTables;
use ipc_codec::{Decoder, ModelPack};
use ipc_train::config::{TableFit, TrainConfig};
use ipc_train::export::{effective_step, values};
use ipc_train::trainer::{TrainError, Trainer};
use tch::{Device, Kind, Tensor};

fn config() -> TrainConfig {
    TrainConfig::parse(
        r#"
name = "fitted"
modality = "image"
seed = 3
[model]
frequencies = 6
max_frequency = 16.0
width = 16
layers = 4
rank = 3
orientation = "instance-input"
tile = [8, 8]
[encoder]
method = "hyper"
patch = 4
dim = 8
heads = 2
[rate]
levels = [{ step = 0.5, lambda = 0.001 }, { step = 0.125, lambda = 0.001 }]
tables = "fitted"
[train]
steps = 5
batch = 8
lr = 0.01
[data]
dir = "unused"
"#,
    )
    .unwrap()
}

/// Smooth random tiles: a few sinusoids per channel, so V is not pure noise.
fn instances(n: i64) -> Tensor {
    tch::manual_seed(17);
    let phase = Tensor::rand([n, 1, 3], (Kind::Float, Device::Cpu)) * std::f64::consts::TAU;
    let t = Tensor::arange(64, (Kind::Float, Device::Cpu)).reshape([1, 64, 1]) / 64.0;
    ((t * 9.0 + phase).sin() * 0.4 + 0.5).contiguous()
}

/// Bytes of `x`'s quantised V at every level under `tables`.
fn coded_bytes(trainer: &Trainer, x: &Tensor, tables: &EntropyTables) -> Vec<usize> {
    let cfg = &trainer.config;
    (0..cfg.rate.levels.len())
        .map(|l| {
            let ids = Tensor::full([x.size()[0]], l as i64, (Kind::Int64, Device::Cpu));
            let v = values(&trainer.model.predict_v(x, &ids, false));
            let step = effective_step(cfg.rate.levels[l].step) as f32;
            let mut q = vec![0; v.len()];
            ipc_codec::encoder::refine::quantise(&v, step, &mut q);
            let model = VModel::new(tables.contexts.clone(), &tables.levels[l]).unwrap();
            model.encode(&q).unwrap().len()
        })
        .collect()
}

#[test]
fn fitted_tables_need_instances() {
    let trainer = Trainer::new(&config(), Device::Cpu).unwrap();
    assert!(matches!(
        trainer.export("no instances"),
        Err(TrainError::NoFitInstances)
    ));
}

#[test]
fn fitted_tables_are_per_element_and_code_v_in_fewer_bits() {
    let mut trainer = Trainer::new(&config(), Device::Cpu).unwrap();
    let x = instances(256);
    for _ in 0..5 {
        trainer.train_step(&x.narrow(0, 0, 8));
    }
    trainer.set_fit_instances(&values(&x));
    let fitted = trainer.export("fitted").unwrap();
    let elements = 16 * 3;
    assert_eq!(
        fitted.entropy.contexts,
        (0..elements as u16).collect::<Vec<_>>()
    );
    assert!(fitted.entropy.levels.iter().all(|l| l.len() == elements));

    let mut learned_cfg = config();
    learned_cfg.rate.tables = TableFit::Learned;
    let mut learned = Trainer::new(&learned_cfg, Device::Cpu).unwrap();
    learned.vs.copy(&trainer.vs).unwrap();
    let learned = learned.export("learned").unwrap();
    assert_eq!(learned.entropy.contexts.len(), elements);
    assert!(learned.entropy.levels.iter().all(|l| l.len() == 3));

    let with_fitted = coded_bytes(&trainer, &x, &fitted.entropy);
    let with_learned = coded_bytes(&trainer, &x, &learned.entropy);
    for (f, l) in with_fitted.iter().zip(&with_learned) {
        assert!(
            f < l,
            "fitted {with_fitted:?} against learned {with_learned:?} bytes"
        );
    }

    // The pack is valid and serves the library's encoder and decoder.
    let pack = ModelPack::from_safetensors(&fitted.to_safetensors().unwrap()).unwrap();
    encode_and_check(&pack, &x, 16);
}

/// Encodes the first tiles of `x` as a `side x side` image (its tiles' pixels in
/// order, which for the test content is an image like any other) at level 1 with the
/// library encoder, checks the decoded PSNR against the encoder's, and returns the
/// file.
fn encode_and_check(pack: &ModelPack, x: &Tensor, side: u32) -> Vec<u8> {
    let tiles = i64::from(side * side) / 64;
    let samples: Vec<f32> = values(&x.narrow(0, 0, tiles).reshape([-1]));
    let signal = Signal::Image(ImageSignal {
        width: side,
        height: side,
        channels: 3,
        bit_depth: 8,
        samples,
    });
    let encoder = Encoder::new(pack, EncoderConfig::default()).unwrap();
    let encoded = encoder
        .encode(&signal, RateTarget::Quality(1), &mut |_| {})
        .unwrap();
    let decoded = Decoder::new(pack).decode(&encoded.file).unwrap();
    let psnr = ipc_codec::metrics::psnr(&signal, &decoded);
    assert!((psnr - encoded.psnr).abs() < 1e-9 && psnr > 10.0, "{psnr}");
    encoded.file
}

#[test]
fn neighbour_tables_export_with_the_pack_and_code_version_2_files() {
    // Fitting on blocks of 2 x 2 tiles: the instances are whole blocks cut into tiles in
    // tile order (what the trainer's run does), here 64 blocks of smooth content.
    let mut cfg = config();
    cfg.rate.neighbour_block = 2;
    cfg.validate().unwrap();
    let mut trainer = Trainer::new(&cfg, Device::Cpu).unwrap();
    let x = instances(256);
    for _ in 0..5 {
        trainer.train_step(&x.narrow(0, 0, 8));
    }
    trainer.set_fit_instances(&values(&x));
    let contents = trainer.export("neighbour").unwrap();
    let elements = 16 * 3;
    let neighbour = contents
        .entropy
        .neighbour
        .as_ref()
        .expect("neighbour tables");
    assert_eq!(neighbour.len(), 2);
    assert!(neighbour
        .iter()
        .all(|l| l.len() == elements * NEIGHBOUR_CLASSES));
    // Each neighbour table covers its element's own table's range.
    for (plain, near) in contents.entropy.levels.iter().zip(neighbour) {
        for (e, own) in plain.iter().enumerate() {
            for t in &near[e * NEIGHBOUR_CLASSES..(e + 1) * NEIGHBOUR_CLASSES] {
                assert_eq!((t.min, t.counts.len()), (own.min, own.counts.len()));
            }
        }
    }
    let pack = ModelPack::from_safetensors(&contents.to_safetensors().unwrap()).unwrap();
    assert!(pack.v_model(0).unwrap().has_neighbour_tables());
    let file = encode_and_check(&pack, &x, 32);
    let header = ipc_codec::Header::parse(&file).unwrap();
    assert_eq!(header.coding, PayloadCoding::NeighbourContexts);
}
