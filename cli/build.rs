//! With the `train` feature the binary links libtorch: give it an rpath to libtorch's
//! `lib/` folder (announced by torch-sys as `DEP_TCH_LIBTORCH_LIB`), so `ipc-codec
//! train` starts without LD_LIBRARY_PATH. Without the feature this does nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DEP_TCH_LIBTORCH_LIB");
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    if let Some(lib) = std::env::var_os("DEP_TCH_LIBTORCH_LIB") {
        if os == "linux" || os == "macos" {
            println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.to_string_lossy());
        }
    }
}
