//! Training engine for ipc-codec model packs, on libtorch through `tch`.
//!
//! This crate is the only place where libtorch is used: the decoder library
//! (`ipc-codec`) and the C ABI never depend on it. Building it needs libtorch 2.11.0,
//! which `scripts/setup-libtorch` installs and locates through `LIBTORCH`;
//! `scripts/test` does that before `cargo test --workspace`. Without libtorch,
//! `cargo check -p ipc-train --features tch/doc-only` still type-checks the crate.

pub mod adam;
pub mod config;
pub mod data;
pub mod device;
pub mod encode;
pub mod entropy;
pub mod export;
pub mod model;
pub mod trainer;
