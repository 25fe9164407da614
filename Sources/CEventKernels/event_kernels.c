#include "CEventKernels.h"
#include "CCPUFeatures.h"
#include <stdlib.h>

void nxl_ev_refill(nxl_ev_buckets *b, nxl_ev_slot *s) {
    int64_t k = b->used++;
    if (k >= b->capacity) abort();  // cannot happen: the pool is sized for any distribution
    b->chunk_slice[k] = (int32_t)(s - b->slots);
    s->pos = b->pool + k * b->stride;
    s->end = s->pos + b->chunk;
}

void nxl_ev_finish(nxl_ev_buckets *b) {
    for (int64_t k = 0; k < b->used; k++) b->chunk_fill[k] = (int32_t)b->chunk;
    for (int64_t s = 0; s < b->slices; s++) {
        uint16_t *pos = b->slots[s].pos;
        if (pos) {  // a chunk is taken only for a cell, so pos is past its start
            int64_t k = (int64_t)((pos - 1) - b->pool) / b->stride;
            b->chunk_fill[k] = (int32_t)(pos - (b->pool + k * b->stride));
        }
    }
    int64_t *start = b->slice_start;
    for (int64_t s = 0; s <= b->slices; s++) start[s] = 0;
    for (int64_t k = 0; k < b->used; k++) start[b->chunk_slice[k] + 1]++;
    for (int64_t s = 1; s <= b->slices; s++) start[s] += start[s - 1];
    for (int64_t k = 0; k < b->used; k++) b->order[start[b->chunk_slice[k]]++] = k;
    // now start[s] is the end of slice s: shift by one so that it is its start
    for (int64_t s = b->slices; s >= 1; s--) start[s] = start[s - 1];
    start[0] = 0;
}

void nxl_ev_count(const nxl_ev_buckets *b, int64_t s, int64_t *hist) {
    hist += s << b->shift;
    for (int64_t i = b->slice_start[s]; i < b->slice_start[s + 1]; i++) {
        int64_t k = b->order[i];
        const uint16_t *c = b->pool + k * b->stride;
        int32_t n = b->chunk_fill[k];
        for (int32_t j = 0; j < n; j++) hist[c[j]]++;
    }
}

void nxl_ev_reset(nxl_ev_buckets *b) {
    for (int64_t s = 0; s < b->slices; s++) { b->slots[s].pos = 0; b->slots[s].end = 0; }
    b->used = 0;
}

// One event as EventHistogram.swift's scalar loop bins it (equal-width bins).
static inline int ev_one(const nxl_ev_params *p, double x, int64_t id, uint32_t *cell) {
    if (!(x >= p->lo && x < p->hi)) return 0;
    int64_t i = (int64_t)((x - p->lo) * p->scale);
    if (i > p->last) i = p->last;
    const double *e = p->edges;
    while (i > 0 && x < e[i]) i--;
    while (i < p->last && x >= e[i + 1]) i++;
    int64_t j = id - p->first;
    if ((uint64_t)j >= (uint64_t)p->lookup_count) return 0;
    int64_t r = p->lookup[j];
    if (r < p->row_lo || r >= p->row_hi) return 0;
    *cell = (uint32_t)(r * p->nb + i);
    return 1;
}

int nxl_ev_avx2_usable(const nxl_ev_params *p, int unsigned_ids) {
#if defined(__x86_64__)
    if (!nxl_cpu_has_avx2()) return 0;
    if (!p->edges || !p->lookup) return 0;
    if (p->last < 0 || p->last >= (1 << 30) || p->nb < 1 || p->nb > INT32_MAX) return 0;
    if (p->lookup_count < 0 || p->lookup_count > INT32_MAX) return 0;
    if (p->row_lo < 0 || p->row_hi > INT32_MAX || p->row_lo > p->row_hi) return 0;
    if (unsigned_ids ? (p->first < 0 || p->first > (int64_t)UINT32_MAX) : (p->first < INT32_MIN || p->first > INT32_MAX)) return 0;
    return 1;
#else
    (void)p; (void)unsigned_ids;
    return 0;
#endif
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx2")))
int64_t nxl_ev_list_avx2(nxl_ev_buckets *b, const nxl_ev_params *p, const int32_t *ids, int unsigned_ids,
                         const float *tofs, int64_t from, int64_t to) {
    const __m256d vlo = _mm256_set1_pd(p->lo), vhi = _mm256_set1_pd(p->hi), vscale = _mm256_set1_pd(p->scale);
    const __m128i vlast = _mm_set1_epi32((int32_t)p->last), zero4 = _mm_setzero_si128();
    // unsigned ids: compared as signed after flipping the sign bit of both sides
    const __m256i bias = _mm256_set1_epi32(unsigned_ids ? INT32_MIN : 0);
    const __m256i vfirst = _mm256_set1_epi32((int32_t)(uint32_t)(uint64_t)p->first);
    const __m256i vfirstb = _mm256_xor_si256(vfirst, bias);
    const __m256i vcount = _mm256_set1_epi32((int32_t)p->lookup_count);
    const __m256i vrowlo = _mm256_set1_epi32((int32_t)p->row_lo), vrowhi = _mm256_set1_epi32((int32_t)p->row_hi);
    const __m256i vnb = _mm256_set1_epi32((int32_t)p->nb);
    const __m256i zero = _mm256_setzero_si256(), none = _mm256_set1_epi32(-1);
    const double *e = p->edges;
    int64_t binned = 0, k = from;
    uint32_t cells[8] __attribute__((aligned(32))), slots[8] __attribute__((aligned(32)));
    const __m128i vshift = _mm_cvtsi32_si128(b->shift);
    const uint32_t mask = (1u << b->shift) - 1;
    for (; k + 8 <= to; k += 8) {
        __m256 t = _mm256_loadu_ps(tofs + k);
        __m256d x0 = _mm256_cvtps_pd(_mm256_castps256_ps128(t));
        __m256d x1 = _mm256_cvtps_pd(_mm256_extractf128_ps(t, 1));
        int in = _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(x0, vlo, _CMP_GE_OQ), _mm256_cmp_pd(x0, vhi, _CMP_LT_OQ)))
               | _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(x1, vlo, _CMP_GE_OQ), _mm256_cmp_pd(x1, vhi, _CMP_LT_OQ))) << 4;
        // the guess, as the scalar loop makes it (outside [lo, hi): 0, unused)
        __m128i g0 = _mm256_cvttpd_epi32(_mm256_mul_pd(_mm256_sub_pd(x0, vlo), vscale));
        __m128i g1 = _mm256_cvttpd_epi32(_mm256_mul_pd(_mm256_sub_pd(x1, vlo), vscale));
        g0 = _mm_max_epi32(_mm_min_epi32(g0, vlast), zero4);
        g1 = _mm_max_epi32(_mm_min_epi32(g1, vlast), zero4);
        // right when edges[g] <= x < edges[g + 1]: where the scalar corrections stop at once
        __m256d a0 = _mm256_i32gather_pd(e, g0, 8), b0 = _mm256_i32gather_pd(e + 1, g0, 8);
        __m256d a1 = _mm256_i32gather_pd(e, g1, 8), b1 = _mm256_i32gather_pd(e + 1, g1, 8);
        int ok = _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(x0, a0, _CMP_GE_OQ), _mm256_cmp_pd(x0, b0, _CMP_LT_OQ)))
               | _mm256_movemask_pd(_mm256_and_pd(_mm256_cmp_pd(x1, a1, _CMP_GE_OQ), _mm256_cmp_pd(x1, b1, _CMP_LT_OQ))) << 4;
        // id -> row: id >= first, 0 <= id - first < count, then the row in [row_lo, row_hi)
        __m256i id = _mm256_loadu_si256((const __m256i *)(ids + k));
        __m256i j = _mm256_sub_epi32(id, vfirst);
        __m256i bad = _mm256_or_si256(_mm256_cmpgt_epi32(vfirstb, _mm256_xor_si256(id, bias)), _mm256_cmpgt_epi32(zero, j));
        __m256i valid = _mm256_andnot_si256(bad, _mm256_cmpgt_epi32(vcount, j));
        __m256i r = _mm256_mask_i32gather_epi32(none, p->lookup, j, valid, 4);
        valid = _mm256_andnot_si256(_mm256_cmpgt_epi32(vrowlo, r), _mm256_and_si256(valid, _mm256_cmpgt_epi32(vrowhi, r)));
        int use = in & _mm256_movemask_ps(_mm256_castsi256_ps(valid));
        if (use & ~ok) {  // a guess to correct: these 8 events as the scalar loop does them
            for (int64_t q = k; q < k + 8; q++) {
                uint32_t c;
                int64_t idv = unsigned_ids ? (int64_t)(uint32_t)ids[q] : (int64_t)ids[q];
                if (ev_one(p, (double)tofs[q], idv, &c)) { nxl_ev_push(b, c); binned++; }
            }
            continue;
        }
        __m256i g = _mm256_inserti128_si256(_mm256_castsi128_si256(g0), g1, 1);
        __m256i cell = _mm256_add_epi32(_mm256_mullo_epi32(r, vnb), g);
        _mm256_store_si256((__m256i *)cells, cell);
        _mm256_store_si256((__m256i *)slots, _mm256_srl_epi32(cell, vshift));
        if (use == 0xff) {
            for (int q = 0; q < 8; q++) {
                nxl_ev_slot *s = b->slots + slots[q];
                uint16_t *w = s->pos;
                if (__builtin_expect(w == s->end, 0)) { nxl_ev_refill(b, s); w = s->pos; }
                *w = (uint16_t)(cells[q] & mask);
                s->pos = w + 1;
            }
            binned += 8;
        } else {
            for (int q = 0; q < 8; q++) if (use & (1 << q)) { nxl_ev_push(b, cells[q]); binned++; }
        }
    }
    for (; k < to; k++) {
        uint32_t c;
        int64_t idv = unsigned_ids ? (int64_t)(uint32_t)ids[k] : (int64_t)ids[k];
        if (ev_one(p, (double)tofs[k], idv, &c)) { nxl_ev_push(b, c); binned++; }
    }
    return binned;
}
#else
int64_t nxl_ev_list_avx2(nxl_ev_buckets *b, const nxl_ev_params *p, const int32_t *ids, int unsigned_ids,
                         const float *tofs, int64_t from, int64_t to) {
    (void)b; (void)p; (void)ids; (void)unsigned_ids; (void)tofs; (void)from; (void)to;
    abort();
}
#endif
