#include "CHDF5Shims.h"

void nxh5_version(unsigned *major, unsigned *minor, unsigned *release) {
    H5get_libversion(major, minor, release);
}

int nxh5_is_threadsafe(void) {
    hbool_t ts = 0;
    H5is_library_threadsafe(&ts);
    return ts ? 1 : 0;
}

hid_t nxh5_native_int32(void) { return H5T_NATIVE_INT32; }
hid_t nxh5_native_double(void) { return H5T_NATIVE_DOUBLE; }
hid_t nxh5_p_default(void) { return H5P_DEFAULT; }
hid_t nxh5_p_file_access(void) { return H5P_FILE_ACCESS; }
unsigned nxh5_acc_rdonly(void) { return H5F_ACC_RDONLY; }
unsigned nxh5_acc_trunc(void) { return H5F_ACC_TRUNC; }
