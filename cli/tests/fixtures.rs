//! The sample inputs in `fixtures/` (used by `scripts/quickstart`) are made here, from
//! code, so that the project owns them outright (fixtures/LICENSE.md).
//!
//! `cargo test -p ipc-codec-cli --test fixtures` checks that the committed files are
//! what this code makes; with `IPC_REGENERATE_FIXTURES=1` it writes them instead.
//! Samples are compared within one step of rounding, because `sin` and `exp` may
//! differ in the last bit between C libraries.

use std::f64::consts::PI;
use std::path::PathBuf;

use image::{ImageBuffer, Rgb, RgbImage};

const WIDTH: u32 = 256;
const HEIGHT: u32 = 192;
const SAMPLE_RATE: u32 = 16_000;
const SECONDS: f64 = 2.0;

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join("fixtures")
}

/// SplitMix64: a small, well-mixed hash and generator, so that the fixtures do not
/// depend on a random-number crate's version.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Uniform in [0, 1) from a hash of `a`, `b`, `seed`.
fn hash01(a: i64, b: i64, seed: u64) -> f64 {
    let h = mix((a as u64).wrapping_mul(0x1000_0000_01B3) ^ mix((b as u64) ^ seed.rotate_left(17)));
    (h >> 11) as f64 / (1u64 << 53) as f64
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(1);
        (mix(self.0) >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Roughly normal (sum of four uniforms), unit variance.
    fn gauss(&mut self) -> f64 {
        ((0..4).map(|_| self.next()).sum::<f64>() - 2.0) * 3f64.sqrt()
    }
}

fn smoothstep(e0: f64, e1: f64, x: f64) -> f64 {
    let t = ((x - e0) / (e1 - e0)).clamp(0.0, 1.0);
    t * t * (3.0 - 2.0 * t)
}

/// Smooth value noise on a unit lattice.
fn value_noise(x: f64, y: f64, seed: u64) -> f64 {
    let (xi, yi) = (x.floor(), y.floor());
    let (fx, fy) = (x - xi, y - yi);
    let (sx, sy) = (fx * fx * (3.0 - 2.0 * fx), fy * fy * (3.0 - 2.0 * fy));
    let (xi, yi) = (xi as i64, yi as i64);
    let v = |dx, dy| hash01(xi + dx, yi + dy, seed);
    let top = v(0, 0) + (v(1, 0) - v(0, 0)) * sx;
    let bottom = v(0, 1) + (v(1, 1) - v(0, 1)) * sx;
    top + (bottom - top) * sy
}

/// Fractal noise: octaves of value noise, each half the size and weight; about [0, 1].
fn fbm(x: f64, y: f64, octaves: u32, seed: u64) -> f64 {
    let (mut sum, mut weight, mut total, mut scale) = (0.0, 1.0, 0.0, 1.0);
    for o in 0..octaves {
        sum += weight * value_noise(x * scale, y * scale, seed + u64::from(o));
        total += weight;
        weight *= 0.5;
        scale *= 2.0;
    }
    sum / total
}

type Colour = [f64; 3];

fn lerp(a: Colour, b: Colour, t: f64) -> Colour {
    [
        a[0] + (b[0] - a[0]) * t,
        a[1] + (b[1] - a[1]) * t,
        a[2] + (b[2] - a[2]) * t,
    ]
}

fn far_hills(x: f64) -> f64 {
    104.0 + 10.0 * (x / 37.0).sin() + 6.0 * (x / 13.0 + 1.0).sin() + 3.0 * (x / 5.3).sin()
}

fn near_hill(x: f64) -> f64 {
    138.0 + 14.0 * (x / 55.0 + 2.0).sin() + 4.0 * (x / 11.0).sin()
}

/// A landscape: sky with a sun and clouds, two ranges of hills, a house, a tree, grass
/// texture and a little sensor noise; soft and hard edges, gradients and detail.
fn scene() -> RgbImage {
    let mut noise = Rng(7);
    let house_x = (58.0, 102.0);
    let ground = near_hill(80.0) + 6.0;
    let (wall_top, roof_top) = (ground - 26.0, ground - 48.0);
    let tree = (176.0, near_hill(176.0) - 30.0, 20.0);
    ImageBuffer::from_fn(WIDTH, HEIGHT, |px, py| {
        let (x, y) = (f64::from(px) + 0.5, f64::from(py) + 0.5);
        // Sky: deep blue above, pale at the horizon, a warm glow around the sun.
        let h = (y / 120.0).min(1.0);
        let mut c = lerp([0.22, 0.42, 0.78], [0.86, 0.90, 0.94], h.powf(1.4));
        let (sx, sy) = (196.0, 44.0);
        let d = ((x - sx).powi(2) + (y - sy).powi(2)).sqrt();
        let glow = (-(d * d) / (2.0 * 38.0 * 38.0)).exp() * 0.25;
        c = lerp(c, [1.0, 0.88, 0.62], glow);
        c = lerp(c, [1.0, 0.97, 0.82], 1.0 - smoothstep(14.0, 17.0, d));
        // Clouds: thresholded fractal noise, stretched sideways, thinning downwards.
        let cloud = fbm(x / 48.0, y / 18.0, 5, 11);
        let amount = smoothstep(0.52, 0.72, cloud) * (1.0 - smoothstep(40.0, 95.0, y));
        c = lerp(c, [0.97, 0.97, 0.98], amount * 0.9);
        // Far hills, hazy with distance.
        let edge = smoothstep(-0.8, 0.8, y - far_hills(x));
        let far = lerp(
            [0.36, 0.50, 0.52],
            [0.30, 0.42, 0.40],
            fbm(x / 20.0, y / 20.0, 3, 23),
        );
        c = lerp(c, far, edge);
        // The near hill: grass with texture, darker towards the bottom.
        let edge = smoothstep(-0.7, 0.7, y - near_hill(x));
        let grass_tex = fbm(x / 3.0, y / 1.5, 4, 31);
        let depth = ((y - near_hill(x)) / 60.0).clamp(0.0, 1.0);
        let grass = lerp(
            [0.36, 0.58, 0.22],
            [0.18, 0.36, 0.12],
            0.5 * depth + 0.5 * grass_tex,
        );
        c = lerp(c, grass, edge);
        // The house: walls, a roof, a window and a door; hard edges.
        let inside_x = x >= house_x.0 && x < house_x.1;
        if inside_x && y >= wall_top && y < ground {
            let shade = 0.94 + 0.06 * fbm(x / 2.0, y / 2.0, 2, 41);
            c = [0.82 * shade, 0.72 * shade, 0.56 * shade];
            if (x - 68.0).abs() < 5.0 && (y - (wall_top + 9.0)).abs() < 5.0 {
                c = [0.20, 0.25, 0.34];
                if (x - 68.0).abs() < 0.6 || (y - (wall_top + 9.0)).abs() < 0.6 {
                    c = [0.9, 0.9, 0.85];
                }
            }
            if (x - 88.0).abs() < 4.5 && y > ground - 15.0 {
                c = [0.42, 0.26, 0.16];
            }
        }
        let half = (house_x.1 - house_x.0) / 2.0 + 4.0;
        let mid = (house_x.0 + house_x.1) / 2.0;
        let roof_edge = (y - roof_top) / (wall_top - roof_top) * half - (x - mid).abs();
        if y >= roof_top && y < wall_top {
            let cover = smoothstep(-0.7, 0.7, roof_edge);
            let tiles = if ((y - roof_top) as i64) % 4 == 0 {
                0.8
            } else {
                1.0
            };
            c = lerp(c, [0.56 * tiles, 0.20 * tiles, 0.14 * tiles], cover);
        }
        // The tree: a trunk and a round crown with a ragged edge and leafy texture.
        let (tx, ty, r) = tree;
        if (x - tx).abs() < 3.0 && y > ty && y < near_hill(tx) + 4.0 {
            c = [0.30, 0.20, 0.12];
        }
        let d = ((x - tx).powi(2) + (y - ty).powi(2)).sqrt();
        let ragged = r + 4.0 * (fbm(x / 4.0, y / 4.0, 3, 53) - 0.5);
        let crown = 1.0 - smoothstep(ragged - 1.0, ragged + 1.0, d);
        let leaves = fbm(x / 2.5, y / 2.5, 3, 59);
        let lit = ((tx + 8.0 - x) + (ty - 8.0 - y)).max(-40.0) / 80.0;
        let leaf = lerp(
            [0.10, 0.28, 0.10],
            [0.30, 0.52, 0.20],
            (leaves + lit).clamp(0.0, 1.0),
        );
        c = lerp(c, leaf, crown);
        // Vignette and sensor noise.
        let (cx, cy) = (x / f64::from(WIDTH) - 0.5, y / f64::from(HEIGHT) - 0.5);
        let vignette = 1.0 - 0.25 * (cx * cx + cy * cy);
        let grain = 0.012 * noise.gauss();
        Rgb(c.map(|v| ((v * vignette + grain).clamp(0.0, 1.0) * 255.0).round() as u8))
    })
}

/// A two-pole resonator with unity gain at 0 Hz, the classic formant filter.
struct Resonator {
    y1: f64,
    y2: f64,
}

impl Resonator {
    fn step(&mut self, x: f64, freq: f64, bandwidth: f64, rate: f64) -> f64 {
        let c = -(-2.0 * PI * bandwidth / rate).exp();
        let b = 2.0 * (-PI * bandwidth / rate).exp() * (2.0 * PI * freq / rate).cos();
        let a = 1.0 - b - c;
        let y = a * x + b * self.y1 + c * self.y2;
        self.y2 = self.y1;
        self.y1 = y;
        y
    }
}

/// A syllable: when it starts and ends (s), its vowel's first three formants (Hz), and
/// the length of the noisy consonant before it (s; 0 for none).
struct Syllable {
    start: f64,
    end: f64,
    formants: [f64; 3],
    consonant: f64,
}

/// Voice-like speech: a band-limited glottal source with a pitch contour (declination,
/// a rise on the stressed syllable, slight jitter) through three formant resonators that
/// glide between vowels, with syllable envelopes, noisy consonant onsets and a little
/// breath noise. Not any language, but with the rhythm and spectrum of speech.
fn voice() -> Vec<i16> {
    let rate = f64::from(SAMPLE_RATE);
    let n = (SECONDS * rate) as usize;
    let a = [730.0, 1090.0, 2440.0];
    let i = [300.0, 2250.0, 3000.0];
    let u = [320.0, 870.0, 2240.0];
    let e = [530.0, 1840.0, 2480.0];
    let o = [570.0, 840.0, 2410.0];
    let syllables = [
        Syllable {
            start: 0.12,
            end: 0.34,
            formants: a,
            consonant: 0.0,
        },
        Syllable {
            start: 0.36,
            end: 0.55,
            formants: i,
            consonant: 0.05,
        },
        Syllable {
            start: 0.58,
            end: 0.90,
            formants: o,
            consonant: 0.03,
        },
        Syllable {
            start: 1.02,
            end: 1.20,
            formants: e,
            consonant: 0.06,
        },
        Syllable {
            start: 1.22,
            end: 1.48,
            formants: u,
            consonant: 0.0,
        },
        Syllable {
            start: 1.52,
            end: 1.86,
            formants: a,
            consonant: 0.04,
        },
    ];
    let mut rng = Rng(99);
    let mut phase = 0.0f64;
    let mut jitter = 0.0;
    let mut formants = a;
    let mut tract = [
        Resonator { y1: 0.0, y2: 0.0 },
        Resonator { y1: 0.0, y2: 0.0 },
        Resonator { y1: 0.0, y2: 0.0 },
    ];
    let mut hiss = Resonator { y1: 0.0, y2: 0.0 };
    let mut out = Vec::with_capacity(n);
    for k in 0..n {
        let t = k as f64 / rate;
        // Pitch: falling over the phrase, a rise on the third syllable, slow jitter.
        jitter = 0.995 * jitter + 0.005 * rng.gauss();
        let f0 =
            132.0 - 18.0 * t / SECONDS + 22.0 * (-((t - 0.72) / 0.12).powi(2)).exp() + 4.0 * jitter;
        phase = (phase + f0 / rate).fract();
        // A sawtooth made of the harmonics below 7 kHz (no aliasing), tilted further
        // by the 1/k amplitudes, like a glottal pulse train.
        let harmonics = (7000.0 / f0) as usize;
        let source: f64 = (1..=harmonics)
            .map(|h| (2.0 * PI * h as f64 * phase).sin() / h as f64)
            .sum::<f64>()
            * 0.5;
        let mut voiced = 0.0;
        let mut consonant = 0.0;
        for s in &syllables {
            let target = s.formants;
            if t >= s.start - 0.08 && t < s.end {
                // Coarticulation: glide towards the vowel over ~20 ms.
                for (f, g) in formants.iter_mut().zip(target) {
                    *f += (g - *f) * 0.003;
                }
            }
            if t >= s.start && t < s.end {
                let attack = smoothstep(s.start, s.start + 0.03, t);
                let release = 1.0 - smoothstep(s.end - 0.07, s.end, t);
                // Louder on the stressed third syllable.
                let stress = if s.formants == o { 1.0 } else { 0.75 };
                voiced += attack * release * stress;
            }
            if s.consonant > 0.0 && t >= s.start - s.consonant && t < s.start {
                let x = (t - (s.start - s.consonant)) / s.consonant;
                consonant += (PI * x).sin().powi(2);
            }
        }
        let mut y = source * voiced + 0.002 * rng.gauss();
        for (r, (f, bw)) in tract
            .iter_mut()
            .zip(formants.iter().zip([70.0, 100.0, 140.0]))
        {
            y = r.step(y, *f, bw, rate) * if *f > 1500.0 { 1.6 } else { 1.0 };
        }
        let fricative = hiss.step(rng.gauss(), 4500.0, 1800.0, rate) * consonant * 0.25;
        out.push(y + fricative);
    }
    let peak = out.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let gain = 0.7 / peak;
    out.iter()
        .map(|v| (v * gain * 32767.0).round() as i16)
        .collect()
}

fn wav_bytes(samples: &[i16]) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: SAMPLE_RATE,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut buf = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut buf, spec).unwrap();
    for &s in samples {
        w.write_sample(s).unwrap();
    }
    w.finalize().unwrap();
    buf.into_inner()
}

#[test]
fn committed_fixtures_are_what_the_generator_makes() {
    let image = scene();
    let audio = voice();
    let dir = fixtures_dir();
    if std::env::var_os("IPC_REGENERATE_FIXTURES").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        image
            .save_with_format(dir.join("sample.png"), image::ImageFormat::Png)
            .unwrap();
        std::fs::write(dir.join("sample.wav"), wav_bytes(&audio)).unwrap();
        return;
    }
    let committed = image::open(dir.join("sample.png")).unwrap().to_rgb8();
    assert_eq!(committed.dimensions(), (WIDTH, HEIGHT));
    let worst = committed
        .as_raw()
        .iter()
        .zip(image.as_raw())
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap();
    assert!(worst <= 1, "sample.png differs by {worst}; regenerate it");

    let mut r = hound::WavReader::open(dir.join("sample.wav")).unwrap();
    assert_eq!(r.spec().sample_rate, SAMPLE_RATE);
    assert_eq!(r.spec().channels, 1);
    let committed: Vec<i16> = r.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(committed.len(), audio.len());
    let worst = committed
        .iter()
        .zip(&audio)
        .map(|(&a, &b)| a.abs_diff(b))
        .max()
        .unwrap();
    assert!(worst <= 1, "sample.wav differs by {worst}; regenerate it");
}
