#include "CMinpackShims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*lmdif1_fn)(nxminpack_residuals, void *, int, int, double *, double *, double,
                         int *, double *, int);

static lmdif1_fn lmdif1;
static char failure[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *h = dlopen(NXMINPACK_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(failure, sizeof failure, "cannot open %s (apt-get install libcminpack1): %s", NXMINPACK_SONAME, dlerror());
        return;
    }
    lmdif1 = (lmdif1_fn)dlsym(h, "lmdif1");
    if (!lmdif1) snprintf(failure, sizeof failure, "%s has no lmdif1", NXMINPACK_SONAME);
}

int nxminpack_lmdif1(nxminpack_residuals f, void *context, int m, int n, double *x, double *fvec,
                     double tol, char *why, size_t whylen) {
    pthread_once(&once, load);
    if (!lmdif1) {
        snprintf(why, whylen, "%s", failure);
        return -1;
    }
    int lwa = m * n + 5 * n + m;
    int *iwa = malloc(sizeof(int) * (size_t)n);
    double *wa = malloc(sizeof(double) * (size_t)lwa);
    if (!iwa || !wa) {
        free(iwa);
        free(wa);
        snprintf(why, whylen, "out of memory for %d x %d least squares", m, n);
        return -1;
    }
    int info = lmdif1(f, context, m, n, x, fvec, tol, iwa, wa, lwa);
    free(iwa);
    free(wa);
    return info;
}
