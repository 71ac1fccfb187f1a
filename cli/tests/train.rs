//! `ipc-codec train` end to end on generated images (built with `--features train`):
//! a pack that the decoder loads, a report, resume from the checkpoint, determinism on
//! CPU for a seed, and one-line errors for bad configs and missing data.
#![cfg(feature = "train")]

use std::path::{Path, PathBuf};
use std::process::Command;

use ipc_codec::ModelPack;

const BIN: &str = env!("CARGO_BIN_EXE_ipc-codec");

fn workdir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ipc-train-cli-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("images")).unwrap();
    for k in 0..5u32 {
        let img = image::RgbImage::from_fn(48 + 8 * k, 40, |x, y| {
            image::Rgb([
                (x * 5 + k * 20) as u8,
                (y * 6) as u8,
                ((x * y + k) % 251) as u8,
            ])
        });
        img.save(dir.join(format!("images/img{k}.png"))).unwrap();
    }
    dir
}

fn write_config(dir: &Path, extra: &str) -> PathBuf {
    let path = dir.join("tiny.toml");
    std::fs::write(
        &path,
        format!(
            r#"
name = "tiny"
modality = "image"
seed = 3
[model]
frequencies = 4
max_frequency = 8.0
width = 12
layers = 3
rank = 2
tile = [8, 8]
[encoder]
method = "hyper"
patch = 4
dim = 8
depth = 1
heads = 2
[rate]
levels = [{{ step = 0.5, lambda = 0.01 }}, {{ step = 0.25, lambda = 0.002 }}]
[train]
steps = 12
batch = 4
lr = 0.003
eval_every = 6
checkpoint_every = 6
eval_instances = 8
threads = 1
[data]
dir = "images"
holdout_fraction = 0.2
{extra}
"#
        ),
    )
    .unwrap();
    path
}

fn train(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .arg("train")
        .arg("--quiet")
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn trains_resumes_and_writes_a_loadable_pack() {
    let dir = workdir("run");
    let config = write_config(&dir, "");
    let out = dir.join("tiny.ipcpack");
    let report = dir.join("report.json");
    let o = train(&[
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pack = ModelPack::from_pack_file(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(pack.config().quality_levels.len(), 2);
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["steps"], 12);
    assert_eq!(r["eval"].as_array().unwrap().len(), 2);
    // Whole held-out files (here the one held-out image) coded into real files: a rate
    // that counts the header, and the PSNR of the whole decoded image.
    for e in r["eval"].as_array().unwrap() {
        let rate = e["file_rate"].as_f64().expect("whole-file rate");
        let psnr = e["file_psnr"].as_f64().expect("whole-file PSNR");
        assert!(rate > 0.0 && psnr.is_finite() && psnr > 0.0, "{e}");
    }
    assert_eq!(r["pack_id"], pack.id().to_string());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("held-out at step 6") && stderr.contains("PSNR"),
        "{stderr}"
    );

    let ckpt = dir.join("tiny.ckpt.safetensors");
    assert!(ckpt.exists());
    let o = train(&[
        "--config",
        config.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--report",
        report.to_str().unwrap(),
        "--resume",
        ckpt.to_str().unwrap(),
        "--steps",
        "18",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(r["steps"], 18);
}

#[test]
fn cpu_training_is_deterministic_for_a_seed() {
    let dir = workdir("det");
    let config = write_config(&dir, "");
    let packs: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            let out = dir.join(format!("p{i}.ipcpack"));
            let o = train(&[
                "--config",
                config.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--steps",
                "6",
            ]);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            std::fs::read(out).unwrap()
        })
        .collect();
    assert!(
        packs[0] == packs[1],
        "two CPU runs with one seed gave different packs"
    );
}

#[test]
fn bad_configs_and_data_fail_with_one_line() {
    let dir = workdir("bad");
    let good = write_config(&dir, "");
    let cases: Vec<(PathBuf, &str)> = vec![
        (dir.join("missing.toml"), "cannot read config"),
        (write_config(&dir, "bogus_key = 1"), "bogus_key"),
    ];
    for (config, needle) in cases {
        let o = train(&[
            "--config",
            config.to_str().unwrap(),
            "--out",
            dir.join("x.ipcpack").to_str().unwrap(),
        ]);
        assert!(!o.status.success());
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(
            stderr.starts_with("ipc-codec:") && stderr.contains(needle),
            "{stderr}"
        );
    }
    std::fs::remove_dir_all(dir.join("images")).unwrap();
    let o = train(&[
        "--config",
        good.to_str().unwrap(),
        "--out",
        dir.join("x.ipcpack").to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.lines().last().unwrap().starts_with("ipc-codec:"),
        "{stderr}"
    );
    assert!(!dir.join("x.ipcpack").exists());
}

/// `encode --device cuda` in a build with GPU support: where there is no GPU it fails
/// with a one-line usage error that names CUDA; where there is one, it encodes.
#[test]
fn encode_on_cuda_works_or_says_why_not() {
    let dir = workdir("cuda");
    let pack = dir.join("pack.ipcpack");
    std::fs::write(
        &pack,
        ipc_codec::pack::synthetic::SyntheticPack::small_image()
            .build_with_encoders()
            .to_pack_file()
            .unwrap(),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "encode", "--device", "cuda", "--quiet", "--effort", "3", "--model",
        ])
        .arg(&pack)
        .arg(dir.join("images/img0.png"))
        .arg("-o")
        .arg(dir.join("img0.ipc"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        let file = std::fs::read(dir.join("img0.ipc")).unwrap();
        let pack = ModelPack::from_pack_file(&std::fs::read(&pack).unwrap()).unwrap();
        ipc_codec::Decoder::new(&pack).decode(&file).unwrap();
    } else {
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        assert!(stderr.to_lowercase().contains("cuda"), "{stderr}");
    }
}
