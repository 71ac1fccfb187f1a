//! A run stopped at a checkpoint and resumed continues exactly: the same weights,
//! optimiser moments, data order and quantisation noise as a run that never stopped
//! (the brief's rule for training that spans sessions), through the main stage and the
//! meta stage, in both orientations of the modulated layer.

use std::collections::HashMap;
use std::path::PathBuf;

use ipc_train::config::{InnerStep, LevelConfig, TrainConfig};
use ipc_train::export::LOG_INNER_LR_VAR;
use ipc_train::trainer::Trainer;
use tch::{Device, Kind, Tensor};

fn config(orientation: &str) -> TrainConfig {
    TrainConfig::parse(&format!(
        r#"
name = "resume"
modality = "image"
seed = 9
[model]
frequencies = 6
max_frequency = 16.0
width = 16
layers = 4
rank = 3
orientation = "{orientation}"
tile = [8, 8]
[encoder]
method = "hyper"
patch = 4
dim = 8
heads = 2
meta_steps = 3
inner_steps = 2
[rate]
levels = [{{ step = 0.5, lambda = 0.01 }}, {{ step = 0.125, lambda = 0.001 }}]
[train]
steps = 6
batch = 3
lr = 0.01
[data]
dir = "unused"
"#
    ))
    .unwrap()
}

/// libtorch's random generator is global: tests that train must not interleave.
static TORCH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The batch of step `k`, independent of libtorch's generator.
fn batch(k: usize) -> Tensor {
    let values: Vec<f32> = (0..3 * 64 * 3)
        .map(|i| ((i * 37 + k * 101) % 97) as f32 / 97.0)
        .collect();
    Tensor::from_slice(&values).reshape([3, 64, 3])
}

/// Steps `from..to` of the schedule: main steps below 6, then meta steps.
fn steps(trainer: &mut Trainer, from: usize, to: usize) {
    for k in from..to {
        if k < 6 {
            trainer.set_lr(if k >= 4 { 0.001 } else { 0.01 });
            trainer.train_step(&batch(k));
        } else {
            trainer.meta_step(&batch(k), 0.003);
        }
    }
}

fn variables(trainer: &Trainer) -> Vec<(String, Vec<f32>)> {
    let mut vars: Vec<(String, Vec<f32>)> = trainer
        .vs
        .variables()
        .into_iter()
        .map(|(name, t)| {
            let v = Vec::<f32>::try_from(t.detach().to_kind(Kind::Float).flatten(0, -1)).unwrap();
            (name, v)
        })
        .collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    vars
}

fn checkpoint_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipc-resume-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir.join("run.ckpt.safetensors")
}

#[test]
fn resumed_run_equals_uninterrupted_run() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    // One thread: multi-threaded reductions may sum in another order from run to run.
    tch::set_num_threads(1);
    for orientation in ["shared-input", "instance-input"] {
        let cfg = config(orientation);
        let mut whole = Trainer::new(&cfg, Device::Cpu).unwrap();
        steps(&mut whole, 0, 9);

        // Stopped once in the main stage and once in the meta stage.
        let path = checkpoint_path(orientation);
        let mut first = Trainer::new(&cfg, Device::Cpu).unwrap();
        steps(&mut first, 0, 4);
        first.save_checkpoint(&path).unwrap();
        drop(first);
        let mut second = Trainer::new(&cfg, Device::Cpu).unwrap();
        second.load_checkpoint(&path).unwrap();
        assert_eq!(second.step, 4);
        steps(&mut second, 4, 7);
        second.save_checkpoint(&path).unwrap();
        drop(second);
        let mut third = Trainer::new(&cfg, Device::Cpu).unwrap();
        third.load_checkpoint(&path).unwrap();
        steps(&mut third, 7, 9);

        let (a, b) = (variables(&whole), variables(&third));
        assert_eq!(a.len(), b.len());
        for ((name, x), (_, y)) in a.iter().zip(&b) {
            assert_eq!(
                x, y,
                "{orientation}: variable {name} differs after resuming"
            );
        }
        // The run really trained: the weights moved from their initial values.
        let fresh = variables(&Trainer::new(&cfg, Device::Cpu).unwrap());
        assert!(a.iter().zip(&fresh).any(|((_, x), (_, y))| x != y));
    }
}

#[test]
fn resuming_without_the_optimiser_state_differs() {
    // Deleting the moments must change the continuation: the test above would pass
    // vacuously if the moments played no part.
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let cfg = config("instance-input");
    let mut whole = Trainer::new(&cfg, Device::Cpu).unwrap();
    steps(&mut whole, 0, 6);
    let path = checkpoint_path("no-moments");
    let mut first = Trainer::new(&cfg, Device::Cpu).unwrap();
    steps(&mut first, 0, 3);
    first.save_checkpoint(&path).unwrap();
    std::fs::remove_file(path.with_extension("adam.safetensors")).unwrap();
    let mut second = Trainer::new(&cfg, Device::Cpu).unwrap();
    second.load_checkpoint(&path).unwrap();
    steps(&mut second, 3, 6);
    assert_ne!(variables(&whole), variables(&second));
}

/// `cfg` with a third, finer level after its two.
fn with_finer_level(cfg: &TrainConfig) -> TrainConfig {
    let mut cfg = cfg.clone();
    let mut finer = cfg.rate.levels[1].clone();
    finer.step /= 4.0;
    cfg.rate.levels.push(finer);
    cfg
}

#[test]
fn a_resumed_run_can_add_finer_levels() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let cfg = config("instance-input");
    let path = checkpoint_path("more-levels");
    let mut first = Trainer::new(&cfg, Device::Cpu).unwrap();
    steps(&mut first, 0, 4);
    first.save_checkpoint(&path).unwrap();
    let saved = variables(&first);

    let more = with_finer_level(&cfg);
    let mut second = Trainer::new(&more, Device::Cpu).unwrap();
    second.load_checkpoint(&path).unwrap();
    assert_eq!(second.step, 4);
    let loaded = variables(&second);
    assert_eq!(saved.len(), loaded.len());
    for ((name, x), (_, y)) in saved.iter().zip(&loaded) {
        let per_level = ["entropy.location", "entropy.log_scale", "level_embedding"];
        if per_level.iter().any(|v| name.ends_with(v)) {
            // [levels, n]: the saved levels, then the finest of them again.
            let row = x.len() / 2;
            assert_eq!(y.len(), 3 * row, "{name}");
            assert_eq!(&y[..2 * row], &x[..], "{name}");
            assert_eq!(&y[2 * row..], &x[row..], "{name}");
        } else {
            assert_eq!(x, y, "variable {name} changed on resuming");
        }
    }
    // The saved levels' parameters really were trained (else the check above is empty).
    let fresh = variables(&Trainer::new(&cfg, Device::Cpu).unwrap());
    let log_scale = |vars: &[(String, Vec<f32>)]| {
        vars.iter()
            .find(|(n, _)| n == "entropy.log_scale")
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(log_scale(&saved), log_scale(&fresh));
    // Training goes on with three levels.
    steps(&mut second, 4, 6);
    assert_ne!(variables(&second), loaded);

    // Levels cannot be removed.
    let mut fewer = cfg.clone();
    fewer.rate.levels.truncate(1);
    let mut third = Trainer::new(&fewer, Device::Cpu).unwrap();
    let err = third.load_checkpoint(&path).unwrap_err().to_string();
    assert!(err.contains("can add levels but not remove them"), "{err}");
}

/// A run that ran its meta stage can be resumed with the meta stage dropped
/// (`meta_steps = 0`, whatever the other meta settings): every variable but V0 and the
/// inner step size comes back unchanged, and the pack leaves those two out. Changing
/// other encoder settings is refused.
#[test]
fn a_resumed_run_can_drop_the_meta_stage() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let cfg = config("instance-input");
    let path = checkpoint_path("drop-meta");
    let mut first = Trainer::new(&cfg, Device::Cpu).unwrap();
    steps(&mut first, 0, 8);
    first.save_checkpoint(&path).unwrap();
    let saved = variables(&first);
    let is_meta = |name: &str| name == "encoder.v0" || name == LOG_INNER_LR_VAR;
    assert_eq!(saved.iter().filter(|(n, _)| is_meta(n)).count(), 2);
    let exported = |t: &Trainer| -> Vec<String> {
        t.export("test")
            .unwrap()
            .extra
            .into_iter()
            .map(|(name, _, _)| name)
            .collect()
    };
    let mut fit = Vec::new();
    for k in 0..4 {
        fit.extend(Vec::<f32>::try_from(batch(k).flatten(0, -1)).unwrap());
    }
    first.set_fit_instances(&fit);
    assert!(exported(&first).iter().any(|n| n == "encoder.v0"));

    let mut without = cfg.clone();
    without.encoder.meta_steps = 0;
    without.encoder.inner_lr = 0.5;
    let mut second = Trainer::new(&without, Device::Cpu).unwrap();
    second.load_checkpoint(&path).unwrap();
    assert_eq!(second.step, 8);
    let kept: Vec<_> = saved.into_iter().filter(|(n, _)| !is_meta(n)).collect();
    assert_eq!(variables(&second), kept);
    second.set_fit_instances(&fit);
    let names = exported(&second);
    assert!(
        names.iter().any(|n| n.starts_with("encoder.hyper")),
        "{names:?}"
    );
    assert!(
        !names
            .iter()
            .any(|n| n.starts_with("encoder.v0") || n.starts_with("encoder.meta")),
        "{names:?}"
    );

    // Other encoder settings than the meta stage's are refused.
    let mut other_encoder = cfg.clone();
    other_encoder.encoder.patch = 2;
    let mut third = Trainer::new(&other_encoder, Device::Cpu).unwrap();
    let err = third.load_checkpoint(&path).unwrap_err().to_string();
    assert!(
        err.contains("another model or encoder configuration"),
        "{err}"
    );
}

/// A run that ran its meta stage, resumed with other meta settings (here the plain
/// inner step, docs/method.md §5), runs the whole meta stage again: V0 and the inner
/// step size start from their initial values, every other variable is restored, and
/// the step goes back to the end of the main stage.
#[test]
fn a_resumed_run_restarts_a_changed_meta_stage() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let cfg = config("instance-input");
    let path = checkpoint_path("restart-meta");
    let mut first = Trainer::new(&cfg, Device::Cpu).unwrap();
    steps(&mut first, 0, 9);
    first.save_checkpoint(&path).unwrap();
    let saved = variables(&first);

    let mut plain = cfg.clone();
    plain.encoder.inner_step = InnerStep::Plain;
    plain.encoder.inner_lr = 0.5;
    let initial = variables(&Trainer::new(&plain, Device::Cpu).unwrap());
    let mut second = Trainer::new(&plain, Device::Cpu).unwrap();
    second.load_checkpoint(&path).unwrap();
    assert_eq!(second.step, 9);
    second.rewind_restarted_meta_stage(6);
    assert_eq!(second.step, 6);
    let is_meta = |name: &str| name == "encoder.v0" || name == LOG_INNER_LR_VAR;
    let loaded = variables(&second);
    assert_eq!(loaded.len(), saved.len());
    for (((name, x), (_, y)), (_, z)) in saved.iter().zip(&loaded).zip(&initial) {
        if is_meta(name) {
            assert_eq!(y, z, "{name} should start again");
            assert_ne!(x, z, "{name} was not trained, the test is empty");
        } else {
            assert_eq!(x, y, "{name} changed on resuming");
        }
    }
    // The meta stage runs again under the plain rule and moves V0.
    steps(&mut second, 6, 9);
    let v0 = |vars: &[(String, Vec<f32>)]| {
        vars.iter()
            .find(|(n, _)| n == "encoder.v0")
            .unwrap()
            .1
            .clone()
    };
    assert_ne!(v0(&variables(&second)), v0(&initial));

    // A checkpoint written without a meta stage (no V0, no moments for it) can get one
    // back.
    let mut dropped = cfg.clone();
    dropped.encoder.meta_steps = 0;
    let mut without = Trainer::new(&dropped, Device::Cpu).unwrap();
    without.load_checkpoint(&path).unwrap();
    let path_without = checkpoint_path("restart-meta-without");
    without.save_checkpoint(&path_without).unwrap();
    let mut again = Trainer::new(&plain, Device::Cpu).unwrap();
    again.load_checkpoint(&path_without).unwrap();
    again.rewind_restarted_meta_stage(6);
    assert_eq!(again.step, 6);
    assert_eq!(variables(&again), loaded);

    // With the same settings nothing restarts.
    let mut same = Trainer::new(&cfg, Device::Cpu).unwrap();
    same.load_checkpoint(&path).unwrap();
    same.rewind_restarted_meta_stage(6);
    assert_eq!(same.step, 9);
    assert_eq!(variables(&same), saved);
}

/// V for `batch(0)` from the hypernetwork and the network's output on it.
fn predict_and_render(trainer: &Trainer) -> (Tensor, Tensor) {
    tch::no_grad(|| {
        let levels = Tensor::from_slice(&[0i64, 1, 1]);
        let v = trainer
            .model
            .hyper
            .as_ref()
            .unwrap()
            .forward(&batch(0), &levels);
        let out = trainer.model.synthesize(&v);
        (v, out)
    })
}

#[test]
fn a_grown_model_starts_where_the_smaller_one_stopped() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    for orientation in ["shared-input", "instance-input"] {
        let small_cfg = config(orientation);
        let mut small = Trainer::new(&small_cfg, Device::Cpu).unwrap();
        steps(&mut small, 0, 6);
        let path = checkpoint_path(&format!("grow-{orientation}"));
        small.save_checkpoint(&path).unwrap();
        let (v_small, out_small) = predict_and_render(&small);

        // Layer 0 twice as wide: 32 patterns instead of 16.
        let mut big_cfg = config(orientation);
        big_cfg.model.pre_width = Some(32);
        let mut big = Trainer::new(&big_cfg, Device::Cpu).unwrap();
        big.grow_from_checkpoint(&path).unwrap();
        assert_eq!(big.step, 0, "growing starts a new run");
        let (v_big, out_big) = predict_and_render(&big);
        // The grown model computes what the smaller one did...
        let diff = (&out_big - &out_small).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{orientation}: outputs differ by {diff}");
        // ...with the smaller V in V's leading rows; in the instance-input orientation
        // V's new rows (the new patterns') are zero, in the shared-input one V is
        // unchanged and U's new rows are zero.
        let u = |t: &Trainer| t.vs.variables().get("layers.1.u").unwrap().detach();
        let rows = v_small.size()[1];
        let diff = (v_big.narrow(1, 0, rows) - &v_small)
            .abs()
            .max()
            .double_value(&[]);
        assert!(diff < 1e-5, "{orientation}: V differs by {diff}");
        let new_part = |t: &Trainer, v: &Tensor| {
            if orientation == "instance-input" {
                v.narrow(1, 16, 16).abs().max().double_value(&[])
            } else {
                u(t).narrow(0, 16, 16).abs().max().double_value(&[])
            }
        };
        assert_eq!(new_part(&big, &v_big), 0.0);
        // ...and training moves the grown part away from zero.
        steps(&mut big, 0, 3);
        let (v_after, _) = predict_and_render(&big);
        assert!(
            new_part(&big, &v_after) > 0.0,
            "{orientation}: the grown part did not train"
        );

        // One more rank: V's leading part and the rest of U are the smaller model's, and
        // U's new-rank part is small but not zero (so that the new rank can learn).
        let mut ranked_cfg = config(orientation);
        ranked_cfg.model.rank = 4;
        let mut ranked = Trainer::new(&ranked_cfg, Device::Cpu).unwrap();
        ranked.grow_from_checkpoint(&path).unwrap();
        let (u_small, u_ranked) = (u(&small), u(&ranked));
        let (old_part, new_part) = if orientation == "instance-input" {
            (u_ranked.narrow(0, 0, 3), u_ranked.narrow(0, 3, 1))
        } else {
            (u_ranked.narrow(1, 0, 3), u_ranked.narrow(1, 3, 1))
        };
        assert_eq!((&old_part - &u_small).abs().max().double_value(&[]), 0.0);
        let new_size = new_part.abs().max().double_value(&[]);
        let old_size = u_small.abs().max().double_value(&[]);
        assert!(
            new_size > 0.0 && new_size < 0.2 * old_size.max(1e-3) + 0.1,
            "{orientation}: U's new rank part {new_size} (old {old_size})"
        );

        // Another width, fewer patterns or a lower rank is refused.
        for (change, value) in [("width", 24), ("rank", 2), ("pre_width", 8)] {
            let mut other = config(orientation);
            match change {
                "width" => other.model.width = value,
                "rank" => other.model.rank = value,
                _ => other.model.pre_width = Some(value),
            }
            let err = Trainer::new(&other, Device::Cpu)
                .unwrap()
                .grow_from_checkpoint(&path)
                .unwrap_err();
            assert!(err.to_string().contains("another model"), "{change}: {err}");
        }
    }
}

#[test]
fn a_run_with_other_quality_levels_grows_from_the_same_weights() {
    let _torch = TORCH.lock().unwrap_or_else(|e| e.into_inner());
    tch::set_num_threads(1);
    let saved_cfg = config("instance-input");
    let mut saved = Trainer::new(&saved_cfg, Device::Cpu).unwrap();
    steps(&mut saved, 0, 6);
    let path = checkpoint_path("grow-levels");
    saved.save_checkpoint(&path).unwrap();

    // Three finer levels instead of two, the hypernetwork told the level.
    let mut cfg = config("instance-input");
    cfg.rate.levels = [0.25, 0.125, 0.0625]
        .map(|step| LevelConfig {
            step,
            lambda: 0.001,
        })
        .to_vec();
    cfg.encoder.level_conditioning = true;
    let fresh = variables(&Trainer::new(&cfg, Device::Cpu).unwrap());
    let mut grown = Trainer::new(&cfg, Device::Cpu).unwrap();
    grown.grow_from_checkpoint(&path).unwrap();
    let saved_vars: HashMap<String, Vec<f32>> = variables(&saved).into_iter().collect();
    let per_level = |name: &str| {
        ["entropy.location", "entropy.log_scale", "level_embedding"]
            .iter()
            .any(|v| name.ends_with(v))
    };
    let mut carried = 0;
    for ((name, value), (fresh_name, fresh_value)) in variables(&grown).iter().zip(&fresh) {
        assert_eq!(name, fresh_name);
        if per_level(name) {
            // A level's parameters belong to its step and lambda: fresh.
            assert_eq!(value, fresh_value, "{name} should start fresh");
        } else if let Some(saved_value) = saved_vars.get(name) {
            assert_eq!(value, saved_value, "{name} should carry over");
            carried += 1;
        }
    }
    assert!(carried > 10, "only {carried} variables carried over");
    // It trains from there.
    steps(&mut grown, 0, 2);
}
