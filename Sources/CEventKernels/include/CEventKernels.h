// CEventKernels: the inner loops of neutron-event histograms (Sources/NeutronEvents).
// Cells listed per cache slice of the histogram in chunks (no sort pass), and an AVX2
// listing loop for int32/uint32 event ids with float32 times of flight and equal-width
// bins, bit-identical with the scalar loop in EventHistogram.swift. Nothing here calls
// Lua or allocates.
#ifndef NXLUA_CEVENTKERNELS_H
#define NXLUA_CEVENTKERNELS_H

#include <stdint.h>

// One cache slice's current chunk: where its next cell goes, and the chunk's end.
typedef struct { uint16_t *pos; uint16_t *end; } nxl_ev_slot;

// A worker's listed cells, by slice (each as its 16-bit offset in the slice): chunks of `chunk` cells taken from `pool` as the
// slices fill them (a slice's cells are in its chunks in listing order). The pool holds
// ceil(events / chunk) + slices chunks, enough for any distribution of the worker's events.
typedef struct {
    nxl_ev_slot *slots;       // slices
    int64_t slices;
    int shift;                // slice of a cell: cell >> shift
    uint16_t *pool;           // cells as offsets in their slice (shift <= 16)
    int64_t chunk;            // cells per chunk
    int64_t stride;           // cells from one chunk's start to the next: chunk + 32, so that
                              // the slices' write positions (similar offsets in their chunks)
                              // do not all fall into the same L1 cache sets
    int64_t used, capacity;   // chunks
    int32_t *chunk_slice;     // per chunk: its slice
    int32_t *chunk_fill;      // per chunk: cells in it (set by nxl_ev_finish)
    int64_t *order;           // chunks by slice (set by nxl_ev_finish)
    int64_t *slice_start;     // slices + 1: slice s's chunks are order[slice_start[s] ..< slice_start[s+1]]
} nxl_ev_buckets;

// The listing parameters (EventHistogram.swift's Kernel, equal-width tof bins).
typedef struct {
    const double *edges;      // last + 2 edges
    int64_t last;             // index of the last bin
    double lo, hi, scale;
    const int32_t *lookup;    // id - first -> row (-1: no pixel)
    int64_t lookup_count;
    int64_t first;
    int64_t row_lo, row_hi;
    int64_t nb;
} nxl_ev_params;

void nxl_ev_refill(nxl_ev_buckets *b, nxl_ev_slot *s);

static inline void nxl_ev_push(nxl_ev_buckets *b, uint32_t cell) {
    nxl_ev_slot *s = &b->slots[cell >> b->shift];
    if (__builtin_expect(s->pos == s->end, 0)) nxl_ev_refill(b, s);
    *s->pos++ = (uint16_t)(cell & ((1u << b->shift) - 1));
}

// After listing: the last chunk's fill of every slice, and the chunks ordered by slice.
void nxl_ev_finish(nxl_ev_buckets *b);
// Adds the cells of slice s to hist (after nxl_ev_finish).
void nxl_ev_count(const nxl_ev_buckets *b, int64_t s, int64_t *hist);
// Empties the buckets for the next block.
void nxl_ev_reset(nxl_ev_buckets *b);

// 1 when nxl_ev_list_avx2 may run here (AVX2), and for these parameters (32-bit safe).
int nxl_ev_avx2_usable(const nxl_ev_params *p, int unsigned_ids);
// Lists events [from, to) (ids int32, or uint32 with unsigned_ids) into the buckets;
// returns the events that fell into a cell.
int64_t nxl_ev_list_avx2(nxl_ev_buckets *b, const nxl_ev_params *p, const int32_t *ids, int unsigned_ids,
                         const float *tofs, int64_t from, int64_t to);

#endif
