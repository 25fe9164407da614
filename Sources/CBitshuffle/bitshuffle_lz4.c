// Bitshuffle+LZ4 chunk encoder (see nx_bitshuffle.h for the format and why it exists).
#include "nx_bitshuffle.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

// MARK: liblz4, opened on first use

typedef int (*lz4_compress_fn)(const char *src, char *dst, int srcSize, int dstCapacity);
typedef int (*lz4_bound_fn)(int inputSize);
static lz4_compress_fn lz4_compress;
static lz4_bound_fn lz4_bound;
static char lz4_error[256];
static pthread_once_t lz4_once = PTHREAD_ONCE_INIT;

static void load_lz4(void) {
    void *lib = dlopen("liblz4.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(lz4_error, sizeof lz4_error, "cannot open liblz4.so.1 (%s)", dlerror());
        return;
    }
    lz4_compress = (lz4_compress_fn)dlsym(lib, "LZ4_compress_default");
    lz4_bound = (lz4_bound_fn)dlsym(lib, "LZ4_compressBound");
    if (!lz4_compress || !lz4_bound) {
        lz4_compress = NULL;
        snprintf(lz4_error, sizeof lz4_error, "liblz4.so.1 lacks LZ4_compress_default");
    }
}

int nx_bslz4_available(char *why, size_t whylen) {
    pthread_once(&lz4_once, load_lz4);
    if (lz4_compress) return 0;
    if (why && whylen) snprintf(why, whylen, "%s", lz4_error);
    return -1;
}

size_t nx_bitshuffle_default_block(size_t elem_size) {
    size_t block = (8192 / elem_size) / 8 * 8;
    return block < 128 ? 128 : block;
}

// MARK: the bit transpose

// Row (8 * j + k) of the output, byte g: bit k of byte j of elements 8g..8g+7, element
// 8g+m in bit m. Scalar: gather the 8 bytes, transpose the 8x8 bit matrix.
static void bitshuffle_scalar(const uint8_t *in, uint8_t *out, size_t count, size_t elem_size,
                              size_t first_group) {
    size_t row = count / 8;
    for (size_t j = 0; j < elem_size; j++) {
        for (size_t g = first_group; g < row; g++) {
            uint64_t x = 0;
            for (int m = 0; m < 8; m++) x |= (uint64_t)in[(8 * g + m) * elem_size + j] << (8 * m);
            // 8x8 bit-matrix transpose (byte m = row m, bit k = column k).
            uint64_t t;
            t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;  x ^= t ^ (t << 7);
            t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL; x ^= t ^ (t << 14);
            t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL; x ^= t ^ (t << 28);
            for (int k = 0; k < 8; k++) out[(8 * j + k) * row + g] = (uint8_t)(x >> (8 * k));
        }
    }
}

// One register of 32 bytes (byte j of 32 consecutive elements) -> 8 output rows, 4 bytes
// each: movemask takes every byte's top bit; adding the register to itself moves the next
// bit up.
__attribute__((target("avx2")))
static inline void emit_rows(__m256i r, uint8_t *out, size_t row, size_t j, size_t g4) {
    for (int k = 7; k >= 0; k--) {
        uint32_t m = (uint32_t)_mm256_movemask_epi8(r);
        memcpy(out + (8 * j + (size_t)k) * row + g4, &m, 4);
        r = _mm256_add_epi8(r, r);
    }
}

// 4-byte elements, 32 at a time: the byte transpose happens in registers.
__attribute__((target("avx2")))
static size_t bitshuffle4_avx2(const uint8_t *in, uint8_t *out, size_t count) {
    size_t row = count / 8;
    const __m256i group_bytes = _mm256_setr_epi8(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15,
                                                 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
    size_t done = count / 32 * 32;
    for (size_t i = 0; i < done; i += 32) {
        const __m256i *p = (const __m256i *)(in + 4 * i);
        __m256i n0 = _mm256_loadu_si256(p), n1 = _mm256_loadu_si256(p + 1);
        __m256i n2 = _mm256_loadu_si256(p + 2), n3 = _mm256_loadu_si256(p + 3);
        // Lanes arranged so that the unpacks below leave elements in order.
        __m256i a0 = _mm256_shuffle_epi8(_mm256_permute2x128_si256(n0, n2, 0x20), group_bytes);
        __m256i a1 = _mm256_shuffle_epi8(_mm256_permute2x128_si256(n0, n2, 0x31), group_bytes);
        __m256i a2 = _mm256_shuffle_epi8(_mm256_permute2x128_si256(n1, n3, 0x20), group_bytes);
        __m256i a3 = _mm256_shuffle_epi8(_mm256_permute2x128_si256(n1, n3, 0x31), group_bytes);
        __m256i t0 = _mm256_unpacklo_epi32(a0, a1), t1 = _mm256_unpackhi_epi32(a0, a1);
        __m256i t2 = _mm256_unpacklo_epi32(a2, a3), t3 = _mm256_unpackhi_epi32(a2, a3);
        size_t g4 = i / 8;
        emit_rows(_mm256_unpacklo_epi64(t0, t2), out, row, 0, g4);
        emit_rows(_mm256_unpackhi_epi64(t0, t2), out, row, 1, g4);
        emit_rows(_mm256_unpacklo_epi64(t1, t3), out, row, 2, g4);
        emit_rows(_mm256_unpackhi_epi64(t1, t3), out, row, 3, g4);
    }
    return done;
}

// Any element size: bytes transposed first (scalar), then rows of bytes to rows of bits.
__attribute__((target("avx2")))
static void bitshuffle_any_avx2(const uint8_t *in, uint8_t *out, size_t count, size_t elem_size, uint8_t *tmp) {
    size_t row = count / 8;
    for (size_t i = 0; i < count; i++)
        for (size_t j = 0; j < elem_size; j++) tmp[j * count + i] = in[i * elem_size + j];
    size_t done = count / 32 * 32;
    for (size_t j = 0; j < elem_size; j++) {
        const uint8_t *bytes = tmp + j * count;
        for (size_t i = 0; i < done; i += 32)
            emit_rows(_mm256_loadu_si256((const __m256i *)(bytes + i)), out, row, j, i / 8);
    }
    if (done < count) bitshuffle_scalar(in, out, count, elem_size, done / 8);
}

static int has_avx2(void) {
    static int cached = -1;
    if (cached < 0) {
        __builtin_cpu_init();
        cached = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return cached;
}

int nx_bitshuffle_uses_avx2(void) { return has_avx2(); }

static void bitshuffle_block(const uint8_t *in, uint8_t *out, size_t count, size_t elem_size, uint8_t *tmp) {
    if (!has_avx2()) { bitshuffle_scalar(in, out, count, elem_size, 0); return; }
    if (elem_size == 4) {
        size_t done = bitshuffle4_avx2(in, out, count);
        if (done < count) bitshuffle_scalar(in, out, count, 4, done / 8);
        return;
    }
    bitshuffle_any_avx2(in, out, count, elem_size, tmp);
}

int nx_bitshuffle(const void *in, void *out, size_t count, size_t elem_size) {
    if (count % 8 || elem_size == 0) return -2;
    uint8_t *tmp = malloc(count * elem_size + 1);
    if (!tmp) return -1;
    bitshuffle_block(in, out, count, elem_size, tmp);
    free(tmp);
    return 0;
}

// MARK: the chunk

static void put_be32(uint8_t *p, uint32_t v) {
    for (int i = 3; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}

static void put_be64(uint8_t *p, uint64_t v) {
    for (int i = 7; i >= 0; i--) { p[i] = (uint8_t)v; v >>= 8; }
}

size_t nx_bslz4_bound(size_t count, size_t elem_size, size_t block) {
    if (nx_bslz4_available(NULL, 0) != 0 || elem_size == 0) return 0;
    if (block == 0) block = nx_bitshuffle_default_block(elem_size);
    size_t full = count / block, last = count % block / 8 * 8;
    size_t n = 12 + full * (4 + (size_t)lz4_bound((int)(block * elem_size))) + count % 8 * elem_size;
    if (last) n += 4 + (size_t)lz4_bound((int)(last * elem_size));
    return n;
}

void nx_bslz4_header(void *out, size_t count, size_t elem_size, size_t block) {
    if (block == 0) block = nx_bitshuffle_default_block(elem_size);
    put_be64(out, (uint64_t)(count * elem_size));
    put_be32((uint8_t *)out + 8, (uint32_t)(block * elem_size));
}

long nx_bslz4_block(const void *in, size_t n, size_t elem_size, void *out, void *scratch) {
    if (!lz4_compress || n % 8) return -1;
    size_t bytes = n * elem_size;
    uint8_t *shuffled = scratch, *tmp = (uint8_t *)scratch + bytes;
    bitshuffle_block(in, shuffled, n, elem_size, tmp);
    int c = lz4_compress((const char *)shuffled, (char *)out + 4, (int)bytes, lz4_bound((int)bytes));
    if (c <= 0) return -1;
    put_be32(out, (uint32_t)c);
    return 4 + (long)c;
}

long nx_bslz4_encode(const void *in, size_t count, size_t elem_size, size_t block, void *out, size_t cap) {
    if (nx_bslz4_available(NULL, 0) != 0) return -1;
    if (elem_size == 0) return -2;
    if (block == 0) block = nx_bitshuffle_default_block(elem_size);
    if (block % 8 || block * elem_size > (1u << 30) || cap < nx_bslz4_bound(count, elem_size, block)) return -2;
    const uint8_t *src = in;
    uint8_t *dst = out;
    uint8_t *scratch = malloc(2 * block * elem_size);
    if (!scratch) return -1;
    nx_bslz4_header(dst, count, elem_size, block);
    size_t pos = 12, done = 0;
    while (done < count / 8 * 8) {
        size_t n = count - done >= block ? block : (count - done) / 8 * 8;
        long w = nx_bslz4_block(src + done * elem_size, n, elem_size, dst + pos, scratch);
        if (w < 0) { free(scratch); return -1; }
        pos += (size_t)w;
        done += n;
    }
    free(scratch);
    memcpy(dst + pos, src + done * elem_size, (count - done) * elem_size);
    return (long)(pos + (count - done) * elem_size);
}
