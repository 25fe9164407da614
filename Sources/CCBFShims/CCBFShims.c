#include "CCBFShims.h"
#include <stdio.h>
#include <cbflib/cbf.h>
#include <cbflib/cbf_simple.h>
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/// The functions nxlua calls; X(name) per function.
#define NXCBF_FUNCTIONS(X) \
    X(cbf_make_handle) X(cbf_free_handle) X(cbf_read_file) X(cbf_set_cbf_logfile) \
    X(cbf_rewind_datablock) X(cbf_find_category) X(cbf_find_column) X(cbf_rewind_row) \
    X(cbf_count_rows) X(cbf_select_row) X(cbf_get_value) \
    X(cbf_get_arrayparameters_wdims) X(cbf_get_integerarray) X(cbf_get_realarray)

#define NXCBF_FIELD(name) __typeof__(name) *name;
static struct {
    NXCBF_FUNCTIONS(NXCBF_FIELD)
} api;
#undef NXCBF_FIELD
static int loaded;
static char load_error[512];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *lib = dlopen(NXCBF_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot load cbflib (%s): %s", NXCBF_SONAME, dlerror());
        return;
    }
#define NXCBF_RESOLVE(name)                                                                     \
    if (!(api.name = (__typeof__(name) *)dlsym(lib, #name))) {                                  \
        snprintf(load_error, sizeof load_error, "cbflib (%s) lacks the function %s", NXCBF_SONAME, #name); \
        return;                                                                                 \
    }
    NXCBF_FUNCTIONS(NXCBF_RESOLVE)
#undef NXCBF_RESOLVE
    loaded = 1;
}

int nxcbf_load(char *why, size_t whylen) {
    pthread_once(&once, load);
    if (!loaded && whylen > 0) snprintf(why, whylen, "%s", load_error);
    return loaded;
}

const char *nxcbf_api_version(void) { return CBF_API_VERSION; }

struct nxcbf_file {
    cbf_handle handle;
    char *header;
    unsigned row;  // the row of _array_data.data holding the array
};

// cbflib's status is a bit set; name the lowest bit set.
static const char *reason(int status) {
    static const char *names[] = {
        "format error", "out of memory", "bad argument", "ASCII value where binary data was expected",
        "corrupt binary data", "bit count error", "end of data", "cannot close the file",
        "cannot open the file", "read error", "seek error", "tell error", "write error",
        "identical", "not found", "overflow", "undefined", "not implemented",
        "no compression", "HDF5 error", "HDF5 difference", "size error"};
    for (unsigned i = 0; i < sizeof names / sizeof names[0]; i++)
        if (status & (1 << i)) return names[i];
    return "unknown error";
}

static void fail(char *why, size_t whylen, const char *what, int status) {
    snprintf(why, whylen, "cbflib: %s (%s, status %d)", what, reason(status), status);
}

static const char *compression_name(unsigned c) {
    switch (c & CBF_COMPRESSION_MASK) {
    case CBF_NONE: return "none";
    case CBF_CANONICAL: return "canonical";
    case CBF_PACKED: return (c & CBF_FLAG_MASK) ? "packed (flagged)" : "packed";
    case CBF_PACKED_V2: return "packed_v2";
    case CBF_BYTE_OFFSET: return "byte_offset";
    case CBF_PREDICTOR: return "predictor";
    case CBF_NIBBLE_OFFSET: return "nibble_offset";
    default: return "other";
    }
}

// Full imgCIF files may give the dimensions only in _array_structure_list (dimension by
// precedence, 1 = fastest) and not in the MIME header; read them from there.
static void cif_dimensions(cbf_handle h, size_t dims[3]) {
    unsigned rows = 0;
    if (api.cbf_rewind_datablock(h) || api.cbf_find_category(h, "array_structure_list") ||
        api.cbf_count_rows(h, &rows))
        return;
    const char *order_column = api.cbf_find_column(h, "precedence") == 0 ? "precedence" : "index";
    for (unsigned r = 0; r < rows; r++) {
        const char *dim = NULL, *order = NULL;
        if (api.cbf_select_row(h, r) || api.cbf_find_column(h, "dimension") || api.cbf_get_value(h, &dim) ||
            api.cbf_find_column(h, order_column) || api.cbf_get_value(h, &order) || !dim || !order)
            return;
        long k = strtol(order, NULL, 10);
        if (k >= 1 && k <= 3) dims[k - 1] = (size_t)strtoull(dim, NULL, 10);
    }
}

nxcbf_file *nxcbf_open(const char *path, int check_digest, nxcbf_array *info, char *why, size_t whylen) {
    memset(info, 0, sizeof *info);
    info->compression = "none";
    if (!nxcbf_load(why, whylen)) return NULL;
    nxcbf_file *f = calloc(1, sizeof *f);
    if (!f) { snprintf(why, whylen, "out of memory"); return NULL; }
    int s = api.cbf_make_handle(&f->handle);
    if (s) { fail(why, whylen, "cannot make a handle", s); free(f); return NULL; }
    api.cbf_set_cbf_logfile(f->handle, NULL);  // errors come back as messages, not on stderr
    FILE *in = fopen(path, "rb");
    if (!in) { snprintf(why, whylen, "cannot open: %s", strerror(errno)); nxcbf_close(f); return NULL; }
    // cbflib owns `in` from here on (closed by cbf_free_handle, or by cbf_read_file on error)
    s = api.cbf_read_file(f->handle, in, check_digest ? MSG_DIGEST : MSG_NODIGEST);
    if (s) { fail(why, whylen, "cannot parse the file", s); nxcbf_close(f); return NULL; }

    // the Pilatus header, if any
    const char *text = NULL;
    if (api.cbf_rewind_datablock(f->handle) == 0 && api.cbf_find_category(f->handle, "array_data") == 0 &&
        api.cbf_find_column(f->handle, "header_contents") == 0 && api.cbf_rewind_row(f->handle) == 0 &&
        api.cbf_get_value(f->handle, &text) == 0 && text)
        f->header = strdup(text);

    // the first row of _array_data.data that holds binary data
    if (api.cbf_rewind_datablock(f->handle) || api.cbf_find_category(f->handle, "array_data") ||
        api.cbf_find_column(f->handle, "data")) {
        snprintf(why, whylen, "no _array_data.data (no image in this CIF)");
        nxcbf_close(f);
        return NULL;
    }
    unsigned rows = 0;
    api.cbf_count_rows(f->handle, &rows);
    int found = 0, last = 0;
    for (unsigned r = 0; r < rows && !found; r++) {
        if (api.cbf_select_row(f->handle, r)) break;
        int id = 0, elsigned = 0, elunsigned = 0, minel = 0, maxel = 0, real = 0;
        const char *order = NULL;
        size_t padding = 0;
        unsigned compression = 0;
        s = api.cbf_get_arrayparameters_wdims(f->handle, &compression, &id, &info->elsize, &elsigned,
                                              &elunsigned, &info->nelem, &minel, &maxel, &real, &order,
                                              &info->dims[0], &info->dims[1], &info->dims[2], &padding);
        last = s;
        if (s == 0) {
            info->compression = compression_name(compression);
            info->elsigned = elsigned;
            info->real = real;
            found = 1;
            f->row = r;
        }
    }
    if (!found) {
        snprintf(why, whylen, "no readable binary image in _array_data.data (%u row%s; cbflib: %s)", rows,
                 rows == 1 ? "" : "s", rows ? reason(last) : "empty");
        nxcbf_close(f);
        return NULL;
    }
    if (info->dims[0] == 0) cif_dimensions(f->handle, info->dims);
    return f;
}

int nxcbf_read(nxcbf_file *f, void *dst, char *why, size_t whylen) {
    nxcbf_array info;
    unsigned compression;
    int id = 0, elsigned = 0, elunsigned = 0, minel = 0, maxel = 0, real = 0;
    const char *order = NULL;
    size_t padding = 0, got = 0;
    if (api.cbf_rewind_datablock(f->handle) || api.cbf_find_category(f->handle, "array_data") ||
        api.cbf_find_column(f->handle, "data") || api.cbf_select_row(f->handle, f->row)) {
        snprintf(why, whylen, "cbflib: lost the array's row");
        return CBF_NOTFOUND;
    }
    int s = api.cbf_get_arrayparameters_wdims(f->handle, &compression, &id, &info.elsize, &elsigned, &elunsigned,
                                              &info.nelem, &minel, &maxel, &real, &order, &info.dims[0],
                                              &info.dims[1], &info.dims[2], &padding);
    if (s) { fail(why, whylen, "cannot read the array parameters", s); return s; }
    s = real ? api.cbf_get_realarray(f->handle, &id, dst, info.elsize, info.nelem, &got)
             : api.cbf_get_integerarray(f->handle, &id, dst, info.elsize, elsigned, info.nelem, &got);
    if (s) { fail(why, whylen, "cannot decode the array", s); return s; }
    if (got != info.nelem) {
        snprintf(why, whylen, "cbflib decoded %zu of %zu elements", got, info.nelem);
        return CBF_ENDOFDATA;
    }
    return 0;
}

const char *nxcbf_header_contents(nxcbf_file *f) { return f->header; }

void nxcbf_close(nxcbf_file *f) {
    if (!f) return;
    if (f->handle) api.cbf_free_handle(f->handle);
    free(f->header);
    free(f);
}
