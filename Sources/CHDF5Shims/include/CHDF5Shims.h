// CHDF5Shims: libhdf5 opened at run time, plus the HDF5 pieces Swift cannot import.
//
// Why dlopen: linking libhdf5 pulls in curl, gnutls, krb5 and ldap, and start-up goes
// from about 2 ms to 5 ms although most nxlua runs never touch a file
// (docs/architecture.md, "Start-up"). So no target links libhdf5: nxh5_load() opens it
// on first use and fills a table of function pointers typed from HDF5's own prototypes
// (__typeof__), so a wrong signature cannot compile.
//
// Why the id table: H5T_NATIVE_*, H5T_STD_*, H5P_* are macros expanding to H5open()
// plus `_g` globals, which Swift 6 rejects; their values are read once after H5open().
// Prefixed nxh5_.
#ifndef NXLUA_CHDF5SHIMS_H
#define NXLUA_CHDF5SHIMS_H
#include "/usr/include/hdf5/serial/hdf5.h"
#include <stddef.h>

/// The one place that names libhdf5's shared object (NativeLibraries uses it too).
#define NXH5_SONAME "libhdf5_serial.so.103"

/// The functions nxlua calls; X(name) per function.
#define NXH5_FUNCTIONS(X) \
    X(H5open) X(H5close) X(H5dont_atexit) X(H5get_libversion) X(H5is_library_threadsafe) X(H5free_memory) \
    X(H5Eset_auto2) X(H5Ewalk2) X(H5Eclear2) \
    X(H5Fopen) X(H5Fcreate) X(H5Fclose) X(H5Fflush) X(H5Fis_hdf5) X(H5Fstart_swmr_write) \
    X(H5Fget_intent) X(H5Fget_obj_count) X(H5Fget_obj_ids) X(H5Fincrement_filesize) X(H5Fget_eoa) X(H5Fget_vfd_handle) \
    X(H5Pcreate) X(H5Pclose) X(H5Pset_libver_bounds) X(H5Pset_fclose_degree) X(H5Pset_chunk) \
    X(H5Pset_deflate) X(H5Pset_filter) X(H5Pset_shuffle) X(H5Pset_fill_value) X(H5Pset_alloc_time) X(H5Pset_fill_time) X(H5Pget_layout) \
    X(H5Pget_chunk) X(H5Pget_nfilters) X(H5Pget_filter2) X(H5Pset_link_creation_order) \
    X(H5Pset_attr_creation_order) X(H5Pset_create_intermediate_group) X(H5Pset_chunk_cache) \
    X(H5Pget_fill_value) X(H5Pfill_value_defined) X(H5Pset_virtual_view) X(H5Pset_virtual_prefix) \
    X(H5Pget_link_creation_order) X(H5Pset_efile_prefix) X(H5Pset_file_locking) \
    X(H5Gcreate2) X(H5Gopen2) X(H5Gclose) X(H5Gget_info) X(H5Gget_create_plist) \
    X(H5Literate) X(H5Lget_info) X(H5Lexists) X(H5Lget_val) X(H5Lcreate_soft) X(H5Lcreate_hard) \
    X(H5Lcreate_external) X(H5Ldelete) X(H5Lmove) X(H5Lunpack_elink_val) \
    X(H5Oopen) X(H5Oclose) X(H5Oget_info2) X(H5Oget_info_by_name2) X(H5Ocopy) \
    X(H5Iget_type) X(H5Iget_name) X(H5Iis_valid) X(H5Iget_file_id) \
    X(H5Dcreate2) X(H5Dopen2) X(H5Dclose) X(H5Dget_space) X(H5Dget_type) X(H5Dread) X(H5Dwrite) \
    X(H5Dset_extent) X(H5Drefresh) X(H5Dflush) X(H5Dget_storage_size) X(H5Dvlen_reclaim) \
    X(H5Dget_create_plist) X(H5Dget_access_plist) X(H5Dread_chunk) X(H5Dget_chunk_info) X(H5Dget_chunk_info_by_coord) \
    X(H5Dget_num_chunks) X(H5Dget_chunk_storage_size) \
    X(H5Screate) X(H5Screate_simple) X(H5Sclose) X(H5Sget_simple_extent_ndims) \
    X(H5Sget_simple_extent_dims) X(H5Sget_simple_extent_type) X(H5Sselect_hyperslab) \
    X(H5Sselect_all) X(H5Sget_select_npoints) X(H5Scopy) \
    X(H5Tcopy) X(H5Tclose) X(H5Tget_class) X(H5Tget_size) X(H5Tget_sign) X(H5Tis_variable_str) \
    X(H5Tget_cset) X(H5Tget_strpad) X(H5Tset_size) X(H5Tset_cset) X(H5Tset_strpad) \
    X(H5Tget_native_type) X(H5Tget_nmembers) X(H5Tget_member_name) X(H5Tget_member_type) \
    X(H5Tget_member_offset) X(H5Tget_member_value) X(H5Tenum_create) X(H5Tenum_insert) \
    X(H5Tget_super) X(H5Tcreate) X(H5Tinsert) X(H5Tequal) X(H5Tget_order) X(H5Tget_array_ndims) \
    X(H5Tget_array_dims2) X(H5Tvlen_create) \
    X(H5Acreate2) X(H5Aopen) X(H5Aclose) X(H5Aread) X(H5Awrite) X(H5Aget_space) X(H5Aget_type) \
    X(H5Aexists) X(H5Adelete) X(H5Aiterate2) \
    X(H5Zfilter_avail) \
    X(H5Dwrite_chunk) X(H5Pset) X(H5Pget_filter_by_id2) \
    X(H5Fget_info2) X(H5Pset_fapl_sec2) X(H5FDopen) X(H5FDclose) X(H5FDregister) X(H5Pset_driver)

/// The ids behind HDF5's predefined-type and property-class macros; X(field, global).
#define NXH5_IDS(X) \
    X(NATIVE_INT8, H5T_NATIVE_INT8_g) X(NATIVE_UINT8, H5T_NATIVE_UINT8_g) \
    X(NATIVE_INT16, H5T_NATIVE_INT16_g) X(NATIVE_UINT16, H5T_NATIVE_UINT16_g) \
    X(NATIVE_INT32, H5T_NATIVE_INT32_g) X(NATIVE_UINT32, H5T_NATIVE_UINT32_g) \
    X(NATIVE_INT64, H5T_NATIVE_INT64_g) X(NATIVE_UINT64, H5T_NATIVE_UINT64_g) \
    X(NATIVE_FLOAT, H5T_NATIVE_FLOAT_g) X(NATIVE_DOUBLE, H5T_NATIVE_DOUBLE_g) \
    X(C_S1, H5T_C_S1_g) \
    X(P_FILE_CREATE, H5P_CLS_FILE_CREATE_ID_g) X(P_FILE_ACCESS, H5P_CLS_FILE_ACCESS_ID_g) \
    X(P_DATASET_CREATE, H5P_CLS_DATASET_CREATE_ID_g) X(P_DATASET_ACCESS, H5P_CLS_DATASET_ACCESS_ID_g) \
    X(P_GROUP_CREATE, H5P_CLS_GROUP_CREATE_ID_g) X(P_LINK_CREATE, H5P_CLS_LINK_CREATE_ID_g) \
    X(P_LINK_ACCESS, H5P_CLS_LINK_ACCESS_ID_g) X(P_OBJECT_COPY, H5P_CLS_OBJECT_COPY_ID_g) \
    X(P_DATASET_XFER, H5P_CLS_DATASET_XFER_ID_g)

#define NXH5_FIELD(name) __typeof__(name) *_Nonnull name;
#define NXH5_ID_FIELD(field, global) hid_t field;
/// Every function pointer is set once nxh5_load() has succeeded.
typedef struct nxh5_api {
    NXH5_FUNCTIONS(NXH5_FIELD)
    NXH5_IDS(NXH5_ID_FIELD)
} nxh5_api;
#undef NXH5_FIELD
#undef NXH5_ID_FIELD

/// Opens libhdf5 (once; thread-safe), resolves every function and id, and turns off
/// HDF5's automatic error printing (errors are read with nxh5_error_message). Returns
/// NULL with the reason in `why` if the library or a symbol is missing.
const nxh5_api *_Nullable nxh5_load(char *_Nonnull why, size_t whylen);

/// Records that H5Fclose of a file failed (a full disk: the flush failed). HDF5 keeps
/// such a half-destroyed file's id, and closing it again when the library shuts down at
/// exit dereferences freed state and crashes (HDF5 1.10.8). So the library's own exit
/// handler is off (H5dont_atexit); nxlua's closes the files still open one by one, then
/// shuts the library down only if no file close failed.
void nxh5_note_failed_file_close(void);

/// 1 once the library was shut down at exit: an id closed after that (a Swift object
/// released by a thread that outlives main) would start HDF5 again, with its error
/// printing back on, only to learn that the id is gone.
int nxh5_shut_down(void);

/// The innermost messages of HDF5's current error stack ("file signature not found"),
/// written to buf; the stack is cleared. Returns the length written (0: no error).
size_t nxh5_error_message(char *_Nonnull buf, size_t len);

/// Turns HDF5's automatic error printing off for the calling thread (a per-thread
/// setting); threads other than the loading one call this before their first HDF5 call.
void nxh5_silence_this_thread(void);

/// The chunk function of the HDF5 filter plugin for filter `id` (bitshuffle, LZ4, blosc,
/// ...), found as HDF5 finds plugins (HDF5_PLUGIN_PATH, else the compiled-in folder).
/// Why: the stacker compresses chunks in its own threads and writes them with
/// H5Dwrite_chunk, so compression never runs under HDF5's global lock; calling the very
/// function HDF5 would call keeps the chunk format the plugin's own. The function frees
/// its input buffer (allocate it with malloc) and returns a malloc'd one. NULL with the
/// reason in `why` when no plugin provides the filter.
H5Z_func_t _Nullable nxh5_plugin_filter(H5Z_filter_t id, char *_Nonnull why, size_t whylen);

/// A file driver for SWMR readers: HDF5's sec2 driver under another name whose files
/// never compare equal. HDF5 shares a file opened twice in one process (nxlua serve's
/// store and a remote evaluation; a macro and its runner) with one metadata cache, and a
/// dataset open twice with one shape: as long as one handle held it, H5Drefresh through
/// the other could not show new frames. With this driver each SWMR open has a cache of
/// its own and follows the writer by itself, as a reader in another process does.
/// Returns the driver id (registered once), or a negative value if HDF5 refused.
hid_t nxh5_isolated_sec2_driver(void);

/// zlib's compress2 into `dst` (the deflate filter is built into HDF5, not a plugin, and
/// its chunks are plain zlib streams). Returns 0 and sets *dstlen, or -1 (dst too small
/// or zlib missing). `nxh5_deflate_bound` gives a size that always suffices.
int nxh5_deflate(void *_Nonnull dst, size_t *_Nonnull dstlen, const void *_Nonnull src, size_t srclen, int level);
size_t nxh5_deflate_bound(size_t srclen);

#endif
