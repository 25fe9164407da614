// CFFTWShims: Debian's FFTW3 (double precision) opened at run time. Why dlopen: only the
// crystal module's 3-D PDF uses it, and nxlua's start-up never pays for a library it may
// not need (docs/architecture.md, "Start-up"); a machine without libfftw3-double3 gets a
// clear error naming the package instead of a binary that fails to start. Prefixed nxfftw_.
#ifndef NXLUA_CFFTWSHIMS_H
#define NXLUA_CFFTWSHIMS_H
#include <stddef.h>

/// The one place that names FFTW's shared objects (the threads library is optional).
#define NXFFTW_SONAME "libfftw3.so.3"
#define NXFFTW_THREADS_SONAME "libfftw3_threads.so.3"

/// In-place 3-D complex DFT of n0 x n1 x n2 interleaved (re, im) doubles, row-major (n2
/// fastest), sign -1 (forward, exp(-2 pi i ...), as numpy.fft.fftn) or +1, unnormalized,
/// on `threads` threads (when FFTW's threads library is there). Plans are made with
/// FFTW_ESTIMATE under a lock (FFTW's planner is not thread-safe). Returns 0, or -1 with
/// the reason in `why`.
int nxfftw_dft3d(int n0, int n1, int n2, double *_Nonnull data, int sign, int threads,
                 char *_Nonnull why, size_t whylen);

#endif
