#include "CHDF5Shims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

static nxh5_api api;
static const nxh5_api *loaded;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *lib = dlopen(NXH5_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot load HDF5 (%s): %s", NXH5_SONAME, dlerror());
        return;
    }
#define NXH5_RESOLVE(name)                                                                  \
    if (!(api.name = (__typeof__(name) *)dlsym(lib, #name))) {                              \
        snprintf(load_error, sizeof load_error, "HDF5 (%s) lacks the function %s", NXH5_SONAME, #name); \
        return;                                                                             \
    }
    NXH5_FUNCTIONS(NXH5_RESOLVE)
#undef NXH5_RESOLVE
    if (api.H5open() < 0) {
        snprintf(load_error, sizeof load_error, "HDF5 (%s) failed to initialise", NXH5_SONAME);
        return;
    }
#define NXH5_READ_ID(field, global)                                                         \
    {                                                                                       \
        const hid_t *p = (const hid_t *)dlsym(lib, #global);                                \
        if (!p) {                                                                           \
            snprintf(load_error, sizeof load_error, "HDF5 (%s) lacks %s", NXH5_SONAME, #global); \
            return;                                                                         \
        }                                                                                   \
        api.field = *p;                                                                     \
    }
    NXH5_IDS(NXH5_READ_ID)
#undef NXH5_READ_ID
    // nxlua reports errors itself, with the file and object path.
    api.H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    loaded = &api;
}

const nxh5_api *nxh5_load(char *why, size_t whylen) {
    pthread_once(&once, load);
    if (!loaded && whylen > 0) snprintf(why, whylen, "%s", load_error);
    return loaded;
}

struct walk_state {
    char *buf;
    size_t len;
    size_t used;
    int depth;
};

// HDF5 stacks go from the API call (outermost) to the cause (innermost); the innermost
// two lines say what went wrong ("unable to open file: ... No such file or directory").
static herr_t walk(unsigned n, const H5E_error2_t *err, void *data) {
    struct walk_state *s = data;
    (void)n;
    s->depth++;
    if (!err->desc || !err->desc[0]) return 0;
    s->used = (size_t)snprintf(s->buf, s->len, "%s", err->desc);
    if (s->used >= s->len) s->used = s->len - 1;
    return 0;
}

// HDF5's automatic error printing is a per-thread setting in the thread-safe build:
// every thread that calls the library turns it off once (errors become messages).
static __thread int thread_silenced;

void nxh5_silence_this_thread(void) {
    if (!loaded || thread_silenced) return;
    api.H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    thread_silenced = 1;
}

size_t nxh5_error_message(char *buf, size_t len) {
    if (!loaded || len == 0) return 0;
    buf[0] = 0;
    struct walk_state s = {buf, len, 0, 0};
    // Downward goes from the API call to the cause, so the innermost entry is written last.
    api.H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk, &s);
    api.H5Eclear2(H5E_DEFAULT);
    return s.used;
}
