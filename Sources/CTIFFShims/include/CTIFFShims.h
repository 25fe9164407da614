// CTIFFShims: libtiff opened at run time, plus what Swift cannot call.
//
// Why dlopen: linking libtiff adds about 0.9 ms to every start of nxlua although most
// runs never read a TIFF (docs/architecture.md, "Start-up"). So nothing links it:
// nxtiff_load() opens NXTIFF_SONAME on first use and fills a table of function pointers
// typed from libtiff's own prototypes (__typeof__), so a wrong signature cannot compile.
//
// Why wrappers: TIFFGetField/TIFFSetField are variadic, which Swift cannot call; and
// libtiff reports errors through a process-wide handler that prints to stderr: the
// loader installs one that keeps the last message per thread (nxtiff_last_error) and
// silences warnings. Prefixed nxtiff_.
#ifndef NXLUA_CTIFFSHIMS_H
#define NXLUA_CTIFFSHIMS_H
#include <tiffio.h>
#include <stddef.h>
#include <stdint.h>

/// The one place that names libtiff's shared object (NativeLibraries uses it too).
#define NXTIFF_SONAME "libtiff.so.6"

/// The functions nxlua calls; X(name) per function.
#define NXTIFF_FUNCTIONS(X) \
    X(TIFFGetVersion) X(TIFFOpen) X(TIFFClose) X(TIFFGetField) X(TIFFSetField) \
    X(TIFFIsTiled) X(TIFFNumberOfStrips) X(TIFFStripSize) X(TIFFReadEncodedStrip) \
    X(TIFFNumberOfTiles) X(TIFFTileSize) X(TIFFReadEncodedTile) X(TIFFComputeTile) \
    X(TIFFNumberOfDirectories) X(TIFFSetDirectory) X(TIFFWriteEncodedStrip) \
    X(TIFFWriteEncodedTile) X(TIFFWriteDirectory) X(TIFFSetErrorHandler) X(TIFFSetWarningHandler)

#define NXTIFF_FIELD(name) __typeof__(name) *_Nonnull name;
/// Every function pointer is set once nxtiff_load() has succeeded.
typedef struct nxtiff_api {
    NXTIFF_FUNCTIONS(NXTIFF_FIELD)
} nxtiff_api;
#undef NXTIFF_FIELD

/// Opens libtiff (once; thread-safe) and resolves every function. Returns NULL with the
/// reason in `why` if the library or a symbol is missing.
const nxtiff_api *_Nullable nxtiff_load(char *_Nonnull why, size_t whylen);

/// libtiff's last error message on this thread ("" if none), then forgets it.
size_t nxtiff_take_error(char *_Nonnull buf, size_t len);

/// TIFFGetField for a uint16 tag (BitsPerSample, SampleFormat, ...); 1 when present.
int nxtiff_get_uint16(TIFF *_Nonnull tif, uint32_t tag, uint16_t *_Nonnull value);
/// TIFFGetField for a uint32 tag (ImageWidth, RowsPerStrip, TileWidth, ...); 1 when present.
int nxtiff_get_uint32(TIFF *_Nonnull tif, uint32_t tag, uint32_t *_Nonnull value);
/// TIFFGetField for an ASCII tag (ImageDescription, ...); 1 when present.
int nxtiff_get_string(TIFF *_Nonnull tif, uint32_t tag, const char *_Nullable *_Nonnull value);
/// TIFFSetField for a uint16, uint32 or ASCII tag; 1 on success.
int nxtiff_set_uint16(TIFF *_Nonnull tif, uint32_t tag, uint16_t value);
int nxtiff_set_uint32(TIFF *_Nonnull tif, uint32_t tag, uint32_t value);
int nxtiff_set_string(TIFF *_Nonnull tif, uint32_t tag, const char *_Nonnull value);
#endif
