// CTIFFShims: TIFFGetField/TIFFSetField are variadic, which Swift cannot call. The
// detector module adds typed wrappers here as it needs them. Prefixed nxtiff_.
#ifndef NXLUA_CTIFFSHIMS_H
#define NXLUA_CTIFFSHIMS_H
#include <tiffio.h>
#include <stdint.h>

/// libtiff's version banner ("LIBTIFF, Version 4.5.0 ...").
const char *nxtiff_version(void);
/// TIFFGetField for a uint32 tag; returns 1 when present.
int nxtiff_get_uint32(TIFF *tif, uint32_t tag, uint32_t *value);
/// TIFFGetField for a string tag (ImageDescription, ...); returns 1 when present.
int nxtiff_get_string(TIFF *tif, uint32_t tag, const char **value);
#endif
