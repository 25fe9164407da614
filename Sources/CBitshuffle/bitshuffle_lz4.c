// Bitshuffle+LZ4 chunk encoder and decoder (see nx_bitshuffle.h for the format and why
// they exist).
#include "nx_bitshuffle.h"
#include "CCPUFeatures.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <immintrin.h>

// MARK: liblz4, opened on first use

typedef int (*lz4_compress_fn)(const char *src, char *dst, int srcSize, int dstCapacity);
typedef int (*lz4_bound_fn)(int inputSize);
typedef int (*lz4_decompress_fn)(const char *src, char *dst, int compressedSize, int dstCapacity);
static lz4_compress_fn lz4_compress;
static lz4_bound_fn lz4_bound;
static lz4_decompress_fn lz4_decompress;
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
    lz4_decompress = (lz4_decompress_fn)dlsym(lib, "LZ4_decompress_safe");
    if (!lz4_compress || !lz4_bound || !lz4_decompress) {
        lz4_compress = NULL;
        snprintf(lz4_error, sizeof lz4_error, "liblz4.so.1 lacks LZ4_compress_default or LZ4_decompress_safe");
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

static int has_avx2(void) { return nxl_cpu_has_avx2(); }

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

// MARK: decoding

// Done natively for the same reason as the encoding, and one more: Debian's plugin calls
// LZ4_decompress_fast, which liblz4 1.9.4 deprecated and made slow. Reading a Pilatus 2M
// frame through the plugin took 20.5 ms (11.7 ms of it in LZ4_decompress_fast), through
// h5py + hdf5plugin 9.5 ms; LZ4_decompress_safe is the fast, bounds-checked one.

// The inverse transpose: output element 8g+m, byte j, bit k = bit m of byte g of input row
// 8j+k. The 8x8 bit-matrix transpose is its own inverse, so the scalar form mirrors
// bitshuffle_scalar.
static void bitunshuffle_scalar(const uint8_t *in, uint8_t *out, size_t count, size_t elem_size,
                                size_t first_group) {
    size_t row = count / 8;
    for (size_t j = 0; j < elem_size; j++) {
        for (size_t g = first_group; g < row; g++) {
            uint64_t x = 0;
            for (int k = 0; k < 8; k++) x |= (uint64_t)in[(8 * j + (size_t)k) * row + g] << (8 * k);
            uint64_t t;
            t = (x ^ (x >> 7)) & 0x00AA00AA00AA00AAULL;  x ^= t ^ (t << 7);
            t = (x ^ (x >> 14)) & 0x0000CCCC0000CCCCULL; x ^= t ^ (t << 14);
            t = (x ^ (x >> 28)) & 0x00000000F0F0F0F0ULL; x ^= t ^ (t << 28);
            for (int m = 0; m < 8; m++) out[(8 * g + (size_t)m) * elem_size + j] = (uint8_t)(x >> (8 * m));
        }
    }
}

// Swaps the off-diagonal s x s blocks of the 8x8 bit matrices held bytewise in (a, b):
// the rows a and b = a + s, bits selected by `mask` (0x55 / 0x33 / 0x0F for s = 1 / 2 / 4).
// Shifting 16-bit lanes is exact here: the bits that cross a byte are masked off.
#define NX_SWAP_BITS(a, b, s, mask)                                                    \
    do {                                                                               \
        __m256i t_ = _mm256_and_si256(_mm256_xor_si256(_mm256_srli_epi16(a, s), b), mask); \
        b = _mm256_xor_si256(b, t_);                                                    \
        a = _mm256_xor_si256(a, _mm256_slli_epi16(t_, s));                              \
    } while (0)

// 256 elements (32 bytes of each input row) of byte j: the eight rows 8j..8j+7 become
// byte j of the 256 elements in order, at `plane`.
__attribute__((target("avx2")))
static inline void unshuffle_plane_avx2(const uint8_t *in, size_t row, size_t j, size_t g0, uint8_t *plane) {
    __m256i x[8];
    for (int k = 0; k < 8; k++) x[k] = _mm256_loadu_si256((const __m256i *)(in + (8 * j + (size_t)k) * row + g0));
    // bit transpose per byte position: afterwards x[m] byte G = byte j of element 8G+m
    const __m256i m1 = _mm256_set1_epi8(0x55), m2 = _mm256_set1_epi8(0x33), m4 = _mm256_set1_epi8(0x0F);
    NX_SWAP_BITS(x[0], x[1], 1, m1); NX_SWAP_BITS(x[2], x[3], 1, m1);
    NX_SWAP_BITS(x[4], x[5], 1, m1); NX_SWAP_BITS(x[6], x[7], 1, m1);
    NX_SWAP_BITS(x[0], x[2], 2, m2); NX_SWAP_BITS(x[1], x[3], 2, m2);
    NX_SWAP_BITS(x[4], x[6], 2, m2); NX_SWAP_BITS(x[5], x[7], 2, m2);
    NX_SWAP_BITS(x[0], x[4], 4, m4); NX_SWAP_BITS(x[1], x[5], 4, m4);
    NX_SWAP_BITS(x[2], x[6], 4, m4); NX_SWAP_BITS(x[3], x[7], 4, m4);
    // interleave the eight registers bytewise (unpacks work per 128-bit lane: lane 0 holds
    // groups 0..15, lane 1 groups 16..31; the last permutes put the lanes in order)
    __m256i u01l = _mm256_unpacklo_epi8(x[0], x[1]), u01h = _mm256_unpackhi_epi8(x[0], x[1]);
    __m256i u23l = _mm256_unpacklo_epi8(x[2], x[3]), u23h = _mm256_unpackhi_epi8(x[2], x[3]);
    __m256i u45l = _mm256_unpacklo_epi8(x[4], x[5]), u45h = _mm256_unpackhi_epi8(x[4], x[5]);
    __m256i u67l = _mm256_unpacklo_epi8(x[6], x[7]), u67h = _mm256_unpackhi_epi8(x[6], x[7]);
    __m256i va = _mm256_unpacklo_epi16(u01l, u23l), vb = _mm256_unpackhi_epi16(u01l, u23l);
    __m256i vc = _mm256_unpacklo_epi16(u01h, u23h), vd = _mm256_unpackhi_epi16(u01h, u23h);
    __m256i wa = _mm256_unpacklo_epi16(u45l, u67l), wb = _mm256_unpackhi_epi16(u45l, u67l);
    __m256i wc = _mm256_unpacklo_epi16(u45h, u67h), wd = _mm256_unpackhi_epi16(u45h, u67h);
    __m256i al = _mm256_unpacklo_epi32(va, wa), ah = _mm256_unpackhi_epi32(va, wa);
    __m256i bl = _mm256_unpacklo_epi32(vb, wb), bh = _mm256_unpackhi_epi32(vb, wb);
    __m256i cl = _mm256_unpacklo_epi32(vc, wc), ch = _mm256_unpackhi_epi32(vc, wc);
    __m256i dl = _mm256_unpacklo_epi32(vd, wd), dh = _mm256_unpackhi_epi32(vd, wd);
    __m256i *p = (__m256i *)plane;
    _mm256_storeu_si256(p + 0, _mm256_permute2x128_si256(al, ah, 0x20));
    _mm256_storeu_si256(p + 1, _mm256_permute2x128_si256(bl, bh, 0x20));
    _mm256_storeu_si256(p + 2, _mm256_permute2x128_si256(cl, ch, 0x20));
    _mm256_storeu_si256(p + 3, _mm256_permute2x128_si256(dl, dh, 0x20));
    _mm256_storeu_si256(p + 4, _mm256_permute2x128_si256(al, ah, 0x31));
    _mm256_storeu_si256(p + 5, _mm256_permute2x128_si256(bl, bh, 0x31));
    _mm256_storeu_si256(p + 6, _mm256_permute2x128_si256(cl, ch, 0x31));
    _mm256_storeu_si256(p + 7, _mm256_permute2x128_si256(dl, dh, 0x31));
}

// Groups of 256 elements: each byte plane through unshuffle_plane_avx2, then the planes
// interleaved into elements (in registers for 2 and 4 bytes). Returns the elements done.
__attribute__((target("avx2")))
static size_t bitunshuffle_avx2(const uint8_t *in, uint8_t *out, size_t count, size_t elem_size) {
    size_t row = count / 8;
    size_t done = count / 256 * 256;
    uint8_t planes[8 * 256];
    if (elem_size > 8) return 0;
    for (size_t e0 = 0; e0 < done; e0 += 256) {
        size_t g0 = e0 / 8;
        uint8_t *dst = out + e0 * elem_size;
        if (elem_size == 1) { unshuffle_plane_avx2(in, row, 0, g0, dst); continue; }
        for (size_t j = 0; j < elem_size; j++) unshuffle_plane_avx2(in, row, j, g0, planes + 256 * j);
        if (elem_size == 2) {
            for (size_t q = 0; q < 256; q += 32) {
                __m256i b0 = _mm256_loadu_si256((const __m256i *)(planes + q));
                __m256i b1 = _mm256_loadu_si256((const __m256i *)(planes + 256 + q));
                __m256i lo = _mm256_unpacklo_epi8(b0, b1), hi = _mm256_unpackhi_epi8(b0, b1);
                __m256i *o = (__m256i *)(dst + 2 * q);
                _mm256_storeu_si256(o, _mm256_permute2x128_si256(lo, hi, 0x20));
                _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(lo, hi, 0x31));
            }
        } else if (elem_size == 4) {
            for (size_t q = 0; q < 256; q += 32) {
                __m256i b0 = _mm256_loadu_si256((const __m256i *)(planes + q));
                __m256i b1 = _mm256_loadu_si256((const __m256i *)(planes + 256 + q));
                __m256i b2 = _mm256_loadu_si256((const __m256i *)(planes + 512 + q));
                __m256i b3 = _mm256_loadu_si256((const __m256i *)(planes + 768 + q));
                __m256i pl = _mm256_unpacklo_epi8(b0, b1), ph = _mm256_unpackhi_epi8(b0, b1);
                __m256i ql = _mm256_unpacklo_epi8(b2, b3), qh = _mm256_unpackhi_epi8(b2, b3);
                __m256i r0 = _mm256_unpacklo_epi16(pl, ql), r1 = _mm256_unpackhi_epi16(pl, ql);
                __m256i r2 = _mm256_unpacklo_epi16(ph, qh), r3 = _mm256_unpackhi_epi16(ph, qh);
                __m256i *o = (__m256i *)(dst + 4 * q);
                _mm256_storeu_si256(o, _mm256_permute2x128_si256(r0, r1, 0x20));
                _mm256_storeu_si256(o + 1, _mm256_permute2x128_si256(r2, r3, 0x20));
                _mm256_storeu_si256(o + 2, _mm256_permute2x128_si256(r0, r1, 0x31));
                _mm256_storeu_si256(o + 3, _mm256_permute2x128_si256(r2, r3, 0x31));
            }
        } else {
            for (size_t e = 0; e < 256; e++)
                for (size_t j = 0; j < elem_size; j++) dst[e * elem_size + j] = planes[256 * j + e];
        }
    }
    return done;
}

static void bitunshuffle_block(const uint8_t *in, uint8_t *out, size_t count, size_t elem_size) {
    size_t done = has_avx2() ? bitunshuffle_avx2(in, out, count, elem_size) : 0;
    if (done < count) bitunshuffle_scalar(in, out, count, elem_size, done / 8);
}

int nx_bitunshuffle(const void *in, void *out, size_t count, size_t elem_size) {
    if (count % 8 || elem_size == 0) return -2;
    bitunshuffle_block(in, out, count, elem_size);
    return 0;
}

static uint64_t get_be(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; i++) v = v << 8 | p[i];
    return v;
}

long nx_bslz4_decode(const void *in, size_t in_size, void *out, size_t out_size, size_t elem_size) {
    if (nx_bslz4_available(NULL, 0) != 0) return -1;
    const uint8_t *src = in;
    uint8_t *dst = out;
    if (elem_size == 0 || out_size % elem_size || in_size < 12) return -2;
    if (get_be(src, 8) != out_size) return -2;
    size_t block_bytes = (size_t)get_be(src + 8, 4);
    size_t block = block_bytes / elem_size;
    if (block == 0 || block % 8 || block_bytes % elem_size || block_bytes > (1u << 30)) return -2;
    size_t count = out_size / elem_size, pos = 12, done = 0;
    uint8_t *scratch = malloc(block_bytes);
    if (!scratch) return -1;
    while (done < count / 8 * 8) {
        size_t n = count - done >= block ? block : (count - done) / 8 * 8;
        if (in_size - pos < 4) { free(scratch); return -2; }
        size_t c = (size_t)get_be(src + pos, 4);
        pos += 4;
        if (c > in_size - pos || c > (size_t)INT32_MAX) { free(scratch); return -2; }
        int got = lz4_decompress((const char *)src + pos, (char *)scratch, (int)c, (int)(n * elem_size));
        if (got != (int)(n * elem_size)) { free(scratch); return -2; }
        bitunshuffle_block(scratch, dst + done * elem_size, n, elem_size);
        pos += c;
        done += n;
    }
    free(scratch);
    size_t rest = (count - done) * elem_size;
    if (in_size - pos < rest) return -2;
    memcpy(dst + done * elem_size, src + pos, rest);
    return (long)out_size;
}
