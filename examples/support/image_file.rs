//! Reading photos for the examples: any format the `image` crate was built with (PNG,
//! JPEG, WebP), as 8-bit RGB in [0, 1].

use std::path::{Path, PathBuf};

use ipc_codec::encoder::ImageSignal;

/// The PNG, JPEG and WebP files of `dir` (by extension, any case), sorted by name.
pub fn photos_in(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension()
                    .and_then(|e| e.to_str())
                    .map(|e| e.to_ascii_lowercase())
                    .as_deref(),
                Some("png" | "jpg" | "jpeg" | "webp")
            )
        })
        .collect();
    files.sort();
    files
}

/// The photo at `path` as the encoder's signal; panics with the path when unreadable.
pub fn load(path: &Path) -> ImageSignal {
    let img = image::open(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .to_rgb8();
    ImageSignal {
        width: img.width(),
        height: img.height(),
        channels: 3,
        bit_depth: 8,
        samples: img.as_raw().iter().map(|&b| f32::from(b) / 255.0).collect(),
    }
}
