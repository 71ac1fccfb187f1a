//! The public decoding API: equivalence of its entry points, limits, caller buffers,
//! and agreement with an independent reassembly of the synthesised tiles.

use ipc_codec::decoder::DecodedImage;
use ipc_codec::pack::synthetic::SyntheticPack;
use ipc_codec::rng::SplitMix64;
use ipc_codec::synthesis::TileSynthesizer;
use ipc_codec::{
    encode_quantised, encode_quantised_as, DecodeOptions, Decoded, Decoder, Error, FileFormat,
    Geometry, ImagePixels, Limits, ModelPack,
};

fn pack(spec: SyntheticPack) -> ModelPack {
    ModelPack::from_pack_file(&spec.build().to_pack_file().unwrap()).unwrap()
}

fn rgb(width: u32, height: u32) -> Geometry {
    Geometry::Image {
        width,
        height,
        channels: 3,
        bit_depth: 8,
    }
}

fn random_file(pack: &ModelPack, geometry: Geometry, seed: u64) -> (Vec<u8>, Vec<i32>) {
    let cfg = pack.config();
    let tiles = geometry.tile_count(cfg.tile_width as u64, cfg.tile_height as u64);
    let mut rng = SplitMix64(seed);
    let v: Vec<i32> = (0..tiles as usize * cfg.v_len())
        .map(|_| (rng.next_u64() % 9) as i32 - 4)
        .collect();
    // Version 1: the samples exactly as synthesised (no edge filter).
    let format = FileFormat::VERSION_1;
    (
        encode_quantised_as(pack, geometry, 1, None, &v, format).unwrap(),
        v,
    )
}

/// The samples of an 8-bit image file, widened.
fn decoded_u8(pack: &ModelPack, file: &[u8]) -> Vec<i64> {
    match Decoder::new(pack).decode(file).unwrap() {
        Decoded::Image(DecodedImage {
            pixels: ImagePixels::U8(p),
            ..
        }) => p.iter().map(|&x| i64::from(x)).collect(),
        _ => panic!("8-bit image"),
    }
}

/// The samples of an audio file, widened.
fn decoded_i16(pack: &ModelPack, file: &[u8]) -> Vec<i64> {
    match Decoder::new(pack).decode(file).unwrap() {
        Decoded::Audio(a) => a.samples.iter().map(|&x| i64::from(x)).collect(),
        _ => panic!("audio"),
    }
}

/// The edge filter of spec/bitstream.md §8.5, written out from the spec.
fn spec_pair(p: i64, q: i64) -> (i64, i64) {
    let d = q - p;
    let delta = d.signum() * ((d.abs() + 2) / 4);
    (p + delta, q - delta)
}

#[test]
fn the_edge_filter_changes_only_the_samples_beside_internal_tile_edges() {
    // Image: the version-2 file with the edge filter decodes to the version-1 samples
    // filtered by the rule of §8.5.
    let pack = pack(SyntheticPack::small_image());
    let (w, h) = (21u32, 19u32);
    let (plain, v) = random_file(&pack, rgb(w, h), 5);
    let format = FileFormat {
        edge_filter: ipc_codec::edge_filter::EdgeFilter::Quarter,
        ..FileFormat::default_for(&pack)
    };
    let filtered = encode_quantised_as(&pack, rgb(w, h), 1, None, &v, format).unwrap();
    let pixels = |file: &[u8]| decoded_u8(&pack, file);
    let mut want = pixels(&plain);
    let (w, h) = (w as usize, h as usize);
    for x in (8..w).step_by(8) {
        for y in 0..h {
            for c in 0..3 {
                let (i, j) = ((y * w + x - 1) * 3 + c, (y * w + x) * 3 + c);
                (want[i], want[j]) = spec_pair(want[i], want[j]);
            }
        }
    }
    for y in (8..h).step_by(8) {
        for i in 0..w * 3 {
            let (a, b) = ((y - 1) * w * 3 + i, y * w * 3 + i);
            (want[a], want[b]) = spec_pair(want[a], want[b]);
        }
    }
    let got = pixels(&filtered);
    assert_eq!(got, want);
    assert_ne!(got, pixels(&plain), "the filter changed nothing");

    // Audio, stereo: each channel's chunk edges.
    let pack = pack_audio();
    let geometry = Geometry::Audio {
        sample_rate: 16_000,
        frames: 64 * 5 + 9,
        channels: 2,
        bit_depth: 16,
    };
    let (plain, v) = random_file(&pack, geometry, 6);
    let filtered = encode_quantised_as(&pack, geometry, 1, None, &v, format).unwrap();
    let samples = |file: &[u8]| decoded_i16(&pack, file);
    let mut want = samples(&plain);
    for f in (64..64 * 5 + 9).step_by(64) {
        for c in 0..2 {
            let (i, j) = ((f - 1) * 2 + c, f * 2 + c);
            (want[i], want[j]) = spec_pair(want[i], want[j]);
        }
    }
    assert_eq!(samples(&filtered), want);
}

/// One pass of the fitted edge filter of spec/bitstream.md §8.6 over a line, written
/// out from the spec: every output computed from the unfiltered line.
fn spec_fitted_line(line: &[i64], len: usize, c: &[[i64; 5]; 3], (lo, hi): (i64, i64)) -> Vec<i64> {
    let n = line.len();
    let mut out = line.to_vec();
    if len < 6 {
        return out;
    }
    let mut e = len;
    while e < n {
        let s: Vec<i64> = (0..6).map(|j| line[(e + j - 3).min(n - 1)]).collect();
        let d: Vec<i64> = (0..5).map(|k| s[k + 1] - s[k]).collect();
        let m: Vec<i64> = (0..5).map(|k| s[4 - k] - s[5 - k]).collect();
        for t in 0..3 {
            let sum_d: i64 = (0..5).map(|k| c[t][k] * d[k]).sum();
            let sum_m: i64 = (0..5).map(|k| c[t][k] * m[k]).sum();
            out[e - 3 + t] = (line[e - 3 + t] + (sum_d + 64).div_euclid(128)).clamp(lo, hi);
            if e + 2 - t < n {
                out[e + 2 - t] = (line[e + 2 - t] + (sum_m + 64).div_euclid(128)).clamp(lo, hi);
            }
        }
        e += len;
    }
    out
}

#[test]
fn the_fitted_edge_filter_is_the_spec_filter_on_the_unfiltered_samples() {
    use ipc_codec::edge_filter::{EdgeFilter, EdgeTaps};
    // Large taps, so that clamping to the sample range happens too.
    let taps = EdgeTaps([
        [10, -20, 30, 5, -7],
        [-3, 40, -60, 12, 8],
        [60, -90, 100, 33, -128],
    ]);
    let c = taps.0.map(|row| row.map(i64::from));
    let format = FileFormat {
        edge_filter: EdgeFilter::Fitted(taps),
        ..FileFormat::default_for(&pack(SyntheticPack::small_image()))
    };

    // Image: 8x8 tiles; 42 x 27 leaves last tiles of 2 and 3 samples.
    let pack_i = pack(SyntheticPack::small_image());
    let (w, h) = (42usize, 27usize);
    let (plain, v) = random_file(&pack_i, rgb(w as u32, h as u32), 7);
    let filtered =
        encode_quantised_as(&pack_i, rgb(w as u32, h as u32), 1, None, &v, format).unwrap();
    let pixels = |file: &[u8]| decoded_u8(&pack_i, file);
    let mut want = pixels(&plain);
    for y in 0..h {
        for ch in 0..3 {
            let idx: Vec<usize> = (0..w).map(|x| (y * w + x) * 3 + ch).collect();
            let line: Vec<i64> = idx.iter().map(|&i| want[i]).collect();
            for (&i, x) in idx.iter().zip(spec_fitted_line(&line, 8, &c, (0, 255))) {
                want[i] = x;
            }
        }
    }
    for x in 0..w {
        for ch in 0..3 {
            let idx: Vec<usize> = (0..h).map(|y| (y * w + x) * 3 + ch).collect();
            let line: Vec<i64> = idx.iter().map(|&i| want[i]).collect();
            for (&i, v) in idx.iter().zip(spec_fitted_line(&line, 8, &c, (0, 255))) {
                want[i] = v;
            }
        }
    }
    let got = pixels(&filtered);
    assert_ne!(got, pixels(&plain), "the filter changed nothing");
    assert_eq!(got, want);

    // Audio, stereo, chunks of 64 and a last chunk of 2.
    let pack_a = pack_audio();
    let frames = 64 * 5 + 2;
    let geometry = Geometry::Audio {
        sample_rate: 16_000,
        frames: frames as u32,
        channels: 2,
        bit_depth: 16,
    };
    let (plain, v) = random_file(&pack_a, geometry, 8);
    let filtered = encode_quantised_as(&pack_a, geometry, 1, None, &v, format).unwrap();
    let samples = |file: &[u8]| decoded_i16(&pack_a, file);
    let mut want = samples(&plain);
    for ch in 0..2 {
        let line: Vec<i64> = (0..frames).map(|f| want[f * 2 + ch]).collect();
        for (f, x) in spec_fitted_line(&line, 64, &c, (-32767, 32767))
            .into_iter()
            .enumerate()
        {
            want[f * 2 + ch] = x;
        }
    }
    let got = samples(&filtered);
    assert_ne!(got, samples(&plain), "the filter changed nothing");
    assert_eq!(got, want);
}

#[test]
fn the_restoration_filter_is_the_spec_filter_on_the_unfiltered_samples() {
    use ipc_codec::restoration::RestorationTaps;
    // Large taps, so that clamping to the sample range happens too.
    let taps = RestorationTaps {
        spatial: [20, -10, 5, 7, -3, 30, 2, -8, 4, 12, -6, 9],
        cross: -25,
    };
    let diamond: [(i64, i64); 12] = [
        (0, 1),
        (0, 2),
        (0, 3),
        (1, -2),
        (1, -1),
        (1, 0),
        (1, 1),
        (1, 2),
        (2, -1),
        (2, 0),
        (2, 1),
        (3, 0),
    ];
    let c: Vec<i64> = taps.spatial.iter().map(|&x| i64::from(x)).collect();
    let k = i64::from(taps.cross);
    let format = FileFormat {
        restoration: Some(taps),
        edge_filter: ipc_codec::edge_filter::EdgeFilter::Off,
        ..FileFormat::default_for(&pack(SyntheticPack::small_image()))
    };

    let pack_i = pack(SyntheticPack::small_image());
    let (w, h) = (13usize, 11usize);
    let (plain, v) = random_file(&pack_i, rgb(w as u32, h as u32), 9);
    let restored =
        encode_quantised_as(&pack_i, rgb(w as u32, h as u32), 1, None, &v, format).unwrap();
    let input = decoded_u8(&pack_i, &plain);
    let s = |y: i64, x: i64, ch: usize| {
        let (y, x) = (
            y.clamp(0, h as i64 - 1) as usize,
            x.clamp(0, w as i64 - 1) as usize,
        );
        input[(y * w + x) * 3 + ch]
    };
    let mut want = input.clone();
    for y in 0..h as i64 {
        for x in 0..w as i64 {
            for ch in 0..3 {
                let own = s(y, x, ch);
                let mut sum: i64 = diamond
                    .iter()
                    .zip(&c)
                    .map(|(&(dy, dx), &cj)| {
                        cj * (s(y + dy, x + dx, ch) + s(y - dy, x - dx, ch) - 2 * own)
                    })
                    .sum();
                let others: i64 = (0..3).filter(|&o| o != ch).map(|o| s(y, x, o)).sum();
                sum += k * (others - 2 * own);
                want[(y as usize * w + x as usize) * 3 + ch] =
                    (own + (sum + 64).div_euclid(128)).clamp(0, 255);
            }
        }
    }
    let got = decoded_u8(&pack_i, &restored);
    assert_ne!(got, input, "the filter changed nothing");
    assert_eq!(got, want);

    // Audio, stereo: each channel on its own, no cross-channel term.
    let pack_a = pack_audio();
    let frames = 150usize;
    let geometry = Geometry::Audio {
        sample_rate: 16_000,
        frames: frames as u32,
        channels: 2,
        bit_depth: 16,
    };
    let (plain, v) = random_file(&pack_a, geometry, 10);
    let restored = encode_quantised_as(&pack_a, geometry, 1, None, &v, format).unwrap();
    let input = decoded_i16(&pack_a, &plain);
    let mut want = input.clone();
    for ch in 0..2 {
        let s = |f: i64| input[f.clamp(0, frames as i64 - 1) as usize * 2 + ch];
        for f in 0..frames as i64 {
            let sum: i64 = (0..12)
                .map(|j| c[j] * (s(f + j as i64 + 1) + s(f - j as i64 - 1) - 2 * s(f)))
                .sum();
            want[f as usize * 2 + ch] = (s(f) + (sum + 64).div_euclid(128)).clamp(-32767, 32767);
        }
    }
    let got = decoded_i16(&pack_a, &restored);
    assert_ne!(got, input, "the filter changed nothing");
    assert_eq!(got, want);
}

#[test]
fn image_pixels_are_the_synthesised_tiles_cropped_and_rounded() {
    let pack = pack(SyntheticPack::small_image());
    let (w, h) = (19u32, 10u32);
    let (file, v) = random_file(&pack, rgb(w, h), 1);
    let Decoded::Image(img) = Decoder::new(&pack).decode(&file).unwrap() else {
        panic!("image expected")
    };
    let ImagePixels::U8(px) = img.pixels else {
        panic!("8-bit expected")
    };
    // Independent reassembly: render tile by tile and place samples by hand.
    let synth = TileSynthesizer::new(&pack);
    let step = pack.config().quality_levels[1].step_q16 as f32 / 65536.0;
    let tiles_x = (w as usize).div_ceil(8);
    for (t, vt) in v.chunks(synth.v_len()).enumerate() {
        let vf: Vec<f32> = vt.iter().map(|&q| q as f32 * step).collect();
        let mut out = vec![0f32; synth.outputs_per_tile()];
        synth.render(&vf, &mut out, 1);
        for s in 0..64 {
            let (y, x) = ((t / tiles_x) * 8 + s / 8, (t % tiles_x) * 8 + s % 8);
            if y >= h as usize || x >= w as usize {
                continue;
            }
            for c in 0..3 {
                let want = (out[s * 3 + c].clamp(0.0, 1.0) * 255.0).round() as u8;
                assert_eq!(
                    px[(y * w as usize + x) * 3 + c],
                    want,
                    "pixel ({x},{y}) channel {c}"
                );
            }
        }
    }
}

#[test]
fn entry_points_and_thread_counts_agree() {
    let pack = pack(SyntheticPack::small_image());
    let (file, _) = random_file(&pack, rgb(70, 33), 2);
    let base = Decoder::new(&pack).decode(&file).unwrap();
    for threads in [1, 2, 5] {
        let d = Decoder::with_options(
            &pack,
            DecodeOptions {
                threads,
                ..Default::default()
            },
        );
        assert_eq!(d.decode(&file).unwrap(), base);
        assert_eq!(d.decode_reader(&file[..]).unwrap(), base);
    }
    let mut buf = vec![0u8; 70 * 33 * 3];
    Decoder::new(&pack)
        .decode_image_into(&file, &mut buf)
        .unwrap();
    let Decoded::Image(img) = base else {
        unreachable!()
    };
    assert_eq!(ImagePixels::U8(buf), img.pixels);
}

#[test]
fn caller_buffer_of_wrong_size_is_refused() {
    let pack = pack(SyntheticPack::small_image());
    let (file, _) = random_file(&pack, rgb(8, 8), 3);
    let mut small = vec![0u8; 8 * 8 * 3 - 1];
    let err = Decoder::new(&pack)
        .decode_image_into(&file, &mut small)
        .unwrap_err();
    assert_eq!(err.code(), "invalid-argument");
    // A V of the wrong length is the caller's mistake too, not a corrupt payload.
    let (_, v) = random_file(&pack, rgb(8, 8), 3);
    let err = encode_quantised(&pack, rgb(8, 8), 1, None, &v[1..]).unwrap_err();
    assert!(matches!(err, Error::InvalidArgument(_)), "{err}");
}

#[test]
fn limits_are_enforced_before_decoding() {
    let pack = pack(SyntheticPack::small_image());
    let (file, _) = random_file(&pack, rgb(64, 64), 4);
    let with = |limits: Limits| Decoder::with_options(&pack, DecodeOptions { limits, threads: 1 });
    let defaults = Limits::default();
    for (limits, what) in [
        (
            Limits {
                max_pixels: 64 * 64 - 1,
                ..defaults
            },
            "image size in pixels",
        ),
        (
            Limits {
                max_payload_bytes: 16,
                ..defaults
            },
            "payload size",
        ),
        (
            Limits {
                max_v_elements: 63,
                ..defaults
            },
            "elements of V",
        ),
    ] {
        for result in [
            with(limits).decode(&file),
            with(limits).decode_reader(&file[..]),
        ] {
            match result {
                Err(Error::LimitExceeded { what: w, .. }) => assert_eq!(w, what),
                other => panic!("expected {what} limit, got {other:?}"),
            }
        }
    }
    let audio = pack_audio();
    let (file, _) = random_file(&audio, stereo(500), 5);
    let d = Decoder::with_options(
        &audio,
        DecodeOptions {
            limits: Limits {
                max_samples: 999,
                ..defaults
            },
            threads: 1,
        },
    );
    assert_eq!(d.decode(&file).unwrap_err().code(), "limit-exceeded");
}

fn pack_audio() -> ModelPack {
    pack(SyntheticPack::small_audio())
}

fn stereo(frames: u32) -> Geometry {
    Geometry::Audio {
        sample_rate: 16_000,
        frames,
        channels: 2,
        bit_depth: 16,
    }
}

#[test]
fn audio_channels_are_interleaved_from_consecutive_chunks() {
    let pack = pack_audio();
    let frames = 150;
    let (file, v) = random_file(&pack, stereo(frames), 6);
    let Decoded::Audio(a) = Decoder::new(&pack).decode(&file).unwrap() else {
        panic!("audio expected")
    };
    assert_eq!(
        (a.sample_rate, a.channels, a.samples.len()),
        (16_000, 2, 300)
    );
    let synth = TileSynthesizer::new(&pack);
    let step = pack.config().quality_levels[1].step_q16 as f32 / 65536.0;
    let vf: Vec<f32> = v.iter().map(|&q| q as f32 * step).collect();
    let mut out = vec![0f32; v.len() / synth.v_len() * 64];
    synth.render(&vf, &mut out, 1);
    // 150 frames -> 3 chunks of 64 per channel; channel 1 starts at chunk 3.
    for f in 0..frames as usize {
        for c in 0..2 {
            let x = out[c * 192 + f];
            assert_eq!(
                a.samples[f * 2 + c],
                (x.clamp(-1.0, 1.0) * 32767.0).round() as i16
            );
        }
    }
}

#[test]
fn grey_and_sixteen_bit_images_decode() {
    let pack = pack(SyntheticPack::small_image());
    let grey = Geometry::Image {
        width: 5,
        height: 3,
        channels: 1,
        bit_depth: 8,
    };
    let (file, _) = random_file(&pack, grey, 7);
    let Decoded::Image(g) = Decoder::new(&pack).decode(&file).unwrap() else {
        panic!()
    };
    assert!(matches!(&g.pixels, ImagePixels::U8(p) if p.len() == 15));
    let deep = Geometry::Image {
        width: 5,
        height: 3,
        channels: 3,
        bit_depth: 16,
    };
    let (file, _) = random_file(&pack, deep, 7);
    let Decoded::Image(d) = Decoder::new(&pack).decode(&file).unwrap() else {
        panic!()
    };
    let ImagePixels::U16(p16) = d.pixels else {
        panic!("16-bit expected")
    };
    // The same V at 8 bits: the 16-bit samples are the finer rounding of the same values.
    let (file8, _) = random_file(&pack, rgb(5, 3), 7);
    let Decoded::Image(e) = Decoder::new(&pack).decode(&file8).unwrap() else {
        panic!()
    };
    let ImagePixels::U8(p8) = e.pixels else {
        panic!()
    };
    for (a, b) in p16.iter().zip(&p8) {
        assert!((f64::from(*a) / 65535.0 - f64::from(*b) / 255.0).abs() <= 0.5 / 255.0 + 1e-6);
    }
}

#[test]
fn wrong_pack_names_both_packs() {
    let image = pack(SyntheticPack::small_image());
    let other = pack(SyntheticPack {
        seed: 77,
        ..SyntheticPack::small_image()
    });
    let (file, _) = random_file(&image, rgb(8, 8), 8);
    let err = Decoder::new(&other).decode(&file).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&image.id().to_string()) && text.contains(&other.id().to_string()),
        "{text}"
    );
}

/// spec/bitstream.md §9: the worked example's file, rebuilt from its table of values,
/// is byte for byte the hex dump the spec prints (read from the spec itself), and
/// decodes back to those values.
#[test]
fn spec_bitstream_worked_example_is_reproduced() {
    let spec =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/spec/bitstream.md")).unwrap();
    let dump = spec
        .split("Hex dump (98 bytes):")
        .nth(1)
        .expect("the spec has the hex dump");
    let expected: Vec<u8> = dump
        .lines()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| l.starts_with("    "))
        .flat_map(|l| l.split_whitespace().skip(1))
        .map(|b| u8::from_str_radix(b, 16).unwrap())
        .collect();
    assert_eq!(expected.len(), 98);

    let pack = pack(SyntheticPack::small_image());
    assert_eq!(pack.id().to_string(), "4aba11c99394b115488987f72a5884e1");
    let mut v = vec![0i32; 128];
    for (tile, e, value) in [
        (0, 0, 1),
        (0, 1, -1),
        (0, 2, 2),
        (0, 16, 3),
        (1, 0, -1),
        (1, 1, 5),
        (1, 63, -300),
    ] {
        v[tile * 64 + e] = value;
    }
    let geometry = rgb(9, 5);
    // The worked example is a version-1 file.
    let file = encode_quantised_as(&pack, geometry, 0, None, &v, FileFormat::VERSION_1).unwrap();
    assert_eq!(file, expected);
    let (_, back) = Decoder::new(&pack).decode_quantised(&file).unwrap();
    assert_eq!(back, v);
}
