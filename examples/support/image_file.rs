//! Reading a photo for the examples: any format the `image` crate was built with (PNG,
//! JPEG, WebP), as 8-bit RGB in [0, 1].

use ipc_codec::encoder::ImageSignal;

/// The photo at `path` as the encoder's signal; panics with the path when unreadable.
pub fn load(path: &std::path::Path) -> ImageSignal {
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
