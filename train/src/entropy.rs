//! The learned entropy model of V: for each quality level and each row i of V (one
//! context per row, spec/model-pack.md §5), a Laplace density with learned location and
//! scale. Levels have their own parameters because the hypernetwork may give V a
//! different scale at each level. In
//! training its bits of the noisy V enter the loss; at export it is discretised at each
//! quality level's step into the integer frequency tables the decoder uses.

use ipc_codec::entropy::{neighbour_class, FrequencyTable, TileGrid, NEIGHBOUR_CLASSES};
use ipc_codec::pack::Orientation;
use tch::{nn, Kind, Tensor};

/// Total mass the exported counts of one table sum to (before the decoder's own
/// normalisation to 2^24; spec/bitstream.md §7.1).
const COUNT_SCALE: f64 = (1u64 << 30) as f64;
/// Smallest probability used in training, so the loss stays finite.
const MIN_PROBABILITY: f64 = 1e-9;

/// Learned Laplace parameters per quality level and rank index.
#[derive(Debug)]
pub struct EntropyModel {
    /// Location for each rank index at each level, `[levels, rank]`.
    pub location: Tensor,
    /// Log scale for each rank index at each level, `[levels, rank]`.
    pub log_scale: Tensor,
    /// The axis of a `[batch, rows, columns]` V that holds the rank index: 1 (rows)
    /// shared-input, 2 (columns) instance-input (`ipc_codec::pack::PackConfig::rank_contexts`).
    rank_axis: i64,
}

impl EntropyModel {
    /// Creates the variables under `p` (`location`, `log_scale`).
    pub fn new(p: &nn::Path, levels: usize, rank: usize, orientation: Orientation) -> EntropyModel {
        EntropyModel {
            location: p.zeros("location", &[levels as i64, rank as i64]),
            log_scale: p.zeros("log_scale", &[levels as i64, rank as i64]),
            rank_axis: match orientation {
                Orientation::SharedInput => 1,
                Orientation::InstanceInput => 2,
            },
        }
    }

    /// Bits of each instance's V, `[batch]`, given V `[batch, rows, columns]` (already
    /// perturbed or rounded), each instance's step `[batch]` and quality level `[batch]`:
    /// the negative log2 of the Laplace mass of the step-wide bin around every element.
    pub fn bits(&self, v: &Tensor, steps: &Tensor, levels: &Tensor) -> Tensor {
        // [batch, rank] -> [batch, rank, 1] or [batch, 1, rank], along V's rank axis.
        let spread = 3 - self.rank_axis;
        let loc = self.location.index_select(0, levels).unsqueeze(spread);
        let scale = self
            .log_scale
            .index_select(0, levels)
            .exp()
            .unsqueeze(spread);
        laplace_bits(v, &loc, &scale, &steps.reshape([-1, 1, 1]))
    }

    /// The location and scale of each row at `level` as plain numbers.
    pub fn parameters(&self, level: usize) -> Vec<(f64, f64)> {
        let plain = |t: Tensor| {
            Vec::<f64>::try_from(
                t.get(level as i64)
                    .detach()
                    .to_kind(Kind::Double)
                    .to_device(tch::Device::Cpu),
            )
            .expect("f64 values")
        };
        let loc = plain(self.location.shallow_clone());
        let scale = plain(self.log_scale.exp());
        loc.into_iter().zip(scale).collect()
    }
}

/// Bits of each instance, `[batch]`, of the `[batch, a, b]` values `x` under the
/// discretised Laplace(`location`, `scale`) with bin width `step` (all three
/// broadcastable to `x`): the negative log2 of the mass of the step-wide bin around
/// every value, summed over the instance. [`EntropyModel::bits`] is this with V's
/// learned parameters.
pub fn laplace_bits(x: &Tensor, location: &Tensor, scale: &Tensor, step: &Tensor) -> Tensor {
    let half = step * 0.5;
    let x = (x - location).abs();
    // Outside the central bin: log p = ln(1/2) - (x - h)/b + ln(1 - exp(-step/b)),
    // exact in the log domain. Inside: p = 1 - (exp(-(h-x)/b) + exp(-(h+x)/b)) / 2.
    // Each branch sees x clamped to its own side so the other cannot produce NaN.
    let x_tail = x.maximum(&half);
    let log_tail = -std::f64::consts::LN_2 - (&x_tail - &half) / scale
        + (-(-(step / scale)).expm1())
            .clamp_min(MIN_PROBABILITY)
            .log();
    let x_centre = x.minimum(&half);
    let p_centre: Tensor =
        1.0 - ((-(&half - &x_centre) / scale).exp() + (-(&half + &x_centre) / scale).exp()) * 0.5;
    let log_centre = p_centre.clamp_min(MIN_PROBABILITY).log();
    let log_p = log_centre.where_self(&x.lt_tensor(&half), &log_tail);
    (-log_p / std::f64::consts::LN_2).sum_dim_intlist(&[1i64, 2][..], false, Kind::Float)
}

/// Mass of the Laplace(`location`, `scale`) density on `[q*step - step/2, q*step + step/2]`.
pub fn laplace_bin_mass(q: i64, step: f64, location: f64, scale: f64) -> f64 {
    let x = (q as f64 * step - location).abs();
    let half = step / 2.0;
    if x >= half {
        0.5 * (-(x - half) / scale).exp() * (-(-step / scale).exp_m1())
    } else {
        1.0 - 0.5 * ((-(half - x) / scale).exp() + (-(half + x) / scale).exp())
    }
}

/// The integer table of one row at one step (spec/model-pack.md §5): counts of the
/// values within `max_half_width` steps (and 12 scales) of the location, then the
/// escape count carrying the rest of the mass. Every count is at least 1.
pub fn frequency_table(
    location: f64,
    scale: f64,
    step: f64,
    max_half_width: usize,
) -> FrequencyTable {
    let centre = (location / step).round() as i64;
    let half = ((12.0 * scale / step).ceil() as i64).clamp(2, max_half_width as i64);
    let mut inside = 0.0;
    let mut counts: Vec<u32> = (centre - half..=centre + half)
        .map(|q| {
            let p = laplace_bin_mass(q, step, location, scale);
            inside += p;
            (p * COUNT_SCALE).round().clamp(1.0, COUNT_SCALE) as u32
        })
        .collect();
    counts.push((((1.0 - inside).max(0.0)) * COUNT_SCALE).round().max(1.0) as u32);
    // A table whose values would leave i32 is moved inward; the escape covers the rest.
    let lowest = i64::from(i32::MIN);
    let highest_start = i64::from(i32::MAX) - 2 * half;
    let min = (centre - half).clamp(lowest, highest_start) as i32;
    FrequencyTable { min, counts }
}

/// One frequency table per element of V counted on quantised V (spec/model-pack.md
/// §5, the `fitted` tables of `rate.tables`): `q` holds whole tiles of `elements`
/// values each, element `e` of every tile is counted into table `e`.
///
/// Each table covers the values seen for its element, within `max_half_width` of their
/// rounded mean, and one more on each side; each in-range count is `2 n + 1` and the
/// escape's `2 m + 1` for `n` occurrences in range and `m` outside (add-one-half
/// smoothing: a value never seen still costs a finite number of bits).
pub fn fitted_tables(q: &[i32], elements: usize, max_half_width: usize) -> Vec<FrequencyTable> {
    assert!(elements > 0 && q.len() % elements == 0);
    (0..elements)
        .map(|e| fitted_table(q.iter().skip(e).step_by(elements).copied(), max_half_width))
        .collect()
}

/// Pseudo-observations of an element's own table in each of its neighbour tables: a
/// class seen rarely in fitting keeps close to the element's table rather than to a
/// few counts.
const NEIGHBOUR_PRIOR: u64 = 8;
/// Counts per observation in neighbour tables, so the prior's shares stay integers
/// with some precision.
const NEIGHBOUR_SCALE: u64 = 16;

/// Neighbour tables (spec/model-pack.md §5.1) counted on quantised V: `q` holds blocks
/// of `block.tiles()` tiles of `elements` values, each block a grid of adjacent tiles
/// in the order of spec/bitstream.md §4; element `e` of a tile is counted into table
/// `e * NEIGHBOUR_CLASSES + class`, its class computed from the same element of the
/// tiles to its left and above within the block (0 outside it, as at a file's edges).
/// Each table covers the range of the element's own table (`plain[e]`, from
/// [`fitted_tables`]) and is that table's distribution as a prior of
/// `NEIGHBOUR_PRIOR` observations plus the counts of its class.
pub fn fitted_neighbour_tables(
    q: &[i32],
    elements: usize,
    block: TileGrid,
    plain: &[FrequencyTable],
) -> Vec<FrequencyTable> {
    let per_block = block.tiles() * elements;
    assert!(per_block > 0 && q.len() % per_block == 0 && plain.len() == elements);
    let mut tables: Vec<Vec<u64>> = plain
        .iter()
        .flat_map(|t| std::iter::repeat_n(vec![0u64; t.counts.len()], NEIGHBOUR_CLASSES))
        .collect();
    for b in q.chunks_exact(per_block) {
        for t in 0..block.tiles() {
            let (x, y) = (t % block.columns, t / block.columns);
            for e in 0..elements {
                let left = if x > 0 { b[(t - 1) * elements + e] } else { 0 };
                let above = if y > 0 {
                    b[(t - block.columns) * elements + e]
                } else {
                    0
                };
                let table = &plain[e];
                let escape = table.counts.len() - 1;
                let offset = i64::from(b[t * elements + e]) - i64::from(table.min);
                let slot = if (0..escape as i64).contains(&offset) {
                    offset as usize
                } else {
                    escape
                };
                tables[e * NEIGHBOUR_CLASSES + neighbour_class(left, above)][slot] += 1;
            }
        }
    }
    tables
        .iter()
        .enumerate()
        .map(|(i, seen)| {
            let own = &plain[i / NEIGHBOUR_CLASSES];
            let total: u64 = own.counts.iter().map(|&c| u64::from(c)).sum::<u64>().max(1);
            let counts = seen
                .iter()
                .zip(&own.counts)
                .map(|(&n, &c)| {
                    let prior = (NEIGHBOUR_PRIOR * NEIGHBOUR_SCALE * u64::from(c)).div_ceil(total);
                    (n * NEIGHBOUR_SCALE + prior).min(i32::MAX as u64) as u32
                })
                .collect();
            FrequencyTable {
                min: own.min,
                counts,
            }
        })
        .collect()
}

fn fitted_table(
    values: impl Iterator<Item = i32> + Clone,
    max_half_width: usize,
) -> FrequencyTable {
    let (mut n, mut sum) = (0i64, 0i64);
    let (mut lowest, mut highest) = (i64::MAX, i64::MIN);
    for v in values.clone() {
        let v = i64::from(v);
        n += 1;
        sum += v;
        lowest = lowest.min(v);
        highest = highest.max(v);
    }
    if n == 0 {
        (lowest, highest) = (0, 0);
    }
    let centre = if n == 0 {
        0
    } else {
        (sum as f64 / n as f64).round() as i64
    };
    let half = max_half_width as i64;
    // One value beyond what was seen on each side, kept within i32 with room for the
    // table's length (spec/model-pack.md §5, rule 8).
    let min = (lowest.max(centre - half) - 1).clamp(i64::from(i32::MIN), i64::from(i32::MAX) - 2);
    let max = (highest.min(centre + half) + 1).clamp(min + 1, i64::from(i32::MAX));
    let mut counts = vec![1u32; (max - min + 2) as usize];
    let escape = counts.len() - 1;
    for v in values {
        let v = i64::from(v);
        let slot = if (min..=max).contains(&v) {
            (v - min) as usize
        } else {
            escape
        };
        counts[slot] = counts[slot].saturating_add(2);
    }
    FrequencyTable {
        min: min as i32,
        counts,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitted_tables_count_each_element_with_smoothing_and_an_escape() {
        // Two elements per tile, three tiles: element 0 sees 0, 0, 1; element 1 sees
        // -2, 5, -2, and with a half-width of 3 around its rounded mean (0) the 5 escapes.
        let q = [0, -2, 0, 5, 1, -2];
        let tables = fitted_tables(&q, 2, 3);
        assert_eq!(tables.len(), 2);
        assert_eq!(tables[0].min, -1);
        // Values -1, 0, 1, 2, then the escape.
        assert_eq!(tables[0].counts, vec![1, 5, 3, 1, 1]);
        assert_eq!(tables[1].min, -3);
        // Values -3 ..= 4 (-2 seen twice; 5 is beyond centre + 3, plus one), then the
        // escape (5).
        assert_eq!(tables[1].counts, vec![1, 5, 1, 1, 1, 1, 1, 1, 3]);
        // Every table is a valid pack table: codable values, one escape.
        for t in &tables {
            assert!(ipc_codec::entropy::fixed_point_probabilities(&t.counts).is_ok());
        }
    }

    #[test]
    fn neighbour_tables_count_each_class_over_the_element_prior() {
        // One element per tile, blocks of 2 x 2 tiles, two blocks:
        //   block 0: [3, 1 / 0, 2]   block 1: [0, 0 / 0, 0]
        // Classes (left, above): block 0: tile 0 (0, 0) -> 0, tile 1 (3, 0) -> bucket 1
        // (2..3), sum > 0 -> 6, tile 2 (0, 3) -> 6, tile 3 (0, 1) -> 3; block 1: all 0.
        let q = [3, 1, 0, 2, 0, 0, 0, 0];
        let block = TileGrid {
            columns: 2,
            rows: 2,
        };
        let plain = fitted_tables(&q, 1, 8);
        let tables = fitted_neighbour_tables(&q, 1, block, &plain);
        assert_eq!(tables.len(), NEIGHBOUR_CLASSES);
        let own = &plain[0];
        let total: u64 = own.counts.iter().map(|&c| u64::from(c)).sum();
        let prior: Vec<u64> = own
            .counts
            .iter()
            .map(|&c| (NEIGHBOUR_PRIOR * NEIGHBOUR_SCALE * u64::from(c)).div_ceil(total))
            .collect();
        let slot = |v: i32| (v - own.min) as usize;
        for (class, seen) in [(0usize, vec![3, 0, 0, 0, 0]), (3, vec![2]), (6, vec![1, 0])] {
            let t = &tables[class];
            assert_eq!((t.min, t.counts.len()), (own.min, own.counts.len()));
            let mut expected = prior.clone();
            for v in seen {
                expected[slot(v)] += NEIGHBOUR_SCALE;
            }
            let got: Vec<u64> = t.counts.iter().map(|&c| u64::from(c)).collect();
            assert_eq!(got, expected, "class {class}");
        }
        // A class never seen is the element's own distribution.
        let got: Vec<u64> = tables[9].counts.iter().map(|&c| u64::from(c)).collect();
        assert_eq!(got, prior);
    }

    #[test]
    fn fitted_tables_stay_within_i32() {
        for q in [[i32::MAX, i32::MAX - 1], [i32::MIN, i32::MIN + 1]] {
            let t = &fitted_tables(&q, 1, 64)[0];
            let top = i64::from(t.min) + t.counts.len() as i64 - 2;
            assert!(top <= i64::from(i32::MAX));
            // Both values are in range: every count is 3 but the empty neighbour's.
            assert_eq!(t.counts.iter().filter(|&&c| c == 3).count(), 2, "{t:?}");
        }
    }

    #[test]
    fn bin_masses_sum_to_one() {
        for (step, loc, scale) in [(0.5, 0.1, 0.3), (0.05, -0.2, 1.0), (1.0, 0.0, 0.01)] {
            let total: f64 = (-20_000..=20_000)
                .map(|q| laplace_bin_mass(q, step, loc, scale))
                .sum();
            assert!((total - 1.0).abs() < 1e-9, "{total}");
        }
    }

    #[test]
    fn training_bits_match_the_exported_masses() {
        let vs = nn::VarStore::new(tch::Device::Cpu);
        let mut model = EntropyModel::new(&vs.root(), 2, 2, Orientation::SharedInput);
        tch::no_grad(|| {
            model
                .location
                .copy_(&Tensor::from_slice(&[9.0f32, 9.0, 0.1, -0.3]).reshape([2, 2]));
            model.log_scale.copy_(
                &Tensor::from_slice(&[0.0f32, 0.0, 0.2f32.ln(), 1.5f32.ln()]).reshape([2, 2]),
            );
        });
        // Bin centres, as after rounding at export.
        let values = [0.0f32, 0.5, -0.5, 3.0, 1.0, -2.0];
        let v = Tensor::from_slice(&values).reshape([1, 2, 3]);
        let step = 0.5;
        let level = Tensor::from_slice(&[1i64]);
        let bits =
            f64::try_from(model.bits(&v, &Tensor::from_slice(&[step as f32]), &level)).unwrap();
        let want: f64 = values
            .iter()
            .enumerate()
            .map(|(i, &x)| {
                let (loc, scale) = [(0.1, 0.2), (-0.3, 1.5)][i / 3];
                -laplace_bin_mass((f64::from(x) / step).round() as i64, step, loc, scale).log2()
            })
            .sum();
        assert!((bits - want).abs() < 1e-3 * want, "{bits} vs {want}");
    }

    #[test]
    fn tables_cover_the_mass_and_stay_codable() {
        let t = frequency_table(0.3, 0.5, 0.125, 64);
        assert_eq!(t.counts.len(), 2 * 48 + 2);
        assert!(t.counts.iter().all(|&c| c >= 1));
        let narrow = frequency_table(0.0, 10.0, 0.01, 16);
        assert_eq!(narrow.min, -16);
        // Most of a wide distribution escapes the narrow table.
        assert!(*narrow.counts.last().unwrap() as f64 > 0.9 * COUNT_SCALE);
        ipc_codec::entropy::SymbolModel::new(&narrow).unwrap();
    }
}
