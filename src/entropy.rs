//! Entropy coding of the quantised V (spec/bitstream.md §7, spec/range-coding.md).
//!
//! Every probability the range coder sees is derived from integer frequency tables
//! stored in the model pack, by [`fixed_point_probabilities`], the one function that
//! encoder and decoder share. Symbols outside a table's range go through an escape
//! code, so any `i32` is encodable.

use constriction::stream::model::{DefaultContiguousCategoricalEntropyModel, DefaultUniformModel};
use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
use constriction::stream::{Decode, Encode};

/// Bits of precision of every fixed-point probability (spec/bitstream.md §7.1).
pub const PRECISION: u32 = 24;
/// Largest number of entries (in-range symbols plus the escape) a table may have.
pub const MAX_TABLE_ENTRIES: usize = 1 << 16;
/// Escape payload: the bit length of `m` is coded with a uniform model over this many
/// values (1..=33; spec/bitstream.md §7.3).
const ESCAPE_LENGTH_SYMBOLS: usize = 33;
/// Escape payload: raw bits are coded in chunks of at most this many bits.
const ESCAPE_CHUNK_BITS: u32 = 16;

/// Errors of the entropy-coding layer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EntropyError {
    /// A frequency table has fewer than two or more than [`MAX_TABLE_ENTRIES`] entries.
    #[error("frequency table has {0} entries (allowed 2..=65536)")]
    TableSize(usize),
    /// A table's symbol range does not fit in `i32`.
    #[error("frequency table symbol range overflows i32")]
    TableRange,
    /// The range decoder met a state no encoder produces.
    #[error("range decoder reached an invalid state")]
    InvalidData,
    /// An escaped value lies outside `i32`.
    #[error("escaped value is outside the 32-bit range")]
    EscapeRange,
    /// A pack's neighbour tables are not `NEIGHBOUR_CLASSES` per table.
    #[error("{found} neighbour tables, expected {expected} (16 per table)")]
    NeighbourTables {
        /// Tables given.
        found: usize,
        /// Tables expected.
        expected: usize,
    },
    /// Neighbour contexts were asked of a model without neighbour tables.
    #[error("the pack has no neighbour tables (spec/model-pack.md §5.1)")]
    NoNeighbourTables,
    /// The number of elements is not a whole number of V matrices.
    #[error("{len} values is not a multiple of the {per_tile} elements of one V")]
    Shape {
        /// Values given.
        len: usize,
        /// Elements per tile.
        per_tile: usize,
    },
}

/// One frequency table in the integer form the pack stores (spec/model-pack.md §5):
/// non-negative counts for the symbols `min ..= min + counts.len() - 2`, then the
/// count of the escape symbol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrequencyTable {
    /// The smallest in-range value.
    pub min: i32,
    /// Counts of the in-range values in increasing order, then the escape count.
    pub counts: Vec<u32>,
}

/// Maps integer counts to fixed-point probabilities that sum to exactly `2^PRECISION`,
/// each at least 1 (spec/bitstream.md §7.1). Pure integer arithmetic, so every
/// encoder and decoder gets the same probabilities on every machine.
///
/// `p_k = 1 + floor(c_k * (2^24 - n) / C)` where `C` is the sum of the counts (all
/// counts are taken as 1 when `C` is 0); what is left of `2^24` goes to the first
/// entry with the largest count.
pub fn fixed_point_probabilities(counts: &[u32]) -> Result<Vec<u32>, EntropyError> {
    let n = counts.len();
    if !(2..=MAX_TABLE_ENTRIES).contains(&n) {
        return Err(EntropyError::TableSize(n));
    }
    let total: u64 = counts.iter().map(|&c| u64::from(c)).sum();
    let (counts_or_ones, total): (Vec<u64>, u64) = if total == 0 {
        (vec![1; n], n as u64)
    } else {
        (counts.iter().map(|&c| u64::from(c)).collect(), total)
    };
    let budget = (1u64 << PRECISION) - n as u64;
    let mut probs: Vec<u32> = counts_or_ones
        .iter()
        // c <= 2^32 and budget < 2^24, so the product fits in u64.
        .map(|&c| (1 + c * budget / total) as u32)
        .collect();
    let assigned: u64 = probs.iter().map(|&p| u64::from(p)).sum();
    let rest = (1u64 << PRECISION) - assigned;
    let mut argmax = 0;
    for (k, &c) in counts_or_ones.iter().enumerate() {
        if c > counts_or_ones[argmax] {
            argmax = k;
        }
    }
    probs[argmax] += rest as u32;
    Ok(probs)
}

/// A coding model for one table: the categorical model over in-range values plus escape.
#[derive(Debug, Clone)]
pub struct SymbolModel {
    min: i32,
    /// Index of the escape symbol = number of in-range values.
    escape: usize,
    model: DefaultContiguousCategoricalEntropyModel,
}

impl SymbolModel {
    /// Builds the model of a table (spec/bitstream.md §7.1). Encoder and decoder both call this.
    pub fn new(table: &FrequencyTable) -> Result<SymbolModel, EntropyError> {
        let probs = fixed_point_probabilities(&table.counts)?;
        let escape = table.counts.len() - 1;
        // The largest in-range value must fit in i32.
        i32::try_from(i64::from(table.min) + escape as i64 - 1)
            .map_err(|_| EntropyError::TableRange)?;
        let model =
            DefaultContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
                &probs, false,
            )
            .map_err(|()| EntropyError::TableSize(probs.len()))?;
        Ok(SymbolModel {
            min: table.min,
            escape,
            model,
        })
    }

    /// The fixed-point probabilities of every entry (in-range values, then escape).
    pub fn probabilities(&self) -> Vec<u32> {
        use constriction::stream::model::IterableEntropyModel;
        self.model.symbol_table().map(|(_, _, p)| p.get()).collect()
    }

    /// The ideal code length of `v` in bits under this model, escape included
    /// (spec/bitstream.md §7.3): what the range coder spends on it, to within the
    /// coder's small overhead. Encoders use it to weigh rate against distortion.
    pub fn code_length(&self, v: i32) -> f64 {
        use constriction::stream::model::EncoderModel;
        let bits = |p: u32| f64::from(PRECISION) - f64::from(p).log2();
        let offset = i64::from(v) - i64::from(self.min);
        if (0..self.escape as i64).contains(&offset) {
            let (_, p) = self
                .model
                .left_cumulative_and_probability(offset as usize)
                .expect("in-range symbol");
            return bits(p.get());
        }
        let (_, p) = self
            .model
            .left_cumulative_and_probability(self.escape)
            .expect("escape symbol");
        let m = if offset < 0 {
            i64::from(self.min) - i64::from(v)
        } else {
            i64::from(v) - self.max()
        } as u64;
        let n = 64 - m.leading_zeros();
        bits(p.get()) + 1.0 + (ESCAPE_LENGTH_SYMBOLS as f64).log2() + f64::from(n - 1)
    }

    fn max(&self) -> i64 {
        i64::from(self.min) + self.escape as i64 - 1
    }
}

/// Number of neighbour classes of an element (spec/bitstream.md §7.5): a pack's
/// neighbour tables hold this many tables for each of its per-element tables.
pub const NEIGHBOUR_CLASSES: usize = 16;

/// The neighbour class (`0 .. NEIGHBOUR_CLASSES`) of an element of V, from the same
/// element of the tile to its left and of the tile above it, each 0 where that tile
/// does not exist (spec/bitstream.md §7.5). Integers only, so encoder and decoder agree
/// on every machine. (Class 2 never occurs: a magnitude of 1 has a non-zero sum. Its
/// tables exist all the same, so that the table index stays one formula.)
///
/// ```
/// use ipc_codec::entropy::neighbour_class;
/// assert_eq!(neighbour_class(0, 0), 0);
/// assert_eq!(neighbour_class(1, 0), 3); // |l| + |a| = 1: bucket 0; sum > 0
/// assert_eq!(neighbour_class(1, -1), 5); // |l| + |a| = 2: bucket 1; sum 0
/// assert_eq!(neighbour_class(-40, 3), 13); // bucket 4 (16 and above), sum < 0
/// ```
pub fn neighbour_class(left: i32, above: i32) -> usize {
    let (l, a) = (i64::from(left), i64::from(above));
    let magnitude = l.unsigned_abs() + a.unsigned_abs();
    if magnitude == 0 {
        return 0;
    }
    // floor(log2(magnitude)), capped at 4: 1, 2..3, 4..7, 8..15, 16 and above.
    let bucket = (63 - magnitude.leading_zeros()).min(4) as usize;
    let sign = match (l + a).signum() {
        -1 => 0,
        0 => 1,
        _ => 2,
    };
    1 + 3 * bucket + sign
}

/// The grid of tiles a payload codes (spec/bitstream.md §4): `columns` tiles per row
/// (image: `tiles_x`; audio: chunks per channel) and `rows` rows (image: `tiles_y`;
/// audio: channels), tile `t` at column `t % columns` of row `t / columns`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TileGrid {
    /// Tiles per row.
    pub columns: usize,
    /// Rows of tiles.
    pub rows: usize,
}

impl TileGrid {
    /// Number of tiles.
    pub fn tiles(&self) -> usize {
        self.columns.saturating_mul(self.rows)
    }
}

/// How the payload chooses the table of each value (spec/bitstream.md §7.2, §7.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PayloadCoding {
    /// The element's table alone (format version 1, and version 2 without flags).
    #[default]
    PerElement,
    /// The element's table and the neighbour class of the element (version 2, flag bit
    /// 0): needs a pack with neighbour tables (spec/model-pack.md §5.1).
    NeighbourContexts,
}

/// The models that code V at one quality level: a table per context and the context
/// of each element of V (spec/model-pack.md §5), and optionally the neighbour tables
/// (§5.1), `NEIGHBOUR_CLASSES` per context.
#[derive(Debug, Clone)]
pub struct VModel {
    /// Context (table index) of each element of V, row-major in the shape of V (`PackConfig::v_shape`).
    contexts: Vec<u16>,
    models: Vec<SymbolModel>,
    /// Neighbour models, table `context * NEIGHBOUR_CLASSES + class`.
    neighbour: Option<Vec<SymbolModel>>,
}

impl VModel {
    /// Builds the coding models from the pack's tables. `contexts[i]` must index `tables`.
    pub fn new(contexts: Vec<u16>, tables: &[FrequencyTable]) -> Result<VModel, EntropyError> {
        let models = tables
            .iter()
            .map(SymbolModel::new)
            .collect::<Result<Vec<_>, _>>()?;
        debug_assert!(contexts.iter().all(|&c| usize::from(c) < models.len()));
        Ok(VModel {
            contexts,
            models,
            neighbour: None,
        })
    }

    /// Adds the neighbour tables (spec/model-pack.md §5.1): `NEIGHBOUR_CLASSES` tables
    /// per table of [`VModel::new`], table `context * NEIGHBOUR_CLASSES + class`.
    pub fn with_neighbour_tables(
        mut self,
        tables: &[FrequencyTable],
    ) -> Result<VModel, EntropyError> {
        let expected = self.models.len() * NEIGHBOUR_CLASSES;
        if tables.len() != expected {
            return Err(EntropyError::NeighbourTables {
                found: tables.len(),
                expected,
            });
        }
        self.neighbour = Some(
            tables
                .iter()
                .map(SymbolModel::new)
                .collect::<Result<Vec<_>, _>>()?,
        );
        Ok(self)
    }

    /// Whether the model can code [`PayloadCoding::NeighbourContexts`].
    pub fn has_neighbour_tables(&self) -> bool {
        self.neighbour.is_some()
    }

    /// The models of tile `t`'s elements under `coding`, in element order, given the
    /// values of the tiles before it (`q`, at least up to tile `t`'s upper neighbour;
    /// not read per element).
    pub fn tile_models<'a>(
        &'a self,
        coding: PayloadCoding,
        grid: TileGrid,
        q: &'a [i32],
        t: usize,
    ) -> impl Iterator<Item = &'a SymbolModel> + 'a {
        let per = self.contexts.len();
        let columns = grid.columns.max(1);
        let (x, y) = (t % columns, t / columns);
        let neighbour = match (coding, &self.neighbour) {
            (PayloadCoding::NeighbourContexts, Some(n)) => Some(n),
            _ => None,
        };
        self.contexts.iter().enumerate().map(move |(e, &c)| {
            let Some(n) = neighbour else {
                return &self.models[usize::from(c)];
            };
            let left = if x > 0 { q[(t - 1) * per + e] } else { 0 };
            let above = if y > 0 { q[(t - columns) * per + e] } else { 0 };
            &n[usize::from(c) * NEIGHBOUR_CLASSES + neighbour_class(left, above)]
        })
    }

    /// Bits of tile `t`'s values `tile` under `coding`, the tiles before it being `q`
    /// (see [`VModel::tile_models`]).
    pub fn tile_bits(
        &self,
        coding: PayloadCoding,
        grid: TileGrid,
        q: &[i32],
        t: usize,
        tile: &[i32],
    ) -> f64 {
        self.tile_models(coding, grid, q, t)
            .zip(tile)
            .map(|(m, &v)| m.code_length(v))
            .sum()
    }

    /// Elements in one V.
    pub fn elements_per_tile(&self) -> usize {
        self.contexts.len()
    }

    /// The context (table index) of each element of V, row-major.
    pub fn contexts(&self) -> &[u16] {
        &self.contexts
    }

    /// The coding model of each table, in table order.
    pub fn symbol_models(&self) -> &[SymbolModel] {
        &self.models
    }

    /// Encodes quantised V of any number of tiles, tile after tile, each row-major,
    /// every element with its own table (spec/bitstream.md §7.2). Returns the payload
    /// bytes.
    pub fn encode(&self, values: &[i32]) -> Result<Vec<u8>, EntropyError> {
        let per_tile = self.contexts.len();
        let grid = TileGrid {
            columns: 1,
            rows: values.len().checked_div(per_tile).unwrap_or(0),
        };
        self.encode_tiles(values, grid, PayloadCoding::PerElement)
    }

    /// Encodes the quantised V of the tiles of `grid`, tile after tile in the order of
    /// spec/bitstream.md §4, each row-major, with the tables `coding` chooses (§7.2,
    /// §7.5). Returns the payload bytes.
    pub fn encode_tiles(
        &self,
        values: &[i32],
        grid: TileGrid,
        coding: PayloadCoding,
    ) -> Result<Vec<u8>, EntropyError> {
        let per_tile = self.contexts.len();
        self.check(coding, grid, values.len())?;
        let mut coder = DefaultRangeEncoder::new();
        for (t, tile) in values.chunks_exact(per_tile).enumerate() {
            for (model, &v) in self.tile_models(coding, grid, values, t).zip(tile) {
                encode_value(&mut coder, model, v);
            }
        }
        let words = coder
            .into_compressed()
            .expect("writing to a Vec cannot fail");
        Ok(words.iter().flat_map(|w| w.to_le_bytes()).collect())
    }

    /// Decodes `count` values (a multiple of the elements per tile), every element
    /// with its own table (spec/bitstream.md §7.2). The caller bounds `count` before
    /// calling: the output is allocated up front.
    pub fn decode(&self, payload: &[u8], count: usize) -> Result<Vec<i32>, EntropyError> {
        let per_tile = self.contexts.len();
        if per_tile == 0 || count % per_tile != 0 {
            return Err(EntropyError::Shape {
                len: count,
                per_tile,
            });
        }
        let grid = TileGrid {
            columns: 1,
            rows: count / per_tile,
        };
        self.decode_tiles(payload, grid, PayloadCoding::PerElement)
    }

    /// Decodes the quantised V of the tiles of `grid` with the tables `coding` chooses
    /// (spec/bitstream.md §7.2, §7.5). The caller bounds the number of values
    /// (`grid.tiles()` times the elements per tile) before calling: the output is
    /// allocated up front.
    pub fn decode_tiles(
        &self,
        payload: &[u8],
        grid: TileGrid,
        coding: PayloadCoding,
    ) -> Result<Vec<i32>, EntropyError> {
        let per_tile = self.contexts.len();
        let count = grid.tiles().saturating_mul(per_tile);
        self.check(coding, grid, count)?;
        debug_assert!(payload.len() % 4 == 0);
        let words: Vec<u32> = payload
            .chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        let mut coder =
            DefaultRangeDecoder::from_compressed(words).map_err(|_| EntropyError::InvalidData)?;
        let mut out = vec![0i32; count];
        for t in 0..grid.tiles() {
            // The tiles before `t` are what its neighbour contexts read.
            let (before, rest) = out.split_at_mut(t * per_tile);
            let models = self.tile_models(coding, grid, before, t);
            for (slot, model) in rest[..per_tile].iter_mut().zip(models) {
                *slot = decode_value(&mut coder, model)?;
            }
        }
        Ok(out)
    }

    /// Checks that `len` values fill `grid` and that `coding` has its tables.
    fn check(&self, coding: PayloadCoding, grid: TileGrid, len: usize) -> Result<(), EntropyError> {
        let per_tile = self.contexts.len();
        if per_tile == 0 || grid.tiles().checked_mul(per_tile) != Some(len) {
            return Err(EntropyError::Shape { len, per_tile });
        }
        if coding == PayloadCoding::NeighbourContexts && self.neighbour.is_none() {
            return Err(EntropyError::NoNeighbourTables);
        }
        Ok(())
    }
}

/// Codes one value: its table entry, or escape + side + length + raw bits (spec/bitstream.md §7.3).
fn encode_value(coder: &mut DefaultRangeEncoder, model: &SymbolModel, v: i32) {
    let offset = i64::from(v) - i64::from(model.min);
    if (0..model.escape as i64).contains(&offset) {
        coder
            .encode_symbol(offset as usize, &model.model)
            .expect("in-range symbol has non-zero probability");
        return;
    }
    coder
        .encode_symbol(model.escape, &model.model)
        .expect("escape has non-zero probability");
    let (side, m) = if offset < 0 {
        (0usize, (i64::from(model.min) - i64::from(v)) as u64)
    } else {
        (1usize, (i64::from(v) - model.max()) as u64)
    };
    // m >= 1; its bit length n is 1..=33 since |v - bound| < 2^33.
    let n = 64 - m.leading_zeros();
    let uniform = |range: usize| DefaultUniformModel::new(range);
    coder
        .encode_symbol(side, uniform(2))
        .expect("uniform symbol in range");
    coder
        .encode_symbol((n - 1) as usize, uniform(ESCAPE_LENGTH_SYMBOLS))
        .expect("uniform symbol in range");
    let mut remaining = n - 1;
    while remaining > 0 {
        let k = remaining.min(ESCAPE_CHUNK_BITS);
        remaining -= k;
        let chunk = ((m >> remaining) & ((1 << k) - 1)) as usize;
        coder
            .encode_symbol(chunk, uniform(1 << k))
            .expect("uniform symbol in range");
    }
}

fn decode_value(coder: &mut DefaultRangeDecoder, model: &SymbolModel) -> Result<i32, EntropyError> {
    let invalid = |_| EntropyError::InvalidData;
    let s = coder.decode_symbol(&model.model).map_err(invalid)?;
    if s < model.escape {
        return Ok(model.min + s as i32);
    }
    let uniform = |range: usize| DefaultUniformModel::new(range);
    let side = coder.decode_symbol(uniform(2)).map_err(invalid)?;
    let n = coder
        .decode_symbol(uniform(ESCAPE_LENGTH_SYMBOLS))
        .map_err(invalid)? as u32
        + 1;
    let mut m: u64 = 1;
    let mut remaining = n - 1;
    while remaining > 0 {
        let k = remaining.min(ESCAPE_CHUNK_BITS);
        remaining -= k;
        let chunk = coder.decode_symbol(uniform(1 << k)).map_err(invalid)? as u64;
        m = (m << k) | chunk;
    }
    let v = if side == 0 {
        i64::from(model.min) - m as i64
    } else {
        model.max() + m as i64
    };
    i32::try_from(v).map_err(|_| EntropyError::EscapeRange)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of spec/range-coding.md §6, through the coder the payload
    /// uses: exactly the words the spec lists, and the symbols back.
    mod range_coding_spec_examples {
        use constriction::stream::model::{
            DefaultContiguousCategoricalEntropyModel, DefaultUniformModel,
        };
        use constriction::stream::queue::{DefaultRangeDecoder, DefaultRangeEncoder};
        use constriction::stream::{Decode, Encode};

        enum Model {
            Categorical(DefaultContiguousCategoricalEntropyModel),
            Uniform(DefaultUniformModel),
        }

        fn categorical(p: &[u32]) -> Model {
            Model::Categorical(
                DefaultContiguousCategoricalEntropyModel::from_nonzero_fixed_point_probabilities(
                    p, false,
                )
                .unwrap(),
            )
        }

        fn uniform(n: usize) -> Model {
            Model::Uniform(DefaultUniformModel::new(n))
        }

        fn check(symbols: &[(&Model, usize)], words: &[u32], bytes: &[u8]) {
            let mut encoder = DefaultRangeEncoder::new();
            for (model, s) in symbols {
                match model {
                    Model::Categorical(m) => encoder.encode_symbol(*s, m).unwrap(),
                    Model::Uniform(m) => encoder.encode_symbol(*s, m).unwrap(),
                }
            }
            let got = encoder.into_compressed().unwrap();
            assert_eq!(got, words);
            let got_bytes: Vec<u8> = got.iter().flat_map(|w| w.to_le_bytes()).collect();
            assert_eq!(got_bytes, bytes, "words are little-endian (§1.4)");
            let mut decoder = DefaultRangeDecoder::from_compressed(words.to_vec()).unwrap();
            for (model, s) in symbols {
                let back = match model {
                    Model::Categorical(m) => decoder.decode_symbol(m).unwrap(),
                    Model::Uniform(m) => decoder.decode_symbol(m).unwrap(),
                };
                assert_eq!(back, *s);
            }
        }

        #[test]
        fn example_a_categorical_and_uniform() {
            let a = categorical(&[4194304, 8388608, 3145728, 1048576]);
            let u10 = uniform(10);
            check(
                &[(&a, 2), (&a, 0), (&a, 3), (&u10, 9)],
                &[0xcbecccc9],
                &[0xc9, 0xcc, 0xec, 0xcb],
            );
        }

        #[test]
        fn example_b_renormalisation_pending_word_carry() {
            let t = categorical(&[1, 16777214, 1]);
            check(
                &[(&t, 0), (&t, 0), (&t, 0), (&t, 1), (&t, 0), (&t, 2)],
                &[0x00000000, 0x00000000, 0x00000001, 0xfffdfd01],
                &[0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0x01, 0xfd, 0xfd, 0xff],
            );
        }

        #[test]
        fn example_c_interval_ending_at_2_pow_64() {
            let t = categorical(&[1, 16777214, 1]);
            check(
                &[(&t, 0), (&t, 0), (&t, 2), (&t, 0)],
                &[0x00000000, 0x0000fffe, 0xff000100, 0x00000000],
                &[0, 0, 0, 0, 0xfe, 0xff, 0, 0, 0, 0x01, 0, 0xff, 0, 0, 0, 0],
            );
        }

        #[test]
        fn example_d_extra_zero_word_at_seal() {
            let (u3, u1000) = (uniform(3), uniform(1000));
            check(
                &[(&u3, 0), (&u1000, 0), (&u1000, 0), (&u1000, 1)],
                &[0x00000002, 0x00000000],
                &[2, 0, 0, 0, 0, 0, 0, 0],
            );
        }

        #[test]
        fn example_e_empty_input() {
            check(&[], &[], &[]);
        }
    }
    use crate::rng::SplitMix64;

    fn laplace_table(min: i32, len: usize, decay_num: u64) -> FrequencyTable {
        let centre = (-min) as usize;
        let mut counts: Vec<u32> = (0..len)
            .map(|k| {
                let d = k.abs_diff(centre) as u32;
                let mut c: u64 = 1 << 30;
                for _ in 0..d {
                    c = c * decay_num / 1024;
                }
                c as u32
            })
            .collect();
        counts.push(1000);
        FrequencyTable { min, counts }
    }

    #[test]
    fn probabilities_sum_to_one_and_are_positive() {
        for counts in [
            vec![0, 0],
            vec![u32::MAX, u32::MAX, u32::MAX, 0],
            vec![5, 0, 0, 0, 0, 1],
            (0..65536).map(|k| k as u32).collect(),
        ] {
            let p = fixed_point_probabilities(&counts).unwrap();
            assert_eq!(p.iter().map(|&x| u64::from(x)).sum::<u64>(), 1 << PRECISION);
            assert!(p.iter().all(|&x| x >= 1));
        }
        assert!(fixed_point_probabilities(&[1]).is_err());
        assert!(fixed_point_probabilities(&vec![1; MAX_TABLE_ENTRIES + 1]).is_err());
    }

    #[test]
    fn models_code_with_the_fixed_point_probabilities_of_their_counts() {
        let table = laplace_table(-20, 41, 700);
        let model = SymbolModel::new(&table).unwrap();
        let probabilities = fixed_point_probabilities(&table.counts).unwrap();
        assert_eq!(model.probabilities(), probabilities);
        // Code lengths follow from them: -log2(p / 2^24).
        let p0 = f64::from(probabilities[20]);
        let expected = f64::from(PRECISION) - p0.log2();
        assert!((model.code_length(0) - expected).abs() < 1e-9);
    }

    #[test]
    fn random_v_of_every_shape_round_trips_exactly() {
        let mut rng = SplitMix64(42);
        for (rank, width, tables) in [(1, 1, 1), (2, 3, 2), (8, 32, 8), (4, 128, 1), (16, 64, 16)] {
            let contexts: Vec<u16> = (0..rank * width)
                .map(|i| (i / width % tables) as u16)
                .collect();
            let tabs: Vec<FrequencyTable> = (0..tables)
                .map(|t| laplace_table(-(t as i32) - 3, 2 * t + 7, 600 + 30 * t as u64))
                .collect();
            let model = VModel::new(contexts, &tabs).unwrap();
            for tiles in [1, 3, 17] {
                let values: Vec<i32> = (0..tiles * rank * width)
                    .map(|_| {
                        let r = rng.next_u64();
                        match r % 10 {
                            // Mostly small values, sometimes far outside every table.
                            0 => (rng.next_u64() as i32) >> (r % 31),
                            _ => (r >> 8) as i32 % 9 - 4,
                        }
                    })
                    .collect();
                let payload = model.encode(&values).unwrap();
                assert_eq!(model.decode(&payload, values.len()).unwrap(), values);
            }
        }
    }

    /// `neighbour_class` as spec/bitstream.md §7.5 writes it, step by step.
    fn class_as_specified(left: i32, above: i32) -> usize {
        let m = i64::from(left).abs() + i64::from(above).abs();
        if m == 0 {
            return 0;
        }
        let bucket = match m {
            1 => 0,
            2..=3 => 1,
            4..=7 => 2,
            8..=15 => 3,
            _ => 4,
        };
        let s = i64::from(left) + i64::from(above);
        let sign = if s < 0 {
            0
        } else if s == 0 {
            1
        } else {
            2
        };
        1 + 3 * bucket + sign
    }

    #[test]
    fn neighbour_classes_follow_the_spec_and_cover_every_class() {
        let mut seen = [false; NEIGHBOUR_CLASSES];
        let values = [i32::MIN, -70000, -17, -16, -9, -8, -5, -4, -3, -2, -1, 0];
        let values: Vec<i32> = values
            .iter()
            .copied()
            .chain(values.iter().map(|v| v.saturating_neg()))
            .collect();
        for &l in &values {
            for &a in &values {
                let class = neighbour_class(l, a);
                assert_eq!(class, class_as_specified(l, a), "left {l}, above {a}");
                seen[class] = true;
            }
        }
        // Every class is reached but 2: a magnitude of 1 never has a zero sum.
        let unreached: Vec<usize> = (0..NEIGHBOUR_CLASSES).filter(|&c| !seen[c]).collect();
        assert_eq!(unreached, [2]);
    }

    /// A model whose neighbour tables differ by class, so the class changes the bytes.
    fn neighbour_model(per_tile: usize, tables: usize) -> VModel {
        let contexts: Vec<u16> = (0..per_tile).map(|e| (e % tables) as u16).collect();
        let plain: Vec<FrequencyTable> = (0..tables)
            .map(|t| laplace_table(-4, 9, 600 + 20 * t as u64))
            .collect();
        let neighbour: Vec<FrequencyTable> = (0..tables * NEIGHBOUR_CLASSES)
            .map(|i| {
                let class = (i % NEIGHBOUR_CLASSES) as i32;
                laplace_table(-3 - class, 7 + 2 * class as usize, 300 + 40 * class as u64)
            })
            .collect();
        VModel::new(contexts, &plain)
            .unwrap()
            .with_neighbour_tables(&neighbour)
            .unwrap()
    }

    #[test]
    fn neighbour_coded_grids_round_trip_and_differ_from_per_element_coding() {
        let mut rng = SplitMix64(7);
        let model = neighbour_model(6, 3);
        for (columns, rows) in [(1, 1), (5, 1), (1, 4), (7, 3)] {
            let grid = TileGrid { columns, rows };
            let values: Vec<i32> = (0..grid.tiles() * 6)
                .map(|_| {
                    let r = rng.next_u64();
                    match r % 13 {
                        0 => (rng.next_u64() as i32) >> (r % 31),
                        _ => (r >> 8) as i32 % 11 - 5,
                    }
                })
                .collect();
            for coding in [PayloadCoding::PerElement, PayloadCoding::NeighbourContexts] {
                let payload = model.encode_tiles(&values, grid, coding).unwrap();
                assert_eq!(model.decode_tiles(&payload, grid, coding).unwrap(), values);
                // The rate model's code lengths are what the coder spends, to within
                // its overhead of a few words.
                let bits: f64 = (0..grid.tiles())
                    .map(|t| model.tile_bits(coding, grid, &values, t, &values[t * 6..][..6]))
                    .sum();
                let spent = payload.len() as f64 * 8.0;
                assert!(
                    spent >= bits - 1.0 && spent <= bits + 96.0,
                    "{bits} {spent}"
                );
            }
            let a = model
                .encode_tiles(&values, grid, PayloadCoding::PerElement)
                .unwrap();
            let b = model
                .encode_tiles(&values, grid, PayloadCoding::NeighbourContexts)
                .unwrap();
            assert_ne!(a, b, "{columns}x{rows}");
        }
    }

    #[test]
    fn neighbour_coding_needs_neighbour_tables_of_the_right_count() {
        let plain = VModel::new(vec![0; 4], &[laplace_table(-2, 5, 500)]).unwrap();
        let grid = TileGrid {
            columns: 2,
            rows: 1,
        };
        assert_eq!(
            plain.encode_tiles(&[0; 8], grid, PayloadCoding::NeighbourContexts),
            Err(EntropyError::NoNeighbourTables)
        );
        assert_eq!(
            plain.decode_tiles(&[], grid, PayloadCoding::NeighbourContexts),
            Err(EntropyError::NoNeighbourTables)
        );
        let too_few = vec![laplace_table(-2, 5, 500); NEIGHBOUR_CLASSES - 1];
        assert!(matches!(
            plain.with_neighbour_tables(&too_few),
            Err(EntropyError::NeighbourTables {
                found: 15,
                expected: 16
            })
        ));
    }

    #[test]
    fn extreme_values_escape() {
        let model = VModel::new(vec![0; 4], &[laplace_table(-2, 5, 500)]).unwrap();
        let values = vec![
            i32::MIN,
            i32::MAX,
            -3,
            3,
            i32::MIN + 1,
            i32::MAX - 1,
            0,
            1 << 20,
        ];
        let payload = model.encode(&values).unwrap();
        assert_eq!(model.decode(&payload, values.len()).unwrap(), values);
    }

    #[test]
    fn degenerate_tables_still_code_everything() {
        // Only the escape has weight; all-zero counts; a table at the edge of i32.
        for table in [
            FrequencyTable {
                min: 0,
                counts: vec![0, 1],
            },
            FrequencyTable {
                min: -1,
                counts: vec![0, 0, 0, 0],
            },
            FrequencyTable {
                min: i32::MAX - 1,
                counts: vec![1, 1, 1],
            },
        ] {
            let model = VModel::new(vec![0; 2], &[table]).unwrap();
            let values = vec![0, -1, i32::MAX, i32::MIN, 5, 7];
            let payload = model.encode(&values).unwrap();
            assert_eq!(model.decode(&payload, values.len()).unwrap(), values);
        }
        assert!(SymbolModel::new(&FrequencyTable {
            min: i32::MAX,
            counts: vec![1, 1, 1]
        })
        .is_err());
    }

    #[test]
    fn garbage_payloads_never_panic() {
        let model = VModel::new(
            vec![0, 1],
            &[laplace_table(-3, 7, 400), laplace_table(0, 2, 100)],
        )
        .unwrap();
        let mut rng = SplitMix64(7);
        for len in [0usize, 4, 8, 64, 400] {
            for _ in 0..50 {
                let payload: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
                let _ = model.decode(&payload, 200);
            }
        }
    }
}
