#include "CFFTWShims.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>

typedef void *plan_t;
typedef plan_t (*plan_dft_3d_fn)(int, int, int, void *, void *, int, unsigned);
typedef void (*execute_fn)(plan_t);
typedef void (*destroy_fn)(plan_t);
typedef int (*init_threads_fn)(void);
typedef void (*plan_with_nthreads_fn)(int);

#define NX_FFTW_ESTIMATE (1U << 6)

static plan_dft_3d_fn plan_dft_3d;
static execute_fn execute;
static destroy_fn destroy;
static plan_with_nthreads_fn plan_with_nthreads;
static char failure[256];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static pthread_mutex_t planner = PTHREAD_MUTEX_INITIALIZER;

static void load(void) {
    // RTLD_GLOBAL: libfftw3_threads resolves its symbols in libfftw3
    void *h = dlopen(NXFFTW_SONAME, RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
        snprintf(failure, sizeof failure, "cannot open %s (apt-get install libfftw3-double3): %s", NXFFTW_SONAME, dlerror());
        return;
    }
    plan_dft_3d = (plan_dft_3d_fn)dlsym(h, "fftw_plan_dft_3d");
    execute = (execute_fn)dlsym(h, "fftw_execute");
    destroy = (destroy_fn)dlsym(h, "fftw_destroy_plan");
    if (!plan_dft_3d || !execute || !destroy) {
        plan_dft_3d = NULL;
        snprintf(failure, sizeof failure, "%s has no fftw_plan_dft_3d, fftw_execute or fftw_destroy_plan", NXFFTW_SONAME);
        return;
    }
    void *t = dlopen(NXFFTW_THREADS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (t) {
        init_threads_fn init = (init_threads_fn)dlsym(t, "fftw_init_threads");
        plan_with_nthreads_fn with = (plan_with_nthreads_fn)dlsym(t, "fftw_plan_with_nthreads");
        if (init && with && init() != 0) plan_with_nthreads = with;
    }
}

int nxfftw_dft3d(int n0, int n1, int n2, double *data, int sign, int threads, char *why, size_t whylen) {
    pthread_once(&once, load);
    if (!plan_dft_3d) {
        snprintf(why, whylen, "%s", failure);
        return -1;
    }
    pthread_mutex_lock(&planner);
    if (plan_with_nthreads) plan_with_nthreads(threads > 0 ? threads : 1);
    plan_t p = plan_dft_3d(n0, n1, n2, data, data, sign < 0 ? -1 : 1, NX_FFTW_ESTIMATE);
    pthread_mutex_unlock(&planner);
    if (!p) {
        snprintf(why, whylen, "FFTW could not plan a %d x %d x %d transform", n0, n1, n2);
        return -1;
    }
    execute(p);
    pthread_mutex_lock(&planner);
    destroy(p);
    pthread_mutex_unlock(&planner);
    return 0;
}
