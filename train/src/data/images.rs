//! Photos: loaded, downscaled and split once, then random crops (with flips) for
//! training batches and fixed tiles for held-out evaluation.

use std::path::Path;

use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};
use ipc_codec::rng::SplitMix64;

use super::split::holdout_flags;
use super::{below, list_files, DataError, Skipped};

/// Image file extensions that [`ImageSet::load`] reads (case-insensitive).
pub const IMAGE_EXTENSIONS: [&str; 4] = ["png", "jpg", "jpeg", "webp"];

/// How [`ImageSet::load`] prepares photos.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageSetOptions {
    /// Photos are downscaled (Lanczos3) so that their shorter side is at most this;
    /// 0 keeps them as they are. Default 384: random crops then hold structure.
    pub max_short_side: u32,
    /// Fraction of files held out for evaluation, chosen by a hash of the file name.
    /// At least one image is held out (and one kept) when there are two or more.
    pub holdout_fraction: f64,
    /// Images smaller than this after downscaling are left out (listed in
    /// [`ImageSet::skipped`]). Set it to the tile size. Default 32 x 32.
    pub min_height: usize,
    /// See [`Self::min_height`].
    pub min_width: usize,
    /// Random horizontal flips in [`ImageSet::sample_batch`] (default true).
    pub horizontal_flip: bool,
    /// Random vertical flips (default false: photos have an up and a down).
    pub vertical_flip: bool,
    /// Decoding threads; 0 uses all cores (default).
    pub threads: usize,
}

impl Default for ImageSetOptions {
    fn default() -> Self {
        ImageSetOptions {
            max_short_side: 384,
            holdout_fraction: 0.05,
            min_height: 32,
            min_width: 32,
            horizontal_flip: true,
            vertical_flip: false,
            threads: 0,
        }
    }
}

/// One decoded photo: 8-bit RGB, row-major, channels interleaved.
///
/// Kept as 8 bits (a quarter of the memory of f32: the 266 photos of train-images
/// take about 115 MB); crops are converted to f32 in `[0, 1]` (`v / 255`). The
/// codec's input is 8-bit too, so training sees what encoding will see.
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// File name.
    pub name: String,
    /// Width after downscaling.
    pub width: usize,
    /// Height after downscaling.
    pub height: usize,
    /// Width and height of the file as decoded (after EXIF orientation).
    pub original: (u32, u32),
    /// `height * width * 3` bytes.
    pub data: Vec<u8>,
}

impl Image {
    fn fits(&self, tile_h: usize, tile_w: usize) -> bool {
        self.height >= tile_h && self.width >= tile_w
    }

    /// Copies the `tile_h x tile_w` crop at `(y0, x0)` into `out`, mirrored left-right
    /// and/or upside down as `(hflip, vflip)` say.
    fn crop_into(
        &self,
        (y0, x0): (usize, usize),
        (tile_h, tile_w): (usize, usize),
        (hflip, vflip): (bool, bool),
        out: &mut [f32],
    ) {
        debug_assert_eq!(out.len(), tile_h * tile_w * 3);
        for (ty, dst_row) in out.chunks_exact_mut(tile_w * 3).enumerate() {
            let sy = y0 + if vflip { tile_h - 1 - ty } else { ty };
            let row = &self.data[(sy * self.width + x0) * 3..(sy * self.width + x0 + tile_w) * 3];
            if hflip {
                for (d, s) in dst_row.chunks_exact_mut(3).zip(row.chunks_exact(3).rev()) {
                    for (d, &s) in d.iter_mut().zip(s) {
                        *d = unit(s);
                    }
                }
            } else {
                for (d, &s) in dst_row.iter_mut().zip(row) {
                    *d = unit(s);
                }
            }
        }
    }
}

/// Photos for training and their held-out split.
#[derive(Debug, Clone)]
pub struct ImageSet {
    /// Training images, in file-name order.
    pub train: Vec<Image>,
    /// Held-out images, in file-name order.
    pub holdout: Vec<Image>,
    /// Files left out (too small), with the reason.
    pub skipped: Vec<Skipped>,
    horizontal_flip: bool,
    vertical_flip: bool,
}

fn decode_image(path: &Path) -> Result<DynamicImage, DataError> {
    let img_err = |e| DataError::Image {
        path: path.to_path_buf(),
        source: e,
    };
    let reader = ImageReader::open(path)
        .and_then(|r| r.with_guessed_format())
        .map_err(|e| DataError::Io {
            path: path.to_path_buf(),
            source: e,
        })?;
    let mut decoder = reader.into_decoder().map_err(img_err)?;
    let orientation = decoder.orientation().map_err(img_err)?;
    let mut img = DynamicImage::from_decoder(decoder).map_err(img_err)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// An 8-bit sample as f32 in `[0, 1]`.
#[inline]
fn unit(v: u8) -> f32 {
    v as f32 / 255.0
}

/// Decodes, converts to 8-bit RGB (alpha dropped, grey replicated, 16-bit rounded)
/// and downscales.
fn load_image(name: &str, path: &Path, max_short_side: u32) -> Result<Image, DataError> {
    let img = decode_image(path)?;
    let (w, h) = (img.width(), img.height());
    let mut rgb = img.to_rgb8();
    drop(img);
    let short = w.min(h);
    if max_short_side > 0 && short > max_short_side {
        let scale = max_short_side as f64 / short as f64;
        let (nw, nh) = if w <= h {
            (max_short_side, ((h as f64 * scale).round() as u32).max(1))
        } else {
            (((w as f64 * scale).round() as u32).max(1), max_short_side)
        };
        rgb = image::imageops::resize(&rgb, nw, nh, FilterType::Lanczos3);
    }
    // (Lanczos3 works in f32; the result is rounded and clamped to 8 bits.)
    let (width, height) = (rgb.width() as usize, rgb.height() as usize);
    let data = rgb.into_raw();
    Ok(Image {
        name: name.to_string(),
        width,
        height,
        original: (w, h),
        data,
    })
}

impl ImageSet {
    /// Reads every PNG, JPEG and WebP file in `dir` (not its subfolders), in file-name
    /// order. A file that cannot be decoded is an error that names it; images smaller
    /// than `min_height x min_width` after downscaling are skipped and listed; a folder
    /// left with no image is an error.
    pub fn load(dir: &Path, opts: &ImageSetOptions) -> Result<ImageSet, DataError> {
        if !(0.0..1.0).contains(&opts.holdout_fraction) {
            return Err(DataError::InvalidOption(format!(
                "holdout_fraction {} is not in [0, 1)",
                opts.holdout_fraction
            )));
        }
        let files = list_files(dir, &IMAGE_EXTENSIONS)?;
        if files.is_empty() {
            return Err(DataError::Empty {
                dir: dir.to_path_buf(),
                reason: format!("no image files (.{})", IMAGE_EXTENSIONS.join(", .")),
            });
        }
        let decoded = ipc_codec::parallel::map_ordered(&files, opts.threads, |(name, path)| {
            load_image(name, path, opts.max_short_side)
        });
        let mut images = Vec::with_capacity(files.len());
        let mut skipped = Vec::new();
        for ((_, path), img) in files.iter().zip(decoded) {
            let img = img?;
            if img.height < opts.min_height || img.width < opts.min_width {
                skipped.push(Skipped {
                    path: path.clone(),
                    reason: format!(
                        "{}x{} (after downscaling) is smaller than the minimum {}x{}",
                        img.width, img.height, opts.min_width, opts.min_height
                    ),
                });
                continue;
            }
            images.push(img);
        }
        if images.is_empty() {
            return Err(DataError::Empty {
                dir: dir.to_path_buf(),
                reason: format!(
                    "none of its {} images is at least {}x{}",
                    files.len(),
                    opts.min_width,
                    opts.min_height
                ),
            });
        }
        let mut set = ImageSet::from_images(images, opts);
        set.skipped = skipped;
        Ok(set)
    }

    /// Builds a set from images already in memory (split as [`Self::load`] does).
    pub fn from_images(images: Vec<Image>, opts: &ImageSetOptions) -> ImageSet {
        let names: Vec<String> = images.iter().map(|i| i.name.clone()).collect();
        let flags = holdout_flags(&names, opts.holdout_fraction);
        let (mut train, mut holdout) = (Vec::new(), Vec::new());
        for (img, held) in images.into_iter().zip(flags) {
            if held {
                holdout.push(img);
            } else {
                train.push(img);
            }
        }
        ImageSet {
            train,
            holdout,
            skipped: Vec::new(),
            horizontal_flip: opts.horizontal_flip,
            vertical_flip: opts.vertical_flip,
        }
    }

    /// Training images large enough for a `tile_h x tile_w` crop.
    pub fn train_fitting(&self, tile_h: usize, tile_w: usize) -> usize {
        self.train.iter().filter(|i| i.fits(tile_h, tile_w)).count()
    }

    /// An error unless some training image holds a `tile_h x tile_w` crop; call it
    /// before [`Self::sample_batch`], which panics in that case.
    pub fn check_tile(&self, tile_h: usize, tile_w: usize) -> Result<(), DataError> {
        if tile_h == 0 || tile_w == 0 {
            return Err(DataError::InvalidOption(format!(
                "tile {tile_h}x{tile_w} is empty"
            )));
        }
        if self.train_fitting(tile_h, tile_w) == 0 {
            return Err(DataError::InvalidOption(format!(
                "no training image holds a {tile_w}x{tile_h} tile"
            )));
        }
        Ok(())
    }

    /// Total pixels of the training images.
    pub fn train_pixels(&self) -> usize {
        self.train.iter().map(|i| i.width * i.height).sum()
    }

    /// Fills `out` with `batch` random `tile_h x tile_w` crops, layout
    /// `[batch, tile_h * tile_w, 3]`: per crop an image drawn uniformly among the
    /// training images that hold the tile, a uniform position, and random flips as the
    /// options allow. The same `rng` state gives the same batch.
    ///
    /// Panics if no training image holds the tile (see [`Self::check_tile`]).
    pub fn sample_batch(
        &self,
        rng: &mut SplitMix64,
        batch: usize,
        tile_h: usize,
        tile_w: usize,
        out: &mut Vec<f32>,
    ) {
        let per = tile_h * tile_w * 3;
        out.clear();
        out.resize(batch * per, 0.0);
        if batch == 0 || per == 0 {
            return;
        }
        let all_fit = self.train.iter().all(|i| i.fits(tile_h, tile_w));
        let fitting: Vec<&Image> = if all_fit {
            self.train.iter().collect()
        } else {
            self.train
                .iter()
                .filter(|i| i.fits(tile_h, tile_w))
                .collect()
        };
        assert!(
            !fitting.is_empty(),
            "ImageSet::sample_batch: no training image holds a {tile_w}x{tile_h} tile"
        );
        for dst in out.chunks_exact_mut(per) {
            let img = fitting[below(rng, fitting.len())];
            let y0 = below(rng, img.height - tile_h + 1);
            let x0 = below(rng, img.width - tile_w + 1);
            let flips = rng.next_u64();
            let hflip = self.horizontal_flip && flips & 1 == 1;
            let vflip = self.vertical_flip && flips & 2 == 2;
            img.crop_into((y0, x0), (tile_h, tile_w), (hflip, vflip), dst);
        }
    }

    /// Fixed evaluation tiles from the held-out images, layout `[n, tile_h * tile_w, 3]`
    /// with `n <= max_tiles`: each held-out image is cut into a centred grid of
    /// non-overlapping tiles, and tiles are taken round-robin over the images (first
    /// tile of every image, then the second, ...) so a small `max_tiles` still sees
    /// every image. No flips; the same for every call.
    pub fn holdout_tiles(&self, tile_h: usize, tile_w: usize, max_tiles: usize) -> Vec<f32> {
        if tile_h == 0 || tile_w == 0 {
            return Vec::new();
        }
        let grids: Vec<Vec<(usize, usize)>> = self
            .holdout
            .iter()
            .map(|img| {
                if !img.fits(tile_h, tile_w) {
                    return Vec::new();
                }
                let (rows, cols) = (img.height / tile_h, img.width / tile_w);
                let (oy, ox) = (
                    (img.height - rows * tile_h) / 2,
                    (img.width - cols * tile_w) / 2,
                );
                (0..rows)
                    .flat_map(|r| (0..cols).map(move |c| (oy + r * tile_h, ox + c * tile_w)))
                    .collect()
            })
            .collect();
        let per = tile_h * tile_w * 3;
        let mut out = Vec::new();
        let mut n = 0;
        let longest = grids.iter().map(Vec::len).max().unwrap_or(0);
        'rounds: for k in 0..longest {
            for (img, grid) in self.holdout.iter().zip(&grids) {
                if n == max_tiles {
                    break 'rounds;
                }
                if let Some(&(y0, x0)) = grid.get(k) {
                    let start = out.len();
                    out.resize(start + per, 0.0);
                    img.crop_into(
                        (y0, x0),
                        (tile_h, tile_w),
                        (false, false),
                        &mut out[start..],
                    );
                    n += 1;
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::test_util::{gradient, no_holdout_opts, TempDir};
    use std::fs;

    #[test]
    fn loads_formats_in_name_order_and_ignores_other_files() {
        let dir = TempDir::new("formats");
        gradient(40, 30).save(dir.path("b.png")).unwrap();
        gradient(50, 40).save(dir.path("a.JPG")).unwrap();
        image::DynamicImage::ImageLuma8(image::GrayImage::from_pixel(36, 33, image::Luma([128])))
            .save(dir.path("c_grey.png"))
            .unwrap();
        image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            34,
            35,
            image::Rgba([255, 0, 0, 10]),
        ))
        .save(dir.path("d_rgba.webp"))
        .unwrap();
        fs::write(dir.path("COPYRIGHT"), "not an image").unwrap();
        fs::create_dir(dir.path("sub.png")).unwrap();
        let set = ImageSet::load(&dir.0, &no_holdout_opts()).unwrap();
        let mut all: Vec<&Image> = set.train.iter().chain(&set.holdout).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        let names: Vec<&str> = all.iter().map(|i| i.name.as_str()).collect();
        assert_eq!(names, ["a.JPG", "b.png", "c_grey.png", "d_rgba.webp"]);
        // PNG is lossless: exact values.
        let b = all[1];
        assert_eq!((b.width, b.height), (40, 30));
        assert_eq!(b.data.len(), 40 * 30 * 3);
        fn px(img: &Image, x: usize, y: usize) -> &[u8] {
            &img.data[(y * img.width + x) * 3..][..3]
        }
        assert_eq!(px(b, 7, 5), [7, 5, 12]);
        // Grey is replicated; alpha is dropped (WebP lossless keeps RGB exactly).
        assert!(all[2].data.iter().all(|&v| v == 128));
        assert_eq!(px(all[3], 3, 3), [255, 0, 0]);
        // JPEG: close to the gradient.
        assert!((px(all[0], 20, 10)[0] as i32 - 20).abs() < 12);
        assert!(all.iter().all(|i| i.data.len() == i.width * i.height * 3));
        // Crops come out as v / 255.
        let set = single(b.clone(), false, false);
        let mut out = Vec::new();
        set.sample_batch(&mut SplitMix64(0), 1, 30, 40, &mut out);
        assert_eq!(
            &out[(5 * 40 + 7) * 3..][..3],
            [7.0 / 255.0, 5.0 / 255.0, 12.0 / 255.0]
        );
    }

    #[test]
    fn downscales_the_short_side_and_keeps_aspect() {
        let dir = TempDir::new("downscale");
        gradient(300, 200).save(dir.path("land.png")).unwrap();
        gradient(90, 240).save(dir.path("port.png")).unwrap();
        gradient(60, 50).save(dir.path("small.png")).unwrap();
        let opts = ImageSetOptions {
            max_short_side: 64,
            ..no_holdout_opts()
        };
        let set = ImageSet::load(&dir.0, &opts).unwrap();
        let dims = |n: &str| {
            let i = set
                .train
                .iter()
                .chain(&set.holdout)
                .find(|i| i.name == n)
                .unwrap();
            (i.width, i.height, i.original)
        };
        assert_eq!(dims("land.png"), (96, 64, (300, 200)));
        assert_eq!(dims("port.png"), (64, 171, (90, 240)));
        assert_eq!(dims("small.png"), (60, 50, (60, 50)));
        for i in set.train.iter().chain(&set.holdout) {
            assert!(i.width.min(i.height) <= 64);
            assert_eq!(i.data.len(), i.width * i.height * 3);
        }
        // A smooth gradient stays a gradient (Lanczos, not nearest): R grows along x.
        let land = set
            .train
            .iter()
            .chain(&set.holdout)
            .find(|i| i.name == "land.png")
            .unwrap();
        let r = |x: usize| land.data[(32 * land.width + x) * 3];
        assert!(
            (r(10) as f64 - (10.5 * 300.0 / 96.0 - 0.5)).abs() < 2.5,
            "{}",
            r(10)
        );
        assert!(r(50) > r(40) && r(40) > r(30));
    }

    #[test]
    fn drops_small_images_and_errors_when_none_is_left() {
        let dir = TempDir::new("small");
        gradient(20, 64).save(dir.path("narrow.png")).unwrap();
        gradient(64, 64).save(dir.path("ok.png")).unwrap();
        let opts = ImageSetOptions {
            min_height: 32,
            min_width: 32,
            ..no_holdout_opts()
        };
        let set = ImageSet::load(&dir.0, &opts).unwrap();
        assert_eq!(set.train.len() + set.holdout.len(), 1);
        assert_eq!(set.skipped.len(), 1);
        assert!(set.skipped[0].path.ends_with("narrow.png"));
        assert!(
            set.skipped[0].reason.contains("20x64"),
            "{}",
            set.skipped[0].reason
        );
        let opts = ImageSetOptions {
            min_height: 100,
            ..opts
        };
        let err = ImageSet::load(&dir.0, &opts).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
    }

    #[test]
    fn errors_name_the_file() {
        let dir = TempDir::new("errors");
        gradient(40, 40).save(dir.path("good.png")).unwrap();
        fs::write(
            dir.path("broken.png"),
            b"\x89PNG\r\n\x1a\nthis is not a png",
        )
        .unwrap();
        let err = ImageSet::load(&dir.0, &no_holdout_opts()).unwrap_err();
        assert!(matches!(err, DataError::Image { .. }), "{err}");
        assert!(err.to_string().contains("broken.png"), "{err}");

        let empty = TempDir::new("empty");
        fs::write(empty.path("notes.txt"), "x").unwrap();
        let err = ImageSet::load(&empty.0, &no_holdout_opts()).unwrap_err();
        assert!(matches!(err, DataError::Empty { .. }), "{err}");
        let err = ImageSet::load(&empty.path("missing"), &no_holdout_opts()).unwrap_err();
        assert!(
            matches!(err, DataError::Io { .. }) && err.to_string().contains("missing"),
            "{err}"
        );
        let bad = ImageSetOptions {
            holdout_fraction: 1.0,
            ..no_holdout_opts()
        };
        assert!(matches!(
            ImageSet::load(&dir.0, &bad),
            Err(DataError::InvalidOption(_))
        ));
    }

    #[test]
    fn holdout_split_is_deterministic_and_bounded() {
        let names: Vec<String> = (0..1000).map(|i| format!("img{i:04}.webp")).collect();
        let a = holdout_flags(&names, 0.05);
        let b = holdout_flags(&names, 0.05);
        assert_eq!(a, b);
        let held = a.iter().filter(|&&f| f).count();
        assert!((25..=75).contains(&held), "{held}");
        // Membership depends only on the name, not on the other files.
        let sub = holdout_flags(&names[..500], 0.05);
        assert_eq!(&a[..500], &sub[..]);
        // At least one held out and one kept with two or more names; none with one.
        for n in 2..20 {
            let f = holdout_flags(&names[..n], 0.0);
            assert_eq!(f.iter().filter(|&&x| x).count(), 1);
            let f = holdout_flags(&names[..n], 0.999_999);
            assert!(f.iter().any(|&x| !x) && f.iter().any(|&x| x));
        }
        assert_eq!(holdout_flags(&names[..1], 0.5), [false]);

        // The same through load, with threads or not.
        let dir = TempDir::new("split");
        for i in 0..12 {
            gradient(40 + i, 40)
                .save(dir.path(&format!("p{i:02}.png")))
                .unwrap();
        }
        let opts = ImageSetOptions {
            holdout_fraction: 0.25,
            ..no_holdout_opts()
        };
        let one = ImageSet::load(&dir.0, &opts).unwrap();
        let two = ImageSet::load(
            &dir.0,
            &ImageSetOptions {
                threads: 2,
                ..opts.clone()
            },
        )
        .unwrap();
        let names = |v: &[Image]| v.iter().map(|i| i.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&one.holdout), names(&two.holdout));
        assert_eq!(one.train, two.train);
        assert!(!one.holdout.is_empty() && !one.train.is_empty());
        assert_eq!(one.train.len() + one.holdout.len(), 12);
        let mut sorted = names(&one.train);
        sorted.sort();
        assert_eq!(sorted, names(&one.train));
    }

    fn single(img: Image, hflip: bool, vflip: bool) -> ImageSet {
        ImageSet {
            train: vec![img],
            holdout: Vec::new(),
            skipped: Vec::new(),
            horizontal_flip: hflip,
            vertical_flip: vflip,
        }
    }

    /// A gradient image whose pixel (x, y) is (x, y, 128), for w, h <= 256.
    fn grad(w: usize, h: usize) -> Image {
        let mut data = Vec::with_capacity(w * h * 3);
        for y in 0..h {
            for x in 0..w {
                data.extend_from_slice(&[x as u8, y as u8, 128]);
            }
        }
        Image {
            name: "g".into(),
            width: w,
            height: h,
            original: (w as u32, h as u32),
            data,
        }
    }

    /// `v / 255`, as crops hold it.
    fn u(v: usize) -> f32 {
        v as f32 / 255.0
    }

    /// Top-left (x, y) of a crop of `grad` and whether it is flipped.
    fn decode_crop(t: &[f32], th: usize, tw: usize) -> (usize, usize, bool, bool) {
        let at = |s: usize| {
            (
                (t[s * 3] * 255.0).round() as usize,
                (t[s * 3 + 1] * 255.0).round() as usize,
            )
        };
        let (x_first, y_first) = at(0);
        let (x_last, y_last) = at(th * tw - 1);
        let hflip = x_first > x_last;
        let vflip = y_first > y_last;
        (x_first.min(x_last), y_first.min(y_last), hflip, vflip)
    }

    #[test]
    fn crops_are_row_major_channels_last() {
        let set = single(grad(50, 40), false, false);
        let (th, tw) = (6, 8);
        let mut out = Vec::new();
        let mut rng = SplitMix64(7);
        set.sample_batch(&mut rng, 16, th, tw, &mut out);
        assert_eq!(out.len(), 16 * th * tw * 3);
        for t in out.chunks_exact(th * tw * 3) {
            let (x0, y0, hf, vf) = decode_crop(t, th, tw);
            assert!(!hf && !vf);
            assert!(x0 + tw <= 50 && y0 + th <= 40);
            for y in 0..th {
                for x in 0..tw {
                    let s = y * tw + x;
                    assert_eq!(t[s * 3], u(x0 + x));
                    assert_eq!(t[s * 3 + 1], u(y0 + y));
                    assert_eq!(t[s * 3 + 2], u(128));
                }
            }
        }
        // Same seed, same batch; another seed, another batch.
        let mut again = Vec::new();
        set.sample_batch(&mut SplitMix64(7), 16, th, tw, &mut again);
        assert_eq!(out, again);
        set.sample_batch(&mut SplitMix64(8), 16, th, tw, &mut again);
        assert_ne!(out, again);
    }

    #[test]
    fn crop_positions_cover_the_image_uniformly() {
        let set = single(grad(12, 10), false, false);
        let (th, tw) = (4, 5);
        let mut out = Vec::new();
        set.sample_batch(&mut SplitMix64(1), 8000, th, tw, &mut out);
        let mut counts = vec![0usize; 7 * 8];
        for t in out.chunks_exact(th * tw * 3) {
            let (x0, y0, _, _) = decode_crop(t, th, tw);
            counts[y0 * 8 + x0] += 1;
        }
        // 56 positions, ~143 each.
        assert!(counts.iter().all(|&c| (90..200).contains(&c)), "{counts:?}");
        // A tile as large as the image is the image.
        set.sample_batch(&mut SplitMix64(1), 2, 10, 12, &mut out);
        let whole: Vec<f32> = set.train[0].data.iter().map(|&v| u(v as usize)).collect();
        assert_eq!(&out[..360], &whole[..]);
    }

    #[test]
    fn flips_follow_the_options() {
        let (th, tw) = (5, 7);
        let count_flips = |hflip: bool, vflip: bool| {
            let set = single(grad(30, 20), hflip, vflip);
            let mut out = Vec::new();
            set.sample_batch(&mut SplitMix64(3), 400, th, tw, &mut out);
            let (mut h, mut v) = (0, 0);
            for t in out.chunks_exact(th * tw * 3) {
                let (x0, y0, hf, vf) = decode_crop(t, th, tw);
                h += hf as usize;
                v += vf as usize;
                // Every pixel is the mirrored source pixel.
                for y in 0..th {
                    for x in 0..tw {
                        let sx = if hf { x0 + tw - 1 - x } else { x0 + x };
                        let sy = if vf { y0 + th - 1 - y } else { y0 + y };
                        let s = (y * tw + x) * 3;
                        assert_eq!(t[s], u(sx));
                        assert_eq!(t[s + 1], u(sy));
                    }
                }
            }
            (h, v)
        };
        assert_eq!(count_flips(false, false), (0, 0));
        let (h, v) = count_flips(true, false);
        assert!((150..250).contains(&h) && v == 0, "{h} {v}");
        let (h, v) = count_flips(true, true);
        assert!(
            (150..250).contains(&h) && (150..250).contains(&v),
            "{h} {v}"
        );
    }

    #[test]
    fn sampling_skips_images_smaller_than_the_tile() {
        let mut small = grad(8, 8);
        small.name = "small".into();
        small.data.iter_mut().for_each(|v| *v = 230);
        let set = ImageSet {
            train: vec![grad(40, 40), small],
            holdout: Vec::new(),
            skipped: Vec::new(),
            horizontal_flip: false,
            vertical_flip: false,
        };
        assert!(set.check_tile(16, 16).is_ok());
        assert!(set.check_tile(41, 16).is_err());
        assert!(set.check_tile(0, 16).is_err());
        assert_eq!(set.train_fitting(16, 16), 1);
        let mut out = Vec::new();
        set.sample_batch(&mut SplitMix64(9), 50, 16, 16, &mut out);
        assert!(out.chunks_exact(3).all(|p| p[2] == u(128)));
        set.sample_batch(&mut SplitMix64(9), 50, 4, 4, &mut out);
        assert!(out.chunks_exact(3).any(|p| p[2] == u(230)));
    }

    #[test]
    fn holdout_tiles_are_fixed_non_overlapping_and_round_robin() {
        let mut a = grad(20, 13);
        a.name = "a".into();
        let mut b = grad(9, 9);
        b.name = "b".into();
        b.data.iter_mut().skip(2).step_by(3).for_each(|v| *v = 64);
        let set = ImageSet {
            train: vec![grad(10, 10)],
            holdout: vec![a, b],
            skipped: Vec::new(),
            horizontal_flip: true,
            vertical_flip: true,
        };
        let (th, tw) = (4, 6);
        // a: 3 rows x 3 cols, grid offset (0, 1); b: 2 x 1, offset (0, 1).
        let all = set.holdout_tiles(th, tw, 100);
        assert_eq!(all.len(), 11 * th * tw * 3);
        assert_eq!(all, set.holdout_tiles(th, tw, 100));
        let tiles: Vec<(usize, usize, bool, bool, f32)> = all
            .chunks_exact(th * tw * 3)
            .map(|t| {
                let (x, y, hf, vf) = decode_crop(t, th, tw);
                (x, y, hf, vf, t[2])
            })
            .collect();
        // Round-robin: a's first, b's first, a's second, b's second, then a's rest.
        assert_eq!(tiles[0], (1, 0, false, false, u(128)));
        assert_eq!(tiles[1], (1, 0, false, false, u(64)));
        assert_eq!(tiles[2], (7, 0, false, false, u(128)));
        assert_eq!(tiles[3], (1, 4, false, false, u(64)));
        let mut from_a: Vec<(usize, usize)> = tiles
            .iter()
            .filter(|t| t.4 == u(128))
            .map(|t| (t.0, t.1))
            .collect();
        from_a.sort();
        let mut expect: Vec<(usize, usize)> = (0..3)
            .flat_map(|r| (0..3).map(move |c| (1 + c * 6, r * 4)))
            .collect();
        expect.sort();
        assert_eq!(from_a, expect);
        // max_tiles truncates the same sequence.
        assert_eq!(set.holdout_tiles(th, tw, 3), all[..3 * th * tw * 3]);
        assert!(set.holdout_tiles(th, tw, 0).is_empty());
        // Too large for every held-out image: nothing.
        assert!(set.holdout_tiles(30, 30, 10).is_empty());
    }
}
