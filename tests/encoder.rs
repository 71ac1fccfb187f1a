//! The pure-Rust encoder: the hand-derived gradient against finite differences, the
//! CAVIA inner steps, quantisation-aware refinement, rate control and input checks.

use ipc_codec::encoder::{
    AudioSignal, DistortionModel, EncodeError, Encoder, EncoderConfig, ImageSignal, Method,
    RateTarget, Signal, Tiles,
};
use ipc_codec::entropy::PayloadCoding;
use ipc_codec::pack::synthetic::SyntheticPack;
use ipc_codec::pack::WeightGain;
use ipc_codec::rng::SplitMix64;
use ipc_codec::synthesis::TileSynthesizer;
use ipc_codec::{Decoded, Decoder, Header, ModelPack};

fn pack(shape: &SyntheticPack, weight_norm: bool) -> ModelPack {
    let mut contents = shape.build_with_encoders();
    contents.config.weight_norm = weight_norm;
    ModelPack::from_safetensors(&contents.to_safetensors().unwrap()).unwrap()
}

/// A smooth test image with some texture, from a seed.
fn image(width: u32, height: u32, channels: u8, seed: u64) -> ImageSignal {
    let mut rng = SplitMix64(seed);
    let phase: Vec<f32> = rng.uniform_vec(6, 3.0);
    let mut samples = Vec::new();
    for y in 0..height {
        for x in 0..width {
            for c in 0..usize::from(channels) {
                let (fx, fy) = (x as f32 / 7.0, y as f32 / 5.0);
                let v = 0.5
                    + 0.3 * (fx + phase[c]).sin() * (fy + phase[c + 3]).cos()
                    + 0.05 * rng.uniform(1.0);
                samples.push(v.clamp(0.0, 1.0));
            }
        }
    }
    ImageSignal {
        width,
        height,
        channels,
        bit_depth: 8,
        samples: samples
            .iter()
            .map(|&v| (v * 255.0).round() / 255.0)
            .collect(),
    }
}

fn audio(frames: usize, channels: u8, seed: u64) -> AudioSignal {
    let mut rng = SplitMix64(seed);
    let mut samples = Vec::new();
    for f in 0..frames {
        for c in 0..channels {
            let t = f as f32 / 16000.0;
            samples.push(
                0.4 * (2.0 * std::f32::consts::PI * (220.0 + 110.0 * f32::from(c)) * t).sin()
                    + 0.02 * rng.uniform(1.0),
            );
        }
    }
    AudioSignal {
        sample_rate: 16000,
        channels,
        samples,
    }
}

fn total_mse(model: &DistortionModel<'_>, v: &[f32], tiles: &Tiles) -> f64 {
    let mut mse = vec![0f64; tiles.count];
    model.evaluate(v, tiles, None, &mut mse, 1);
    mse.iter().sum()
}

/// The analytic gradient against central differences along random directions and along
/// single coordinates, with and without weight normalisation, for images with padded
/// tiles and for audio. Each case runs twice: with the pack as built (ReLU kinks make
/// difference quotients inexact, so the tolerance is loose; a missing activation mask
/// still fails it by far), and with large biases that keep every unit active, where the
/// network is smooth and the tolerance is tight.
#[test]
fn gradient_matches_finite_differences() {
    let cases = [
        (
            SyntheticPack::small_image(),
            true,
            Signal::Image(image(11, 9, 3, 1)),
        ),
        (
            SyntheticPack::small_image(),
            false,
            Signal::Image(image(11, 9, 3, 2)),
        ),
        (
            SyntheticPack::small_audio(),
            true,
            Signal::Audio(audio(150, 2, 3)),
        ),
        (
            SyntheticPack::small_audio(),
            false,
            Signal::Audio(audio(100, 1, 4)),
        ),
        // The instance-input orientation (V [in_m, r] on the input side).
        (
            SyntheticPack::small_image().instance_input(),
            true,
            Signal::Image(image(11, 9, 3, 11)),
        ),
        (
            SyntheticPack::small_image().instance_input(),
            false,
            Signal::Image(image(11, 9, 3, 12)),
        ),
        (
            SyntheticPack::small_audio().instance_input(),
            true,
            Signal::Audio(audio(150, 2, 13)),
        ),
        // Learned gains after the normalisation (spec/model-pack.md §4.2), the modulated
        // layer's included.
        (
            SyntheticPack::small_image().with_weight_gain(WeightGain::EveryLayer),
            true,
            Signal::Image(image(11, 9, 3, 15)),
        ),
        (
            SyntheticPack::small_audio()
                .instance_input()
                .with_weight_gain(WeightGain::EveryLayer),
            true,
            Signal::Audio(audio(150, 2, 16)),
        ),
        (
            SyntheticPack {
                modulated_layer: 0,
                ..SyntheticPack::small_image().instance_input()
            },
            true,
            Signal::Image(image(8, 8, 3, 14)),
        ),
    ];
    for (shape, weight_norm, signal) in cases {
        for smooth in [true, false] {
            let mut contents = shape.build_with_encoders();
            contents.config.weight_norm = weight_norm;
            if smooth {
                let m = contents.config.modulated_layer;
                for b in contents.modulated.bias.iter_mut() {
                    *b += 4.0;
                }
                for layer in contents.layers[m + 1..].iter_mut().flatten() {
                    for b in layer.bias.iter_mut() {
                        *b += 4.0;
                    }
                }
            }
            let pack = ModelPack::from_safetensors(&contents.to_safetensors().unwrap()).unwrap();
            let cfg = pack.config();
            let tolerance = if smooth { 1e-2 } else { 5e-2 };
            let tiles = Tiles::of_signal(&signal, cfg.tile_width, cfg.tile_height);
            let model = DistortionModel::new(TileSynthesizer::new(&pack));
            let mut rng = SplitMix64(9);
            let v: Vec<f32> = rng.uniform_vec(tiles.count * cfg.v_len(), 1.0);
            let mut grad = vec![0f32; v.len()];
            let mut mse = vec![0f64; tiles.count];
            model.evaluate(&v, &tiles, Some(&mut grad), &mut mse, 2);
            assert!(grad.iter().any(|&g| g != 0.0));
            // f32 rounding in the forward pass and ReLU kinks make any single difference
            // quotient noisy; the gradient must agree with the best of several step sizes
            // (a wrong gradient disagrees at every step size; dropping the weight
            // normalisation's second term, for one, gives errors of order one).
            let steps = [1e-2f32, 3e-3, 1e-3, 3e-4, 1e-4];
            // Errors are relative to the derivative, but a random direction can be nearly
            // orthogonal to the gradient: the floor is a tenth of the size the derivative
            // typically has, |g| |d| / sqrt(n) (for one element, the RMS element of g).
            let norm = |x: &[f32]| x.iter().map(|&g| f64::from(g).powi(2)).sum::<f64>().sqrt();
            let rms_element = norm(&grad) / (grad.len() as f64).sqrt();
            let close = |fd: &dyn Fn(f32) -> f64, analytic: f64, typical: f64| {
                steps
                    .iter()
                    .map(|&h| {
                        (fd(h) - analytic).abs() / analytic.abs().max(0.1 * typical).max(1e-4)
                    })
                    .fold(f64::INFINITY, f64::min)
            };
            for trial in 0..4 {
                let dir: Vec<f32> = rng.uniform_vec(v.len(), 1.0);
                let fd = |h: f32| {
                    let shifted = |sign: f32| -> Vec<f32> {
                        v.iter()
                            .zip(&dir)
                            .map(|(&x, &d)| x + sign * h * d)
                            .collect()
                    };
                    (total_mse(&model, &shifted(1.0), &tiles)
                        - total_mse(&model, &shifted(-1.0), &tiles))
                        / (2.0 * f64::from(h))
                };
                let analytic: f64 = grad
                    .iter()
                    .zip(&dir)
                    .map(|(&g, &d)| f64::from(g) * f64::from(d))
                    .sum();
                let err = close(&fd, analytic, rms_element * norm(&dir));
                assert!(
                err < tolerance,
                "direction {trial} ({:?} layer {}, weight_norm {weight_norm}, smooth {smooth}): relative error {err}",
                cfg.orientation, cfg.modulated_layer
            );
            }
            for i in (0..v.len()).step_by(v.len() / 7 + 1) {
                let fd = |h: f32| {
                    let mut plus = v.clone();
                    let mut minus = v.clone();
                    plus[i] += h;
                    minus[i] -= h;
                    (total_mse(&model, &plus, &tiles) - total_mse(&model, &minus, &tiles))
                        / (2.0 * f64::from(h))
                };
                let err = close(&fd, f64::from(grad[i]), rms_element);
                assert!(
                err < tolerance,
                "element {i} ({:?} layer {}, weight_norm {weight_norm}, smooth {smooth}): relative error {err}",
                cfg.orientation, cfg.modulated_layer
            );
            }
        }
    }
}

/// Padding carries no weight: changing the target there changes neither the error nor
/// the gradient.
#[test]
fn padding_does_not_count() {
    let pack = pack(&SyntheticPack::small_image(), true);
    let model = DistortionModel::new(TileSynthesizer::new(&pack));
    let mut tiles = Tiles::of_image(&image(5, 3, 3, 5), 8, 8);
    let v = SplitMix64(1).uniform_vec(4 * 16, 1.0);
    let mut g1 = vec![0f32; v.len()];
    let mut m1 = vec![0f64; 1];
    model.evaluate(&v, &tiles, Some(&mut g1), &mut m1, 1);
    for (s, w) in tiles.weights.clone().iter().enumerate() {
        if *w == 0.0 {
            tiles.targets[s * 3..s * 3 + 3].fill(0.9);
        }
    }
    let mut g2 = vec![0f32; v.len()];
    let mut m2 = vec![0f64; 1];
    model.evaluate(&v, &tiles, Some(&mut g2), &mut m2, 1);
    assert_eq!((m1, g1), (m2, g2));
}

/// The meta-learned path: the inner steps lower the error of V0 on every test signal.
#[test]
fn inner_steps_lower_the_error() {
    for (shape, signal) in [
        (
            SyntheticPack::small_image(),
            Signal::Image(image(16, 16, 3, 6)),
        ),
        (
            SyntheticPack::small_audio(),
            Signal::Audio(audio(256, 1, 7)),
        ),
        (
            SyntheticPack::small_image().instance_input(),
            Signal::Image(image(16, 16, 3, 15)),
        ),
    ] {
        let pack = pack(&shape, true);
        let cfg = pack.config();
        let encoder = Encoder::new(
            &pack,
            EncoderConfig {
                method: Method::Meta,
                ..Default::default()
            },
        )
        .unwrap();
        let tiles = encoder.tiles(&signal).unwrap();
        let model = DistortionModel::new(TileSynthesizer::new(&pack));
        let v0: Vec<f32> = pack
            .contents()
            .extra
            .iter()
            .find(|(n, _, _)| n == "encoder.v0")
            .unwrap()
            .2
            .repeat(tiles.count);
        assert_eq!(v0.len(), tiles.count * cfg.v_len());
        let adapted = encoder.predict(&tiles, 0);
        assert_ne!(adapted, v0);
        assert!(total_mse(&model, &adapted, &tiles) < total_mse(&model, &v0, &tiles));
    }
}

/// `pack` with its extra tensor `name` set to `value` (added, or removed with `None`).
fn with_extra(pack: &ModelPack, name: &str, value: Option<f32>) -> ModelPack {
    let mut contents = pack.contents().clone();
    contents.extra.retain(|(n, _, _)| n != name);
    if let Some(x) = value {
        contents.extra.push((name.into(), vec![1], vec![x]));
        contents.extra.sort_by(|a, b| a.0.cmp(&b.0));
    }
    ModelPack::from_safetensors(&contents.to_safetensors().unwrap()).unwrap()
}

/// The inner step's rule (spec/model-pack.md §4.3, `encoder.meta.norm_scaled`): 0 gives
/// the plain step `V - eps grad`, checked against the distortion gradient itself;
/// absent or 1 the norm-scaled step `V - eps ||V||^2 grad`; any other value is refused.
/// A pack without V0 refuses the meta method and names what it offers.
#[test]
fn inner_step_rules_follow_the_pack() {
    let base = pack(&SyntheticPack::small_audio(), false);
    let signal = Signal::Audio(audio(256, 1, 7));
    let meta = EncoderConfig {
        method: Method::Meta,
        ..Default::default()
    };
    let one_step = |pack: &ModelPack| {
        let mut contents = pack.contents().clone();
        for (name, _, data) in &mut contents.extra {
            if name == "encoder.meta.inner_steps" {
                data[0] = 1.0;
            }
        }
        ModelPack::from_safetensors(&contents.to_safetensors().unwrap()).unwrap()
    };
    let base = one_step(&base);
    let encoder = Encoder::new(&base, meta).unwrap();
    let tiles = encoder.tiles(&signal).unwrap();
    let model = DistortionModel::new(TileSynthesizer::new(&base));
    let extra = |name: &str| {
        base.contents()
            .extra
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap()
            .2
            .clone()
    };
    let eps = f64::from(extra("encoder.meta.inner_lr")[0]);
    let v0 = extra("encoder.v0").repeat(tiles.count);
    let mut grad = vec![0f32; v0.len()];
    let mut mse = vec![0f64; tiles.count];
    model.evaluate(&v0, &tiles, Some(&mut grad), &mut mse, 1);
    let v_len = v0.len() / tiles.count;
    let norm2: f64 = v0[..v_len].iter().map(|&x| f64::from(x).powi(2)).sum();
    let expect = |scale: f64| -> Vec<f32> {
        v0.iter()
            .zip(&grad)
            .map(|(&x, &g)| (f64::from(x) - scale * f64::from(g)) as f32)
            .collect()
    };
    let predict = |pack: &ModelPack| Encoder::new(pack, meta).unwrap().predict(&tiles, 0);
    let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6);
    assert!(
        grad.iter().any(|&g| g.abs() > 1e-4),
        "no gradient: the test is empty"
    );
    assert!(
        (norm2 - 1.0).abs() > 0.1,
        "||V0||^2 = 1 would not tell the rules apart"
    );

    let scaled = predict(&base);
    assert!(close(&scaled, &expect(eps * norm2)));
    assert_eq!(
        scaled,
        predict(&with_extra(&base, "encoder.meta.norm_scaled", Some(1.0)))
    );
    let plain = predict(&with_extra(&base, "encoder.meta.norm_scaled", Some(0.0)));
    assert!(close(&plain, &expect(eps)));
    assert!(!close(&plain, &scaled));

    let bad_rule = with_extra(&base, "encoder.meta.norm_scaled", Some(2.0));
    let bad = Encoder::new(&bad_rule, meta);
    assert!(
        matches!(&bad, Err(EncodeError::PackTensor { name, .. }) if name == "encoder.meta.norm_scaled"),
        "{:?}",
        bad.err()
    );
    let without_v0 = with_extra(&base, "encoder.v0", None);
    let refused = Encoder::new(&without_v0, meta).err().map(|e| e.to_string());
    assert!(
        refused
            .as_deref()
            .is_some_and(|e| e.contains("has no meta encoder") && e.contains("hyper")),
        "{refused:?}"
    );
}

/// More effort never gives a worse rate-distortion objective, and on these signals it
/// gives a clearly better PSNR; every file decodes to what the encoder measured.
#[test]
fn refinement_improves_quality_and_files_decode() {
    for (shape, signal) in [
        (
            SyntheticPack::small_image(),
            Signal::Image(image(20, 13, 3, 8)),
        ),
        (
            SyntheticPack::small_image(),
            Signal::Image(image(9, 9, 1, 9)),
        ),
        (
            SyntheticPack::small_audio(),
            Signal::Audio(audio(300, 2, 10)),
        ),
        (
            SyntheticPack::small_image().instance_input(),
            Signal::Image(image(20, 13, 3, 16)),
        ),
        // Version-2 files with neighbour contexts (spec/bitstream.md §7.5).
        (
            SyntheticPack::small_image()
                .instance_input()
                .with_neighbour_tables(),
            Signal::Image(image(37, 29, 3, 17)),
        ),
        (
            SyntheticPack::small_audio().with_neighbour_tables(),
            Signal::Audio(audio(700, 2, 11)),
        ),
    ] {
        let pack = pack(&shape, true);
        let coding = if shape.neighbour_tables {
            PayloadCoding::NeighbourContexts
        } else {
            PayloadCoding::PerElement
        };
        let top = (pack.config().quality_levels.len() - 1) as u8;
        let (mut psnr, mut bytes) = (Vec::new(), Vec::new());
        for (method, effort) in [(Method::Hyper, 0), (Method::Hyper, 30), (Method::Meta, 30)] {
            let encoder = Encoder::new(
                &pack,
                EncoderConfig {
                    method,
                    effort,
                    ..Default::default()
                },
            )
            .unwrap();
            let mut calls = 0;
            let e = encoder
                .encode(&signal, RateTarget::Quality(top), &mut |p| {
                    calls += 1;
                    assert_eq!(p.total, effort);
                })
                .unwrap();
            assert_eq!(calls, effort);
            let decoded = Decoder::new(&pack).decode(&e.file).unwrap();
            match (&signal, &decoded) {
                (Signal::Image(i), Decoded::Image(d)) => {
                    assert_eq!(
                        (d.width, d.height, d.channels),
                        (i.width, i.height, i.channels)
                    )
                }
                (Signal::Audio(a), Decoded::Audio(d)) => {
                    assert_eq!(d.samples.len(), a.samples.len())
                }
                _ => panic!("modality changed"),
            }
            let header = Header::parse(&e.file).unwrap();
            assert_eq!((header.version, header.coding), (2, coding));
            let measured = ipc_codec::metrics::psnr(&signal, &decoded);
            assert!((measured - e.psnr).abs() < 1e-9);
            psnr.push(e.psnr);
            bytes.push(e.file.len());
        }
        // Each refined tile keeps at most the bits of its start, so the file may only
        // differ by the range coder's final words.
        assert!(
            bytes[1] <= bytes[0] + 8,
            "effort 30 must not spend more bits than effort 0: {bytes:?}"
        );
        assert!(
            psnr[1] > psnr[0] + 0.5,
            "effort 30 should beat one forward pass of a random hypernetwork: {psnr:?}"
        );
    }
}

/// Rate control: the bit-rate target gives the finest level within budget, the PSNR
/// target the coarsest level reaching it, and the file records the level.
#[test]
fn rate_control_finds_the_level() {
    let pack = pack(&SyntheticPack::small_image(), true);
    let encoder = Encoder::new(&pack, EncoderConfig::default()).unwrap();
    let signal = Signal::Image(image(24, 16, 3, 11));
    let levels: Vec<_> = (0..3)
        .map(|q| {
            encoder
                .encode(&signal, RateTarget::Quality(q), &mut |_| {})
                .unwrap()
        })
        .collect();
    assert!(levels.windows(2).all(|w| w[0].rate <= w[1].rate));
    let budget = (levels[1].rate + levels[2].rate) / 2.0;
    let e = encoder
        .encode(&signal, RateTarget::BitsPerPixel(budget), &mut |_| {})
        .unwrap();
    assert_eq!(e.quality_level, 1);
    assert_eq!(e.file, levels[1].file);
    assert_eq!(ipc_codec::Header::parse(&e.file).unwrap().quality_level, 1);
    // Below every level: the coarsest.
    let e = encoder
        .encode(&signal, RateTarget::BitsPerPixel(0.0), &mut |_| {})
        .unwrap();
    assert_eq!(e.quality_level, 0);
    let goal = levels[1].psnr.min(levels[2].psnr) - 1e-6;
    let e = encoder
        .encode(&signal, RateTarget::Psnr(goal), &mut |_| {})
        .unwrap();
    let want = levels.iter().position(|l| l.psnr >= goal).unwrap();
    assert_eq!(usize::from(e.quality_level), want);
    let e = encoder
        .encode(&signal, RateTarget::Psnr(1000.0), &mut |_| {})
        .unwrap();
    assert_eq!(e.quality_level, 2);
}

#[test]
fn bad_input_is_an_error() {
    let image_pack = pack(&SyntheticPack::small_image(), true);
    let audio_pack = pack(&SyntheticPack::small_audio(), true);
    let enc = Encoder::new(&image_pack, EncoderConfig::default()).unwrap();
    let err = |e: Result<_, EncodeError>| {
        e.map(|_: ipc_codec::encoder::Encoded| ())
            .unwrap_err()
            .to_string()
    };
    let sink = &mut |_| {};
    assert!(err(enc.encode(
        &Signal::Audio(audio(10, 1, 1)),
        RateTarget::Quality(0),
        sink
    ))
    .contains("codes images"));
    let mut empty = image(1, 1, 3, 1);
    empty.width = 0;
    assert!(
        err(enc.encode(&Signal::Image(empty), RateTarget::Quality(0), sink)).contains("no pixels")
    );
    let mut nan = image(4, 4, 3, 1);
    nan.samples[7] = f32::NAN;
    assert!(err(enc.encode(&Signal::Image(nan), RateTarget::Quality(0), sink)).contains("finite"));
    let mut short = image(4, 4, 3, 1);
    short.samples.pop();
    assert!(
        err(enc.encode(&Signal::Image(short), RateTarget::Quality(0), sink)).contains("samples")
    );
    assert!(err(enc.encode(
        &Signal::Image(image(4, 4, 3, 1)),
        RateTarget::Quality(3),
        sink
    ))
    .contains("quality 3"));
    assert!(err(enc.encode(
        &Signal::Image(image(4, 4, 3, 1)),
        RateTarget::KilobitsPerSecond(3.0),
        sink
    ))
    .contains("kbit/s"));
    let limited = Encoder::new(
        &image_pack,
        EncoderConfig {
            limits: ipc_codec::Limits {
                max_pixels: 15,
                ..Default::default()
            },
            ..Default::default()
        },
    )
    .unwrap();
    assert!(matches!(
        limited.encode(
            &Signal::Image(image(4, 4, 3, 1)),
            RateTarget::Quality(0),
            sink
        ),
        Err(EncodeError::LimitExceeded { .. })
    ));
    let enc = Encoder::new(&audio_pack, EncoderConfig::default()).unwrap();
    let mut fast = audio(10, 1, 1);
    fast.sample_rate = 44100;
    assert!(
        err(enc.encode(&Signal::Audio(fast), RateTarget::Quality(0), sink)).contains("44100 Hz")
    );
    // A pack without encoder tensors says what it lacks.
    let bare = ModelPack::from_safetensors(
        &SyntheticPack::small_image()
            .build()
            .to_safetensors()
            .unwrap(),
    )
    .unwrap();
    let e = Encoder::new(&bare, EncoderConfig::default()).unwrap_err();
    assert!(e.to_string().contains("no hyper encoder"), "{e}");
}

/// The seam measure separates pixels beside internal tile boundaries from the rest.
#[test]
fn seam_psnr_splits_border_and_interior_pixels() {
    let img = image(10, 6, 1, 12);
    let mut pixels: Vec<u8> = img
        .samples
        .iter()
        .map(|&v| (v * 255.0).round() as u8)
        .collect();
    // Tiles of 4x4: internal boundaries between x = 3|4 and 7|8 and y = 3|4. Damage
    // exactly one seam pixel and one interior pixel, by different amounts.
    pixels[2 * 10 + 3] = pixels[2 * 10 + 3].wrapping_add(20);
    pixels[10 + 1] = pixels[10 + 1].wrapping_add(2);
    let decoded = ipc_codec::DecodedImage {
        width: 10,
        height: 6,
        channels: 1,
        pixels: ipc_codec::ImagePixels::U8(pixels),
    };
    let (border, interior) = ipc_codec::metrics::seam_psnr(&img, &decoded, 4, 4);
    // Border pixels: columns 3, 4, 7, 8 and rows 3, 4 -> 4*6 + 2*10 - 2*4 = 36 pixels.
    let expect = |err: f64, n: f64| 10.0 * (255.0f64 * 255.0 / (err * err / n)).log10();
    assert!((border - expect(20.0, 36.0)).abs() < 1e-9, "{border}");
    assert!((interior - expect(2.0, 24.0)).abs() < 1e-9, "{interior}");
}
