//! libtorch links and runs: a small matmul with autograd on the CPU, its gradient
//! checked against the closed form and against finite differences.
//!
//! The test binary starts without LD_LIBRARY_PATH because build.rs gives it an rpath to
//! libtorch; `smoke_runs_without_ld_library_path` runs it again without that variable
//! to prove it.

use tch::{Device, Kind, Tensor};

fn loss(x: &Tensor, w: &Tensor) -> Tensor {
    // L(W) = sum(tanh(X W)^2)
    x.matmul(w).tanh().square().sum(Kind::Double)
}

#[test]
fn matmul_backward_matches_closed_form_and_finite_differences() {
    let opts = (Kind::Double, Device::Cpu);
    let x = Tensor::from_slice(&[0.5f64, -1.0, 2.0, 0.25, 1.5, -0.75])
        .reshape([2, 3])
        .to_device(Device::Cpu);
    let w = Tensor::from_slice(&[0.1f64, -0.2, 0.3, 0.4, -0.5, 0.6])
        .reshape([3, 2])
        .set_requires_grad(true);
    assert_eq!(x.kind(), Kind::Double);

    let l = loss(&x, &w);
    l.backward();
    let grad = w.grad();
    assert_eq!(grad.size(), [3, 2]);

    // dL/dW = X^T (2 tanh(XW) (1 - tanh(XW)^2))
    let closed = tch::no_grad(|| {
        let t = x.matmul(&w).tanh();
        x.transpose(0, 1)
            .matmul(&(&t * 2.0 * (Tensor::ones([2, 2], opts) - t.square())))
    });
    let diff = (&grad - &closed).abs().max().double_value(&[]);
    assert!(diff < 1e-12, "autograd vs closed form: {diff}");

    // Central differences, element by element.
    let w0: Vec<f64> = Vec::try_from(w.detach().flatten(0, -1)).unwrap();
    let g: Vec<f64> = Vec::try_from(grad.flatten(0, -1)).unwrap();
    let h = 1e-6;
    for i in 0..w0.len() {
        let at = |delta: f64| {
            let mut v = w0.clone();
            v[i] += delta;
            let wi = Tensor::from_slice(&v).reshape([3, 2]);
            tch::no_grad(|| loss(&x, &wi).double_value(&[]))
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        assert!(
            (numeric - g[i]).abs() < 1e-6,
            "element {i}: autograd {} vs finite difference {numeric}",
            g[i]
        );
    }
}

#[test]
fn float_matmul_on_cpu() {
    let a = Tensor::arange(6, (Kind::Float, Device::Cpu)).reshape([2, 3]);
    let b = Tensor::ones([3, 4], (Kind::Float, Device::Cpu));
    let c = a.matmul(&b);
    assert_eq!(c.size(), [2, 4]);
    let v: Vec<f32> = Vec::try_from(c.flatten(0, -1)).unwrap();
    assert_eq!(v, [3.0, 3.0, 3.0, 3.0, 12.0, 12.0, 12.0, 12.0]);
}

#[test]
#[cfg(target_os = "linux")]
fn smoke_runs_without_ld_library_path() {
    // Run one test of this binary again in a child process with no LD_LIBRARY_PATH: it
    // can only start if the binary finds libtorch by itself.
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "float_matmul_on_cpu", "--test-threads=1"])
        .env_remove("LD_LIBRARY_PATH")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "without LD_LIBRARY_PATH: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );

    // And this process has libtorch mapped from the folder that build.rs named.
    if let Some(lib) = option_env!("IPC_TRAIN_LIBTORCH_LIB") {
        let lib = std::fs::canonicalize(lib).unwrap();
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
        let cpu = lib.join("libtorch_cpu.so");
        assert!(
            maps.lines().any(|l| l.ends_with(cpu.to_str().unwrap())),
            "{} is not mapped",
            cpu.display()
        );
    }
}
