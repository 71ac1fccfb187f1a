//! Builds the C test program `tests/c/test_decode.c` against `include/ipc_codec.h`,
//! links it with the static and with the shared `libipccodec` that cargo built for
//! this package, and runs it on synthetic packs and files whose expected decode comes
//! from the Rust [`Decoder`]. Also checks that the header compiles as C++.
//!
//! Needs a C compiler: `$CC` or `cc` (and `$CXX` or `c++` for the C++ check, skipped
//! when absent).
#![cfg(unix)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use ipc_codec::pack::{synthetic::SyntheticPack, PackContents};
use ipc_codec::{encode_quantised, Decoded, Decoder, Geometry, Header, ImagePixels, ModelPack};

const MANIFEST_DIR: &str = env!("CARGO_MANIFEST_DIR");

/// System libraries a Rust static library needs (`--print native-static-libs`).
#[cfg(target_os = "linux")]
const STATIC_LIBS: &[&str] = &[
    "-lgcc_s",
    "-lutil",
    "-lrt",
    "-lpthread",
    "-lm",
    "-ldl",
    "-lc",
];
#[cfg(target_os = "macos")]
const STATIC_LIBS: &[&str] = &["-lSystem", "-lc", "-lm"];
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
const STATIC_LIBS: &[&str] = &["-lpthread", "-lm"];

#[cfg(target_os = "macos")]
const SHARED_LIB: &str = "libipccodec.dylib";
#[cfg(not(target_os = "macos"))]
const SHARED_LIB: &str = "libipccodec.so";

/// One run of the C program: its mode, files and expected geometry.
struct Case {
    mode: &'static str,
    pack: PathBuf,
    file: PathBuf,
    expected: PathBuf,
    other_pack: PathBuf,
    geometry: [u32; 3],
}

/// The directory holding the C libraries built for this test run.
///
/// The test executable is `<target>/<profile>/deps/c_abi-<hash>`. Because the crate
/// also has the `rlib` crate type, cargo builds the library (all its crate types, into
/// that same `deps` directory) before compiling this test, so the libraries there are
/// current. Without `rlib`, `cargo test` would not build them at all, and
/// `<target>/<profile>/` would only hold whatever the last `cargo build` left. This
/// follows `CARGO_TARGET_DIR`, `--release` and `--target` without guessing.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("test executable in a directory");
    let source = Path::new(MANIFEST_DIR).join("src/lib.rs");
    let source_time = std::fs::metadata(&source)
        .and_then(|m| m.modified())
        .expect("capi/src/lib.rs");
    for lib in ["libipccodec.a", SHARED_LIB] {
        let path = deps.join(lib);
        let built = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .unwrap_or_else(|e| {
                panic!(
                    "{}: {e}; cargo should have built it for this test \
                     (is `rlib` still among the crate types in capi/Cargo.toml?)",
                    path.display()
                )
            });
        assert!(
            built >= source_time,
            "{} is older than {}: a stale library",
            path.display(),
            source.display()
        );
    }
    deps.to_path_buf()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    path
}

/// Deterministic quantised V with small values and an occasional escape.
fn v_values(n: usize, seed: i32) -> Vec<i32> {
    (0..n as i32)
        .map(|i| {
            let x = (i * 37 + seed * 11) % 23;
            if x == 0 {
                40
            } else {
                x % 7 - 3
            }
        })
        .collect()
}

/// Encodes a file for `pack` and returns it with the Rust decoder's output as raw
/// native-endian bytes.
fn encode_and_decode(pack: &ModelPack, geometry: Geometry, level: u8) -> (Vec<u8>, Vec<u8>) {
    let cfg = pack.config();
    let tiles = Header {
        version: ipc_codec::container::FORMAT_VERSION,
        coding: ipc_codec::entropy::PayloadCoding::PerElement,
        edge_filter: ipc_codec::edge_filter::EdgeFilterKind::Off,
        restoration: false,
        pack_id: pack.id(),
        geometry,
        tile_width: cfg.tile_width as u16,
        tile_height: cfg.tile_height as u16,
        step_q16: 1,
        quality_level: level,
        payload_len: 0,
    }
    .tile_count();
    let per_tile = pack.v_model(level.into()).unwrap().elements_per_tile();
    let v = v_values(tiles as usize * per_tile, level.into());
    let file = encode_quantised(pack, geometry, level, None, &v).expect("encode");
    let raw = match Decoder::new(pack).decode(&file).expect("Rust decode") {
        Decoded::Image(img) => match img.pixels {
            ImagePixels::U8(px) => px,
            ImagePixels::U16(px) => px.iter().flat_map(|s| s.to_ne_bytes()).collect(),
        },
        Decoded::Audio(audio) => audio.samples.iter().flat_map(|s| s.to_ne_bytes()).collect(),
    };
    (file, raw)
}

/// Writes the packs and files into `dir` and describes the three runs.
fn make_cases(dir: &Path) -> Vec<Case> {
    let pack_file = |contents: PackContents| contents.to_pack_file().expect("pack file");
    let image_bytes = pack_file(SyntheticPack::small_image().build());
    let audio_bytes = pack_file(SyntheticPack::small_audio().build());
    let image_pack = ModelPack::from_pack_file(&image_bytes).unwrap();
    let audio_pack = ModelPack::from_pack_file(&audio_bytes).unwrap();
    let image_path = write(dir, "image.pack", &image_bytes);
    let audio_path = write(dir, "audio.pack", &audio_bytes);

    let mut cases = Vec::new();
    let mut add = |mode, pack: &ModelPack, geometry, level, dims: [u32; 3]| {
        let (file, raw) = encode_and_decode(pack, geometry, level);
        let (pack_path, other) = match geometry {
            Geometry::Image { .. } => (&image_path, &audio_path),
            Geometry::Audio { .. } => (&audio_path, &image_path),
        };
        cases.push(Case {
            mode,
            pack: pack_path.clone(),
            file: write(dir, &format!("{mode}.ipc"), &file),
            expected: write(dir, &format!("{mode}.raw"), &raw),
            other_pack: other.clone(),
            geometry: dims,
        });
    };
    // Sizes that are not multiples of the tile size, to exercise cropping.
    let rgb8 = Geometry::Image {
        width: 37,
        height: 21,
        channels: 3,
        bit_depth: 8,
    };
    add("image8", &image_pack, rgb8, 1, [37, 21, 3]);
    let grey16 = Geometry::Image {
        width: 13,
        height: 10,
        channels: 1,
        bit_depth: 16,
    };
    add("image16", &image_pack, grey16, 2, [13, 10, 1]);
    let stereo = Geometry::Audio {
        sample_rate: 16_000,
        frames: 300,
        channels: 2,
        bit_depth: 16,
    };
    add("audio16", &audio_pack, stereo, 0, [16_000, 300, 2]);
    cases
}

fn tool(var: &str, default: &str) -> String {
    std::env::var(var)
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| default.to_string())
}

/// Runs a command; panics with its output if it cannot start or fails.
fn run(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: cannot run {cmd:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{what} failed ({}):\ncommand: {cmd:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );
    if !stderr.trim().is_empty() {
        eprintln!("{what} (stderr):\n{stderr}");
    }
    stdout
}

fn compile(out: &Path, link: &[String]) {
    let manifest = Path::new(MANIFEST_DIR);
    let mut cmd = Command::new(tool("CC", "cc"));
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-g"])
        .arg("-I")
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c/test_decode.c"))
        .arg("-o")
        .arg(out)
        .args(link)
        .arg("-lpthread");
    run(&mut cmd, "compiling tests/c/test_decode.c");
}

fn run_cases(exe: &Path, cases: &[Case], env: Option<(&str, &Path)>) {
    for case in cases {
        let mut cmd = Command::new(exe);
        cmd.arg(case.mode)
            .args([&case.pack, &case.file, &case.expected, &case.other_pack])
            .args(case.geometry.map(|n| n.to_string()));
        if let Some((key, value)) = env {
            cmd.env(key, value);
        }
        let stdout = run(&mut cmd, &format!("{} {}", exe.display(), case.mode));
        print!("{stdout}");
        assert!(stdout.contains("all checks passed"), "{stdout}");
    }
}

fn work_dir(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create work dir");
    dir
}

#[test]
fn c_program_decodes_with_the_static_library() {
    let lib = library_dir();
    let dir = work_dir("c_abi_static");
    let cases = make_cases(&dir);
    let exe = dir.join("test_decode_static");
    let mut link = vec![lib.join("libipccodec.a").display().to_string()];
    link.extend(STATIC_LIBS.iter().map(|s| s.to_string()));
    compile(&exe, &link);
    run_cases(&exe, &cases, None);
}

#[test]
fn c_program_decodes_with_the_shared_library() {
    let lib = library_dir();
    let dir = work_dir("c_abi_shared");
    let cases = make_cases(&dir);
    let exe = dir.join("test_decode_shared");
    let link = vec![
        lib.join(SHARED_LIB).display().to_string(),
        format!("-Wl,-rpath,{}", lib.display()),
    ];
    compile(&exe, &link);
    let path_var = if cfg!(target_os = "macos") {
        "DYLD_LIBRARY_PATH"
    } else {
        "LD_LIBRARY_PATH"
    };
    run_cases(&exe, &cases, Some((path_var, &lib)));
}

#[test]
fn header_compiles_as_cpp() {
    let cxx = tool("CXX", "c++");
    if Command::new(&cxx).arg("--version").output().is_err() {
        eprintln!("skipping: no C++ compiler ({cxx})");
        return;
    }
    let dir = work_dir("c_abi_cpp");
    let src = write(
        &dir,
        "header.cpp",
        b"#include \"ipc_codec.h\"\n\
          static_assert(sizeof(IpcInfo) == 64, \"IpcInfo layout\");\n\
          int main() {\n\
              IpcPack *pack = nullptr;\n\
              int status = ipc_pack_load(nullptr, 0, &pack);\n\
              return status == IPC_ERR_ARGUMENT ? 0 : 1;\n\
          }\n",
    );
    let mut cmd = Command::new(&cxx);
    cmd.args(["-std=c++11", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-fsyntax-only")
        .arg("-I")
        .arg(Path::new(MANIFEST_DIR).join("include"))
        .arg(&src);
    run(&mut cmd, "compiling the header as C++");
}

/// Removes `/* ... */` comments from C source.
fn strip_c_comments(src: &str) -> String {
    let mut out = String::new();
    let mut rest = src;
    while let Some(start) = rest.find("/*") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find("*/").expect("unterminated comment") + start + 2;
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Identifiers in `text` that start with `prefix` and are directly followed by `(`.
fn called_names(text: &str, prefix: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (i, _) in text.match_indices(prefix) {
        let ident: String = text[i..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if text[i + ident.len()..].starts_with('(') {
            names.insert(ident);
        }
    }
    names
}

/// The header declares exactly the functions the library exports, and its constants
/// have the library's values: the C test only catches a missing function it calls.
#[test]
fn header_matches_the_rust_definitions() {
    let manifest = Path::new(MANIFEST_DIR);
    let rust = std::fs::read_to_string(manifest.join("src/lib.rs")).unwrap();
    let header =
        strip_c_comments(&std::fs::read_to_string(manifest.join("include/ipc_codec.h")).unwrap());

    let exported: BTreeSet<String> = rust
        .lines()
        .filter_map(|l| l.split_once("extern \"C\" fn "))
        .map(|(_, rest)| rest.split('(').next().unwrap().trim().to_string())
        .collect();
    assert_eq!(exported.len(), 9, "{exported:?}");
    assert_eq!(called_names(&header, "ipc_"), exported);

    // `pub const IPC_X: c_int = -1;` against `IPC_X = -1` (enum) or `#define IPC_X 1u`.
    let mut constants = 0;
    for line in rust.lines() {
        let Some(rest) = line.trim().strip_prefix("pub const IPC_") else {
            continue;
        };
        let (name, value) = rest.split_once(':').unwrap();
        let value = value
            .split('=')
            .nth(1)
            .unwrap()
            .trim()
            .trim_end_matches(';');
        let name = format!("IPC_{name}");
        let in_enum = format!("{name} = {value}");
        let in_define = format!("#define {name} {value}u");
        assert!(
            header.contains(&format!("{in_enum},"))
                || header.contains(&format!("{in_enum}\n"))
                || header.contains(&in_define),
            "header lacks {name} = {value}"
        );
        let whole_word = header.match_indices(name.as_str()).filter(|(i, _)| {
            !header[i + name.len()..].starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        });
        assert_eq!(whole_word.count(), 1, "{name} defined once in the header");
        constants += 1;
    }
    assert_eq!(constants, 12);
}
