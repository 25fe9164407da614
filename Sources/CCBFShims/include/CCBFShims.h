// CCBFShims: cbflib's *_wdims_fs functions are macros, and its API version is a string
// macro; both are re-exported here. Note: cbflib's read/write functions take ownership
// of the FILE* they are given. Prefixed nxcbf_.
#ifndef NXLUA_CCBFSHIMS_H
#define NXLUA_CCBFSHIMS_H
#include <stddef.h>

/// "CBFlib v0.9.7"
const char *nxcbf_api_version(void);
#endif
