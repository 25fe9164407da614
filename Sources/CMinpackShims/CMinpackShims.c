#include "CMinpackShims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

typedef int (*lmdif1_fn)(nxminpack_residuals, void *, int, int, double *, double *, double,
                         int *, double *, int);

typedef int (*lmdif_fn)(nxminpack_residuals, void *, int, int, double *, double *, double, double, double,
                        int, double, double *, int, double, int, int *, double *, int, int *, double *,
                        double *, double *, double *, double *);

static lmdif1_fn lmdif1;
static lmdif_fn lmdif;
static char failure[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void load(void) {
    void *h = dlopen(NXMINPACK_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(failure, sizeof failure, "cannot open %s (apt-get install libcminpack1): %s", NXMINPACK_SONAME, dlerror());
        return;
    }
    lmdif1 = (lmdif1_fn)dlsym(h, "lmdif1");
    lmdif = (lmdif_fn)dlsym(h, "lmdif");
    if (!lmdif1 || !lmdif) {
        lmdif1 = NULL;
        lmdif = NULL;
        snprintf(failure, sizeof failure, "%s has no lmdif1 or lmdif", NXMINPACK_SONAME);
    }
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

int nxminpack_lmdif(nxminpack_residuals f, void *context, int m, int n, double *x, double *fvec, double tol,
                    int maxfev, int *nfev, char *why, size_t whylen) {
    pthread_once(&once, load);
    *nfev = 0;
    if (!lmdif) {
        snprintf(why, whylen, "%s", failure);
        return -1;
    }
    // diag, qtf, wa1-wa4 (n each and m), fjac (m x n), ipvt (n)
    double *work = malloc(sizeof(double) * ((size_t)m * (size_t)n + 6 * (size_t)n + (size_t)m));
    int *ipvt = malloc(sizeof(int) * (size_t)n);
    if (!work || !ipvt) {
        free(work);
        free(ipvt);
        snprintf(why, whylen, "out of memory for %d x %d least squares", m, n);
        return -1;
    }
    double *diag = work, *qtf = diag + n, *wa1 = qtf + n, *wa2 = wa1 + n, *wa3 = wa2 + n, *wa4 = wa3 + n;
    double *fjac = wa4 + m;
    int info = lmdif(f, context, m, n, x, fvec, tol, tol, 0.0, maxfev, 0.0, diag, 1, 100.0, 0, nfev, fjac, m,
                     ipvt, qtf, wa1, wa2, wa3, wa4);
    free(work);
    free(ipvt);
    return info;
}
