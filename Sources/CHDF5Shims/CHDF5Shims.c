#include "CHDF5Shims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static nxh5_api api;
static const nxh5_api *loaded;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static volatile int file_close_failed;

void nxh5_note_failed_file_close(void) { file_close_failed = 1; }

static volatile int shut_down;
int nxh5_shut_down(void) { return shut_down; }

static void close_library_at_exit(void) {
    api.H5Eset_auto2(H5E_DEFAULT, NULL, NULL);  // the exiting thread may never have loaded it
    if (file_close_failed) return;  // a half-destroyed file id is among the open ones
    ssize_t count = api.H5Fget_obj_count((hid_t)H5F_OBJ_ALL, H5F_OBJ_FILE);
    if (count > 0) {
        hid_t *ids = malloc((size_t)count * sizeof *ids);
        if (!ids) return;
        count = api.H5Fget_obj_ids((hid_t)H5F_OBJ_ALL, H5F_OBJ_FILE, (size_t)count, ids);
        for (ssize_t i = 0; i < count; i++)
            if (api.H5Fclose(ids[i]) < 0) file_close_failed = 1;
        free(ids);
    }
    if (!file_close_failed) {
        shut_down = 1;
        api.H5close();
    }
}

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
    api.H5dont_atexit();  // before H5open; see nxh5_note_failed_file_close
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
    atexit(close_library_at_exit);
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

// ---- filter plugins and zlib, for compressing chunks outside HDF5 (the stacker) ----

#include <dirent.h>
#include <stdlib.h>

typedef H5PL_type_t (*plugin_type_fn)(void);
typedef const void *(*plugin_info_fn)(void);

static pthread_mutex_t plugin_lock = PTHREAD_MUTEX_INITIALIZER;

// Looks in one folder for a filter plugin providing `id`; the handle stays open (HDF5
// keeps its plugins loaded for the life of the process too).
static H5Z_func_t find_in_folder(const char *folder, H5Z_filter_t id) {
    DIR *d = opendir(folder);
    if (!d) return NULL;
    H5Z_func_t found = NULL;
    struct dirent *e;
    while (!found && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n < 4 || strcmp(e->d_name + n - 3, ".so") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", folder, e->d_name);
        void *lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
        if (!lib) continue;
        plugin_type_fn type = (plugin_type_fn)dlsym(lib, "H5PLget_plugin_type");
        plugin_info_fn info = (plugin_info_fn)dlsym(lib, "H5PLget_plugin_info");
        if (type && info && type() == H5PL_TYPE_FILTER) {
            const H5Z_class2_t *c = info();
            if (c && c->id == id && c->filter) found = c->filter;
        }
        if (!found) dlclose(lib);
    }
    closedir(d);
    return found;
}

H5Z_func_t nxh5_plugin_filter(H5Z_filter_t id, char *why, size_t whylen) {
    pthread_mutex_lock(&plugin_lock);
    H5Z_func_t f = NULL;
    const char *env = getenv("HDF5_PLUGIN_PATH");
    char folders[8192];
    snprintf(folders, sizeof folders, "%s", env && env[0] ? env : H5_DEFAULT_PLUGINDIR);
    char *save = NULL;
    for (char *dir = strtok_r(folders, ":", &save); dir && !f; dir = strtok_r(NULL, ":", &save)) {
        f = find_in_folder(dir, id);
    }
    pthread_mutex_unlock(&plugin_lock);
    if (!f && whylen > 0) {
        snprintf(why, whylen, "no HDF5 filter plugin provides filter %d (looked in %s)", (int)id,
                 env && env[0] ? env : H5_DEFAULT_PLUGINDIR);
    }
    return f;
}

typedef int (*compress2_fn)(unsigned char *, unsigned long *, const unsigned char *, unsigned long, int);
typedef unsigned long (*compress_bound_fn)(unsigned long);
static compress2_fn z_compress2;
static compress_bound_fn z_bound;
static pthread_once_t zlib_once = PTHREAD_ONCE_INIT;

static void load_zlib(void) {
    void *lib = dlopen("libz.so.1", RTLD_NOW | RTLD_GLOBAL);  // libhdf5 depends on it already
    if (!lib) return;
    z_compress2 = (compress2_fn)dlsym(lib, "compress2");
    z_bound = (compress_bound_fn)dlsym(lib, "compressBound");
}

size_t nxh5_deflate_bound(size_t srclen) {
    pthread_once(&zlib_once, load_zlib);
    return z_bound ? (size_t)z_bound(srclen) : srclen + srclen / 1000 + 64;
}

int nxh5_deflate(void *dst, size_t *dstlen, const void *src, size_t srclen, int level) {
    pthread_once(&zlib_once, load_zlib);
    if (!z_compress2) return -1;
    unsigned long n = *dstlen;
    if (z_compress2(dst, &n, src, srclen, level) != 0) return -1;  // Z_OK is 0
    *dstlen = n;
    return 0;
}

// --- the isolated SWMR-reader driver (see the header) ---

static H5FD_class_t isolated_class;
static hid_t isolated_driver = -1;
static pthread_once_t isolated_once = PTHREAD_ONCE_INIT;

// Two files of this driver are the same only if they are the same open file: HDF5 then
// never finds an open file to share (H5F__sfile_search compares with the driver's cmp).
static int isolated_cmp(const H5FD_t *f1, const H5FD_t *f2) {
    return f1 < f2 ? -1 : f1 > f2 ? 1 : 0;
}

static void register_isolated(void) {
    if (!loaded) return;
    // sec2's class table is private: it is read from a file the driver opened (H5FD_t
    // is public and names its class; H5Iobject_verify refuses library ids in 1.10)
    hid_t fapl = api.H5Pcreate(api.P_FILE_ACCESS);
    if (fapl < 0) return;
    H5FD_t *probe = api.H5Pset_fapl_sec2(fapl) >= 0 ? api.H5FDopen("/dev/null", 0u /* H5F_ACC_RDONLY, without its H5open call */, fapl, HADDR_UNDEF) : NULL;
    api.H5Pclose(fapl);
    if (!probe) { api.H5Eclear2(H5E_DEFAULT); return; }
    isolated_class = *probe->cls;
    api.H5FDclose(probe);
    isolated_class.name = "nxlua_swmr_reader";
    isolated_class.cmp = isolated_cmp;
    // sec2's terminate resets sec2's own id: the copy must not run it at shutdown
    isolated_class.terminate = NULL;
    isolated_driver = api.H5FDregister(&isolated_class);
}

hid_t nxh5_isolated_sec2_driver(void) {
    pthread_once(&isolated_once, register_isolated);
    return isolated_driver;
}
