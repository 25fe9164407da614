#include "CCairoShims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

static nxcairo_api api;
static const nxcairo_api *loaded;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *lib = dlopen(NXCAIRO_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot load libcairo (%s): %s (apt-get install libcairo2)", NXCAIRO_SONAME, dlerror());
        return;
    }
#define NXCAIRO_RESOLVE(name)                                                                    \
    if (!(api.name = (__typeof__(name) *)dlsym(lib, #name))) {                                   \
        snprintf(load_error, sizeof load_error, "libcairo (%s) lacks the function %s", NXCAIRO_SONAME, #name); \
        return;                                                                                  \
    }
    NXCAIRO_FUNCTIONS(NXCAIRO_RESOLVE)
#undef NXCAIRO_RESOLVE
    loaded = &api;
}

const nxcairo_api *nxcairo_load(char *why, size_t whylen) {
    pthread_once(&once, load);
    if (!loaded && whylen > 0) snprintf(why, whylen, "%s", load_error);
    return loaded;
}

typedef struct { uint8_t *data; size_t len, cap; int failed; } growing;

static cairo_status_t append(void *closure, const unsigned char *data, unsigned int length) {
    growing *g = closure;
    if (g->len + length > g->cap) {
        size_t cap = g->cap ? g->cap : 65536;
        while (cap < g->len + length) cap *= 2;
        uint8_t *p = realloc(g->data, cap);
        if (!p) { g->failed = 1; return CAIRO_STATUS_NO_MEMORY; }
        g->data = p;
        g->cap = cap;
    }
    memcpy(g->data + g->len, data, length);
    g->len += length;
    return CAIRO_STATUS_SUCCESS;
}

int nxcairo_png_bytes(cairo_surface_t *surface, uint8_t **out, size_t *len) {
    growing g = {0};
    cairo_status_t s = api.cairo_surface_write_to_png_stream(surface, append, &g);
    if (s != CAIRO_STATUS_SUCCESS) {
        free(g.data);
        *out = NULL;
        *len = 0;
        return (int)s;
    }
    *out = g.data;
    *len = g.len;
    return 0;
}

void nxcairo_free(void *p) { free(p); }

static void put32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}

// A chunk at p: length, type, data (already in place after the 8 header bytes), CRC.
static size_t chunk(uint8_t *p, const char *type, size_t n) {
    put32(p, (uint32_t)n);
    memcpy(p + 4, type, 4);
    put32(p + 8 + n, (uint32_t)crc32(crc32(0L, Z_NULL, 0), p + 4, (uInt)(n + 4)));
    return n + 12;
}

int nxcairo_png_rgb(const uint8_t *argb, int width, int height, int stride, int level, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (width <= 0 || height <= 0) return -1;
    size_t rowbytes = 1 + (size_t)width * 3;
    size_t rawlen = rowbytes * (size_t)height;
    uint8_t *raw = malloc(rawlen);
    if (!raw) return -1;
    for (int y = 0; y < height; y++) {
        const uint8_t *src = argb + (size_t)y * (size_t)stride;
        uint8_t *dst = raw + (size_t)y * rowbytes;
        *dst++ = 0;  // filter: none
        for (int x = 0; x < width; x++, src += 4, dst += 3) {
            dst[0] = src[2]; dst[1] = src[1]; dst[2] = src[0];  // B G R A in memory
        }
    }
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit(&z, level) != Z_OK) { free(raw); return -1; }
    size_t bound = deflateBound(&z, (uLong)rawlen);
    size_t total = 8 + 25 + 12 + bound + 12;
    uint8_t *png = malloc(total);
    if (!png) { deflateEnd(&z); free(raw); return -1; }
    static const uint8_t signature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
    memcpy(png, signature, 8);
    size_t at = 8;
    uint8_t *ihdr = png + at + 8;
    put32(ihdr, (uint32_t)width);
    put32(ihdr + 4, (uint32_t)height);
    ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;  // 8-bit RGB
    at += chunk(png + at, "IHDR", 13);
    z.next_in = raw;
    z.avail_in = (uInt)rawlen;
    z.next_out = png + at + 8;
    z.avail_out = (uInt)bound;
    int st = deflate(&z, Z_FINISH);
    size_t n = bound - z.avail_out;
    deflateEnd(&z);
    free(raw);
    if (st != Z_STREAM_END) { free(png); return -1; }
    at += chunk(png + at, "IDAT", n);
    at += chunk(png + at, "IEND", 0);
    *out = png;
    *len = at;
    return 0;
}
