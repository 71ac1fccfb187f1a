/*
 * ipc_codec.h - C interface to the ipc-codec decoder (libipccodec).
 *
 * Decodes .ipc files (images and audio coded with Instance Pattern Composers)
 * with a model pack. Hand-written to match capi/src/lib.rs; the two change
 * together.
 *
 * Conventions:
 *  - Functions that can fail return IPC_OK (0) or a negative IPC_ERR_* status.
 *    On failure, ipc_last_error() and ipc_last_error_code() describe the error.
 *  - Every pointer argument is checked for NULL (IPC_ERR_ARGUMENT), but a
 *    non-NULL pointer must point to as much memory as its length says.
 *  - Output buffers are allocated by the caller and must have exactly the size
 *    the file decodes to (IpcInfo.samples elements; learn it with ipc_probe).
 *    Input and output buffers must not overlap. On failure the contents of an
 *    output buffer are unspecified.
 *  - An IpcPack is immutable once loaded: several threads may decode with the
 *    same pack at the same time. The last error is kept per thread.
 *  - Decoding uses all CPU cores. Files may come from untrusted sources: sizes
 *    are checked against limits (2^26 pixels, 2^28 audio samples, 2^26
 *    elements of V, 256 MiB payload) before allocation, and errors, not
 *    crashes, report bad data (IPC_ERR_LIMITS for a size beyond a limit).
 *    Besides the caller's buffers a decode allocates 4 bytes per element of V
 *    (2 bytes per pixel with the built-in image pack) and about 12 MB plus
 *    2 MB per thread: at most about 256 MiB at the limits. Probe first to
 *    refuse sizes you do not want to decode.
 *  - No Rust panic crosses this interface: one is reported as IPC_ERR_PANIC.
 *
 * Linking: -lipccodec (shared), or libipccodec.a plus, on Linux,
 * -lpthread -ldl -lm -lrt -lutil -lgcc_s (static).
 */
#ifndef IPC_CODEC_H
#define IPC_CODEC_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Status codes: one per error category, then caller and internal errors. */
enum IpcStatus {
    /* Success. */
    IPC_OK = 0,
    /* Not a valid .ipc file: truncated, damaged (checksum) or malformed. */
    IPC_ERR_FORMAT = -1,
    /* Well formed, but uses a feature this decoder does not implement
     * (newer format version, reserved fields, alpha). */
    IPC_ERR_UNSUPPORTED = -2,
    /* Decoding would exceed the decoder's resource limits. */
    IPC_ERR_LIMITS = -3,
    /* The file was made with another model pack than the one supplied;
     * IpcInfo.pack_id names the one it needs. */
    IPC_ERR_WRONG_PACK = -4,
    /* The file names the supplied pack but does not fit it (modality, tile
     * size, quality level): the file is inconsistent. */
    IPC_ERR_PACK_MISMATCH = -5,
    /* The model pack file could not be read or is invalid. */
    IPC_ERR_PACK = -6,
    /* Caller error: NULL or misaligned pointer, buffer of the wrong size,
     * overlapping buffers, or a decode function that does not match the
     * file (e.g. ipc_decode_image8 on audio). */
    IPC_ERR_ARGUMENT = -7,
    /* Internal error (a bug in the decoder was caught); please report it. */
    IPC_ERR_PANIC = -8,
    /* Any other failure (an error category added in a later version). */
    IPC_ERR_OTHER = -9
};

/* IpcInfo.modality values. */
#define IPC_MODALITY_IMAGE 1u
#define IPC_MODALITY_AUDIO 2u

/* A loaded model pack (opaque). */
typedef struct IpcPack IpcPack;

/* What the header of an .ipc file says. Fields that do not apply to the
 * file's modality are 0. 64 bytes, no padding. */
typedef struct IpcInfo {
    uint32_t modality;      /* IPC_MODALITY_IMAGE or IPC_MODALITY_AUDIO */
    uint32_t width;         /* image width in pixels (0 for audio) */
    uint32_t height;        /* image height in pixels (0 for audio) */
    uint32_t channels;      /* image: 1 (grey) or 3 (RGB); audio: 1..255 */
    uint32_t bit_depth;     /* image: 8 or 16; audio: 16 */
    uint32_t sample_rate;   /* audio samples per second (0 for images) */
    uint32_t frames;        /* audio samples per channel (0 for images) */
    uint32_t quality_level; /* quality level of the pack used to code it */
    uint8_t pack_id[16];    /* the model pack the file needs (ipc_pack_id) */
    uint64_t samples;       /* elements a decode writes: width*height*channels
                               or frames*channels = decode buffer length */
    uint64_t file_len;      /* length in bytes of the whole file */
} IpcInfo;

/*
 * Reads a model pack file (a zstd frame around safetensors) from memory and
 * stores a new handle in *pack_out (NULL on failure). The bytes are copied;
 * the caller may free them afterwards. Release the pack with ipc_pack_free.
 * The handle also holds the decoder's per-pack synthesis state, computed here
 * once: load a pack once and decode many files with it.
 * Returns IPC_OK, IPC_ERR_PACK or IPC_ERR_ARGUMENT.
 */
int ipc_pack_load(const uint8_t *data, size_t len, IpcPack **pack_out);

/*
 * Releases a pack. NULL is ignored. No other thread may be using the pack.
 * Does not change the last error.
 */
void ipc_pack_free(IpcPack *pack);

/*
 * Writes the 16-byte identity of a pack to id_out, comparable with
 * IpcInfo.pack_id. Returns IPC_OK or IPC_ERR_ARGUMENT.
 */
int ipc_pack_id(const IpcPack *pack, uint8_t id_out[16]);

/*
 * Parses the 50-byte header of an .ipc file into *info_out. Needs no pack and
 * reads only the header, so data may be just the first 50 bytes; the payload
 * and checksum are verified only by decoding. *info_out is zeroed on failure.
 * Returns IPC_OK, IPC_ERR_FORMAT, IPC_ERR_UNSUPPORTED or IPC_ERR_ARGUMENT.
 */
int ipc_probe(const uint8_t *data, size_t len, IpcInfo *info_out);

/*
 * Decodes a complete 8-bit image file (data, len) into pixels: row-major,
 * channels interleaved, exactly pixels_len = width*height*channels bytes.
 * A 16-bit image or an audio file gives IPC_ERR_ARGUMENT.
 * Returns IPC_OK or any negative status.
 */
int ipc_decode_image8(const IpcPack *pack, const uint8_t *data, size_t len,
                      uint8_t *pixels, size_t pixels_len);

/*
 * Decodes a complete 16-bit image file into pixels (native byte order):
 * row-major, channels interleaved, exactly pixels_len = width*height*channels
 * elements (uint16_t, not bytes). An 8-bit image or an audio file gives
 * IPC_ERR_ARGUMENT. Returns IPC_OK or any negative status.
 */
int ipc_decode_image16(const IpcPack *pack, const uint8_t *data, size_t len,
                       uint16_t *pixels, size_t pixels_len);

/*
 * Decodes a complete audio file into samples: 16-bit PCM, channels
 * interleaved, exactly samples_len = frames*channels elements (int16_t, not
 * bytes). An image file gives IPC_ERR_ARGUMENT.
 * Returns IPC_OK or any negative status.
 */
int ipc_decode_audio16(const IpcPack *pack, const uint8_t *data, size_t len,
                       int16_t *samples, size_t samples_len);

/*
 * A message describing the last failure on the calling thread, or "" if the
 * last call succeeded. Never NULL. Owned by the library; valid until the
 * thread's next call of a function that returns a status.
 */
const char *ipc_last_error(void);

/*
 * A short stable identifier of the last failure on the calling thread, finer
 * than the status: e.g. "checksum", "truncated", "bad-magic", "wrong-pack",
 * "invalid-pack", "argument", "panic"; "" after a success. Never NULL; valid
 * as for ipc_last_error.
 */
const char *ipc_last_error_code(void);

#ifdef __cplusplus
} /* extern "C" */
#endif

#endif /* IPC_CODEC_H */
