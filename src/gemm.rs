//! The one place that calls the GEMM kernel. `matrixmultiply::sgemm` takes raw
//! pointers; this wrapper checks every dimension against the slices first, so the
//! rest of the crate stays free of `unsafe`.
#![allow(unsafe_code)]

/// `c = a b + c` for row-major `a: m x k`, `b: k x n`, `c: m x n` (single-threaded;
/// callers parallelise over independent row blocks).
///
/// # Panics
/// If a slice is shorter than its dimensions require (a bug in the caller, never a
/// property of the input file: all dimensions come from a validated pack).
pub(crate) fn gemm_acc(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(
        a.len() >= m * k && b.len() >= k * n && c.len() >= m * n,
        "gemm operand too short"
    );
    if m == 0 || n == 0 {
        return;
    }
    let (k_i, n_i) = (k as isize, n as isize);
    // SAFETY: a, b and c hold at least m*k, k*n and m*n elements (checked above) and
    // are addressed row-major with these strides, so every access is in bounds; `c` is
    // a unique borrow, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            a.as_ptr(),
            k_i,
            1,
            b.as_ptr(),
            n_i,
            1,
            1.0,
            c.as_mut_ptr(),
            n_i,
            1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_plain_loops() {
        let (m, k, n) = (7, 5, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 7) as f32 * 0.5).collect();
        let mut c = vec![1.0f32; m * n];
        gemm_acc(m, k, n, &a, &b, &mut c);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = 1.0 + (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f32>();
                assert_eq!(c[i * n + j], want);
            }
        }
    }
}
