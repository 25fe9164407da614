#include "CCairoShims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <unistd.h>

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

// One band of rows: converted to RGB with their filter bytes, deflated as raw deflate
// (no zlib header) ending on a byte boundary (Z_SYNC_FLUSH) or, for the last band, the
// end of the stream; its Adler-32 for the zlib trailer. Bands compress in parallel, as
// pigz does; each starts without the previous band's window, which costs little here.
typedef struct {
    const uint8_t *argb;
    int width, y0, y1, stride, level, last;
    uint8_t *out;
    size_t outlen;
    uLong adler;
    size_t rawlen;
    int ok;
} band;

static void *compress_band(void *arg) {
    band *b = arg;
    b->ok = 0;
    size_t rowbytes = 1 + (size_t)b->width * 3;
    size_t rawlen = rowbytes * (size_t)(b->y1 - b->y0);
    uint8_t *raw = malloc(rawlen ? rawlen : 1);
    if (!raw) return NULL;
    for (int y = b->y0; y < b->y1; y++) {
        const uint8_t *src = b->argb + (size_t)y * (size_t)b->stride;
        uint8_t *dst = raw + (size_t)(y - b->y0) * rowbytes;
        *dst++ = 0;  // filter: none
        for (int x = 0; x < b->width; x++, src += 4, dst += 3) {
            dst[0] = src[2]; dst[1] = src[1]; dst[2] = src[0];  // B G R A in memory
        }
    }
    b->adler = adler32(adler32(0L, Z_NULL, 0), raw, (uInt)rawlen);
    b->rawlen = rawlen;
    z_stream z;
    memset(&z, 0, sizeof z);
    if (deflateInit2(&z, b->level, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) != Z_OK) { free(raw); return NULL; }
    size_t bound = deflateBound(&z, (uLong)rawlen) + 64;
    b->out = malloc(bound);
    if (!b->out) { deflateEnd(&z); free(raw); return NULL; }
    z.next_in = raw;
    z.avail_in = (uInt)rawlen;
    z.next_out = b->out;
    z.avail_out = (uInt)bound;
    int st = deflate(&z, b->last ? Z_FINISH : Z_SYNC_FLUSH);
    b->outlen = bound - z.avail_out;
    b->ok = b->last ? st == Z_STREAM_END : (st == Z_OK && z.avail_in == 0);
    deflateEnd(&z);
    free(raw);
    return NULL;
}

int nxcairo_png_rgb(const uint8_t *argb, int width, int height, int stride, int level, uint8_t **out, size_t *len) {
    *out = NULL;
    *len = 0;
    if (width <= 0 || height <= 0) return -1;
    enum { MAXBANDS = 8 };
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int nb = (long)width * height >= 200000 ? (int)(cores < 1 ? 1 : cores > MAXBANDS ? MAXBANDS : cores) : 1;
    if (nb > height) nb = height;
    band bands[MAXBANDS];
    pthread_t threads[MAXBANDS];
    int started[MAXBANDS] = {0};
    for (int k = 0; k < nb; k++) {
        bands[k] = (band){ .argb = argb, .width = width, .y0 = (int)((long)height * k / nb),
                           .y1 = (int)((long)height * (k + 1) / nb), .stride = stride, .level = level,
                           .last = k == nb - 1, .out = NULL };
    }
    for (int k = 1; k < nb; k++) started[k] = pthread_create(&threads[k], NULL, compress_band, &bands[k]) == 0;
    compress_band(&bands[0]);
    for (int k = 1; k < nb; k++) {
        if (started[k]) pthread_join(threads[k], NULL); else compress_band(&bands[k]);
    }
    int ok = 1;
    size_t deflated = 0;
    uLong adler = adler32(0L, Z_NULL, 0);
    for (int k = 0; k < nb; k++) {
        ok = ok && bands[k].ok;
        deflated += bands[k].outlen;
        adler = adler32_combine(adler, bands[k].adler, (z_off_t)bands[k].rawlen);
    }
    uint8_t *png = ok ? malloc(8 + 25 + 12 + 2 + deflated + 4 + 12) : NULL;
    if (png) {
        static const uint8_t signature[8] = {137, 80, 78, 71, 13, 10, 26, 10};
        memcpy(png, signature, 8);
        size_t at = 8;
        uint8_t *ihdr = png + at + 8;
        put32(ihdr, (uint32_t)width);
        put32(ihdr + 4, (uint32_t)height);
        ihdr[8] = 8; ihdr[9] = 2; ihdr[10] = 0; ihdr[11] = 0; ihdr[12] = 0;  // 8-bit RGB
        at += chunk(png + at, "IHDR", 13);
        uint8_t *idat = png + at + 8;
        idat[0] = 0x78; idat[1] = 0x01;  // zlib header: deflate, 32 K window, fastest
        size_t n = 2;
        for (int k = 0; k < nb; k++) { memcpy(idat + n, bands[k].out, bands[k].outlen); n += bands[k].outlen; }
        put32(idat + n, (uint32_t)adler);
        n += 4;
        at += chunk(png + at, "IDAT", n);
        at += chunk(png + at, "IEND", 0);
        *out = png;
        *len = at;
    }
    for (int k = 0; k < nb; k++) free(bands[k].out);
    return png ? 0 : -1;
}
