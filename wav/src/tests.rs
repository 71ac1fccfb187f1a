//! The reader against hound (an independent writer) for every common format, and
//! hand-built files for what hound does not write: 64-bit floats, extensible headers,
//! streamed sizes, chunk padding and damaged files.

use super::*;

/// A WAV file: RIFF header, `fmt ` chunk body `fmt`, then `chunks` (id, body) in order,
/// where a `data` chunk's size field is `data_size` if given.
fn riff(fmt: &[u8], chunks: &[(&[u8; 4], &[u8])], data_size: Option<u32>) -> Vec<u8> {
    let mut body = b"WAVE".to_vec();
    let mut push = |id: &[u8; 4], bytes: &[u8], size: u32| {
        body.extend_from_slice(id);
        body.extend_from_slice(&size.to_le_bytes());
        body.extend_from_slice(bytes);
        if bytes.len() % 2 == 1 && id != b"data" {
            body.push(0);
        }
    };
    push(b"fmt ", fmt, fmt.len() as u32);
    for &(id, bytes) in chunks {
        let size = match (id, data_size) {
            (b"data", Some(s)) => s,
            _ => bytes.len() as u32,
        };
        push(id, bytes, size);
    }
    let mut file = b"RIFF".to_vec();
    file.extend_from_slice(&(body.len() as u32).to_le_bytes());
    file.extend(body);
    file
}

/// A plain `fmt ` body.
fn fmt(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
    let align = channels * bits.div_ceil(8);
    let mut f = Vec::new();
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&channels.to_le_bytes());
    f.extend_from_slice(&rate.to_le_bytes());
    f.extend_from_slice(&(rate * u32::from(align)).to_le_bytes());
    f.extend_from_slice(&align.to_le_bytes());
    f.extend_from_slice(&bits.to_le_bytes());
    f
}

/// A `WAVE_FORMAT_EXTENSIBLE` body with sub-format `tag`.
fn fmt_extensible(tag: u16, channels: u16, rate: u32, bits: u16, valid: u16) -> Vec<u8> {
    let mut f = fmt(TAG_EXTENSIBLE, channels, rate, bits);
    f.extend_from_slice(&22u16.to_le_bytes());
    f.extend_from_slice(&valid.to_le_bytes());
    f.extend_from_slice(&0u32.to_le_bytes());
    f.extend_from_slice(&tag.to_le_bytes());
    f.extend_from_slice(&SUBFORMAT_TAIL);
    f
}

fn f64_bytes(xs: &[f64]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn i16_bytes(xs: &[i16]) -> Vec<u8> {
    xs.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn read(file: &[u8]) -> Result<Audio, Error> {
    WavReader::new(file)?.read_all(1 << 20)
}

fn hound_file(spec: hound::WavSpec, values: &[f64]) -> Vec<u8> {
    let mut cursor = io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
    for &v in values {
        match spec.sample_format {
            hound::SampleFormat::Float => w.write_sample(v as f32).unwrap(),
            hound::SampleFormat::Int => {
                let full = f64::from(1u32 << (spec.bits_per_sample - 1));
                let s = (v * full).round().clamp(-full, full - 1.0) as i32;
                w.write_sample(s).unwrap();
            }
        }
    }
    w.finalize().unwrap();
    cursor.into_inner()
}

#[test]
fn reads_what_hound_writes_in_every_common_format() {
    let values: Vec<f64> = (0..600).map(|i| ((i as f64) * 0.37).sin() * 0.9).collect();
    for (bits, float, channels, described) in [
        (8, false, 1, "8-bit integer"),
        (16, false, 2, "16-bit integer"),
        (24, false, 3, "24-bit integer"),
        (32, false, 1, "32-bit integer"),
        (32, true, 2, "32-bit float"),
    ] {
        let spec = hound::WavSpec {
            channels,
            sample_rate: 22_050,
            bits_per_sample: bits,
            sample_format: if float {
                hound::SampleFormat::Float
            } else {
                hound::SampleFormat::Int
            },
        };
        let audio = read(&hound_file(spec, &values)).unwrap();
        assert_eq!(audio.format.describe(), described);
        assert_eq!(audio.format.channels, channels);
        assert_eq!(audio.format.sample_rate, 22_050);
        assert_eq!(audio.samples.len(), values.len());
        assert_eq!(audio.frames(), values.len() as u64 / u64::from(channels));
        // Within half a quantisation step of the value written, plus f32 rounding.
        let tolerance = if float {
            1e-7
        } else {
            0.5 / f64::from(1u32 << (bits - 1)) + 6e-8
        };
        for (i, (&got, &want)) in audio.samples.iter().zip(&values).enumerate() {
            assert!(
                (f64::from(got) - want).abs() <= tolerance,
                "{described}: sample {i} is {got}, wrote {want}"
            );
        }
        assert_eq!(audio.clipped, 0);
    }
}

#[test]
fn integer_scaling_at_the_extremes() {
    let data = [0x00u8, 0x80, 0xFF];
    let audio = read(&riff(&fmt(TAG_PCM, 1, 8000, 8), &[(b"data", &data)], None)).unwrap();
    assert_eq!(audio.samples, [-1.0, 0.0, 127.0 / 128.0]);

    let data = [0x00u8, 0x00, 0x80, 0xFF, 0xFF, 0x7F];
    let audio = read(&riff(&fmt(TAG_PCM, 1, 8000, 24), &[(b"data", &data)], None)).unwrap();
    assert_eq!(audio.samples, [-1.0, 8_388_607.0 / 8_388_608.0]);

    // 12-bit samples are left-justified in two bytes: 0x7FF0 is the largest.
    let data = i16_bytes(&[0x7FF0, -0x8000]);
    let audio = read(&riff(&fmt(TAG_PCM, 1, 8000, 12), &[(b"data", &data)], None)).unwrap();
    assert_eq!(
        audio.format.describe(),
        "12-bit integer in 16-bit containers"
    );
    assert_eq!(audio.samples, [0x7FF0 as f32 / 32768.0, -1.0]);
}

#[test]
fn reads_64_bit_floats_plain_and_extensible() {
    let values = [0.25, -0.5, 1.0, -1.0, 0.1];
    let plain = riff(
        &fmt(TAG_IEEE_FLOAT, 1, 16_000, 64),
        &[(b"data", &f64_bytes(&values))],
        None,
    );
    let extensible = riff(
        &fmt_extensible(TAG_IEEE_FLOAT, 1, 16_000, 64, 64),
        &[(b"data", &f64_bytes(&values))],
        None,
    );
    for file in [plain, extensible] {
        let audio = read(&file).unwrap();
        assert_eq!(audio.format.describe(), "64-bit float");
        let want: Vec<f32> = values.iter().map(|&v| v as f32).collect();
        assert_eq!(audio.samples, want);
    }
}

#[test]
fn extensible_integer_with_fewer_valid_bits() {
    // 20 valid bits in 24-bit containers, left-justified: scaled by the container.
    let data = [0x00u8, 0x00, 0x40, 0xF0, 0xFF, 0xFF];
    let file = riff(
        &fmt_extensible(TAG_PCM, 1, 48_000, 24, 20),
        &[(b"data", &data)],
        None,
    );
    let audio = read(&file).unwrap();
    assert_eq!(audio.format.valid_bits, 20);
    assert_eq!(
        audio.format.describe(),
        "20-bit integer in 24-bit containers"
    );
    assert_eq!(audio.samples, [0.5, -16.0 / 8_388_608.0]);
}

#[test]
fn float_samples_outside_the_range_are_clipped_and_counted() {
    let file = riff(
        &fmt(TAG_IEEE_FLOAT, 1, 16_000, 64),
        &[(b"data", &f64_bytes(&[3.0, -1e300, 0.5]))],
        None,
    );
    let audio = read(&file).unwrap();
    assert_eq!(audio.samples, [1.0, -1.0, 0.5]);
    assert_eq!(audio.clipped, 2);
}

#[test]
fn a_float_that_is_not_a_number_is_an_error_naming_it() {
    for bad in [f64::NAN, f64::INFINITY] {
        let file = riff(
            &fmt(TAG_IEEE_FLOAT, 2, 16_000, 64),
            &[(b"data", &f64_bytes(&[0.0, 0.1, 0.2, bad]))],
            None,
        );
        assert!(matches!(read(&file), Err(Error::NotFinite { sample: 3 })));
    }
}

#[test]
fn a_stream_of_unknown_length_is_read_to_its_end() {
    let pcm = i16_bytes(&[100, -200, 300, -400, 500]);
    for size in STREAMED_SIZES {
        let file = riff(&fmt(TAG_PCM, 1, 16_000, 16), &[(b"data", &pcm)], Some(size));
        let reader = WavReader::new(&file[..]).unwrap();
        assert_eq!(reader.declared_frames(), None, "size {size:#x}");
        let audio = reader.read_all(100).unwrap();
        assert_eq!(audio.samples.len(), 5, "size {size:#x}");
        assert_eq!(audio.samples[4], 500.0 / 32768.0);
    }
    // A stream longer than the limit stops at it; one exactly at it is read.
    let file = riff(
        &fmt(TAG_PCM, 1, 16_000, 16),
        &[(b"data", &pcm)],
        Some(u32::MAX),
    );
    assert_eq!(
        WavReader::new(&file[..])
            .unwrap()
            .read_all(5)
            .unwrap()
            .samples
            .len(),
        5
    );
    assert!(matches!(
        WavReader::new(&file[..]).unwrap().read_all(4),
        Err(Error::TooManySamples {
            limit: 4,
            declared: None
        })
    ));
}

#[test]
fn a_streamed_file_longer_than_a_read_block_is_read_whole() {
    let samples: Vec<i16> = (0..100_000).map(|i| (i % 6000) as i16).collect();
    let file = riff(
        &fmt(TAG_PCM, 2, 16_000, 16),
        &[(b"data", &i16_bytes(&samples))],
        Some(0),
    );
    let audio = read(&file).unwrap();
    assert_eq!(audio.samples.len(), samples.len());
    assert_eq!(audio.samples[99_999], f32::from(samples[99_999]) / 32768.0);
}

#[test]
fn a_declared_size_above_the_limit_is_refused_before_reading() {
    // 12 bytes of data declaring 2^31 - 2 bytes: refused on the declaration alone.
    let file = riff(
        &fmt(TAG_PCM, 1, 16_000, 16),
        &[(b"data", &[0; 12])],
        Some(0x7FFF_FFFE),
    );
    assert!(matches!(
        WavReader::new(&file[..]).unwrap().read_all(1 << 20),
        Err(Error::TooManySamples {
            limit: 1_048_576,
            declared: Some(1_073_741_823)
        })
    ));
}

#[test]
fn data_that_ends_early_is_truncated() {
    let file = riff(
        &fmt(TAG_PCM, 2, 16_000, 16),
        &[(b"data", &i16_bytes(&[1, 2, 3, 4]))],
        Some(40),
    );
    let err = read(&file).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Truncated {
                declared_frames: 10,
                frames: 2
            }
        ),
        "{err}"
    );
    assert!(!err.is_unsupported());
    assert_eq!(
        err.to_string(),
        "the WAV data ends early: 2 of the 10 frames it declares are there"
    );
}

#[test]
fn a_partial_frame_at_the_end_is_dropped() {
    // Stereo, 5 samples: two whole frames and half of a third.
    let file = riff(
        &fmt(TAG_PCM, 2, 16_000, 16),
        &[(b"data", &i16_bytes(&[1, 2, 3, 4, 5]))],
        None,
    );
    let reader = WavReader::new(&file[..]).unwrap();
    assert_eq!(reader.declared_frames(), Some(2));
    assert_eq!(reader.read_all(100).unwrap().samples.len(), 4);
}

#[test]
fn other_chunks_are_skipped_with_their_padding_and_chunks_after_data_ignored() {
    let pcm = i16_bytes(&[7, 8, 9]);
    let file = riff(
        &fmt(TAG_PCM, 1, 16_000, 16),
        &[
            (b"LIST", b"odd"),
            (b"fact", &[3, 0, 0, 0]),
            (b"data", &pcm),
            (b"LIST", b"trailing metadata"),
        ],
        None,
    );
    let audio = read(&file).unwrap();
    assert_eq!(audio.samples, [7.0 / 32768.0, 8.0 / 32768.0, 9.0 / 32768.0]);
}

#[test]
fn damaged_headers_are_malformed() {
    let pcm = i16_bytes(&[1, 2]);
    let good = riff(&fmt(TAG_PCM, 1, 16_000, 16), &[(b"data", &pcm)], None);
    // Cut anywhere inside the header: never a panic, always an error.
    for cut in 0..44 {
        let err = read(&good[..cut]).unwrap_err();
        assert!(
            matches!(err, Error::NotWav | Error::Malformed(_)),
            "cut at {cut}: {err}"
        );
    }
    let mut zero_channels = fmt(TAG_PCM, 1, 16_000, 16);
    zero_channels[2] = 0;
    let mut bad_align = fmt(TAG_PCM, 1, 16_000, 16);
    bad_align[12] = 3;
    let mut zero_rate = fmt(TAG_PCM, 1, 16_000, 16);
    zero_rate[4..8].fill(0);
    for (what, body) in [
        ("0 channels", zero_channels),
        ("block alignment", bad_align),
        ("0 Hz", zero_rate),
        (
            "fmt chunk of 14 bytes",
            fmt(TAG_PCM, 1, 16_000, 16)[..14].to_vec(),
        ),
    ] {
        let err = read(&riff(&body, &[(b"data", &pcm)], None)).unwrap_err();
        assert!(
            matches!(err, Error::Malformed(_)) && err.to_string().contains(what),
            "{what}: {err}"
        );
    }
    // A chunk whose size runs past the end of the file.
    let mut cut_list = riff(&fmt(TAG_PCM, 1, 16_000, 16), &[(b"LIST", &[0; 8])], None);
    cut_list.truncate(cut_list.len() - 4);
    assert!(read(&cut_list)
        .unwrap_err()
        .to_string()
        .contains("\"LIST\""));
    assert!(matches!(read(b"RIFF\0\0\0\0AVI LIST"), Err(Error::NotWav)));
}

#[test]
fn valid_files_of_other_kinds_are_unsupported() {
    let cases: [(Vec<u8>, &str); 5] = [
        (fmt(0x0006, 1, 8000, 8), "A-law"),
        (fmt(0x0055, 1, 8000, 0), "MPEG layer 3"),
        (fmt(TAG_IEEE_FLOAT, 1, 8000, 16), "16-bit float"),
        (fmt(TAG_PCM, 1, 8000, 40), "40-bit integer"),
        (
            {
                let mut f = fmt_extensible(TAG_PCM, 1, 8000, 16, 16);
                f[30] ^= 1;
                f
            },
            "sub-format",
        ),
    ];
    for (body, what) in cases {
        let err = read(&riff(&body, &[(b"data", &[0; 8])], None)).unwrap_err();
        assert!(err.is_unsupported(), "{what}: {err}");
        assert!(err.to_string().contains(what), "{what}: {err}");
    }
    let mut rf64 = riff(&fmt(TAG_PCM, 1, 8000, 16), &[(b"data", &[0; 8])], None);
    rf64[..4].copy_from_slice(b"RF64");
    assert!(read(&rf64).unwrap_err().is_unsupported());
}

#[test]
fn write_pcm16_round_trips_and_hound_agrees() {
    let samples: Vec<i16> = (0..999)
        .map(|i| (i * 67 % 65_536 - 32_768) as i16)
        .collect();
    let mut file = Vec::new();
    write_pcm16(&mut file, 3, 44_100, &samples).unwrap();
    assert_eq!(file.len(), 44 + 2 * samples.len());

    let audio = read(&file).unwrap();
    let back: Vec<i16> = audio
        .samples
        .iter()
        .map(|&s| (s * 32768.0) as i16)
        .collect();
    assert_eq!(back, samples);

    let mut by_hound = hound::WavReader::new(&file[..]).unwrap();
    assert_eq!(by_hound.spec().channels, 3);
    assert_eq!(by_hound.spec().sample_rate, 44_100);
    let theirs: Vec<i16> = by_hound.samples::<i16>().map(Result::unwrap).collect();
    assert_eq!(theirs, samples);
}

#[test]
fn write_pcm16_refuses_what_a_wav_cannot_hold() {
    let mut sink = Vec::new();
    assert!(matches!(
        write_pcm16(&mut sink, 2, 16_000, &[1, 2, 3]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        write_pcm16(&mut sink, 0, 16_000, &[]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(matches!(
        write_pcm16(&mut sink, 1, 0, &[]),
        Err(Error::InvalidArgument(_))
    ));
    assert!(sink.is_empty());
}
