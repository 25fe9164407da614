// Byte-offset decoding of one-byte delta runs with AVX2 (see CCBFShims.h). Each element is
// the previous one plus a signed byte: one add after the other is a chain of one cycle
// per element, the decoder's bound. Here 16 deltas become their prefix sums in int16
// lanes (at most 16 * 127 in size) by three shifted adds, are widened to int32 and added
// to the running value, which moves on by one add per 16 elements.
#include "CCBFShims.h"
#include "CCPUFeatures.h"
#include <immintrin.h>
#include <stdint.h>

// 16 deltas -> their inclusive prefix sums as int32: elements 0-7 in *lo, 8-15 in *hi
__attribute__((target("avx2"))) static inline void prefix16(__m128i b, __m256i *lo, __m256i *hi) {
    __m256i d = _mm256_cvtepi8_epi16(b);
    // within each 128-bit lane (8 elements)
    d = _mm256_add_epi16(d, _mm256_slli_si256(d, 2));
    d = _mm256_add_epi16(d, _mm256_slli_si256(d, 4));
    d = _mm256_add_epi16(d, _mm256_slli_si256(d, 8));
    // the low lane's total (its element 7) added to every element of the high lane
    __m256i t = _mm256_shufflehi_epi16(d, 0xFF);
    t = _mm256_unpackhi_epi64(t, t);
    t = _mm256_permute2x128_si256(t, t, 0x08);
    d = _mm256_add_epi16(d, t);
    *lo = _mm256_cvtepi16_epi32(_mm256_castsi256_si128(d));
    *hi = _mm256_cvtepi16_epi32(_mm256_extracti128_si256(d, 1));
}

__attribute__((target("avx2")))
static size_t run_avx2(const uint8_t *src, size_t n, int32_t *dst, int32_t *value) {
    size_t i = 0;
    __m256i base = _mm256_set1_epi32(*value);
    const __m256i escape = _mm256_set1_epi8((char)0x80), last = _mm256_set1_epi32(7);
    while (i + 32 <= n) {
        __m256i b = _mm256_loadu_si256((const __m256i *)(src + i));
        unsigned mask = (unsigned)_mm256_movemask_epi8(_mm256_cmpeq_epi8(b, escape));
        if (mask) {
            // the deltas before the escape one by one; the caller decodes the escape
            size_t k = i + (size_t)__builtin_ctz(mask);
            uint32_t v = (uint32_t)_mm256_cvtsi256_si32(base);
            for (; i < k; i++) { v += (uint32_t)(int32_t)(int8_t)src[i]; dst[i] = (int32_t)v; }
            *value = (int32_t)v;
            return i;
        }
        __m256i lo0, hi0, lo1, hi1;
        prefix16(_mm256_castsi256_si128(b), &lo0, &hi0);
        prefix16(_mm256_extracti128_si256(b, 1), &lo1, &hi1);
        __m256i base1 = _mm256_add_epi32(base, _mm256_permutevar8x32_epi32(hi0, last));
        _mm256_storeu_si256((__m256i *)(dst + i), _mm256_add_epi32(lo0, base));
        _mm256_storeu_si256((__m256i *)(dst + i + 8), _mm256_add_epi32(hi0, base));
        _mm256_storeu_si256((__m256i *)(dst + i + 16), _mm256_add_epi32(lo1, base1));
        _mm256_storeu_si256((__m256i *)(dst + i + 24), _mm256_add_epi32(hi1, base1));
        base = _mm256_add_epi32(base1, _mm256_permutevar8x32_epi32(hi1, last));
        i += 32;
    }
    uint32_t v = (uint32_t)_mm256_cvtsi256_si32(base);
    for (; i < n && src[i] != 0x80; i++) { v += (uint32_t)(int32_t)(int8_t)src[i]; dst[i] = (int32_t)v; }
    *value = (int32_t)v;
    return i;
}

int nxbo_run_available(void) { return nxl_cpu_has_avx2(); }

size_t nxbo_run(const unsigned char *src, size_t avail, int *dst, size_t count, int *value) {
    if (!nxbo_run_available()) return 0;
    return run_avx2(src, avail < count ? avail : count, (int32_t *)dst, (int32_t *)value);
}
