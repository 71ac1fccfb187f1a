//! Replays every input the fuzzers (fuzz/) ever crashed on, kept in
//! fuzz/regressions/TARGET/: each must now be rejected with an error, not a panic.
//! (The `decode` target has found no crash yet; its finds would get a test here.)

use std::path::Path;

use ipc_codec::ModelPack;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/regressions")
        .join(target);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| {
            let path = e.unwrap().path();
            (path.display().to_string(), std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    out
}

#[test]
fn pack_crashes_are_rejected_cleanly() {
    let cases = inputs("pack");
    assert!(!cases.is_empty());
    for (name, bytes) in cases {
        assert!(
            ModelPack::from_pack_file(&bytes).is_err(),
            "{name} now loads as a pack"
        );
        assert!(ModelPack::from_safetensors(&bytes).is_err(), "{name}");
    }
}
