// Bitshuffle+LZ4 chunk encoding in the format of the bitshuffle HDF5 filter (id 32008,
// cd_values[4] == 2), done natively so the stacker's workers need not call the plugin:
// the plugin shipped by Debian is built for baseline SSE2, and its bit transpose took a
// quarter of the stacker's CPU time. Output is byte for byte the plugin's (tests compare).
//
// Chunk layout: uint64 BE uncompressed bytes, uint32 BE block bytes, then per block of
// `block` elements (the last one rounded down to a multiple of 8) a uint32 BE compressed
// size and the LZ4 block of the bit-transposed elements; the last (count % 8) elements
// are copied raw. liblz4 is opened with dlopen (start-up, as the other C libraries).
#ifndef NX_BITSHUFFLE_H
#define NX_BITSHUFFLE_H
#include <stddef.h>
#include <stdint.h>

/// The plugin's default block size in elements for an element size (8 KiB of data,
/// a multiple of 8 elements, at least 128).
size_t nx_bitshuffle_default_block(size_t elem_size);

/// Loads liblz4; 0 when it is usable, else -1 with the reason in `why`.
int nx_bslz4_available(char *why, size_t whylen);

/// Bytes `nx_bslz4_encode` may write at most for `count` elements (or 0 without liblz4).
size_t nx_bslz4_bound(size_t count, size_t elem_size, size_t block);

/// Encodes `count` elements of `elem_size` bytes into `out` (capacity `cap`, at least the
/// bound); `block` 0 means the default. Returns the bytes written, or -1 (no liblz4 or an
/// LZ4 failure) or -2 (bad arguments).
long nx_bslz4_encode(const void *in, size_t count, size_t elem_size, size_t block, void *out, size_t cap);

/// The same in steps, for a producer that decodes pixels block by block (so a frame
/// never exists whole): the 12-byte header, then each block of n elements (a multiple
/// of 8; `block` elements but for the last one) compressed at `out`; returns the bytes
/// written (4 + LZ4 size) or -1. `scratch` holds 2 * n * elem_size bytes. The last
/// count % 8 elements are then copied raw by the caller.
void nx_bslz4_header(void *out, size_t count, size_t elem_size, size_t block);
long nx_bslz4_block(const void *in, size_t n, size_t elem_size, void *out, void *scratch);

/// Decodes a chunk in that format into `out` (`out_size` bytes: the chunk's decoded size,
/// which its header must state) with liblz4's LZ4_decompress_safe, which checks every
/// block against its bounds. Returns out_size, -1 (no liblz4, no memory) or -2 (the
/// bytes are not such a chunk of that size: damaged or another format).
long nx_bslz4_decode(const void *in, size_t in_size, void *out, size_t out_size, size_t elem_size);

/// The inverse of nx_bitshuffle.
int nx_bitunshuffle(const void *in, void *out, size_t count, size_t elem_size);

/// The bit transpose alone of `count` elements (a multiple of 8), as the filter applies
/// it to each block: output row (8 * byte + bit) holds that bit of every element.
int nx_bitshuffle(const void *in, void *out, size_t count, size_t elem_size);

/// 1 when the AVX2 path is used on this CPU (for tests and benchmark notes).
int nx_bitshuffle_uses_avx2(void);

#endif
