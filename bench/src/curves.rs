//! Rate-distortion curves: interpolation at a given rate and the Bjøntegaard delta
//! rate (G. Bjøntegaard, "Calculation of average PSNR differences between RD-curves",
//! VCEG-M33, 2001).

/// One operating point: rate (bits per pixel or kbit/s) and quality (dB).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RdPoint {
    pub rate: f64,
    pub quality: f64,
}

/// The points that can take part in a fit: positive finite rate, finite quality (a
/// lossless point has infinite PSNR and no place on a log-rate curve).
fn usable(points: &[RdPoint]) -> Vec<RdPoint> {
    let mut v: Vec<RdPoint> = points
        .iter()
        .copied()
        .filter(|p| p.rate.is_finite() && p.rate > 0.0 && p.quality.is_finite())
        .collect();
    v.sort_by(|a, b| a.rate.total_cmp(&b.rate));
    v
}

/// The quality at `rate`, linearly interpolated in log-rate between the two measured
/// points around it; `None` outside the measured range (no extrapolation).
pub fn quality_at(points: &[RdPoint], rate: f64) -> Option<f64> {
    let v = usable(points);
    // NaN fails the test too.
    if rate.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) || v.is_empty() {
        return None;
    }
    let (first, last) = (v[0], v[v.len() - 1]);
    if rate < first.rate || rate > last.rate {
        return None;
    }
    for pair in v.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if rate >= a.rate && rate <= b.rate {
            if b.rate == a.rate {
                return Some((a.quality + b.quality) / 2.0);
            }
            let t = (rate.ln() - a.rate.ln()) / (b.rate.ln() - a.rate.ln());
            return Some(a.quality + t * (b.quality - a.quality));
        }
    }
    // A single point equal to the rate.
    Some(first.quality)
}

/// A least-squares polynomial `y = sum c_k t^k` in the normalised variable
/// `t = (x - centre) / scale` (normalising keeps the normal equations well conditioned
/// for PSNR values around 30).
#[derive(Debug, Clone)]
struct Poly {
    coeffs: Vec<f64>,
    centre: f64,
    scale: f64,
}

impl Poly {
    fn fit(xs: &[f64], ys: &[f64], degree: usize) -> Option<Poly> {
        let n = xs.len();
        if n <= degree || n != ys.len() {
            return None;
        }
        let centre = xs.iter().sum::<f64>() / n as f64;
        let scale = xs.iter().map(|x| (x - centre).abs()).fold(0.0, f64::max);
        if scale.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater) {
            return None;
        }
        let m = degree + 1;
        // Normal equations A^T A c = A^T y with A[i][k] = t_i^k.
        let mut a = vec![vec![0.0; m + 1]; m];
        for (x, y) in xs.iter().zip(ys) {
            let t = (x - centre) / scale;
            let powers: Vec<f64> = (0..m).map(|k| t.powi(k as i32)).collect();
            for r in 0..m {
                for c in 0..m {
                    a[r][c] += powers[r] * powers[c];
                }
                a[r][m] += powers[r] * y;
            }
        }
        let coeffs = solve(a)?;
        Some(Poly {
            coeffs,
            centre,
            scale,
        })
    }

    /// The integral of the polynomial over `x` in `[lo, hi]`.
    fn integral(&self, lo: f64, hi: f64) -> f64 {
        let antiderivative = |x: f64| {
            let t = (x - self.centre) / self.scale;
            self.coeffs
                .iter()
                .enumerate()
                .map(|(k, c)| c * t.powi(k as i32 + 1) / (k as f64 + 1.0))
                .sum::<f64>()
                * self.scale
        };
        antiderivative(hi) - antiderivative(lo)
    }
}

/// Gaussian elimination with partial pivoting of an augmented `m x (m + 1)` system.
fn solve(mut a: Vec<Vec<f64>>) -> Option<Vec<f64>> {
    let m = a.len();
    for col in 0..m {
        let pivot = (col..m).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[pivot][col].abs() < 1e-12 {
            return None;
        }
        a.swap(col, pivot);
        let (top, rest) = a.split_at_mut(col + 1);
        let pivot_row = &top[col];
        for row in rest.iter_mut() {
            let f = row[col] / pivot_row[col];
            for (r, p) in row[col..].iter_mut().zip(&pivot_row[col..]) {
                *r -= f * p;
            }
        }
    }
    let mut x = vec![0.0; m];
    for row in (0..m).rev() {
        let s: f64 = (row + 1..m).map(|k| a[row][k] * x[k]).sum();
        x[row] = (a[row][m] - s) / a[row][row];
    }
    x.iter().all(|v| v.is_finite()).then_some(x)
}

/// The Bjøntegaard delta rate of `test` against `reference`, in percent: the average
/// difference in rate at equal quality over the quality interval both curves cover.
/// Each curve's log-rate is fitted as a polynomial of its quality (cubic, as in
/// VCEG-M33, or of degree n - 1 for a curve of n < 4 points), both fits are
/// integrated over the common interval, and the mean difference d of log-rates gives
/// `(exp(d) - 1) * 100`. Negative means `test` needs fewer bits. `None` when a curve
/// has fewer than two usable points or the quality ranges do not overlap.
pub fn bd_rate(reference: &[RdPoint], test: &[RdPoint]) -> Option<f64> {
    let fit = |points: &[RdPoint]| -> Option<(Poly, f64, f64)> {
        let v = usable(points);
        if v.len() < 2 {
            return None;
        }
        let q: Vec<f64> = v.iter().map(|p| p.quality).collect();
        let r: Vec<f64> = v.iter().map(|p| p.rate.ln()).collect();
        let poly = Poly::fit(&q, &r, (v.len() - 1).min(3))?;
        let lo = q.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = q.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some((poly, lo, hi))
    };
    let (pr, lo_r, hi_r) = fit(reference)?;
    let (pt, lo_t, hi_t) = fit(test)?;
    let (lo, hi) = (lo_r.max(lo_t), hi_r.min(hi_t));
    if hi.partial_cmp(&lo) != Some(std::cmp::Ordering::Greater) {
        return None;
    }
    let diff = (pt.integral(lo, hi) - pr.integral(lo, hi)) / (hi - lo);
    let pct = (diff.exp() - 1.0) * 100.0;
    pct.is_finite().then_some(pct)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A concave curve like a codec's: quality grows with log-rate, more slowly at
    /// high rates.
    fn curve(scale: f64) -> Vec<RdPoint> {
        [0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0]
            .iter()
            .map(|&r: &f64| RdPoint {
                rate: r * scale,
                quality: 30.0 + 6.0 * r.ln() - 0.4 * r.ln().powi(2),
            })
            .collect()
    }

    #[test]
    fn identical_curves_give_zero() {
        let c = curve(1.0);
        assert!(bd_rate(&c, &c).unwrap().abs() < 1e-9);
    }

    #[test]
    fn uniformly_lower_rates_give_that_saving() {
        let bd = bd_rate(&curve(1.0), &curve(0.9)).unwrap();
        assert!((bd + 10.0).abs() < 1e-6, "{bd}");
        let bd = bd_rate(&curve(1.0), &curve(1.25)).unwrap();
        assert!((bd - 25.0).abs() < 1e-6, "{bd}");
        // Against each other the two directions are consistent: (1 + a)(1 + b) = 1.
        let a = bd_rate(&curve(1.0), &curve(0.8)).unwrap() / 100.0;
        let b = bd_rate(&curve(0.8), &curve(1.0)).unwrap() / 100.0;
        assert!(((1.0 + a) * (1.0 + b) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn a_curve_that_is_better_at_equal_rate_saves_bits() {
        let base = curve(1.0);
        let better: Vec<RdPoint> = base
            .iter()
            .map(|p| RdPoint {
                rate: p.rate,
                quality: p.quality + 1.0,
            })
            .collect();
        assert!(bd_rate(&base, &better).unwrap() < -5.0);
    }

    #[test]
    fn no_overlap_or_too_few_points_gives_none() {
        let low = curve(1.0);
        let high: Vec<RdPoint> = low
            .iter()
            .map(|p| RdPoint {
                rate: p.rate,
                quality: p.quality + 100.0,
            })
            .collect();
        assert_eq!(bd_rate(&low, &high), None);
        assert_eq!(bd_rate(&low, &low[..1]), None);
        // Two or three points still give a (lower-degree) answer.
        let two = &curve(0.9)[2..4];
        assert!(bd_rate(&low, two).is_some());
        // Lossless points do not take part.
        let mut with_lossless = curve(0.9);
        with_lossless.push(RdPoint {
            rate: 12.0,
            quality: f64::INFINITY,
        });
        let bd = bd_rate(&low, &with_lossless).unwrap();
        assert!((bd + 10.0).abs() < 1e-6);
    }

    #[test]
    fn interpolation_is_linear_in_log_rate_and_never_extrapolates() {
        let pts = [
            RdPoint {
                rate: 0.25,
                quality: 26.0,
            },
            RdPoint {
                rate: 1.0,
                quality: 32.0,
            },
        ];
        // 0.5 is halfway between 0.25 and 1 in log-rate.
        assert!((quality_at(&pts, 0.5).unwrap() - 29.0).abs() < 1e-12);
        assert_eq!(quality_at(&pts, 0.25), Some(26.0));
        assert_eq!(quality_at(&pts, 1.0), Some(32.0));
        assert_eq!(quality_at(&pts, 0.2), None);
        assert_eq!(quality_at(&pts, 1.01), None);
        assert_eq!(quality_at(&[], 0.5), None);
        // Order does not matter.
        let rev = [pts[1], pts[0]];
        assert_eq!(quality_at(&rev, 0.5), quality_at(&pts, 0.5));
    }
}
