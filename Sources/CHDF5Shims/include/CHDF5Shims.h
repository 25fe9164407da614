// CHDF5Shims: HDF5 pieces Swift cannot import. HDF5's H5T_NATIVE_*, H5P_* and H5F_ACC_*
// names are macros expanding to H5open() plus `_g` globals, which Swift 6 rejects; they
// are re-exported here as functions. The NeXus module adds what it needs, prefixed nxh5_.
#ifndef NXLUA_CHDF5SHIMS_H
#define NXLUA_CHDF5SHIMS_H
#include <hdf5.h>

/// The library version, e.g. 1.10.8.
void nxh5_version(unsigned *major, unsigned *minor, unsigned *release);
/// Whether this libhdf5 was built thread-safe (Debian's serial build is).
int nxh5_is_threadsafe(void);

hid_t nxh5_native_int32(void);
hid_t nxh5_native_double(void);
hid_t nxh5_p_default(void);
hid_t nxh5_p_file_access(void);
unsigned nxh5_acc_rdonly(void);
unsigned nxh5_acc_trunc(void);

#endif
