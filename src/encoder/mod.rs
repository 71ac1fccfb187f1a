//! The encoder (rav1e-style: an [`EncoderConfig`] builds an [`Encoder`] for one pack,
//! which then encodes any number of signals).
//!
//! Encoding a signal at a quality level (spec/model-pack.md §7):
//! 1. cut it into tiles ([`tiling`], spec/bitstream.md §4);
//! 2. predict each tile's V: one pass of the pack's transformer hypernetwork
//!    ([`hypernet`], [`Method::Hyper`]) or the meta-learned V0 adapted by CAVIA inner
//!    steps ([`Method::Meta`]);
//! 3. with `effort` N, run N quantisation-aware refinement steps on V against the
//!    pack's own rate-distortion objective ([`network`] gives the hand-derived gradient);
//! 4. round V to the level's step and entropy-code it ([`encode_quantised`]).
//!
//! Rate control ([`RateTarget`]) picks the quality level: given directly, or the level
//! that best meets a bit-rate or PSNR target, found by bisection over the levels
//! (quality rises with the level in the shipped packs). Everything here is pure Rust.
//!
//! ```
//! use ipc_codec::encoder::{Encoder, EncoderConfig, ImageSignal, RateTarget, Signal};
//! use ipc_codec::{pack::synthetic::SyntheticPack, Decoded, Decoder, ModelPack};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A real program loads a trained pack: `ModelPack::from_pack_file(&std::fs::read(path)?)`.
//! let pack = ModelPack::from_pack_file(&SyntheticPack::small_image().build_with_encoders().to_pack_file()?)?;
//! let image = ImageSignal { width: 20, height: 12, channels: 3, bit_depth: 8, samples: vec![0.5; 20 * 12 * 3] };
//! let encoder = Encoder::new(&pack, EncoderConfig { effort: 5, ..Default::default() })?;
//! let encoded = encoder.encode(&Signal::Image(image), RateTarget::Quality(1), &mut |_progress| {})?;
//! println!("{} bytes, {:.2} bpp, {:.1} dB", encoded.file.len(), encoded.rate, encoded.psnr);
//! let Decoded::Image(decoded) = Decoder::new(&pack).decode(&encoded.file)? else { unreachable!() };
//! assert_eq!((decoded.width, decoded.height), (20, 12));
//! # Ok(()) }
//! ```

use std::fmt;
use std::str::FromStr;

use crate::container::{write_file_with, Geometry, Header, FORMAT_VERSION};
use crate::decoder::{check_pack, DecodeOptions, Decoder, Limits};
use crate::edge_filter::{EdgeFilter, EdgeFilterKind};
use crate::entropy::{PayloadCoding, VModel};
use crate::error::{Error, FormatError};
use crate::metrics;
use crate::pack::ModelPack;
use crate::restoration::RestorationTaps;

mod edge_fit;
pub mod hypernet;
pub mod network;
pub mod refine;
mod restoration_fit;
pub mod tiling;

pub use hypernet::HyperNetwork;
pub use network::DistortionModel;
pub use refine::RateModel;
pub use tiling::{AudioSignal, ImageSignal, Signal, Tiles};

/// Name of the per-level lambda tensor (spec/model-pack.md §4.3).
pub const LAMBDA_TENSOR: &str = "encoder.lambda";

/// Errors of the encoder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The pack carries no encoder for the requested method.
    #[error("model pack {pack} has no {method} encoder (its encoder tensors: {available})")]
    MethodUnavailable {
        /// The method asked for.
        method: Method,
        /// The pack.
        pack: crate::PackId,
        /// What the pack offers.
        available: String,
    },
    /// An encoder tensor of the pack is missing or malformed.
    #[error("model pack encoder tensor {name}: {problem}")]
    PackTensor {
        /// Tensor name.
        name: String,
        /// What is wrong.
        problem: String,
    },
    /// The signal cannot be coded with this pack or is malformed.
    #[error("{0}")]
    Input(String),
    /// The signal exceeds a limit of [`Limits`].
    #[error("{what} is {value}, above the limit of {limit}")]
    LimitExceeded {
        /// The quantity that is too large.
        what: &'static str,
        /// Its value.
        value: u64,
        /// The limit.
        limit: u64,
    },
    /// Writing or checking the bitstream failed.
    #[error(transparent)]
    Codec(#[from] Error),
}

/// How V is predicted from a tile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Method {
    /// One forward pass of the transformer hypernetwork (`encoder.hyper.*`).
    #[default]
    Hyper,
    /// The meta-learned V0 adapted by the pack's CAVIA inner steps (`encoder.v0`).
    Meta,
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Method::Hyper => "hyper",
            Method::Meta => "meta",
        })
    }
}

impl FromStr for Method {
    type Err = String;
    fn from_str(s: &str) -> Result<Method, String> {
        match s {
            "hyper" => Ok(Method::Hyper),
            "meta" => Ok(Method::Meta),
            _ => Err(format!("unknown method {s:?} (expected hyper or meta)")),
        }
    }
}

/// The revision of this encoder's output: raised whenever the same pack, signal and
/// settings give another file (2: the fitted edge filter and edge weights of stop 12;
/// 3: the restoration filter). Tools that cache encodes, like `bench rd`, key them on it.
pub const ENCODER_REVISION: u32 = 3;

/// How much more refinement weighs the samples beside internal tile edges than the
/// others, by default: 0.3, that is weight 1.3. Tiles are synthesised independently and
/// their edge samples fit worst; on 13 held-out photos at effort 20 this weight brings
/// them level with the other pixels (the seam gap goes from 0.10 / 0.21 / 0.24 dB to
/// -0.01 / -0.05 / -0.01 dB at levels 1 / 4 / 7) for 0.01 to 0.02 dB of whole-image
/// PSNR (docs/experiments.md, stop 12).
pub const DEFAULT_EDGE_EMPHASIS: f32 = 0.3;

/// Encoder settings.
///
/// The default is the hypernetwork method without refinement (effort 0), every core,
/// the default limits, the newest format and [`DEFAULT_EDGE_EMPHASIS`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EncoderConfig {
    /// How V is predicted.
    pub method: Method,
    /// Quantisation-aware refinement steps after the prediction (0: none).
    pub effort: usize,
    /// Threads; 0 uses every core.
    pub threads: usize,
    /// Limits on the signal size, as for decoding.
    pub limits: Limits,
    /// Write format version 1 (spec/bitstream.md §2), which decoders from before
    /// version 2 read, instead of the default ([`FileFormat::default_for`]).
    pub version_1: bool,
    /// Refinement weighs each sample beside an internal tile edge `1 + edge_emphasis`
    /// times as much as the others ([`Tiles::weight_edges`]); 0 weighs all alike. Only
    /// refinement (effort above 0) sees it.
    pub edge_emphasis: f32,
}

impl Default for EncoderConfig {
    fn default() -> EncoderConfig {
        EncoderConfig {
            method: Method::default(),
            effort: 0,
            threads: 0,
            limits: Limits::default(),
            version_1: false,
            edge_emphasis: DEFAULT_EDGE_EMPHASIS,
        }
    }
}

impl EncoderConfig {
    /// The format of the files this configuration writes with `pack`.
    pub fn file_format(&self, pack: &ModelPack) -> FileFormat {
        if self.version_1 {
            FileFormat::VERSION_1
        } else {
            FileFormat::default_for(pack)
        }
    }
}

/// Which quality level to use.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RateTarget {
    /// This quality level (0 is the coarsest).
    Quality(u8),
    /// The finest level whose file has at most this many bits per pixel (images).
    BitsPerPixel(f64),
    /// The finest level whose file has at most this many kbit/s (audio).
    KilobitsPerSecond(f64),
    /// The coarsest level whose decoded PSNR reaches this many dB.
    Psnr(f64),
}

/// Progress of an encode, passed to the caller's callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Which trial encode this is (rate control may encode at several levels), from 1.
    pub trial: usize,
    /// The level being tried.
    pub quality_level: u8,
    /// Refinement steps done in this trial.
    pub done: usize,
    /// Refinement steps in a trial.
    pub total: usize,
}

/// An encoded file and what it measures.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    /// The `.ipc` file.
    pub file: Vec<u8>,
    /// Its quality level.
    pub quality_level: u8,
    /// Bits per pixel (images) or kbit/s (audio) of the whole file.
    pub rate: f64,
    /// PSNR in dB of the decoded signal against the input: peak 255 (65535 for 16-bit)
    /// on the output samples for images, peak 1 on samples in `[-1, 1]` for audio.
    pub psnr: f64,
    /// Levels encoded to reach the target.
    pub trials: usize,
}

/// Another engine that computes the quantised V of every tile, in place of this
/// crate's CPU implementation: the GPU backend of `ipc-train` implements it with
/// libtorch. It must follow the same method and objective (module documentation).
pub trait VBackend {
    /// The quantised V (tile after tile, each in `PackConfig::v_shape`) of `tiles` at quality
    /// level `level` with quantisation step `step`; `progress(done, total)` after each
    /// refinement step.
    fn quantised_v(
        &self,
        tiles: &Tiles,
        level: u8,
        step: f32,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Vec<i32>, EncodeError>;
}

struct MetaInit {
    v0: Vec<f32>,
    steps: usize,
    lr: f64,
    rule: refine::InnerStepRule,
}

/// An encoder for one pack (see the module documentation).
#[derive(Debug)]
pub struct Encoder<'p> {
    pack: &'p ModelPack,
    config: EncoderConfig,
    model: DistortionModel<'p>,
    /// Decodes every trial file to measure it; built once, as is its synthesis state.
    decoder: Decoder<'p>,
    hyper: Option<HyperNetwork>,
    meta: Option<MetaInit>,
    lambdas: Vec<f64>,
    backend: Option<Box<dyn VBackend + 'p>>,
}

impl fmt::Debug for dyn VBackend + '_ {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("VBackend")
    }
}

impl fmt::Debug for MetaInit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "MetaInit {{ steps: {}, lr: {}, rule: {:?} }}",
            self.steps, self.lr, self.rule
        )
    }
}

/// The rule of the pack's CAVIA inner step (spec/model-pack.md §4.3,
/// `encoder.meta.norm_scaled`): absent means the norm-scaled rule, the only rule of
/// packs written before the tensor existed; a value other than 0 or 1 is an error.
///
/// ```
/// use ipc_codec::encoder::{inner_step_rule, refine::InnerStepRule};
/// use ipc_codec::{pack::synthetic::SyntheticPack, ModelPack};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let pack = ModelPack::from_pack_file(&SyntheticPack::small_image().build_with_encoders().to_pack_file()?)?;
/// assert_eq!(inner_step_rule(&pack)?, InnerStepRule::NormScaled);
/// # Ok(()) }
/// ```
pub fn inner_step_rule(pack: &ModelPack) -> Result<refine::InnerStepRule, EncodeError> {
    const NAME: &str = "encoder.meta.norm_scaled";
    if hypernet::tensor_shape(pack, NAME).is_none() {
        return Ok(refine::InnerStepRule::NormScaled);
    }
    match hypernet::scalar(pack, NAME)? {
        1.0 => Ok(refine::InnerStepRule::NormScaled),
        0.0 => Ok(refine::InnerStepRule::Plain),
        x => Err(EncodeError::PackTensor {
            name: NAME.into(),
            problem: format!("{x} is neither 0 nor 1"),
        }),
    }
}

fn encoder_tensor_names(pack: &ModelPack) -> String {
    let mut prefixes: Vec<&str> = pack
        .contents()
        .extra
        .iter()
        .map(|(n, _, _)| n.splitn(3, '.').take(2).last().unwrap_or(""))
        .collect();
    prefixes.dedup();
    if prefixes.is_empty() {
        "none".into()
    } else {
        prefixes.join(", ")
    }
}

impl<'p> Encoder<'p> {
    /// Prepares encoding with `pack`: reads the encoder tensors the method needs and
    /// computes the per-pack synthesis state.
    pub fn new(pack: &'p ModelPack, config: EncoderConfig) -> Result<Encoder<'p>, EncodeError> {
        let cfg = pack.config();
        let unavailable = || EncodeError::MethodUnavailable {
            method: config.method,
            pack: pack.id(),
            available: encoder_tensor_names(pack),
        };
        let (hyper, meta) = match config.method {
            Method::Hyper => (
                Some(HyperNetwork::from_pack(pack)?.ok_or_else(unavailable)?),
                None,
            ),
            Method::Meta => {
                if hypernet::tensor_shape(pack, "encoder.v0").is_none() {
                    return Err(unavailable());
                }
                let (v_rows, v_cols) = cfg.v_shape();
                let v0 = hypernet::tensor(pack, "encoder.v0", &[v_rows, v_cols])?.to_vec();
                let steps = hypernet::scalar(pack, "encoder.meta.inner_steps")?;
                let lr = hypernet::scalar(pack, "encoder.meta.inner_lr")?;
                if !(0.0..=1000.0).contains(&steps) || steps.fract() != 0.0 || lr < 0.0 {
                    return Err(EncodeError::PackTensor {
                        name: "encoder.meta".into(),
                        problem: format!("inner_steps {steps}, inner_lr {lr}"),
                    });
                }
                let rule = inner_step_rule(pack)?;
                (
                    None,
                    Some(MetaInit {
                        v0,
                        steps: steps as usize,
                        lr: f64::from(lr),
                        rule,
                    }),
                )
            }
        };
        let lambdas = pack_lambdas(pack)?;
        let (model, decoder) = models(pack, &config);
        Ok(Encoder {
            pack,
            config,
            model,
            decoder,
            hyper,
            meta,
            lambdas,
            backend: None,
        })
    }

    /// An encoder whose V comes from `backend` (for example a GPU); tiling, checks,
    /// rate control, entropy coding and measurement stay as in [`Encoder::new`].
    pub fn with_backend(
        pack: &'p ModelPack,
        config: EncoderConfig,
        backend: Box<dyn VBackend + 'p>,
    ) -> Result<Encoder<'p>, EncodeError> {
        let (model, decoder) = models(pack, &config);
        Ok(Encoder {
            pack,
            config,
            model,
            decoder,
            hyper: None,
            meta: None,
            lambdas: pack_lambdas(pack)?,
            backend: Some(backend),
        })
    }

    /// The lambda of each quality level (`encoder.lambda`, or 0 where the pack has none).
    pub fn lambdas(&self) -> &[f64] {
        &self.lambdas
    }

    /// The pack.
    pub fn pack(&self) -> &'p ModelPack {
        self.pack
    }

    /// Number of quality levels.
    pub fn levels(&self) -> usize {
        self.pack.config().quality_levels.len()
    }

    /// The level used when none is asked for: the middle one.
    pub fn default_level(&self) -> u8 {
        ((self.levels() - 1) / 2) as u8
    }

    /// Checks that `signal` can be coded with this pack and within the limits, and
    /// cuts it into tiles.
    pub fn tiles(&self, signal: &Signal) -> Result<Tiles, EncodeError> {
        let cfg = self.pack.config();
        let limits = &self.config.limits;
        let input = |m: String| Err(EncodeError::Input(m));
        match signal {
            Signal::Image(i) => {
                if cfg.coord_dim != 2 {
                    return input(format!(
                        "model pack {} codes audio, not images",
                        self.pack.id()
                    ));
                }
                if i.width == 0 || i.height == 0 {
                    return input(format!(
                        "image is {}x{}: it has no pixels",
                        i.width, i.height
                    ));
                }
                if !matches!(i.channels, 1 | 3) {
                    return input(format!("{} channels (1 or 3 can be coded)", i.channels));
                }
                if !matches!(i.bit_depth, 8 | 16) {
                    return input(format!("bit depth {} (8 or 16 can be coded)", i.bit_depth));
                }
                let pixels = u64::from(i.width) * u64::from(i.height);
                if pixels > limits.max_pixels {
                    return Err(EncodeError::LimitExceeded {
                        what: "image size in pixels",
                        value: pixels,
                        limit: limits.max_pixels,
                    });
                }
                if i.samples.len() as u64 != pixels * u64::from(i.channels) {
                    return input(format!(
                        "{} samples for a {}x{}x{} image",
                        i.samples.len(),
                        i.width,
                        i.height,
                        i.channels
                    ));
                }
            }
            Signal::Audio(a) => {
                if cfg.coord_dim != 1 {
                    return input(format!(
                        "model pack {} codes images, not audio",
                        self.pack.id()
                    ));
                }
                if a.channels == 0
                    || a.samples.is_empty()
                    || a.samples.len() % usize::from(a.channels) != 0
                {
                    return input(format!(
                        "{} samples in {} channels is no whole number of frames (at least 1)",
                        a.samples.len(),
                        a.channels
                    ));
                }
                if a.samples.len() as u64 > limits.max_samples {
                    return Err(EncodeError::LimitExceeded {
                        what: "audio size in samples",
                        value: a.samples.len() as u64,
                        limit: limits.max_samples,
                    });
                }
                if u32::try_from(a.frames()).is_err() {
                    return input(format!("{} frames do not fit the format", a.frames()));
                }
                if let Some(rate) = cfg.sample_rate.filter(|&r| r != a.sample_rate) {
                    return input(format!(
                        "audio at {} Hz, but model pack {} codes {rate} Hz (resample it first)",
                        a.sample_rate,
                        self.pack.id()
                    ));
                }
            }
        }
        let samples = match signal {
            Signal::Image(i) => &i.samples,
            Signal::Audio(a) => &a.samples,
        };
        if let Some(i) = samples.iter().position(|x| !x.is_finite()) {
            return input(format!("sample {i} is not a finite number"));
        }
        let tiles = signal
            .geometry()
            .tile_count(cfg.tile_width as u64, cfg.tile_height as u64);
        // The encoder's buffers hold whole tiles, so the limits count the padded size:
        // a 2000000 x 1 strip is 2000000 x 32 pixels of work with 32x32 tiles.
        let padded = tiles.saturating_mul((cfg.tile_width * cfg.tile_height) as u64);
        let (limit, what) = match signal {
            Signal::Image(_) => (
                limits.max_pixels,
                "image size in pixels padded to whole tiles",
            ),
            Signal::Audio(_) => (limits.max_samples, "audio samples padded to whole chunks"),
        };
        if padded > limit {
            return Err(EncodeError::LimitExceeded {
                what,
                value: padded,
                limit,
            });
        }
        let elements = tiles.saturating_mul(cfg.v_len() as u64);
        if elements > limits.max_v_elements {
            return Err(EncodeError::LimitExceeded {
                what: "elements of V",
                value: elements,
                limit: limits.max_v_elements,
            });
        }
        Ok(Tiles::of_signal(signal, cfg.tile_width, cfg.tile_height))
    }

    /// Encodes `signal` at the level `target` selects. `progress` hears about every
    /// refinement step.
    pub fn encode(
        &self,
        signal: &Signal,
        target: RateTarget,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Encoded, EncodeError> {
        let tiles = self.tiles(signal)?;
        let levels = self.levels();
        let top = (levels - 1) as u8;
        let mut trials = 0;
        let mut at = |level: u8, trials: &mut usize| {
            *trials += 1;
            let trial = *trials;
            self.encode_level(signal, &tiles, level, &mut |done, total| {
                progress(Progress {
                    trial,
                    quality_level: level,
                    done,
                    total,
                })
            })
        };
        let mut result = match target {
            RateTarget::Quality(q) => {
                if usize::from(q) >= levels {
                    return Err(EncodeError::Input(format!(
                        "quality {q} is not offered: model pack {} has levels 0 to {top}",
                        self.pack.id()
                    )));
                }
                at(q, &mut trials)?
            }
            RateTarget::BitsPerPixel(x) | RateTarget::KilobitsPerSecond(x) => {
                let image = matches!(signal, Signal::Image(_));
                if image != matches!(target, RateTarget::BitsPerPixel(_)) {
                    return Err(EncodeError::Input(if image {
                        "a kbit/s target is for audio; give images a bits-per-pixel target".into()
                    } else {
                        "a bits-per-pixel target is for images; give audio a kbit/s target".into()
                    }));
                }
                // The finest level within the budget (or the coarsest if none is).
                bisect(0, top, &mut |level| {
                    let e = at(level, &mut trials)?;
                    Ok((e.rate <= x, e))
                })?
            }
            RateTarget::Psnr(y) => {
                // The coarsest level reaching the PSNR (or the finest if none does):
                // bisect on "falls short", whose last true level is one below it.
                let short = bisect(0, top, &mut |level| {
                    let e = at(level, &mut trials)?;
                    Ok((e.psnr < y, e))
                })?;
                if short.psnr < y && short.quality_level < top {
                    at(short.quality_level + 1, &mut trials)?
                } else {
                    short
                }
            }
        };
        result.trials = trials;
        Ok(result)
    }

    /// Encodes at one quality level with the configured method and effort, and
    /// measures the result by decoding it.
    pub fn encode_level(
        &self,
        signal: &Signal,
        tiles: &Tiles,
        level: u8,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<Encoded, EncodeError> {
        let cfg = self.pack.config();
        let step = cfg.quality_levels[usize::from(level)].step() as f32;
        let q = match &self.backend {
            Some(backend) => backend.quantised_v(tiles, level, step, progress)?,
            None => {
                let v = self.predict(tiles, usize::from(level));
                self.quantised_v(tiles, v, level, step, progress)
            }
        };
        let format = self.config.file_format(self.pack);
        let (file, psnr) = if format.edge_filter == EdgeFilter::Off {
            let file = encode_quantised_as(self.pack, signal.geometry(), level, None, &q, format)?;
            let psnr = self.measure(signal, &file)?;
            (file, psnr)
        } else {
            // Decode without a filter, then keep the filter that suits the signal
            // (edge_fit); the decoder applies it to exactly these samples.
            let (header, payload) =
                header_and_payload(self.pack, signal.geometry(), level, None, &q, format)?;
            let unfiltered = write_file_with(&header, EdgeFilter::Off, None, &payload)?;
            let tile = (cfg.tile_width, cfg.tile_height);
            let bits = 8 * unfiltered.len() as u64;
            let choice = edge_fit::choose(signal, self.decoder.decode(&unfiltered)?, tile, bits);
            // Then the restoration filter on what the edge filter left (§8.7).
            let (restoration, decoded, psnr) = match restoration_fit::choose(
                signal,
                &choice.decoded,
                choice.psnr,
                bits,
                self.config.threads,
            ) {
                Some((taps, decoded, psnr)) => (Some(taps), decoded, psnr),
                None => (None, choice.decoded, choice.psnr),
            };
            let file = write_file_with(&header, choice.filter, restoration, &payload)?;
            debug_assert_eq!(self.decoder.decode(&file).ok(), Some(decoded));
            (file, psnr)
        };
        let rate = metrics::file_rate(&signal.geometry(), file.len() as u64);
        Ok(Encoded {
            file,
            quality_level: level,
            rate,
            psnr,
            trials: 1,
        })
    }

    /// V of every tile before quantisation, from the configured method.
    pub fn predict(&self, tiles: &Tiles, level: usize) -> Vec<f32> {
        let v_len = self.model.synthesizer().v_len();
        let mut v = vec![0f32; tiles.count * v_len];
        if let Some(hyper) = &self.hyper {
            hyper.predict(tiles, level, &mut v, self.config.threads);
        } else if let Some(meta) = &self.meta {
            for vt in v.chunks_exact_mut(v_len) {
                vt.copy_from_slice(&meta.v0);
            }
            refine::inner_steps(
                &self.model,
                tiles,
                &mut v,
                meta.steps,
                meta.lr,
                meta.rule,
                self.config.threads,
            );
        }
        v
    }

    /// Rounds V to the level's step, after `effort` refinement steps.
    fn quantised_v(
        &self,
        tiles: &Tiles,
        mut v: Vec<f32>,
        level: u8,
        step: f32,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Vec<i32> {
        let mut q = vec![0i32; v.len()];
        let effort = self.config.effort;
        if effort == 0 {
            refine::quantise(&v, step, &mut q);
            return q;
        }
        let vmodel = self
            .pack
            .v_model(usize::from(level))
            .expect("level checked");
        let format = self.config.file_format(self.pack);
        let rate = refine::RateModel::for_file(vmodel, format.coding, tiles.grid);
        let emphasised;
        let tiles = if self.config.edge_emphasis > 0.0 {
            let cfg = self.pack.config();
            let mut t = tiles.clone();
            t.weight_edges(
                cfg.tile_width,
                cfg.tile_height,
                1.0 + self.config.edge_emphasis,
            );
            emphasised = t;
            &emphasised
        } else {
            tiles
        };
        refine::refine(
            &self.model,
            &rate,
            tiles,
            &mut v,
            &mut q,
            step,
            self.lambdas[usize::from(level)],
            effort,
            self.config.threads,
            &mut |done| progress(done, effort),
        );
        q
    }

    /// PSNR of `file` decoded, against `signal` (see [`Encoded::psnr`]).
    fn measure(&self, signal: &Signal, file: &[u8]) -> Result<f64, EncodeError> {
        Ok(metrics::psnr(signal, &self.decoder.decode(file)?))
    }
}

/// The distortion model and the decoder of an encoder, sharing one computation of the
/// pack's synthesis state.
fn models<'p>(pack: &'p ModelPack, config: &EncoderConfig) -> (DistortionModel<'p>, Decoder<'p>) {
    let decoder = Decoder::with_options(
        pack,
        DecodeOptions {
            limits: config.limits,
            threads: config.threads,
        },
    );
    (DistortionModel::new(decoder.synthesizer().clone()), decoder)
}

/// The rate-distortion trade-off each quality level was trained for
/// (`encoder.lambda`, spec/model-pack.md §4.3); 0 for every level of a pack without it,
/// so that refinement then minimises distortion alone.
pub fn pack_lambdas(pack: &ModelPack) -> Result<Vec<f64>, EncodeError> {
    let levels = pack.config().quality_levels.len();
    Ok(match hypernet::tensor_shape(pack, LAMBDA_TENSOR) {
        Some(_) => hypernet::tensor(pack, LAMBDA_TENSOR, &[levels])?
            .iter()
            .map(|&l| f64::from(l).max(0.0))
            .collect(),
        None => vec![0.0; levels],
    })
}

/// Bisection over levels `lo..=hi` for the last level where `ok` holds, assuming it
/// holds up to some level and not after. Returns that level's result, or `lo`'s if
/// it holds nowhere.
fn bisect<T>(
    lo: u8,
    hi: u8,
    ok: &mut dyn FnMut(u8) -> Result<(bool, T), EncodeError>,
) -> Result<T, EncodeError> {
    let (mut lo, mut hi) = (lo, hi);
    let (good, first) = ok(lo)?;
    if !good {
        return Ok(first);
    }
    let mut best = first;
    // Invariant: ok(lo) holds and `best` is its result; ok fails beyond hi + 1.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        let (good, r) = ok(mid)?;
        if good {
            lo = mid;
            best = r;
        } else {
            hi = mid - 1;
        }
    }
    Ok(best)
}

/// Entropy-codes the quantised V of every tile (tile after tile, each in `PackConfig::v_shape`
/// row-major, in the tile order of spec/bitstream.md §4) and wraps it in a container
/// of the default format for the pack ([`FileFormat::default_for`]). `step_q16`
/// overrides the quality level's default dequantisation step.
pub fn encode_quantised(
    pack: &ModelPack,
    geometry: Geometry,
    quality_level: u8,
    step_q16: Option<u32>,
    v: &[i32],
) -> Result<Vec<u8>, Error> {
    let format = FileFormat::default_for(pack);
    encode_quantised_as(pack, geometry, quality_level, step_q16, v, format)
}

/// A file's format version and payload coding (spec/bitstream.md §2, §3.1, §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileFormat {
    /// Format version, 1 or 2.
    pub version: u8,
    /// How the payload chooses its tables; [`PayloadCoding::PerElement`] in version 1.
    pub coding: PayloadCoding,
    /// The filter the decoder runs over tile edges (spec/bitstream.md §8.5, §8.6);
    /// [`EdgeFilter::Off`] in version 1. The [`Encoder`] replaces any filter but
    /// `Off` with the one that suits the signal best (none, the quarter rule or fitted
    /// taps); [`encode_quantised_as`] writes the one given.
    pub edge_filter: EdgeFilter,
    /// The restoration filter's taps (spec/bitstream.md §8.7); `None` in version 1.
    /// [`encode_quantised_as`] writes what is given; the [`Encoder`] fits taps to the
    /// signal in every version-2 file and keeps them when they pay for their block.
    pub restoration: Option<RestorationTaps>,
}

impl FileFormat {
    /// Version 1: every element with its own table.
    pub const VERSION_1: FileFormat = FileFormat {
        version: 1,
        coding: PayloadCoding::PerElement,
        edge_filter: EdgeFilter::Off,
        restoration: None,
    };

    /// The format new files are written in: version 2, with the quarter-rule edge
    /// filter (which needs no original to fit to), and with neighbour contexts when the
    /// pack has neighbour tables (spec/model-pack.md §5.1).
    pub fn default_for(pack: &ModelPack) -> FileFormat {
        let neighbour = pack.v_model(0).is_some_and(VModel::has_neighbour_tables);
        FileFormat {
            version: FORMAT_VERSION,
            coding: if neighbour {
                PayloadCoding::NeighbourContexts
            } else {
                PayloadCoding::PerElement
            },
            edge_filter: EdgeFilter::Quarter,
            restoration: None,
        }
    }
}

/// [`encode_quantised`] in a given format: version 1 files for tools that need
/// them, or version 2 with or without neighbour contexts.
pub fn encode_quantised_as(
    pack: &ModelPack,
    geometry: Geometry,
    quality_level: u8,
    step_q16: Option<u32>,
    v: &[i32],
    format: FileFormat,
) -> Result<Vec<u8>, Error> {
    let (header, payload) = header_and_payload(pack, geometry, quality_level, step_q16, v, format)?;
    write_file_with(&header, format.edge_filter, format.restoration, &payload)
}

/// The header (without its payload length and edge filter) and the range-coded payload
/// of [`encode_quantised_as`], for [`write_file_with`] to complete.
fn header_and_payload(
    pack: &ModelPack,
    geometry: Geometry,
    quality_level: u8,
    step_q16: Option<u32>,
    v: &[i32],
    format: FileFormat,
) -> Result<(Header, Vec<u8>), Error> {
    let cfg = pack.config();
    let level = cfg
        .quality_levels
        .get(usize::from(quality_level))
        .ok_or_else(|| Error::PackMismatch {
            pack: pack.id(),
            reason: format!(
                "quality level {quality_level} but the pack has {}",
                cfg.quality_levels.len()
            ),
        })?;
    let header = Header {
        version: format.version,
        coding: format.coding,
        // write_file_with sets the filter's flag with its block.
        edge_filter: EdgeFilterKind::Off,
        restoration: false,
        pack_id: pack.id(),
        geometry,
        tile_width: u16::try_from(cfg.tile_width).expect("validated pack"),
        tile_height: u16::try_from(cfg.tile_height).expect("validated pack"),
        step_q16: step_q16.unwrap_or(level.step_q16),
        quality_level,
        payload_len: 0,
    };
    // The same checks a decoder makes, so every file written can be read back.
    Header::parse(&header.to_bytes())?;
    check_pack(&header, pack)?;
    let model = pack
        .v_model(usize::from(quality_level))
        .expect("level checked above");
    let expected = header.tile_count() as usize * model.elements_per_tile();
    if v.len() != expected {
        return Err(Error::InvalidArgument(format!(
            "V has {} values, but {} tiles of {} elements need {expected}",
            v.len(),
            header.tile_count(),
            model.elements_per_tile()
        )));
    }
    let payload = model
        .encode_tiles(v, header.grid(), header.coding)
        .map_err(FormatError::Payload)?;
    Ok((header, payload))
}
