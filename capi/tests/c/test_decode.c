/*
 * Exercises the ipc-codec C ABI from C. Run by capi/tests/c_abi.rs, which
 * writes the inputs and the expected decode.
 *
 *   test_decode MODE PACK IPC EXPECTED OTHER_PACK A B C
 *
 * MODE is image8, image16 or audio16. PACK is the model pack of the .ipc file
 * IPC; EXPECTED is the raw decode the Rust decoder produced (native-endian
 * samples); OTHER_PACK is any other valid pack. A B C are the geometry the
 * header must hold: width height channels for images, sample_rate frames
 * channels for audio.
 *
 * Prints one line per failed check and exits non-zero if any failed.
 */
#include "ipc_codec.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__STDC_VERSION__) && __STDC_VERSION__ >= 201112L
_Static_assert(sizeof(IpcInfo) == 64, "IpcInfo is 64 bytes");
_Static_assert(offsetof(IpcInfo, pack_id) == 32, "IpcInfo.pack_id offset");
_Static_assert(offsetof(IpcInfo, samples) == 48, "IpcInfo.samples offset");
_Static_assert(offsetof(IpcInfo, file_len) == 56, "IpcInfo.file_len offset");
#endif

static int failures = 0;

#define CHECK(cond)                                                         \
    do {                                                                    \
        if (!(cond)) {                                                      \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, \
                    #cond);                                                 \
            failures++;                                                     \
        }                                                                   \
    } while (0)

/* Checks that a call returned `want`, and that the last error agrees. */
#define CHECK_STATUS(call, want, want_code)                                  \
    do {                                                                     \
        int got_ = (call);                                                   \
        const char *msg_ = ipc_last_error();                                 \
        const char *code_ = ipc_last_error_code();                           \
        if (got_ != (want)) {                                                \
            fprintf(stderr, "%s:%d: %s returned %d, expected %d (%s: %s)\n", \
                    __FILE__, __LINE__, #call, got_, (int)(want), code_,    \
                    msg_);                                                   \
            failures++;                                                      \
        } else if ((want) != IPC_OK &&                                       \
                   (msg_[0] == '\0' || strcmp(code_, (want_code)) != 0)) {   \
            fprintf(stderr,                                                  \
                    "%s:%d: %s: last error is \"%s\" (%s), expected a "      \
                    "message with code %s\n",                                \
                    __FILE__, __LINE__, #call, msg_, code_, (want_code));    \
            failures++;                                                      \
        } else if ((want) == IPC_OK && (msg_[0] != '\0' || code_[0] != '\0')) { \
            fprintf(stderr, "%s:%d: %s succeeded but last error is \"%s\"\n", \
                    __FILE__, __LINE__, #call, msg_);                        \
            failures++;                                                      \
        }                                                                    \
    } while (0)

enum Mode { IMAGE8, IMAGE16, AUDIO16 };

static uint8_t *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    uint8_t *buf = NULL;
    long size;
    if (!f) {
        perror(path);
        exit(2);
    }
    if (fseek(f, 0, SEEK_END) != 0 || (size = ftell(f)) < 0 ||
        fseek(f, 0, SEEK_SET) != 0) {
        perror(path);
        exit(2);
    }
    buf = malloc(size > 0 ? (size_t)size : 1);
    if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size) {
        fprintf(stderr, "%s: cannot read\n", path);
        exit(2);
    }
    fclose(f);
    *len = (size_t)size;
    return buf;
}

static size_t element_size(enum Mode mode) {
    return mode == IMAGE8 ? 1 : 2;
}

/* Decodes with the function for `mode` into `buf` of `n` elements. */
static int decode(enum Mode mode, const IpcPack *pack, const uint8_t *data,
                  size_t len, void *buf, size_t n) {
    switch (mode) {
    case IMAGE8:
        return ipc_decode_image8(pack, data, len, (uint8_t *)buf, n);
    case IMAGE16:
        return ipc_decode_image16(pack, data, len, (uint16_t *)buf, n);
    default:
        return ipc_decode_audio16(pack, data, len, (int16_t *)buf, n);
    }
}

/* FNV-1a, printed so a failure report shows what was decoded. */
static uint64_t fnv1a(const uint8_t *p, size_t n) {
    uint64_t h = 0xcbf29ce484222325u;
    size_t i;
    for (i = 0; i < n; i++) {
        h = (h ^ p[i]) * 0x100000001b3u;
    }
    return h;
}

struct Job {
    enum Mode mode;
    const IpcPack *pack;
    const uint8_t *data;
    size_t len;
    const uint8_t *expected;
    size_t samples;
    int ok;
    int clean_error; /* the thread's last error started empty */
};

static void *decode_job(void *arg) {
    struct Job *job = arg;
    size_t bytes = job->samples * element_size(job->mode);
    void *buf = malloc(bytes);
    /* The last error is per thread: a fresh thread has none. */
    job->clean_error = ipc_last_error()[0] == '\0';
    job->ok = buf != NULL &&
              decode(job->mode, job->pack, job->data, job->len, buf,
                     job->samples) == IPC_OK &&
              memcmp(buf, job->expected, bytes) == 0 &&
              ipc_last_error()[0] == '\0';
    free(buf);
    return NULL;
}

int main(int argc, char **argv) {
    enum Mode mode, wrong_mode;
    uint8_t *pack_bytes, *file, *expected, *other_bytes, *damaged;
    size_t pack_len, file_len, expected_len, other_len;
    IpcPack *pack = NULL, *other = NULL, *bad = (IpcPack *)&failures;
    IpcInfo info;
    uint8_t id[16], other_id[16];
    unsigned long a, b, c;
    size_t samples, bytes;
    void *buf;
    const uint8_t garbage[64] = {'n', 'o', 't', ' ', 'a', ' ', 'p', 'a', 'c', 'k'};

    if (argc != 9) {
        fprintf(stderr,
                "usage: %s image8|image16|audio16 PACK IPC EXPECTED "
                "OTHER_PACK A B C\n",
                argv[0]);
        return 2;
    }
    if (strcmp(argv[1], "image8") == 0) {
        mode = IMAGE8;
        wrong_mode = AUDIO16;
    } else if (strcmp(argv[1], "image16") == 0) {
        mode = IMAGE16;
        wrong_mode = IMAGE8;
    } else if (strcmp(argv[1], "audio16") == 0) {
        mode = AUDIO16;
        wrong_mode = IMAGE16;
    } else {
        fprintf(stderr, "unknown mode %s\n", argv[1]);
        return 2;
    }
    pack_bytes = read_file(argv[2], &pack_len);
    file = read_file(argv[3], &file_len);
    expected = read_file(argv[4], &expected_len);
    other_bytes = read_file(argv[5], &other_len);
    a = strtoul(argv[6], NULL, 10);
    b = strtoul(argv[7], NULL, 10);
    c = strtoul(argv[8], NULL, 10);

    /* Packs. */
    CHECK_STATUS(ipc_pack_load(pack_bytes, pack_len, &pack), IPC_OK, "");
    CHECK_STATUS(ipc_pack_load(other_bytes, other_len, &other), IPC_OK, "");
    if (!pack || !other) {
        fprintf(stderr, "cannot load the packs; stopping\n");
        return 1;
    }
    CHECK_STATUS(ipc_pack_load(garbage, sizeof garbage, &bad), IPC_ERR_PACK,
                 "invalid-pack");
    CHECK(bad == NULL);
    CHECK_STATUS(ipc_pack_load(NULL, 10, &bad), IPC_ERR_ARGUMENT, "argument");
    CHECK_STATUS(ipc_pack_load(pack_bytes, pack_len, NULL), IPC_ERR_ARGUMENT,
                 "argument");
    CHECK_STATUS(ipc_pack_id(pack, id), IPC_OK, "");
    CHECK_STATUS(ipc_pack_id(other, other_id), IPC_OK, "");
    CHECK(memcmp(id, other_id, 16) != 0);
    CHECK_STATUS(ipc_pack_id(NULL, id), IPC_ERR_ARGUMENT, "argument");
    ipc_pack_free(NULL);

    /* Probe: geometry, sizes, pack identity. */
    CHECK_STATUS(ipc_probe(file, file_len, &info), IPC_OK, "");
    if (mode == AUDIO16) {
        CHECK(info.modality == IPC_MODALITY_AUDIO);
        CHECK(info.sample_rate == a && info.frames == b && info.channels == c);
        CHECK(info.width == 0 && info.height == 0);
        CHECK(info.samples == (uint64_t)b * c);
        CHECK(info.bit_depth == 16);
    } else {
        CHECK(info.modality == IPC_MODALITY_IMAGE);
        CHECK(info.width == a && info.height == b && info.channels == c);
        CHECK(info.sample_rate == 0 && info.frames == 0);
        CHECK(info.samples == (uint64_t)a * b * c);
        CHECK(info.bit_depth == (mode == IMAGE8 ? 8u : 16u));
    }
    CHECK(info.file_len == file_len);
    CHECK(memcmp(info.pack_id, id, 16) == 0);
    {
        IpcInfo head;
        CHECK_STATUS(ipc_probe(file, 50, &head), IPC_OK, "");
        CHECK(memcmp(&head, &info, sizeof info) == 0);
        CHECK_STATUS(ipc_probe(file, 20, &head), IPC_ERR_FORMAT, "truncated");
        CHECK(head.modality == 0 && head.samples == 0);
        CHECK_STATUS(ipc_probe(garbage, sizeof garbage, &head), IPC_ERR_FORMAT,
                     "bad-magic");
        CHECK_STATUS(ipc_probe(NULL, 50, &head), IPC_ERR_ARGUMENT, "argument");
        CHECK_STATUS(ipc_probe(file, file_len, NULL), IPC_ERR_ARGUMENT,
                     "argument");
    }

    /* Decode and compare with the Rust decoder's output. */
    samples = (size_t)info.samples;
    bytes = samples * element_size(mode);
    CHECK(expected_len == bytes);
    /* Room for the wrong-size and wrong-type calls below, which must fail
     * before writing but are still given memory that exists. */
    buf = malloc(samples * 2 + 2);
    if (!buf) {
        return 2;
    }
    CHECK_STATUS(decode(mode, pack, file, file_len, buf, samples), IPC_OK, "");
    printf("%s: %lux%lux%lu, %zu bytes decoded, fnv1a %016llx\n", argv[1], a, b,
           c, bytes, (unsigned long long)fnv1a(buf, bytes));
    if (expected_len == bytes && memcmp(buf, expected, bytes) != 0) {
        fprintf(stderr, "decoded samples differ from %s (expected fnv1a %016llx)\n",
                argv[4], (unsigned long long)fnv1a(expected, expected_len));
        failures++;
    }

    /* Damaged input: a flipped payload bit, a truncated file. */
    damaged = malloc(file_len);
    if (!damaged) {
        return 2;
    }
    memcpy(damaged, file, file_len);
    damaged[file_len - 5] ^= 0x01;
    CHECK_STATUS(decode(mode, pack, damaged, file_len, buf, samples),
                 IPC_ERR_FORMAT, "checksum");
    CHECK_STATUS(decode(mode, pack, file, file_len - 1, buf, samples),
                 IPC_ERR_FORMAT, "truncated");
    damaged[file_len - 5] ^= 0x01;
    damaged[0] = 'X';
    CHECK_STATUS(decode(mode, pack, damaged, file_len, buf, samples),
                 IPC_ERR_FORMAT, "bad-magic");

    /* The wrong pack. */
    CHECK_STATUS(decode(mode, other, file, file_len, buf, samples),
                 IPC_ERR_WRONG_PACK, "wrong-pack");

    /* Caller errors. */
    CHECK_STATUS(decode(mode, pack, file, file_len, buf, samples - 1),
                 IPC_ERR_ARGUMENT, "argument");
    CHECK_STATUS(decode(mode, pack, file, file_len, buf, samples + 1),
                 IPC_ERR_ARGUMENT, "argument");
    CHECK_STATUS(decode(mode, NULL, file, file_len, buf, samples),
                 IPC_ERR_ARGUMENT, "argument");
    CHECK_STATUS(decode(mode, pack, NULL, file_len, buf, samples),
                 IPC_ERR_ARGUMENT, "argument");
    CHECK_STATUS(decode(mode, pack, file, file_len, NULL, samples),
                 IPC_ERR_ARGUMENT, "argument");
    CHECK_STATUS(decode(wrong_mode, pack, file, file_len, buf, samples),
                 IPC_ERR_ARGUMENT, "argument");
    if (mode != IMAGE8) {
        /* A misaligned 16-bit buffer. */
        CHECK_STATUS(decode(mode, pack, file, file_len, (uint8_t *)buf + 1,
                            samples),
                     IPC_ERR_ARGUMENT, "argument");
    }

    /* The last error is per thread, and a pack is shared by decoding threads. */
    CHECK(decode(mode, other, file, file_len, buf, samples) ==
          IPC_ERR_WRONG_PACK);
    {
        struct Job jobs[2];
        pthread_t threads[2];
        int i;
        for (i = 0; i < 2; i++) {
            struct Job job = {mode, pack, file, file_len, expected, samples, 0, 0};
            jobs[i] = job;
            CHECK(pthread_create(&threads[i], NULL, decode_job, &jobs[i]) == 0);
        }
        for (i = 0; i < 2; i++) {
            CHECK(pthread_join(threads[i], NULL) == 0);
            CHECK(jobs[i].ok);
            CHECK(jobs[i].clean_error);
        }
    }
    CHECK(strcmp(ipc_last_error_code(), "wrong-pack") == 0);

    ipc_pack_free(pack);
    ipc_pack_free(other);
    free(buf);
    free(damaged);
    free(pack_bytes);
    free(file);
    free(expected);
    free(other_bytes);
    if (failures) {
        fprintf(stderr, "%s: %d check(s) failed\n", argv[1], failures);
        return 1;
    }
    printf("%s: all checks passed\n", argv[1]);
    return 0;
}
