#include "CTIFFShims.h"

const char *nxtiff_version(void) { return TIFFGetVersion(); }
int nxtiff_get_uint32(TIFF *tif, uint32_t tag, uint32_t *value) {
    return TIFFGetField(tif, tag, value);
}
int nxtiff_get_string(TIFF *tif, uint32_t tag, const char **value) {
    return TIFFGetField(tif, tag, value);
}
