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

/// A GEMM operand: a row-major slice, read as stored or as its transpose.
#[derive(Clone, Copy)]
pub(crate) enum Operand<'a> {
    /// The slice is the matrix, row-major.
    Plain(&'a [f32]),
    /// The slice holds the transpose of the matrix, row-major.
    Transposed(&'a [f32]),
}

impl Operand<'_> {
    /// Pointer, row stride and column stride of a `rows x cols` matrix, after checking
    /// that the slice is long enough.
    fn layout(&self, rows: usize, cols: usize) -> (*const f32, isize, isize) {
        match *self {
            Operand::Plain(s) => {
                assert!(s.len() >= rows * cols, "gemm operand too short");
                (s.as_ptr(), cols as isize, 1)
            }
            Operand::Transposed(s) => {
                assert!(s.len() >= rows * cols, "gemm operand too short");
                (s.as_ptr(), 1, rows as isize)
            }
        }
    }
}

/// `c = a b + c` for `a: m x k` and `b: k x n`, either given as stored or transposed
/// (the backward passes of the encoder need `x W^T` and `x^T g`), `c: m x n` row-major.
///
/// # Panics
/// As [`gemm_acc`].
pub(crate) fn gemm_acc_op(
    m: usize,
    k: usize,
    n: usize,
    a: Operand<'_>,
    b: Operand<'_>,
    c: &mut [f32],
) {
    let (pa, rsa, csa) = a.layout(m, k);
    let (pb, rsb, csb) = b.layout(k, n);
    assert!(c.len() >= m * n, "gemm operand too short");
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: `layout` checked that each input slice holds rows*cols elements, and the
    // strides address exactly that row-major block or its transpose; `c` holds m*n
    // elements addressed row-major and is a unique borrow, so it aliases no input.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            pa,
            rsa,
            csa,
            pb,
            rsb,
            csb,
            1.0,
            c.as_mut_ptr(),
            n as isize,
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

    #[test]
    fn transposed_operands_match_plain_loops() {
        let (m, k, n) = (4, 6, 5);
        let a: Vec<f32> = (0..m * k).map(|i| (i % 13) as f32 - 6.0).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.25 - 0.5).collect();
        let at: Vec<f32> = (0..k * m).map(|i| a[(i % m) * k + i / m]).collect();
        let bt: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let mut want = vec![0.5f32; m * n];
        gemm_acc(m, k, n, &a, &b, &mut want);
        for (a_op, b_op) in [
            (Operand::Plain(&a), Operand::Transposed(&bt)),
            (Operand::Transposed(&at), Operand::Plain(&b)),
            (Operand::Transposed(&at), Operand::Transposed(&bt)),
        ] {
            let mut c = vec![0.5f32; m * n];
            gemm_acc_op(m, k, n, a_op, b_op, &mut c);
            assert_eq!(c, want);
        }
    }
}
