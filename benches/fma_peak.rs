//! The machine's f32 FMA peak, the yardstick for the synthesis GFLOP/s of
//! `benches/decode.rs`: 12 independent chains of 8-lane fused multiply-adds per thread,
//! on one thread and on every core. `cargo bench --bench fma_peak` prints GFLOP/s.

use std::time::Instant;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn fma_chains(iterations: u64) -> f32 {
    use std::arch::x86_64::*;
    let mut acc = [_mm256_set1_ps(0.0); 12];
    let a = _mm256_set1_ps(0.999_999);
    let b = _mm256_set1_ps(1e-7);
    for _ in 0..iterations {
        for x in acc.iter_mut() {
            *x = _mm256_fmadd_ps(*x, a, b);
        }
    }
    let mut lanes = [0f32; 8];
    let mut sum = 0.0;
    for x in acc {
        _mm256_storeu_ps(lanes.as_mut_ptr(), x);
        sum += lanes.iter().sum::<f32>();
    }
    sum
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
            println!("fma_peak: no AVX2+FMA on this CPU; skipped");
            return;
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let iterations = 100_000_000u64;
        for threads in [1, cores] {
            let start = Instant::now();
            std::thread::scope(|s| {
                for _ in 0..threads {
                    // SAFETY: AVX2 and FMA were detected above.
                    s.spawn(|| std::hint::black_box(unsafe { fma_chains(iterations) }));
                }
            });
            let flops = threads as f64 * iterations as f64 * 12.0 * 8.0 * 2.0;
            println!(
                "fma_peak: {threads} thread(s): {:.1} GFLOP/s",
                flops / start.elapsed().as_secs_f64() / 1e9
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    println!("fma_peak: only implemented for x86_64");
}
