// OpenBLAS for float matrix products, opened with dlopen on first use (start-up: nxlua
// never pays for it unless a large product runs; and nxlua works without it, with its
// own slower kernel). Only OpenBLAS is used: Debian's reference libblas.so.3 is slower
// than nxlua's own kernel.
#ifndef CBLAS_SHIMS_H
#define CBLAS_SHIMS_H
#include <stddef.h>

#define NXBLAS_SONAME "libopenblas.so.0"

/// 0 when OpenBLAS loaded, else -1 with the reason in `why`.
int nxblas_available(char *why, size_t whylen);

/// OpenBLAS's build description ("OpenBLAS 0.3.21 DYNAMIC_ARCH ..."), or NULL.
const char *nxblas_config(void);

/// C = A @ B for row-major contiguous A (m x k), B (k x n), C (m x n), overwriting C.
/// Returns -1 when OpenBLAS is not there (C untouched).
int nxblas_dgemm(int m, int n, int k, const double *a, const double *b, double *c);
int nxblas_sgemm(int m, int n, int k, const float *a, const float *b, float *c);

#endif
