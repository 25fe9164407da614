// See CBLASShims.h: OpenBLAS's cblas_dgemm/cblas_sgemm through dlopen.
#include "CBLASShims.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

enum { ROW_MAJOR = 101, NO_TRANS = 111 };  // CBLAS_ORDER / CBLAS_TRANSPOSE values

typedef void (*dgemm_fn)(int, int, int, int, int, int, double, const double *, int, const double *, int,
                         double, double *, int);
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float *, int, const float *, int,
                         float, float *, int);
typedef char *(*config_fn)(void);

static dgemm_fn dgemm;
static sgemm_fn sgemm;
static config_fn config;
static char load_error[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *lib = dlopen(NXBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!lib) {
        snprintf(load_error, sizeof load_error, "cannot open %s (%s)", NXBLAS_SONAME, dlerror());
        return;
    }
    config = (config_fn)dlsym(lib, "openblas_get_config");
    dgemm = (dgemm_fn)dlsym(lib, "cblas_dgemm");
    sgemm = (sgemm_fn)dlsym(lib, "cblas_sgemm");
    if (!config || !dgemm || !sgemm) {
        dgemm = NULL;
        sgemm = NULL;
        snprintf(load_error, sizeof load_error, "%s lacks cblas_dgemm, cblas_sgemm or openblas_get_config", NXBLAS_SONAME);
    }
}

int nxblas_available(char *why, size_t whylen) {
    pthread_once(&once, load);
    if (dgemm) return 0;
    if (why && whylen) snprintf(why, whylen, "%s", load_error);
    return -1;
}

const char *nxblas_config(void) {
    pthread_once(&once, load);
    return config ? config() : NULL;
}

int nxblas_dgemm(int m, int n, int k, const double *a, const double *b, double *c) {
    if (nxblas_available(NULL, 0) != 0) return -1;
    dgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0, a, k, b, n, 0.0, c, n);
    return 0;
}

int nxblas_sgemm(int m, int n, int k, const float *a, const float *b, float *c) {
    if (nxblas_available(NULL, 0) != 0) return -1;
    sgemm(ROW_MAJOR, NO_TRANS, NO_TRANS, m, n, k, 1.0f, a, k, b, n, 0.0f, c, n);
    return 0;
}
