// CCBFShims: cbflib opened at run time, and a small reading API over it.
//
// Why dlopen: libcbf needs libhdf5, whose dependency chain (curl, gnutls, krb5, ...)
// costs about 3 ms at start-up although most nxlua runs never read a CBF
// (docs/architecture.md, "Start-up"). So nothing links it: nxcbf_load() opens
// NXCBF_SONAME on first use and fills a table of function pointers typed from cbflib's
// own prototypes (__typeof__), so a wrong signature cannot compile. cbf.h includes
// hdf5.h from HDF5's serial folder, so only the .c file sees cbflib's headers (built with
// that folder on its include path); nothing here needs them.
//
// Why a reading API in C: cbflib's *_wdims_fs functions are macros, its read functions
// take ownership of the FILE*, and it prints errors to stderr unless the handle's log
// file is cleared. The Pilatus byte-offset fast path is native Swift (Sources/Detector);
// this is for every other compression and for full imgCIF files, and the reference the
// tests compare the native decoder with. Prefixed nxcbf_.
#ifndef NXLUA_CCBFSHIMS_H
#define NXLUA_CCBFSHIMS_H
#include <stddef.h>

/// The one place that names cbflib's shared object (NativeLibraries uses it too).
#define NXCBF_SONAME "libcbf.so.1"

/// Opens libcbf (once; thread-safe) and resolves every function it needs. Returns 0 with
/// the reason in `why` if the library or a symbol is missing.
int nxcbf_load(char *_Nonnull why, size_t whylen);

/// "CBFlib v0.9.7" (the headers' CBF_API_VERSION).
const char *_Nonnull nxcbf_api_version(void);

/// The first binary array of a CBF file, as cbflib describes it.
typedef struct nxcbf_array {
    const char *_Nullable compression; /// "byte_offset", "packed", "none", ...
    size_t elsize;              /// bytes per element
    int elsigned;
    int real;                   /// IEEE floats
    size_t nelem;
    size_t dims[3];             /// fastest, middle, slowest (0: absent)
} nxcbf_array;

typedef struct nxcbf_file nxcbf_file;

/// Reads `path` with cbflib (check_digest: verify every Content-MD5) and finds its first
/// binary array. Returns NULL with the reason in `why` (which does not name the file).
nxcbf_file *_Nullable nxcbf_open(const char *_Nonnull path, int check_digest,
                                 nxcbf_array *_Nonnull info, char *_Nonnull why, size_t whylen);
/// Decodes the array into dst (info.nelem elements of info.elsize bytes). 0 on success.
int nxcbf_read(nxcbf_file *_Nonnull f, void *_Nonnull dst, char *_Nonnull why, size_t whylen);
/// `_array_data.header_contents` (the Pilatus header), or NULL. Valid until nxcbf_close.
const char *_Nullable nxcbf_header_contents(nxcbf_file *_Nonnull f);
void nxcbf_close(nxcbf_file *_Nullable f);

// Byte-offset runs with AVX2 (byteoffset_avx2.c; nothing of cbflib): the one-byte deltas
// of a Pilatus frame, 32 at a time, as prefix sums in vector lanes instead of one add
// after the other.

/// 1 when this CPU has AVX2 and nxbo_run decodes; 0 when it returns 0 at once.
int nxbo_run_available(void);

/// Decodes one-byte deltas from `src` (`avail` bytes) into `dst`, up to `count` elements,
/// from the running value `*value` (updated; wrapping modulo 2^32); stops before the first
/// escape byte 0x80. Returns the elements decoded (the bytes used). Reads only the
/// `avail` bytes.
size_t nxbo_run(const unsigned char *_Nonnull src, size_t avail, int *_Nonnull dst, size_t count,
                int *_Nonnull value);
#endif
