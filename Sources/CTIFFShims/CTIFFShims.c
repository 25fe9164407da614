#include "CTIFFShims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static nxtiff_api api;
static const nxtiff_api *loaded;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static __thread char last_error[512];

// libtiff calls these from inside TIFFOpen/TIFFRead*: keep the message for the caller,
// who names the file; print nothing.
static void on_error(const char *module, const char *fmt, va_list ap) {
    (void)module;
    vsnprintf(last_error, sizeof last_error, fmt, ap);
}
static void on_warning(const char *module, const char *fmt, va_list ap) {
    (void)module; (void)fmt; (void)ap;
}

static void load(void) {
    void *lib = dlopen(NXTIFF_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot load libtiff (%s): %s", NXTIFF_SONAME, dlerror());
        return;
    }
#define NXTIFF_RESOLVE(name)                                                                    \
    if (!(api.name = (__typeof__(name) *)dlsym(lib, #name))) {                                  \
        snprintf(load_error, sizeof load_error, "libtiff (%s) lacks the function %s", NXTIFF_SONAME, #name); \
        return;                                                                                 \
    }
    NXTIFF_FUNCTIONS(NXTIFF_RESOLVE)
#undef NXTIFF_RESOLVE
    api.TIFFSetErrorHandler(on_error);
    api.TIFFSetWarningHandler(on_warning);
    loaded = &api;
}

const nxtiff_api *nxtiff_load(char *why, size_t whylen) {
    pthread_once(&once, load);
    if (!loaded && whylen > 0) snprintf(why, whylen, "%s", load_error);
    return loaded;
}

size_t nxtiff_take_error(char *buf, size_t len) {
    if (len == 0) return 0;
    size_t n = (size_t)snprintf(buf, len, "%s", last_error);
    last_error[0] = 0;
    return n < len ? n : len - 1;
}

int nxtiff_get_uint16(TIFF *tif, uint32_t tag, uint16_t *value) { return api.TIFFGetField(tif, tag, value); }
int nxtiff_get_uint32(TIFF *tif, uint32_t tag, uint32_t *value) { return api.TIFFGetField(tif, tag, value); }
int nxtiff_get_string(TIFF *tif, uint32_t tag, const char **value) { return api.TIFFGetField(tif, tag, value); }
// Variadic arguments are promoted: a uint16 travels as int.
int nxtiff_set_uint16(TIFF *tif, uint32_t tag, uint16_t value) { return api.TIFFSetField(tif, tag, (int)value); }
int nxtiff_set_uint32(TIFF *tif, uint32_t tag, uint32_t value) { return api.TIFFSetField(tif, tag, value); }
int nxtiff_set_string(TIFF *tif, uint32_t tag, const char *value) { return api.TIFFSetField(tif, tag, value); }
