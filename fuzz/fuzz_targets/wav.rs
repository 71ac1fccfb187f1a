//! Arbitrary bytes through the WAV reader `ipc-codec encode` uses: an error or audio
//! within the limit, never a panic, and what is read keeps the reader's promises
//! (whole frames, every sample in [-1, 1], no more samples than the limit).
#![no_main]

use libfuzzer_sys::fuzz_target;

const LIMIT: u64 = 1 << 16;

fuzz_target!(|data: &[u8]| {
    let Ok(reader) = ipc_wav::WavReader::new(data) else {
        return;
    };
    let channels = usize::from(reader.format().channels);
    let declared = reader.declared_frames();
    if let Ok(audio) = reader.read_all(LIMIT) {
        assert!(audio.samples.len() as u64 <= LIMIT);
        assert_eq!(audio.samples.len() % channels, 0);
        assert!(audio.samples.iter().all(|s| (-1.0..=1.0).contains(s)));
        if let Some(frames) = declared {
            assert_eq!(audio.frames(), frames);
        }
    }
});
