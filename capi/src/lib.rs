//! # ipc-codec C ABI
//!
//! A small C interface to the `ipc-codec` decoder, built as `libipccodec.a` and
//! `libipccodec.so` (`.dylib`, `.dll`). The matching hand-written header is
//! `capi/include/ipc_codec.h`; this file and the header must change together.
//!
//! The surface:
//!
//! * [`ipc_pack_load`] / [`ipc_pack_free`]: an opaque [`IpcPack`] read from a model pack
//!   file (a zstd frame around safetensors), and [`ipc_pack_id`], its identity;
//! * [`ipc_probe`]: parse an `.ipc` header into an [`IpcInfo`] without a pack;
//! * [`ipc_decode_image8`], [`ipc_decode_image16`], [`ipc_decode_audio16`]: decode a
//!   whole file held in memory into a buffer the caller allocated;
//! * [`ipc_last_error`] / [`ipc_last_error_code`]: a message and a stable short code
//!   describing the last failure on the calling thread.
//!
//! Every function that can fail returns `IPC_OK` (0) or one of the negative `IPC_ERR_*`
//! statuses, one per error category of [`ipc_codec::Error`] plus argument errors and
//! internal errors. No panic crosses the boundary: every entry point runs inside
//! [`std::panic::catch_unwind`] and reports a panic as [`IPC_ERR_PANIC`] (with the
//! default `panic = "unwind"`; a build with `panic = "abort"` aborts instead).
//!
//! Raw pointers are unavoidable here. Each function checks its pointers for null,
//! alignment and size before turning them into references, and every `unsafe` block
//! states what makes it sound; what cannot be checked (that a non-null pointer really
//! points to `len` readable bytes, that an `IpcPack *` came from [`ipc_pack_load`]) is
//! the caller's contract, spelled out in each function's `# Safety` section.
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CString};
use std::mem::{align_of, size_of, ManuallyDrop};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;

use ipc_codec::container::Container;
use ipc_codec::{
    Decoded, DecodedAudio, DecodedImage, Decoder, Error, Geometry, Header, ImagePixels, Limits,
    ModelPack, PackError,
};

/// Success.
pub const IPC_OK: c_int = 0;
/// The input is not a valid `.ipc` file: truncated, damaged (checksum) or malformed.
pub const IPC_ERR_FORMAT: c_int = -1;
/// The file is well formed but uses a feature this decoder does not implement
/// (a newer format version, reserved fields, alpha).
pub const IPC_ERR_UNSUPPORTED: c_int = -2;
/// Decoding would exceed the decoder's resource limits.
pub const IPC_ERR_LIMITS: c_int = -3;
/// The file was made with another model pack than the one supplied
/// ([`ipc_probe`] tells which: `IpcInfo::pack_id`).
pub const IPC_ERR_WRONG_PACK: c_int = -4;
/// The file names the supplied pack but does not fit it (modality, tile size,
/// quality level): the file is inconsistent.
pub const IPC_ERR_PACK_MISMATCH: c_int = -5;
/// The model pack file could not be read or is invalid.
pub const IPC_ERR_PACK: c_int = -6;
/// A caller error: a null or misaligned pointer, a buffer of the wrong size,
/// overlapping buffers, or a decode function that does not match the file's kind.
pub const IPC_ERR_ARGUMENT: c_int = -7;
/// An internal error (a panic in the decoder) was caught. It is a bug; please report it.
pub const IPC_ERR_PANIC: c_int = -8;
/// Any other failure (an error category added to the library later).
pub const IPC_ERR_OTHER: c_int = -9;

/// `IpcInfo::modality` of an image.
pub const IPC_MODALITY_IMAGE: u32 = 1;
/// `IpcInfo::modality` of audio.
pub const IPC_MODALITY_AUDIO: u32 = 2;

/// A loaded, validated model pack with its decoder. Opaque to C; create it with
/// [`ipc_pack_load`] and release it with [`ipc_pack_free`]. The decoder's
/// per-pack synthesis state is computed once, at load, and every decode call reuses
/// it. Decoding only reads the handle, so one pack may be used by several threads at
/// once.
pub struct IpcPack {
    /// Borrows the pack below, so it is dropped first ([`Drop`]).
    decoder: ManuallyDrop<Decoder<'static>>,
    /// Owned by the handle: from `Box::into_raw` in [`IpcPack::new`], released in
    /// [`Drop`] after the decoder.
    pack: NonNull<ModelPack>,
}

impl IpcPack {
    fn new(pack: ModelPack) -> IpcPack {
        let pack = NonNull::from(Box::leak(Box::new(pack)));
        // SAFETY: `pack` points to a live, initialised ModelPack that this handle owns
        // and frees only in `Drop`, after dropping the decoder, and nothing mutates it:
        // a shared reference to it stays valid for the decoder's whole life.
        let decoder = Decoder::new(unsafe { &*pack.as_ptr() });
        IpcPack {
            decoder: ManuallyDrop::new(decoder),
            pack,
        }
    }

    fn pack(&self) -> &ModelPack {
        self.decoder.pack()
    }
}

impl Drop for IpcPack {
    fn drop(&mut self) {
        // SAFETY: the decoder is dropped here, once, and not used again.
        unsafe { ManuallyDrop::drop(&mut self.decoder) };
        // SAFETY: `pack` came from `Box::leak` in `IpcPack::new`, is released only
        // here, and nothing borrows it any more (the decoder was its only borrower).
        drop(unsafe { Box::from_raw(self.pack.as_ptr()) });
    }
}

// SAFETY: an `IpcPack` owns its ModelPack (through `pack`) and a Decoder that only
// reads it; both are Send and Sync (checked below) and neither has interior
// mutability, so moving the handle to another thread or sharing it is as safe as
// doing so with the two values themselves.
unsafe impl Send for IpcPack {}
// SAFETY: as for Send.
unsafe impl Sync for IpcPack {}

// The C header promises that a pack may be shared between threads.
const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<ModelPack>();
    assert_send_sync::<Decoder<'static>>();
    assert_send_sync::<IpcPack>();
};

/// What the header of an `.ipc` file says (C `IpcInfo`). Fields that do not apply to
/// the file's modality are zero. The layout is fixed: 64 bytes, no padding.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct IpcInfo {
    /// [`IPC_MODALITY_IMAGE`] or [`IPC_MODALITY_AUDIO`].
    pub modality: u32,
    /// Image width in pixels (0 for audio).
    pub width: u32,
    /// Image height in pixels (0 for audio).
    pub height: u32,
    /// Image: 1 (grey) or 3 (RGB). Audio: 1 to 255.
    pub channels: u32,
    /// Bits per decoded sample: 8 or 16 for images, 16 for audio.
    pub bit_depth: u32,
    /// Audio samples per second (0 for images).
    pub sample_rate: u32,
    /// Audio samples per channel (0 for images).
    pub frames: u32,
    /// The quality level of the pack used to code the file.
    pub quality_level: u32,
    /// Identity of the model pack the file must be decoded with (compare with
    /// [`ipc_pack_id`]).
    pub pack_id: [u8; 16],
    /// Samples a decode writes: `width * height * channels` or `frames * channels`.
    /// This is the length, in elements, that the decode buffer must have.
    pub samples: u64,
    /// Length in bytes of the whole file, as the header declares it.
    pub file_len: u64,
}

const _: () = {
    assert!(size_of::<IpcInfo>() == 64);
    assert!(std::mem::offset_of!(IpcInfo, pack_id) == 32);
    assert!(std::mem::offset_of!(IpcInfo, samples) == 48);
    assert!(std::mem::offset_of!(IpcInfo, file_len) == 56);
};

impl IpcInfo {
    fn from_header(header: &Header) -> IpcInfo {
        let mut info = IpcInfo {
            quality_level: header.quality_level.into(),
            pack_id: *header.pack_id.as_bytes(),
            samples: header.geometry.sample_count(),
            file_len: header.file_len(),
            ..IpcInfo::default()
        };
        match header.geometry {
            Geometry::Image {
                width,
                height,
                channels,
                bit_depth,
            } => {
                info.modality = IPC_MODALITY_IMAGE;
                info.width = width;
                info.height = height;
                info.channels = channels.into();
                info.bit_depth = bit_depth.into();
            }
            Geometry::Audio {
                sample_rate,
                frames,
                channels,
                bit_depth,
            } => {
                info.modality = IPC_MODALITY_AUDIO;
                info.sample_rate = sample_rate;
                info.frames = frames;
                info.channels = channels.into();
                info.bit_depth = bit_depth.into();
            }
        }
        info
    }
}

// ---------------------------------------------------------------------------------
// Errors and the per-thread last error.

/// Why an entry point failed.
enum Failure {
    /// The library reported an error.
    Codec(Error),
    /// The caller passed something unusable.
    Argument(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        match e {
            // The caller's mistake, reported as the ABI's own argument errors are.
            Error::InvalidArgument(message) => Failure::Argument(message),
            e => Failure::Codec(e),
        }
    }
}

impl From<PackError> for Failure {
    fn from(e: PackError) -> Self {
        Failure::Codec(Error::Pack(e))
    }
}

fn argument(message: impl Into<String>) -> Failure {
    Failure::Argument(message.into())
}

/// The status of a library error: one per category.
fn status_of(e: &Error) -> c_int {
    match e {
        Error::Format(_) => IPC_ERR_FORMAT,
        Error::Unsupported(_) => IPC_ERR_UNSUPPORTED,
        Error::InvalidArgument(_) => IPC_ERR_ARGUMENT,
        Error::LimitExceeded { .. } => IPC_ERR_LIMITS,
        Error::WrongPack { .. } => IPC_ERR_WRONG_PACK,
        Error::PackMismatch { .. } => IPC_ERR_PACK_MISMATCH,
        Error::Pack(_) => IPC_ERR_PACK,
        // `Io` cannot come from decoding bytes in memory; later categories land here.
        _ => IPC_ERR_OTHER,
    }
}

struct LastError {
    message: CString,
    code: CString,
}

thread_local! {
    static LAST_ERROR: RefCell<LastError> = RefCell::new(LastError {
        message: CString::default(),
        code: CString::default(),
    });
}

/// Makes a C string of `s`, replacing any NUL (never expected in messages).
fn c_string(s: &str) -> CString {
    CString::new(s.replace('\0', "\u{fffd}")).unwrap_or_default()
}

fn set_last_error(code: &str, message: &str) {
    let (code, message) = (c_string(code), c_string(message));
    // `try_with` fails only while the thread is being torn down; then nothing is kept.
    let _ = LAST_ERROR.try_with(|cell| {
        if let Ok(mut last) = cell.try_borrow_mut() {
            *last = LastError { message, code };
        }
    });
}

fn last_error_ptr(field: fn(&LastError) -> *const c_char) -> *const c_char {
    LAST_ERROR
        .try_with(|cell| cell.try_borrow().map(|last| field(&last)).ok())
        .ok()
        .flatten()
        .unwrap_or(c"".as_ptr())
}

/// The text of a panic payload.
fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "unknown panic"
    }
}

/// Runs the body of an entry point: clears the thread's last error, catches panics,
/// and turns the outcome into a status, recording any failure as the last error.
fn guard(body: impl FnOnce() -> Result<(), Failure>) -> c_int {
    set_last_error("", "");
    // AssertUnwindSafe: after a panic the only state the body could have left half
    // written is the caller's output buffer (documented as unspecified on failure);
    // packs are only read.
    let (status, code, message) = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => return IPC_OK,
        Ok(Err(Failure::Codec(e))) => (status_of(&e), e.code(), e.to_string()),
        Ok(Err(Failure::Argument(m))) => (IPC_ERR_ARGUMENT, "argument", m),
        Err(payload) => (
            IPC_ERR_PANIC,
            "panic",
            format!("internal error in ipc-codec: {}", panic_message(&*payload)),
        ),
    };
    set_last_error(code, &message);
    status
}

// ---------------------------------------------------------------------------------
// Pointer checks.

/// Checks what can be checked of a buffer of `len` elements of `T` at `ptr`: not null,
/// aligned, and small enough for a slice.
fn check_buffer<T>(ptr: *const T, len: usize, name: &str) -> Result<(), Failure> {
    if ptr.is_null() {
        return Err(argument(format!("{name} is NULL")));
    }
    if (ptr as usize) % align_of::<T>() != 0 {
        return Err(argument(format!(
            "{name} is not aligned for its element type"
        )));
    }
    if len > isize::MAX as usize / size_of::<T>().max(1) {
        return Err(argument(format!("{name} length {len} is too large")));
    }
    Ok(())
}

/// A shared slice over a caller's buffer.
///
/// # Safety
/// If `ptr` is not null, it must point to `len` initialised elements that stay valid
/// and unmodified for `'a`.
unsafe fn input<'a, T>(ptr: *const T, len: usize, name: &str) -> Result<&'a [T], Failure> {
    check_buffer(ptr, len, name)?;
    // SAFETY: `ptr` is non-null and aligned and `len * size_of::<T>()` fits in isize
    // (checked above); validity for reads during 'a is this function's contract.
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// A mutable slice over a caller's buffer.
///
/// # Safety
/// If `ptr` is not null, it must point to `len` writable elements that nothing else
/// accesses during `'a`.
unsafe fn output<'a, T>(ptr: *mut T, len: usize, name: &str) -> Result<&'a mut [T], Failure> {
    check_buffer(ptr, len, name)?;
    // SAFETY: as in `input`; exclusive access during 'a is this function's contract.
    Ok(unsafe { std::slice::from_raw_parts_mut(ptr, len) })
}

/// Whether the byte ranges of two caller buffers are disjoint (if not, decoding would read
/// its input while writing it). Check before making slices of them.
fn disjoint<T>(data: *const u8, len: usize, out: *const T, out_len: usize) -> bool {
    let (a0, b0) = (data as usize, out as usize);
    let a1 = a0.saturating_add(len);
    let b1 = b0.saturating_add(out_len.saturating_mul(size_of::<T>()));
    a1 <= b0 || b1 <= a0
}

/// The pack behind a caller's handle.
///
/// # Safety
/// If `pack` is not null, it must come from [`ipc_pack_load`] and not have been freed.
unsafe fn pack_ref<'a>(pack: *const IpcPack) -> Result<&'a IpcPack, Failure> {
    if pack.is_null() {
        return Err(argument("pack is NULL"));
    }
    // SAFETY: non-null, and by the contract a live `IpcPack` from `Box::into_raw`
    // (so aligned and initialised), which callers never mutate.
    Ok(unsafe { &*pack })
}

// ---------------------------------------------------------------------------------
// Packs.

/// Reads a model pack file (a zstd frame around safetensors) and stores a handle to it
/// in `*pack_out`; `*pack_out` is set to NULL on failure. The bytes are not kept. The
/// handle also holds the decoder's per-pack synthesis state, computed here once.
///
/// Returns `IPC_OK`, `IPC_ERR_PACK` (invalid pack) or `IPC_ERR_ARGUMENT`.
///
/// # Safety
/// `data` must be NULL or point to `len` readable bytes; `pack_out` must be NULL or
/// point to a writable `IpcPack *`.
#[no_mangle]
pub unsafe extern "C" fn ipc_pack_load(
    data: *const u8,
    len: usize,
    pack_out: *mut *mut IpcPack,
) -> c_int {
    guard(|| {
        // SAFETY: `pack_out` is checked and, by the contract, writable.
        let slot = unsafe { output(pack_out, 1, "pack_out") }?;
        slot[0] = std::ptr::null_mut();
        // SAFETY: by the contract `data` points to `len` readable bytes.
        let bytes = unsafe { input(data, len, "data") }?;
        let pack = ModelPack::from_pack_file(bytes)?;
        slot[0] = Box::into_raw(Box::new(IpcPack::new(pack)));
        Ok(())
    })
}

/// Releases a pack from [`ipc_pack_load`]. NULL is accepted and ignored. Does not
/// change the thread's last error.
///
/// # Safety
/// `pack` must be NULL or a pack from [`ipc_pack_load`] that has not been freed and
/// that no other thread is using.
#[no_mangle]
pub unsafe extern "C" fn ipc_pack_free(pack: *mut IpcPack) {
    if pack.is_null() {
        return;
    }
    // A panic while dropping would be a bug; it must not unwind into C.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: by the contract `pack` came from `Box::into_raw` in `ipc_pack_load`
        // and is released only here, once.
        drop(unsafe { Box::from_raw(pack) });
    }));
}

/// Writes the 16-byte identity of a pack to `id_out` (the first 16 bytes of the
/// SHA-256 of its decompressed contents), comparable with `IpcInfo::pack_id`.
///
/// Returns `IPC_OK` or `IPC_ERR_ARGUMENT`.
///
/// # Safety
/// `pack` must be NULL or a live pack from [`ipc_pack_load`]; `id_out` must be NULL or
/// point to 16 writable bytes.
#[no_mangle]
pub unsafe extern "C" fn ipc_pack_id(pack: *const IpcPack, id_out: *mut u8) -> c_int {
    guard(|| {
        // SAFETY: by the contract `pack` is a live pack.
        let pack = unsafe { pack_ref(pack) }?;
        // SAFETY: by the contract `id_out` points to 16 writable bytes.
        let out = unsafe { output(id_out, 16, "id_out") }?;
        out.copy_from_slice(pack.pack().id().as_bytes());
        Ok(())
    })
}

// ---------------------------------------------------------------------------------
// Probing and decoding.

/// Parses the 50-byte header of an `.ipc` file and fills `*info_out`. Needs no pack
/// and reads only the header: `data` may be just the first 50 bytes. The payload and
/// checksum are not verified (decoding does that). `*info_out` is zeroed on failure.
///
/// Returns `IPC_OK`, `IPC_ERR_FORMAT`, `IPC_ERR_UNSUPPORTED` or `IPC_ERR_ARGUMENT`.
///
/// # Safety
/// `data` must be NULL or point to `len` readable bytes; `info_out` must be NULL or
/// point to a writable `IpcInfo`.
#[no_mangle]
pub unsafe extern "C" fn ipc_probe(data: *const u8, len: usize, info_out: *mut IpcInfo) -> c_int {
    guard(|| {
        // SAFETY: by the contract `info_out` points to a writable `IpcInfo`.
        let info = unsafe { output(info_out, 1, "info_out") }?;
        info[0] = IpcInfo::default();
        // SAFETY: by the contract `data` points to `len` readable bytes.
        let bytes = unsafe { input(data, len, "data") }?;
        let header = Header::parse(bytes)?;
        if header.geometry.checked_sample_count().is_none() {
            // Its sample count does not fit the `samples` field; no limit admits it.
            return Err(Error::LimitExceeded {
                what: "decoded samples (width x height x channels)",
                value: u64::MAX,
                limit: Limits::default().max_pixels.saturating_mul(3),
            }
            .into());
        }
        info[0] = IpcInfo::from_header(&header);
        Ok(())
    })
}

/// What a decode function produces.
#[derive(Clone, Copy)]
enum Target {
    Image8,
    Image16,
    Audio16,
}

/// Checks that the file's kind matches the function called and that the caller's
/// buffer has exactly the right number of elements.
fn check_target(header: &Header, target: Target, buf_len: usize) -> Result<(), Failure> {
    let wanted = match (target, header.geometry) {
        (Target::Image8, Geometry::Image { bit_depth: 8, .. })
        | (Target::Image16, Geometry::Image { bit_depth: 16, .. })
        | (Target::Audio16, Geometry::Audio { .. }) => header.geometry.sample_count(),
        (_, Geometry::Audio { .. }) => {
            return Err(argument(
                "the file holds audio; decode it with ipc_decode_audio16",
            ))
        }
        (_, Geometry::Image { bit_depth, .. }) => {
            let function = if bit_depth == 8 {
                "ipc_decode_image8"
            } else {
                "ipc_decode_image16"
            };
            return Err(argument(format!(
                "the file holds a {bit_depth}-bit image; decode it with {function}"
            )));
        }
    };
    if buf_len as u64 != wanted {
        return Err(argument(format!(
            "the buffer holds {buf_len} samples but the file decodes to {wanted}"
        )));
    }
    Ok(())
}

/// The common part of the decode functions: checks the arguments, parses the header,
/// checks the target, then runs `decode` with the pack, the file and the buffer.
///
/// # Safety
/// As for the public decode functions.
unsafe fn decode_with<T>(
    pack: *const IpcPack,
    data: *const u8,
    len: usize,
    out: *mut T,
    out_len: usize,
    target: Target,
    decode: impl FnOnce(&Decoder<'static>, &Container<'_>, &mut [T]) -> Result<(), Failure>,
) -> Result<(), Failure> {
    // SAFETY: by the contract `pack` is a live pack.
    let pack = unsafe { pack_ref(pack) }?;
    check_buffer(data, len, "data")?;
    check_buffer(out, out_len, "output buffer")?;
    if !disjoint(data, len, out, out_len) {
        return Err(argument("the output buffer overlaps the input"));
    }
    // SAFETY: by the contract `data` points to `len` readable bytes, unmodified
    // during the call (it does not overlap the output, checked above).
    let bytes = unsafe { input(data, len, "data") }?;
    // SAFETY: by the contract `out` points to `out_len` writable elements, and it
    // does not overlap `bytes` (checked above).
    let buf = unsafe { output(out, out_len, "output buffer") }?;
    let header = Header::parse(bytes)?;
    // The limits first: a header of absurd size is a limit failure, whatever the
    // caller's buffer (the decoders check the same limits again).
    Limits::default().check(&header)?;
    check_target(&header, target, buf.len())?;
    // Split and verified once (checksum included); the decoder takes it as it is.
    let container = Container::parse(bytes, &Limits::default())?;
    decode(&pack.decoder, &container, buf)
}

/// Decodes an 8-bit image (1 or 3 channels) into `pixels`: row-major, channels
/// interleaved, exactly `width * height * channels` bytes (`IpcInfo::samples`).
///
/// Returns `IPC_OK` or a negative status; on failure the buffer's contents are
/// unspecified and [`ipc_last_error`] says why. A 16-bit image or an audio file gives
/// `IPC_ERR_ARGUMENT`.
///
/// # Safety
/// `pack` must be NULL or a live pack from [`ipc_pack_load`]; `data` must be NULL or
/// point to `len` readable bytes; `pixels` must be NULL or point to `pixels_len`
/// writable bytes not otherwise accessed during the call.
#[no_mangle]
pub unsafe extern "C" fn ipc_decode_image8(
    pack: *const IpcPack,
    data: *const u8,
    len: usize,
    pixels: *mut u8,
    pixels_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the contract of this function is that of `decode_with`.
        unsafe {
            decode_with(
                pack,
                data,
                len,
                pixels,
                pixels_len,
                Target::Image8,
                |decoder, file, buf| {
                    decoder.decode_container_image_into(file, buf)?;
                    Ok(())
                },
            )
        }
    })
}

/// Decodes a 16-bit image (1 or 3 channels) into `pixels`: row-major, channels
/// interleaved, exactly `width * height * channels` samples (`IpcInfo::samples`;
/// `pixels_len` counts `uint16_t` elements, not bytes), in native byte order.
///
/// Returns as [`ipc_decode_image8`]; an 8-bit image or an audio file gives
/// `IPC_ERR_ARGUMENT`.
///
/// # Safety
/// As for [`ipc_decode_image8`], with `pixels` pointing to `pixels_len` writable,
/// aligned `uint16_t`.
#[no_mangle]
pub unsafe extern "C" fn ipc_decode_image16(
    pack: *const IpcPack,
    data: *const u8,
    len: usize,
    pixels: *mut u16,
    pixels_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the contract of this function is that of `decode_with`.
        unsafe {
            decode_with(
                pack,
                data,
                len,
                pixels,
                pixels_len,
                Target::Image16,
                |decoder, file, buf| {
                    match decoder.decode_container(file)? {
                        Decoded::Image(DecodedImage {
                            pixels: ImagePixels::U16(px),
                            ..
                        }) => buf.copy_from_slice(&px),
                        _ => unreachable!("the header says 16-bit image"),
                    }
                    Ok(())
                },
            )
        }
    })
}

/// Decodes audio into `samples`: 16-bit PCM, channels interleaved, exactly
/// `frames * channels` samples (`IpcInfo::samples`; `samples_len` counts `int16_t`
/// elements, not bytes).
///
/// Returns as [`ipc_decode_image8`]; an image file gives `IPC_ERR_ARGUMENT`.
///
/// # Safety
/// As for [`ipc_decode_image8`], with `samples` pointing to `samples_len` writable,
/// aligned `int16_t`.
#[no_mangle]
pub unsafe extern "C" fn ipc_decode_audio16(
    pack: *const IpcPack,
    data: *const u8,
    len: usize,
    samples: *mut i16,
    samples_len: usize,
) -> c_int {
    guard(|| {
        // SAFETY: the contract of this function is that of `decode_with`.
        unsafe {
            decode_with(
                pack,
                data,
                len,
                samples,
                samples_len,
                Target::Audio16,
                |decoder, file, buf| {
                    match decoder.decode_container(file)? {
                        Decoded::Audio(DecodedAudio { samples, .. }) => {
                            buf.copy_from_slice(&samples)
                        }
                        Decoded::Image(_) => unreachable!("the header says audio"),
                    }
                    Ok(())
                },
            )
        }
    })
}

// ---------------------------------------------------------------------------------
// Last error.

/// A message describing the last failure of an `ipc_*` function on the calling thread,
/// or `""` if the last call succeeded. Never NULL. The string belongs to the library
/// and stays valid until the thread's next call of a function that returns a status.
#[no_mangle]
pub extern "C" fn ipc_last_error() -> *const c_char {
    last_error_ptr(|last| last.message.as_ptr())
}

/// A short stable identifier of the last failure on the calling thread, finer than the
/// status: for example `"checksum"`, `"truncated"`, `"bad-magic"`, `"wrong-pack"`,
/// `"invalid-pack"`, `"argument"`, `"panic"`; `""` if the last call succeeded. Never
/// NULL; valid as for [`ipc_last_error`].
#[no_mangle]
pub extern "C" fn ipc_last_error_code() -> *const c_char {
    last_error_ptr(|last| last.code.as_ptr())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ipc_codec::pack::synthetic::SyntheticPack;
    use ipc_codec::{encode_quantised, FormatError};
    use std::ffi::CStr;

    fn last() -> (String, String) {
        // SAFETY: both functions return valid NUL-terminated strings that live until
        // the next status-returning call on this thread.
        unsafe {
            (
                CStr::from_ptr(ipc_last_error())
                    .to_str()
                    .unwrap()
                    .to_owned(),
                CStr::from_ptr(ipc_last_error_code())
                    .to_str()
                    .unwrap()
                    .to_owned(),
            )
        }
    }

    #[test]
    fn statuses_follow_error_categories() {
        let format = Error::Format(FormatError::BadMagic);
        assert_eq!(status_of(&format), IPC_ERR_FORMAT);
        assert_eq!(
            status_of(&Error::Unsupported("x".into())),
            IPC_ERR_UNSUPPORTED
        );
        let io = Error::Io(std::io::Error::other("x"));
        assert_eq!(status_of(&io), IPC_ERR_OTHER);
        let codes = [
            IPC_OK,
            IPC_ERR_FORMAT,
            IPC_ERR_UNSUPPORTED,
            IPC_ERR_LIMITS,
            IPC_ERR_WRONG_PACK,
            IPC_ERR_PACK_MISMATCH,
            IPC_ERR_PACK,
            IPC_ERR_ARGUMENT,
            IPC_ERR_PANIC,
            IPC_ERR_OTHER,
        ];
        for (i, c) in codes.iter().enumerate() {
            assert_eq!(*c, -(i as c_int));
        }
    }

    #[test]
    fn panics_become_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, IPC_ERR_PANIC);
        let (message, code) = last();
        assert!(message.contains("boom"), "{message}");
        assert_eq!(code, "panic");
        assert_eq!(guard(|| Ok(())), IPC_OK);
        assert_eq!(last(), (String::new(), String::new()));
    }

    /// The conformance vector whose header declares 4294967295 x 4294967295 RGB: its
    /// sample count does not fit 64 bits. Every entry point reports a limit failure
    /// (not a panic, and not a wrapped count compared with the buffer).
    #[test]
    fn absurd_dimensions_are_limit_failures_everywhere() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../codec-tests/invalid/absurd-dimensions.ipc"
        );
        let file = std::fs::read(path).unwrap();
        let header = Header::parse(&file).unwrap();
        assert_eq!(header.geometry.checked_sample_count(), None);
        let pack_file = SyntheticPack::small_image().build().to_pack_file().unwrap();
        let mut pack = std::ptr::null_mut();
        let mut info = IpcInfo::default();
        let (mut px8, mut px16, mut pcm) = ([0u8; 12], [0u16; 12], [0i16; 12]);
        // SAFETY: every pointer is valid for the length given.
        unsafe {
            assert_eq!(
                ipc_pack_load(pack_file.as_ptr(), pack_file.len(), &mut pack),
                IPC_OK
            );
            assert_eq!(
                ipc_probe(file.as_ptr(), file.len(), &mut info),
                IPC_ERR_LIMITS
            );
            assert_eq!(last().1, "limit-exceeded");
            let statuses = [
                ipc_decode_image8(pack, file.as_ptr(), file.len(), px8.as_mut_ptr(), 12),
                ipc_decode_image16(pack, file.as_ptr(), file.len(), px16.as_mut_ptr(), 12),
                ipc_decode_audio16(pack, file.as_ptr(), file.len(), pcm.as_mut_ptr(), 12),
            ];
            assert_eq!(statuses, [IPC_ERR_LIMITS; 3]);
            ipc_pack_free(pack);
        }
    }

    #[test]
    fn null_pointers_are_argument_errors() {
        let mut info = IpcInfo::default();
        let mut pack = std::ptr::null_mut();
        // SAFETY: every pointer is NULL or valid.
        unsafe {
            assert_eq!(ipc_probe(std::ptr::null(), 10, &mut info), IPC_ERR_ARGUMENT);
            assert_eq!(last().1, "argument");
            assert_eq!(
                ipc_probe(c"x".as_ptr().cast(), 1, std::ptr::null_mut()),
                IPC_ERR_ARGUMENT
            );
            assert_eq!(
                ipc_pack_load(std::ptr::null(), 0, &mut pack),
                IPC_ERR_ARGUMENT
            );
            assert!(pack.is_null());
            let mut px = [0u8; 4];
            let status = ipc_decode_image8(std::ptr::null(), px.as_ptr(), 4, px.as_mut_ptr(), 4);
            assert_eq!(status, IPC_ERR_ARGUMENT);
            ipc_pack_free(std::ptr::null_mut());
        }
    }

    /// One pack handle, with the decoder state it owns, decodes on several threads at
    /// once, as the header promises, each call giving the library's pixels.
    #[test]
    fn one_pack_decodes_on_several_threads() {
        let pack_file = SyntheticPack::small_image().build().to_pack_file().unwrap();
        let lib_pack = ModelPack::from_pack_file(&pack_file).unwrap();
        let geometry = Geometry::Image {
            width: 16,
            height: 8,
            channels: 3,
            bit_depth: 8,
        };
        let files: Vec<Vec<u8>> = (0..4)
            .map(|k| {
                let v: Vec<i32> = (0..2 * 4 * 16).map(|i| (i * (k + 2)) % 7 - 3).collect();
                encode_quantised(&lib_pack, geometry, 1, None, &v).unwrap()
            })
            .collect();
        let mut pack = std::ptr::null_mut();
        // SAFETY: valid pointers; the pack is freed after every thread has finished.
        unsafe {
            assert_eq!(
                ipc_pack_load(pack_file.as_ptr(), pack_file.len(), &mut pack),
                IPC_OK
            );
        }
        /// A pack pointer that may cross threads (the handle is Sync).
        #[derive(Clone, Copy)]
        struct Shared(*const IpcPack);
        // SAFETY: `IpcPack` is Sync, and the pointer outlives the threads.
        unsafe impl Send for Shared {}
        let shared = Shared(pack);
        let lib_pack = &lib_pack;
        std::thread::scope(|s| {
            for file in &files {
                s.spawn(move || {
                    let shared = shared;
                    let mut px = vec![0u8; 16 * 8 * 3];
                    for _ in 0..3 {
                        // SAFETY: valid pointers; the pack is live until after the scope.
                        let status = unsafe {
                            ipc_decode_image8(
                                shared.0,
                                file.as_ptr(),
                                file.len(),
                                px.as_mut_ptr(),
                                px.len(),
                            )
                        };
                        assert_eq!(status, IPC_OK);
                        let mut want = vec![0u8; px.len()];
                        Decoder::new(lib_pack)
                            .decode_image_into(file, &mut want)
                            .unwrap();
                        assert_eq!(px, want);
                    }
                });
            }
        });
        // SAFETY: from ipc_pack_load, freed once, no thread uses it any more.
        unsafe { ipc_pack_free(pack) };
    }

    #[test]
    fn decodes_like_the_library_and_rejects_bad_buffers() {
        let pack_file = SyntheticPack::small_image().build().to_pack_file().unwrap();
        let lib_pack = ModelPack::from_pack_file(&pack_file).unwrap();
        let geometry = Geometry::Image {
            width: 12,
            height: 9,
            channels: 3,
            bit_depth: 8,
        };
        let v: Vec<i32> = (0..4 * 4 * 16).map(|i| (i % 7) - 3).collect();
        let file = encode_quantised(&lib_pack, geometry, 1, None, &v).unwrap();
        let Decoded::Image(expected) = Decoder::new(&lib_pack).decode(&file).unwrap() else {
            panic!("image expected")
        };
        let ImagePixels::U8(expected) = expected.pixels else {
            panic!("8-bit expected")
        };

        let mut pack = std::ptr::null_mut();
        let mut info = IpcInfo::default();
        let mut px = vec![0u8; 12 * 9 * 3];
        let mut id = [0u8; 16];
        // SAFETY: every pointer is valid for the length given; `pack` is live until freed.
        unsafe {
            assert_eq!(
                ipc_pack_load(pack_file.as_ptr(), pack_file.len(), &mut pack),
                IPC_OK
            );
            assert_eq!(ipc_probe(file.as_ptr(), file.len(), &mut info), IPC_OK);
            assert_eq!((info.width, info.height, info.channels), (12, 9, 3));
            assert_eq!(info.samples, 12 * 9 * 3);
            assert_eq!(info.file_len, file.len() as u64);
            assert_eq!(ipc_pack_id(pack, id.as_mut_ptr()), IPC_OK);
            assert_eq!(id, info.pack_id);

            let status =
                ipc_decode_image8(pack, file.as_ptr(), file.len(), px.as_mut_ptr(), px.len());
            assert_eq!(status, IPC_OK, "{:?}", last());
            assert_eq!(px, expected);

            let short = px.len() - 1;
            let status = ipc_decode_image8(pack, file.as_ptr(), file.len(), px.as_mut_ptr(), short);
            assert_eq!(status, IPC_ERR_ARGUMENT);
            let mut audio = vec![0i16; px.len()];
            let status = ipc_decode_audio16(
                pack,
                file.as_ptr(),
                file.len(),
                audio.as_mut_ptr(),
                audio.len(),
            );
            assert_eq!(status, IPC_ERR_ARGUMENT);
            assert!(last().0.contains("ipc_decode_image8"), "{:?}", last());

            // Output overlapping the input.
            let mut both = file.clone();
            both.resize(file.len() + px.len(), 0);
            let (input, output) = (both.as_ptr(), both.as_mut_ptr().add(file.len() - 1));
            let status = ipc_decode_image8(pack, input, file.len(), output, px.len());
            assert_eq!(status, IPC_ERR_ARGUMENT);

            let mut damaged = file.clone();
            let last_byte = damaged.len() - 5;
            damaged[last_byte] ^= 0x10;
            let status = ipc_decode_image8(
                pack,
                damaged.as_ptr(),
                damaged.len(),
                px.as_mut_ptr(),
                px.len(),
            );
            assert_eq!(status, IPC_ERR_FORMAT);
            assert_eq!(last().1, "checksum");

            ipc_pack_free(pack);
        }
    }
}
