#include "CCairoShims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
