//! The generator of codec-tests/: deterministic packs, valid vectors with their decoded
//! V and reconstructions, and invalid vectors with the error each must produce.

use std::path::Path;

use ipc_codec::container::{write_file, Header, HEADER_LEN};
use ipc_codec::edge_filter::{EdgeFilter, EdgeTaps};
use ipc_codec::entropy::PayloadCoding;
use ipc_codec::pack::synthetic::SyntheticPack;
use ipc_codec::pack::WeightGain;
use ipc_codec::restoration::RestorationTaps;
use ipc_codec::rng::SplitMix64;
use ipc_codec::{
    encode_quantised_as, Decoded, Decoder, FileFormat, Geometry, ImagePixels, ModelPack,
};
use serde_json::json;

use super::sha256_hex;

/// Whether the run should rewrite codec-tests/ (`IPC_BLESS=1`).
pub fn blessing() -> bool {
    std::env::var_os("IPC_BLESS").is_some_and(|v| v == "1")
}

struct Packs {
    image: ModelPack,
    audio: ModelPack,
    /// The same shapes in the instance-input orientation (spec/model-pack.md §4.2).
    image_instance: ModelPack,
    audio_instance: ModelPack,
    /// Instance-input packs with neighbour tables (spec/model-pack.md §5.1).
    image_neighbour: ModelPack,
    audio_neighbour: ModelPack,
    /// Packs with learned gains after weight normalisation (spec/model-pack.md §4.2):
    /// the image one on every layer, in the instance-input orientation; the audio one
    /// on the output layer only.
    image_gain: ModelPack,
    audio_gain: ModelPack,
    /// Packs whose layers before the modulated one are wider than the rest
    /// (`pre_width`, spec/model-pack.md §3.1, §4): the image one in the instance-input
    /// orientation (V `[24, 4]`), the audio one in the shared-input orientation (U
    /// `[24, 4]`).
    image_pre_width: ModelPack,
    audio_pre_width: ModelPack,
}

impl Packs {
    fn get(&self, key: &str) -> &ModelPack {
        match key {
            "image" => &self.image,
            "audio" => &self.audio,
            "image-instance-input" => &self.image_instance,
            "audio-instance-input" => &self.audio_instance,
            "image-neighbour" => &self.image_neighbour,
            "audio-neighbour" => &self.audio_neighbour,
            "image-gain" => &self.image_gain,
            "audio-gain" => &self.audio_gain,
            "image-pre-width" => &self.image_pre_width,
            "audio-pre-width" => &self.audio_pre_width,
            k => panic!("no pack {k}"),
        }
    }
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// V values for a test vector: mostly small, with a share of large values that take
/// the escape path.
fn random_v(rng: &mut SplitMix64, len: usize, escapes: bool) -> Vec<i32> {
    (0..len)
        .map(|_| {
            let r = rng.next_u64();
            if escapes && r % 11 == 0 {
                ((rng.next_u64() as i32) >> (r % 29)).wrapping_add(1)
            } else {
                (r >> 16) as i32 % 7 - 3
            }
        })
        .collect()
}

fn image(width: u32, height: u32, channels: u8, bit_depth: u8) -> Geometry {
    Geometry::Image {
        width,
        height,
        channels,
        bit_depth,
    }
}

fn audio(frames: u32, channels: u8) -> Geometry {
    Geometry::Audio {
        sample_rate: 16_000,
        frames,
        channels,
        bit_depth: 16,
    }
}

/// A valid vector: name, pack key, geometry, quality level, step override, escapes.
type Case = (&'static str, &'static str, Geometry, u8, Option<u32>, bool);

/// Version 2 with neighbour contexts (spec/bitstream.md §7.5) and the edge filter
/// (§8.5): what the encoder writes with a pack that has neighbour tables.
const V2_NEIGHBOUR: FileFormat = FileFormat {
    version: 2,
    coding: PayloadCoding::NeighbourContexts,
    edge_filter: EdgeFilter::Quarter,
    restoration: None,
};
/// Version 2 without flags: coded and reconstructed as version 1.
const V2_PLAIN: FileFormat = FileFormat {
    version: 2,
    coding: PayloadCoding::PerElement,
    edge_filter: EdgeFilter::Off,
    restoration: None,
};
/// Version 2 with the edge filter only.
const V2_EDGE_FILTER: FileFormat = FileFormat {
    version: 2,
    coding: PayloadCoding::PerElement,
    edge_filter: EdgeFilter::Quarter,
    restoration: None,
};

/// Taps of the fitted edge filter (spec/bitstream.md §8.6) for the vectors: of the size
/// an encoder fits to photos, small enough that each pass moves a sample by at most
/// one unit more when the synthesis differs by one (hence the tolerance of 3).
const TAPS: EdgeTaps = EdgeTaps([[2, -1, 3, 1, -1], [1, 4, -8, 5, 4], [19, -13, 21, 5, -6]]);
/// Version 2 with neighbour contexts and the fitted edge filter.
const V2_NEIGHBOUR_FITTED: FileFormat = FileFormat {
    version: 2,
    coding: PayloadCoding::NeighbourContexts,
    edge_filter: EdgeFilter::Fitted(TAPS),
    restoration: None,
};
/// Version 2 with the fitted edge filter only.
const V2_FITTED: FileFormat = FileFormat {
    version: 2,
    coding: PayloadCoding::PerElement,
    edge_filter: EdgeFilter::Fitted(TAPS),
    restoration: None,
};

/// Taps of the restoration filter (spec/bitstream.md §8.7) for the vectors: as small
/// as an encoder fits to photos (hence a tolerance of 3 with the fitted edge filter).
const RESTORATION: RestorationTaps = RestorationTaps {
    spatial: [3, -1, 1, 0, 1, 2, 1, 0, -1, 1, -1, 1],
    cross: 2,
};
/// Version 2 with neighbour contexts, the fitted edge filter and the restoration filter.
const V2_ALL_FILTERS: FileFormat = FileFormat {
    version: 2,
    coding: PayloadCoding::NeighbourContexts,
    edge_filter: EdgeFilter::Fitted(TAPS),
    restoration: Some(RESTORATION),
};
/// Version 2 with the restoration filter only.
const V2_RESTORATION: FileFormat = FileFormat {
    version: 2,
    coding: PayloadCoding::PerElement,
    edge_filter: EdgeFilter::Off,
    restoration: Some(RESTORATION),
};

/// Writes everything under `dir` (packs/, vectors/, invalid/, manifest.json).
pub fn write_all(dir: &Path) {
    let image_file = SyntheticPack::small_image().build().to_pack_file().unwrap();
    let audio_file = SyntheticPack::small_audio().build().to_pack_file().unwrap();
    let image_ii_file = SyntheticPack::small_image()
        .instance_input()
        .build()
        .to_pack_file()
        .unwrap();
    let audio_ii_file = SyntheticPack::small_audio()
        .instance_input()
        .build()
        .to_pack_file()
        .unwrap();
    write(&dir.join("packs/synthetic-image.ipcpack"), &image_file);
    write(&dir.join("packs/synthetic-audio.ipcpack"), &audio_file);
    write(
        &dir.join("packs/synthetic-image-instance-input.ipcpack"),
        &image_ii_file,
    );
    write(
        &dir.join("packs/synthetic-audio-instance-input.ipcpack"),
        &audio_ii_file,
    );
    let image_nb_file = SyntheticPack::small_image()
        .instance_input()
        .with_neighbour_tables()
        .build()
        .to_pack_file()
        .unwrap();
    let audio_nb_file = SyntheticPack::small_audio()
        .instance_input()
        .with_neighbour_tables()
        .build()
        .to_pack_file()
        .unwrap();
    write(
        &dir.join("packs/synthetic-image-neighbour.ipcpack"),
        &image_nb_file,
    );
    write(
        &dir.join("packs/synthetic-audio-neighbour.ipcpack"),
        &audio_nb_file,
    );
    let image_gain_file = SyntheticPack::small_image()
        .instance_input()
        .with_weight_gain(WeightGain::EveryLayer)
        .build()
        .to_pack_file()
        .unwrap();
    let audio_gain_file = SyntheticPack::small_audio()
        .with_weight_gain(WeightGain::Output)
        .build()
        .to_pack_file()
        .unwrap();
    write(
        &dir.join("packs/synthetic-image-gain.ipcpack"),
        &image_gain_file,
    );
    write(
        &dir.join("packs/synthetic-audio-gain.ipcpack"),
        &audio_gain_file,
    );
    let image_pw_file = SyntheticPack::small_image()
        .instance_input()
        .with_pre_width(24)
        .build()
        .to_pack_file()
        .unwrap();
    let audio_pw_file = SyntheticPack::small_audio()
        .with_pre_width(24)
        .build()
        .to_pack_file()
        .unwrap();
    write(
        &dir.join("packs/synthetic-image-pre-width.ipcpack"),
        &image_pw_file,
    );
    write(
        &dir.join("packs/synthetic-audio-pre-width.ipcpack"),
        &audio_pw_file,
    );
    let packs = Packs {
        image: ModelPack::from_pack_file(&image_file).unwrap(),
        audio: ModelPack::from_pack_file(&audio_file).unwrap(),
        image_instance: ModelPack::from_pack_file(&image_ii_file).unwrap(),
        audio_instance: ModelPack::from_pack_file(&audio_ii_file).unwrap(),
        image_neighbour: ModelPack::from_pack_file(&image_nb_file).unwrap(),
        audio_neighbour: ModelPack::from_pack_file(&audio_nb_file).unwrap(),
        image_gain: ModelPack::from_pack_file(&image_gain_file).unwrap(),
        audio_gain: ModelPack::from_pack_file(&audio_gain_file).unwrap(),
        image_pre_width: ModelPack::from_pack_file(&image_pw_file).unwrap(),
        audio_pre_width: ModelPack::from_pack_file(&audio_pw_file).unwrap(),
    };
    let pack_entry = |file: &str, pack: &ModelPack| json!({ "file": file, "id": pack.id().to_string(), "name": pack.config().name });

    let mut rng = SplitMix64(2024);
    let cases: Vec<Case> = vec![
        ("image-rgb-1x1", "image", image(1, 1, 3, 8), 0, None, false),
        (
            "image-rgb-9x5-one-padded-tile",
            "image",
            image(9, 5, 3, 8),
            0,
            None,
            false,
        ),
        (
            "image-rgb-40x24-partial-tiles",
            "image",
            image(40, 24, 3, 8),
            2,
            None,
            false,
        ),
        (
            "image-grey-17x11",
            "image",
            image(17, 11, 1, 8),
            1,
            None,
            false,
        ),
        (
            "image-rgb16-12x8",
            "image",
            image(12, 8, 3, 16),
            2,
            None,
            false,
        ),
        (
            "image-rgb-16x16-escapes",
            "image",
            image(16, 16, 3, 8),
            0,
            Some(300),
            true,
        ),
        (
            "image-rgb-24x8-step-override",
            "image",
            image(24, 8, 3, 8),
            1,
            Some(5000),
            false,
        ),
        ("audio-mono-1000", "audio", audio(1000, 1), 0, None, false),
        ("audio-stereo-300", "audio", audio(300, 2), 1, None, true),
        ("audio-mono-1", "audio", audio(1, 1), 1, None, false),
    ];
    let mut vectors: Vec<_> = cases
        .into_iter()
        .map(|case| valid_vector(dir, &packs, &mut rng, case, FileFormat::VERSION_1))
        .collect();

    let invalid = invalid_vectors(&packs, &mut rng);
    let mut invalid_entries = Vec::new();
    for (name, key, bytes, error, what) in invalid {
        write(&dir.join(format!("invalid/{name}.ipc")), &bytes);
        invalid_entries.push(
            json!({ "file": format!("{name}.ipc"), "pack": key, "error": error, "what": what }),
        );
    }

    // The instance-input vectors come after everything above, from their own seed, so
    // that the earlier vectors keep their bytes.
    let mut rng = SplitMix64(2026);
    let instance_cases: Vec<Case> = vec![
        (
            "image-rgb-40x24-instance-input",
            "image-instance-input",
            image(40, 24, 3, 8),
            2,
            None,
            false,
        ),
        (
            "image-grey-9x5-instance-input-escapes",
            "image-instance-input",
            image(9, 5, 1, 8),
            0,
            Some(300),
            true,
        ),
        (
            "audio-mono-1000-instance-input",
            "audio-instance-input",
            audio(1000, 1),
            1,
            None,
            false,
        ),
    ];
    vectors.extend(
        instance_cases
            .into_iter()
            .map(|case| valid_vector(dir, &packs, &mut rng, case, FileFormat::VERSION_1)),
    );

    // Version 2 (spec/bitstream.md §2, §7.5), from their own seed.
    let mut rng = SplitMix64(2027);
    let v2_cases: Vec<(Case, FileFormat)> = vec![
        (
            (
                "image-rgb-40x24-v2-neighbour",
                "image-neighbour",
                image(40, 24, 3, 8),
                2,
                None,
                false,
            ),
            V2_NEIGHBOUR,
        ),
        (
            (
                "image-grey-17x11-v2-neighbour-escapes",
                "image-neighbour",
                image(17, 11, 1, 8),
                0,
                Some(300),
                true,
            ),
            V2_NEIGHBOUR,
        ),
        (
            (
                "audio-stereo-300-v2-neighbour-escapes",
                "audio-neighbour",
                audio(300, 2),
                1,
                None,
                true,
            ),
            V2_NEIGHBOUR,
        ),
        (
            (
                "image-rgb-9x5-v2-plain",
                "image",
                image(9, 5, 3, 8),
                1,
                None,
                false,
            ),
            V2_PLAIN,
        ),
        (
            (
                "image-rgb-40x24-v2-edge-filter",
                "image-neighbour",
                image(40, 24, 3, 8),
                2,
                None,
                false,
            ),
            V2_EDGE_FILTER,
        ),
        (
            (
                "image-rgb16-20x12-v2-edge-filter",
                "image",
                image(20, 12, 3, 16),
                2,
                None,
                false,
            ),
            V2_EDGE_FILTER,
        ),
        (
            (
                "audio-mono-1000-v2-edge-filter",
                "audio",
                audio(1000, 1),
                1,
                None,
                false,
            ),
            V2_EDGE_FILTER,
        ),
    ];
    vectors.extend(
        v2_cases
            .into_iter()
            .map(|(case, format)| valid_vector(dir, &packs, &mut rng, case, format)),
    );
    let mut v2_invalid = v2_invalid_vectors(&packs, &mut rng);

    // The fitted edge filter (spec/bitstream.md §8.6), from its own seed. The image
    // is 42 x 27 so that its last tiles are 2 and 3 samples long.
    let mut rng = SplitMix64(2028);
    let fitted_cases: Vec<(Case, FileFormat)> = vec![
        (
            (
                "image-rgb-42x27-v2-fitted-edge-filter",
                "image-neighbour",
                image(42, 27, 3, 8),
                2,
                None,
                false,
            ),
            V2_NEIGHBOUR_FITTED,
        ),
        (
            (
                "image-rgb16-20x12-v2-fitted-edge-filter",
                "image",
                image(20, 12, 3, 16),
                1,
                None,
                false,
            ),
            V2_FITTED,
        ),
        (
            (
                "audio-stereo-300-v2-fitted-edge-filter",
                "audio-neighbour",
                audio(300, 2),
                1,
                None,
                false,
            ),
            V2_NEIGHBOUR_FITTED,
        ),
    ];
    vectors.extend(
        fitted_cases
            .into_iter()
            .map(|(case, format)| valid_vector(dir, &packs, &mut rng, case, format)),
    );
    v2_invalid.extend(fitted_invalid_vectors(&packs, &mut rng));

    // The restoration filter (spec/bitstream.md §8.7), from its own seed.
    let mut rng = SplitMix64(2029);
    let restoration_cases: Vec<(Case, FileFormat)> = vec![
        (
            (
                "image-rgb-42x27-v2-all-filters",
                "image-neighbour",
                image(42, 27, 3, 8),
                2,
                None,
                false,
            ),
            V2_ALL_FILTERS,
        ),
        (
            (
                "image-grey-17x11-v2-restoration",
                "image",
                image(17, 11, 1, 8),
                1,
                None,
                false,
            ),
            V2_RESTORATION,
        ),
        (
            (
                "audio-stereo-300-v2-restoration",
                "audio",
                audio(300, 2),
                1,
                None,
                false,
            ),
            V2_RESTORATION,
        ),
    ];
    vectors.extend(
        restoration_cases
            .into_iter()
            .map(|(case, format)| valid_vector(dir, &packs, &mut rng, case, format)),
    );
    v2_invalid.extend(restoration_invalid_vectors(&packs, &mut rng));

    // Packs with learned gains (spec/model-pack.md §4.2), from their own seed.
    let mut rng = SplitMix64(2030);
    let gain_cases: Vec<(Case, FileFormat)> = vec![
        (
            (
                "image-rgb-40x24-gain-every-layer",
                "image-gain",
                image(40, 24, 3, 8),
                2,
                None,
                false,
            ),
            FileFormat::VERSION_1,
        ),
        (
            (
                "audio-mono-1000-gain-output",
                "audio-gain",
                audio(1000, 1),
                1,
                None,
                false,
            ),
            V2_PLAIN,
        ),
    ];
    vectors.extend(
        gain_cases
            .into_iter()
            .map(|(case, format)| valid_vector(dir, &packs, &mut rng, case, format)),
    );
    // Packs with a pre_width (spec/model-pack.md §4), from their own seed.
    let mut rng = SplitMix64(2031);
    let pre_width_cases: Vec<(Case, FileFormat)> = vec![
        (
            (
                "image-rgb-40x24-pre-width",
                "image-pre-width",
                image(40, 24, 3, 8),
                2,
                None,
                false,
            ),
            V2_PLAIN,
        ),
        (
            (
                "audio-mono-1000-pre-width",
                "audio-pre-width",
                audio(1000, 1),
                1,
                None,
                false,
            ),
            FileFormat::VERSION_1,
        ),
    ];
    vectors.extend(
        pre_width_cases
            .into_iter()
            .map(|(case, format)| valid_vector(dir, &packs, &mut rng, case, format)),
    );
    for (name, key, bytes, error, what) in v2_invalid {
        write(&dir.join(format!("invalid/{name}.ipc")), &bytes);
        invalid_entries.push(
            json!({ "file": format!("{name}.ipc"), "pack": key, "error": error, "what": what }),
        );
    }

    let manifest = json!({
        "format": "ipc-codec conformance manifest",
        "bitstream_versions": [1, 2],
        "packs": {
            "image": pack_entry("synthetic-image.ipcpack", &packs.image),
            "audio": pack_entry("synthetic-audio.ipcpack", &packs.audio),
            "image-instance-input": pack_entry("synthetic-image-instance-input.ipcpack", &packs.image_instance),
            "audio-instance-input": pack_entry("synthetic-audio-instance-input.ipcpack", &packs.audio_instance),
            "image-neighbour": pack_entry("synthetic-image-neighbour.ipcpack", &packs.image_neighbour),
            "audio-neighbour": pack_entry("synthetic-audio-neighbour.ipcpack", &packs.audio_neighbour),
            "image-gain": pack_entry("synthetic-image-gain.ipcpack", &packs.image_gain),
            "audio-gain": pack_entry("synthetic-audio-gain.ipcpack", &packs.audio_gain),
            "image-pre-width": pack_entry("synthetic-image-pre-width.ipcpack", &packs.image_pre_width),
            "audio-pre-width": pack_entry("synthetic-audio-pre-width.ipcpack", &packs.audio_pre_width),
        },
        "vectors": vectors,
        "invalid": invalid_entries,
    });
    let text = serde_json::to_string_pretty(&manifest).unwrap() + "\n";
    write(&dir.join("manifest.json"), text.as_bytes());
}

/// Writes one valid vector and its expected output; returns its manifest entry.
fn valid_vector(
    dir: &Path,
    packs: &Packs,
    rng: &mut SplitMix64,
    (name, key, geometry, level, step, escapes): Case,
    file_format: FileFormat,
) -> serde_json::Value {
    let pack = packs.get(key);
    let cfg = pack.config();
    let tiles = geometry.tile_count(cfg.tile_width as u64, cfg.tile_height as u64);
    let v = random_v(rng, tiles as usize * cfg.v_len(), escapes);
    let file = encode_quantised_as(pack, geometry, level, step, &v, file_format).unwrap();
    let decoded = Decoder::with_options(
        pack,
        ipc_codec::DecodeOptions {
            threads: 1,
            ..Default::default()
        },
    )
    .decode(&file)
    .unwrap();
    let (raw, format): (Vec<u8>, &str) = match &decoded {
        Decoded::Image(img) => match &img.pixels {
            ImagePixels::U8(p) => (p.clone(), "u8"),
            ImagePixels::U16(p) => (p.iter().flat_map(|x| x.to_le_bytes()).collect(), "u16le"),
        },
        Decoded::Audio(a) => (
            a.samples.iter().flat_map(|x| x.to_le_bytes()).collect(),
            "i16le",
        ),
    };
    let v_bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    write(&dir.join(format!("vectors/{name}.ipc")), &file);
    write(&dir.join(format!("vectors/{name}.expected.raw")), &raw);
    json!({
        "file": format!("{name}.ipc"),
        "pack": key,
        "version": file_format.version,
        "neighbour_contexts": file_format.coding == PayloadCoding::NeighbourContexts,
        "edge_filter": match file_format.edge_filter {
            EdgeFilter::Off => "off",
            EdgeFilter::Quarter => "quarter",
            EdgeFilter::Fitted(_) => "fitted",
        },
        "kind": geometry.modality().name(),
        "sha256": sha256_hex(&file),
        "bytes": file.len(),
        "tiles": tiles,
        "v_sha256": sha256_hex(&v_bytes),
        "expected": format!("{name}.expected.raw"),
        "sample_format": format,
        "expected_sha256": sha256_hex(&raw),
        // The edge filter (§8.5) can turn a difference of 1 in the synthesis into 2;
        // each pass of the fitted filter (§8.6), with these vectors' small taps, adds 1.
        // So can the restoration filter (§8.7), whose small taps here add at most 1.
        "restoration_filter": file_format.restoration.is_some(),
        "tolerance": { "max_abs": match file_format.edge_filter {
            EdgeFilter::Off => 1,
            EdgeFilter::Quarter => 2,
            EdgeFilter::Fitted(_) => 3,
        } + u8::from(file_format.restoration.is_some()) },
    })
}

/// Rewrites header bytes of a valid file and fixes the checksum, so the decoder reaches
/// the check under test.
fn patched(file: &[u8], patch: impl FnOnce(&mut [u8])) -> Vec<u8> {
    let mut f = file.to_vec();
    patch(&mut f);
    let body = f.len() - 4;
    let crc = crc32(&f[..body]);
    f[body..].copy_from_slice(&crc.to_le_bytes());
    f
}

/// CRC-32 (ISO-HDLC), bitwise, written out here so the vectors do not depend on the
/// decoder's own checksum code.
fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

type Invalid = (
    &'static str,
    &'static str,
    Vec<u8>,
    &'static str,
    &'static str,
);

fn invalid_vectors(packs: &Packs, rng: &mut SplitMix64) -> Vec<Invalid> {
    let pack = &packs.image;
    let v = random_v(rng, 6 * 4 * 16, false);
    let good = encode_quantised_as(
        pack,
        image(20, 10, 3, 8),
        1,
        None,
        &v,
        FileFormat::VERSION_1,
    )
    .unwrap();
    let len = good.len();
    let header = Header::parse(&good).unwrap();
    let payload = &good[HEADER_LEN..len - 4];

    let mut out: Vec<Invalid> = vec![
        ("empty", "image", Vec::new(), "truncated", "zero bytes"),
        (
            "header-only-20-bytes",
            "image",
            good[..20].to_vec(),
            "truncated",
            "file cut inside the header",
        ),
        (
            "truncated-payload",
            "image",
            good[..len - 9].to_vec(),
            "truncated",
            "payload shorter than declared",
        ),
        (
            "bad-magic",
            "image",
            {
                let mut f = good.clone();
                f[1] = b'X';
                f
            },
            "bad-magic",
            "signature damaged",
        ),
        (
            "png-signature",
            "image",
            b"\x89PNG\r\n\x1a\n".to_vec(),
            "bad-magic",
            "a PNG file",
        ),
        (
            "bad-checksum",
            "image",
            {
                let mut f = good.clone();
                f[HEADER_LEN + 2] ^= 0x10;
                f
            },
            "checksum",
            "one payload bit flipped",
        ),
        (
            "trailing-bytes",
            "image",
            {
                let mut f = good.clone();
                f.extend_from_slice(b"junk");
                f
            },
            "trailing-data",
            "bytes after the checksum",
        ),
        (
            "future-version",
            "image",
            patched(&good, |f| f[4] = 3),
            "unsupported",
            "format version 3",
        ),
        (
            "reserved-flags",
            "image",
            patched(&good, |f| f[6] = 1),
            "unsupported",
            "flag bit 0 set in version 1, which reserves every flag",
        ),
        (
            "alpha-channel",
            "image",
            patched(&good, |f| f[32] = 4),
            "unsupported",
            "RGBA is not coded in version 1",
        ),
        (
            "modality-zero",
            "image",
            patched(&good, |f| f[5] = 0),
            "invalid-field",
            "reserved modality value",
        ),
        (
            "zero-width",
            "image",
            patched(&good, |f| f[24..28].copy_from_slice(&0u32.to_le_bytes())),
            "invalid-field",
            "width 0",
        ),
        (
            "zero-step",
            "image",
            patched(&good, |f| f[40..44].copy_from_slice(&0u32.to_le_bytes())),
            "invalid-field",
            "quantisation step 0",
        ),
        (
            "absurd-dimensions",
            "image",
            patched(&good, |f| {
                f[24..28].copy_from_slice(&u32::MAX.to_le_bytes());
                f[28..32].copy_from_slice(&u32::MAX.to_le_bytes());
            }),
            "limit-exceeded",
            "4294967295 x 4294967295 pixels",
        ),
        (
            "payload-length-beyond-file",
            "image",
            patched(&good, |f| {
                f[46..50].copy_from_slice(&(header.payload_len + 400).to_le_bytes())
            }),
            "truncated",
            "declared payload longer than the file",
        ),
        (
            "payload-length-unaligned",
            "image",
            patched(&good, |f| {
                f[46..50].copy_from_slice(&(header.payload_len - 1).to_le_bytes())
            }),
            "payload-alignment",
            "payload length not a multiple of 4",
        ),
        (
            "huge-payload-length",
            "image",
            patched(&good, |f| {
                f[46..50].copy_from_slice(&0xffff_fffcu32.to_le_bytes())
            }),
            "limit-exceeded",
            "payload length above the default limit",
        ),
        (
            "quality-level-out-of-range",
            "image",
            patched(&good, |f| f[44] = 200),
            "pack-mismatch",
            "level the pack lacks",
        ),
        (
            "tile-size-mismatch",
            "image",
            patched(&good, |f| f[36] = 16),
            "pack-mismatch",
            "tile width differs from the pack",
        ),
        (
            "audio-file-image-pack",
            "image",
            patched(&good, |f| {
                f[5] = 2;
                f[33] = 16;
                f[38] = 1;
            }),
            "pack-mismatch",
            "audio header with an image pack",
        ),
        (
            "wrong-pack",
            "audio",
            good.clone(),
            "wrong-pack",
            "image file given the audio pack",
        ),
    ];
    // A payload with a valid checksum whose range-coder state is invalid. Found by
    // searching seeded random payloads, so it is the same on every run.
    let model = pack.v_model(1).unwrap();
    let count = v.len();
    let corrupt = (0..)
        .map(|_| {
            (0..payload.len())
                .map(|_| rng.next_u64() as u8)
                .collect::<Vec<u8>>()
        })
        .find(|p| model.decode(p, count).is_err())
        .unwrap();
    let file = write_file(
        &Header {
            payload_len: 0,
            ..header
        },
        &corrupt,
    )
    .unwrap();
    out.push((
        "corrupt-payload",
        "image",
        file,
        "corrupt-payload",
        "range coder reaches an invalid state",
    ));
    out
}

/// Invalid version-2 files (spec/bitstream.md §3.1, §5.4).
fn v2_invalid_vectors(packs: &Packs, rng: &mut SplitMix64) -> Vec<Invalid> {
    let pack = &packs.image_neighbour;
    let v = random_v(rng, 6 * 64, false);
    let good = encode_quantised_as(pack, image(20, 10, 3, 8), 1, None, &v, V2_NEIGHBOUR).unwrap();
    // The same V for a pack without neighbour tables, with the flag set.
    let plain_pack = &packs.image_instance;
    let plain =
        encode_quantised_as(plain_pack, image(20, 10, 3, 8), 1, None, &v, V2_PLAIN).unwrap();
    vec![
        (
            "v2-reserved-flag",
            "image-neighbour",
            patched(&good, |f| f[6] |= 16),
            "unsupported",
            "version 2 with flag bit 4 set (reserved)",
        ),
        (
            "v2-neighbour-flag-pack-without-tables",
            "image-instance-input",
            patched(&plain, |f| f[6] = 1),
            "pack-mismatch",
            "neighbour contexts asked of a pack without neighbour tables",
        ),
        (
            "v2-neighbour-truncated-payload",
            "image-neighbour",
            good[..good.len() - 9].to_vec(),
            "truncated",
            "payload shorter than declared",
        ),
    ]
}

/// Invalid uses of the fitted edge filter (spec/bitstream.md §5.3.1, §5.5, §8.6).
fn fitted_invalid_vectors(packs: &Packs, rng: &mut SplitMix64) -> Vec<Invalid> {
    let pack = &packs.image;
    let v = random_v(rng, 6 * 64, false);
    let good = encode_quantised_as(pack, image(20, 10, 3, 8), 1, None, &v, V2_FITTED).unwrap();
    let header = Header::parse(&good).unwrap();
    vec![
        (
            "v2-both-edge-filters",
            "image",
            patched(&good, |f| f[6] |= 2),
            "invalid-field",
            "flags EDGE_FILTER and FITTED_EDGE_FILTER both set",
        ),
        (
            "v2-fitted-filter-payload-too-short",
            "image",
            write_file(&header, &[0; 12]).unwrap(),
            "invalid-field",
            "FITTED_EDGE_FILTER with a payload of 12 bytes, too short for its 16-byte block",
        ),
        (
            "v2-fitted-filter-reserved-byte",
            "image",
            patched(&good, |f| f[HEADER_LEN + 15] = 1),
            "unsupported",
            "the reserved byte of the edge filter block is set",
        ),
    ]
}

/// Invalid uses of the restoration filter (spec/bitstream.md §5.3.1, §5.5, §8.7).
fn restoration_invalid_vectors(packs: &Packs, rng: &mut SplitMix64) -> Vec<Invalid> {
    let pack = &packs.image;
    let v = random_v(rng, 6 * 64, false);
    let both = FileFormat {
        restoration: Some(RESTORATION),
        ..V2_FITTED
    };
    let good = encode_quantised_as(pack, image(20, 10, 3, 8), 1, None, &v, both).unwrap();
    let header = Header::parse(&good).unwrap();
    vec![
        (
            "v2-restoration-reserved-byte",
            "image",
            // The restoration block follows the edge filter's: its byte 13.
            patched(&good, |f| f[HEADER_LEN + 16 + 13] = 1),
            "unsupported",
            "a reserved byte of the restoration filter block is set",
        ),
        (
            "v2-two-blocks-payload-too-short",
            "image",
            write_file(&header, &[0; 28]).unwrap(),
            "invalid-field",
            "FITTED_EDGE_FILTER and RESTORATION_FILTER with a payload of 28 bytes, too short for their two blocks",
        ),
    ]
}
