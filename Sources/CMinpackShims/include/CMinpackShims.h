// CMinpackShims: Debian's libcminpack (Levenberg-Marquardt least squares) opened at run
// time. Why dlopen: only the crystal refinement uses it, and nxlua's start-up never pays
// for a library it may not need (docs/architecture.md, "Start-up"); a machine without
// libcminpack1 gets a clear error naming the package instead of a binary that fails to
// start. Prefixed nxminpack_.
#ifndef NXLUA_CMINPACKSHIMS_H
#define NXLUA_CMINPACKSHIMS_H
#include <stddef.h>

/// The one place that names libcminpack's shared object.
#define NXMINPACK_SONAME "libcminpack.so.1"

/// cminpack's residual callback (cminpack_func_mn): fill fvec[0..m) at x[0..n); return a
/// negative number to stop.
typedef int (*nxminpack_residuals)(void *_Nullable context, int m, int n, const double *_Nonnull x,
                                   double *_Nonnull fvec, int iflag);

/// lmdif1 (forward-difference Jacobian) on m residuals of n parameters, x updated in
/// place; its work arrays allocated here. Returns lmdif1's info (1-4 converged by some
/// test, 0 bad input, 5 too many calls, 6-8 tolerance too small) or -1 when the library
/// cannot be opened (the reason in `why`).
int nxminpack_lmdif1(nxminpack_residuals _Nonnull f, void *_Nullable context, int m, int n,
                     double *_Nonnull x, double *_Nonnull fvec, double tol,
                     char *_Nonnull why, size_t whylen);

/// lmdif (forward-difference Jacobian) as lmdif1 runs it (ftol = xtol = tol, gtol 0, scaled
/// variables, step bound factor 100) with at most `maxfev` evaluations; `nfev` gets the
/// count. Returns lmdif's info (as nxminpack_lmdif1's) or -1 (the reason in `why`).
int nxminpack_lmdif(nxminpack_residuals _Nonnull f, void *_Nullable context, int m, int n,
                    double *_Nonnull x, double *_Nonnull fvec, double tol, int maxfev, int *_Nonnull nfev,
                    char *_Nonnull why, size_t whylen);

#endif
