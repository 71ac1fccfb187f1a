//! Gives every binary and test of this package an rpath to libtorch's `lib/` folder, so
//! they start without LD_LIBRARY_PATH. torch-sys announces that folder to the packages
//! that depend on it directly as `DEP_TCH_LIBTORCH_LIB` (its `links = "tch"`) but puts
//! no rpath into their binaries itself. With `tch/doc-only` there is no libtorch and the
//! variable is absent.
//!
//! The same folder is passed to the crate as `IPC_TRAIN_LIBTORCH_LIB`, where
//! `device.rs` finds `libtorch_cuda.so` when the binary has no such rpath (binaries of
//! packages that depend on this one).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        println!(
            "cargo:rustc-env=IPC_TRAIN_LIBTORCH_LIB={}",
            lib.to_string_lossy()
        );
        if os == "linux" || os == "macos" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
        }
    }
}
